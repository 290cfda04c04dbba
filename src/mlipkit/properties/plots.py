"""Figures of the property commands (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mlipkit.units import GPa  # noqa: E402


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
