"""Figures of the property commands (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mlipkit.units import GPa, kB  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def vibrations_plot(model_cm: np.ndarray, path, reference_cm: np.ndarray | None = None,
                    overlap: np.ndarray | None = None) -> Path:
    """Stick spectrum; with a reference also the frequency parity and the
    mode-overlap matrix."""
    panels = 1 if reference_cm is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8), squeeze=False)
    ax = axes[0, 0]
    ax.vlines(model_cm, 0, 1, color="C0", lw=1.2, label="model")
    if reference_cm is not None:
        ax.vlines(reference_cm, 0, -1, color="C1", lw=1.2, label="reference")
        ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("wavenumber (cm$^{-1}$)")
    ax.set_yticks([])
    ax.legend(loc="upper left", fontsize=8)
    if reference_cm is not None:
        ax = axes[0, 1]
        lim = [min(model_cm.min(), reference_cm.min()) - 50,
               max(model_cm.max(), reference_cm.max()) + 50]
        ax.plot(lim, lim, "k--", lw=0.7)
        ax.plot(reference_cm, model_cm, "o", ms=4)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel("reference (cm$^{-1}$)")
        ax.set_ylabel("model (cm$^{-1}$), paired by overlap")
        ax = axes[0, 2]
        im = ax.imshow(overlap, vmin=0, vmax=1, cmap="viridis", origin="lower")
        ax.set_xlabel("reference mode")
        ax.set_ylabel("model mode")
        ax.set_title("|overlap|", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def elastic_plot(model, path, reference=None) -> Path:
    """Stress against strain for each Voigt strain (lines: the fits' slopes)."""
    names = ["xx", "yy", "zz", "yz", "xz", "xy"]
    fig, axes = plt.subplots(2, 3, figsize=(11, 6), sharex=True)
    for j, ax in enumerate(axes.flat):
        for result, style, tag in ((model, "-", "model"), (reference, "--", "reference")):
            if result is None:
                continue
            e = result.strains * 100
            for i in range(6):
                if abs(result.C[i, j]) > 1.0:  # GPa; skip components that stay zero
                    ax.plot(e, result.stresses[j][:, i], "o" + style, ms=3, color=f"C{i}",
                            label=f"σ_{names[i]} {tag}")
        ax.set_title(f"strain ε_{names[j]}", fontsize=9)
        ax.set_ylabel("stress (GPa)")
        ax.legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("strain (%)")
    return _save(fig, path)


def eos_plot(model, n_atoms: int, path, reference=None) -> Path:
    """Energy per atom above each fit's minimum against volume per atom, with
    the Birch–Murnaghan fits (relative energies, so curves with different
    absolute energies share one scale)."""
    from ase.eos import birchmurnaghan

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for result, style, tag in ((model, "-", "model"), (reference, "--", "reference")):
        if result is None:
            continue
        v = np.linspace(result.volumes.min(), result.volumes.max(), 200)
        e = birchmurnaghan(v, result.e0, result.bulk_modulus * GPa, result.bprime, result.v0)
        line, = ax.plot(v / n_atoms, (e - result.e0) / n_atoms, style,
                        label=f"{tag}: V0={result.v0 / n_atoms:.3f} Å³, "
                        f"B={result.bulk_modulus:.0f} GPa")
        ax.plot(result.volumes / n_atoms, (result.energies - result.e0) / n_atoms, "o", ms=4,
                color=line.get_color())
    ax.set_xlabel("volume per atom (Å$^3$)")
    ax.set_ylabel("E − E$_0$ per atom (eV)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def vacancy_plot(model: dict, path, reference: dict | None = None) -> Path:
    """Histogram of formation energies over sites (weighted by multiplicity);
    a single site gives a bar chart."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for result, color, tag in ((model, "C0", "model"), (reference, "C1", "reference")):
        if result is None:
            continue
        e = np.array([s["formation_energy_eV"] for s in result["sites"]])
        w = np.array([s["multiplicity"] for s in result["sites"]])
        ax.hist(e, bins=max(1, min(30, len(e))), weights=w, alpha=0.6, color=color,
                label=f"{tag}: mean {result['mean_formation_energy_eV']:.3f} eV")
    ax.set_xlabel("vacancy formation energy (eV)")
    ax.set_ylabel("sites")
    ax.legend(fontsize=8)
    return _save(fig, path)


def surface_plot(model: dict, path, reference: dict | None = None) -> Path:
    """Surface energy against slab thickness (convergence)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for result, style, tag in ((model, "o-", "model"), (reference, "s--", "reference")):
        if result is None:
            continue
        n = [s["layers"] for s in result["slabs"]]
        ax.plot(n, [s["surface_energy_J_m2"] for s in result["slabs"]], style,
                label=f"{tag} (relaxed)")
        ax.plot(n, [s["unrelaxed_surface_energy_J_m2"] for s in result["slabs"]], style,
                alpha=0.4, label=f"{tag} (unrelaxed)")
    h, k, l = model["miller"]
    ax.set_title(f"({h}{k}{l}) surface", fontsize=10)
    ax.set_xlabel("slab thickness (layers)")
    ax.set_ylabel("surface energy (J/m$^2$)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _pretty(name: str) -> str:
    return "Γ" if name == "G" else name


def _tick_labels(result) -> tuple[list[float], list[str]]:
    """x positions of the segment ends and their names, 'U|K' at a jump."""
    ticks, names = [float(result.band_distances[0][0])], [_pretty(result.segments[0][0])]
    for k, (_, end) in enumerate(result.segments):
        ticks.append(float(result.band_distances[k][-1]))
        names.append(_pretty(end))
        following = result.segments[k + 1][0] if k + 1 < len(result.segments) else end
        if following != end:
            names[-1] = f"{_pretty(end)}|{_pretty(following)}"
    return ticks, names


def phonon_bands_plot(model, path, reference=None) -> Path:
    """Band structure: model solid, reference dashed, special points labelled."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for result, style, name in ((model, "-", "model"), (reference, "--", "reference")):
        if result is None:
            continue
        color = "C0" if name == "model" else "C1"
        for k, (x, f) in enumerate(zip(result.band_distances, result.band_frequencies)):
            lines = ax.plot(x, f, style, color=color, lw=1.0)
            if k == 0:  # one legend entry per calculator, not per branch
                lines[0].set_label(name)
    ticks, names = _tick_labels(model)
    for x in ticks:
        ax.axvline(x, color="0.7", lw=0.6)
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.set_xticks(ticks, names)
    ax.set_xlim(ticks[0], ticks[-1])
    ax.set_ylabel("frequency (THz)")
    if reference is not None:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def phonon_dos_plot(model, path, reference=None) -> Path:
    """Phonon density of states per atom."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(model.dos_frequencies, model.dos, "-", color="C0", lw=1.0, label="model")
    if reference is not None:
        ax.plot(reference.dos_frequencies, reference.dos, "--", color="C1", lw=1.0,
                label="reference")
    ax.set_xlabel("frequency (THz)")
    ax.set_ylabel("DOS (states/THz/atom)")
    if reference is not None:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def phonon_thermal_plot(model, path, reference=None) -> Path:
    """F (meV/atom), S and C_v (k_B/atom) against T."""
    panels = [("free_energy", 1000.0, "F (meV/atom)"), ("entropy", 1.0 / kB, "S (k$_B$/atom)"),
              ("heat_capacity", 1.0 / kB, "C$_v$ (k$_B$/atom)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 7), sharex=True)
    for ax, (key, scale, ylabel) in zip(axes, panels):
        ax.plot(model.temperatures, getattr(model, key) * scale, "-", color="C0", lw=1.0,
                label="model")
        if reference is not None:
            ax.plot(reference.temperatures, getattr(reference, key) * scale, "--", color="C1",
                    lw=1.0, label="reference")
        ax.set_ylabel(ylabel)
    axes[-1].axhline(3.0, color="0.7", lw=0.6)  # Dulong–Petit
    axes[-1].set_xlabel("temperature (K)")
    if reference is not None:
        axes[0].legend(fontsize=8, loc="best")
    return _save(fig, path)


def neb_plot(result, png_path, reference: dict | None = None,
             model_label: str = "model", reference_label: str = "reference") -> Path:
    """Energy (eV, relative to the initial state) against path length (Å): the
    model solid, the reference dashed (``reference`` is ``validate``'s
    ``report["reference"]["profile"]``); the climbing image and barrier marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.path, result.energies, "o-", lw=1.2, label=model_label)
    if reference is not None:
        ax.plot(reference["path_A"], reference["energies_eV"], "s--", lw=1.0, ms=4,
                label=reference_label)
    x, top = result.path[result.climbing], result.barrier
    ax.plot([x], [top], "*", ms=14, color="C3", label="climbing image", zorder=3)
    ax.annotate("", xy=(x, top), xytext=(x, 0.0),
                arrowprops={"arrowstyle": "<->", "color": "0.4", "lw": 0.8})
    ax.text(x, 0.5 * top, f"  {top:.3f} eV", va="center", fontsize=8)
    ax.axhline(0.0, color="0.6", lw=0.6, ls=":")
    ax.set_xlabel("reaction coordinate, path length (Å)")
    ax.set_ylabel("energy relative to initial state (eV)")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, png_path)
