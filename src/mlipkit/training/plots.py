"""Parity plots and learning curves as PNG files.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas
directly, never through ``pyplot``: no backend is switched and no global
figure registry is touched, so this is safe to call from any program (and
from threads) without changing matplotlib's state.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlipkit import units

__all__ = ["parity_plots", "learning_curves", "MAX_POINTS"]

#: at most this many points are drawn per parity plot (metrics use all of them)
MAX_POINTS = 20_000
_DPI = 120


def _figure(width: float, height: float, nrows: int = 1, sharex: bool = False):
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, 1, sharex=sharex, squeeze=False)[:, 0]
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _subsample(n: int, cap: int, labels: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Indices of at most about ``cap`` of ``n`` points, sorted. With ``labels``,
    each label keeps its share but at least ``cap // 20`` points (rare species
    stay visible)."""
    if n <= cap:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, cap, replace=False))
    keep = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        k = min(len(members), max(cap * len(members) // n, cap // 20))
        keep.append(rng.choice(members, k, replace=False))
    return np.sort(np.concatenate(keep))


def _parity_axes(ax, ref: np.ndarray, pred: np.ndarray, label: str) -> None:
    """y = x line, equal square limits covering both, labels."""
    values = np.concatenate([ref.ravel(), pred.ravel()])
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 0.05
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=0.8, ls="--", zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel(f"reference {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.grid(alpha=0.3, lw=0.5)


def _title(what: str, diff: np.ndarray, scale: float, unit: str, shown: int, total: int) -> str:
    mae = float(np.mean(np.abs(diff))) * scale
    rmse = float(np.sqrt(np.mean(diff**2))) * scale
    title = f"{what}: MAE {mae:.3g} {unit}, RMSE {rmse:.3g} {unit}"
    if shown < total:
        title += f"\n({shown:,} of {total:,} points shown)"
    return title


def _energy_plot(pred: dict, path: Path) -> Path:
    n_atoms = np.asarray(pred["n_atoms"], float)
    ref = np.asarray(pred["energy_ref"], float) / n_atoms
    out = np.asarray(pred["energy_pred"], float) / n_atoms
    idx = _subsample(len(ref), MAX_POINTS)
    fig, (ax,) = _figure(5.0, 5.0)
    ax.scatter(ref[idx], out[idx], s=8, alpha=0.7, lw=0, rasterized=True)
    _parity_axes(ax, ref, out, "energy (eV/atom)")
    ax.set_title(_title("Energy", out - ref, 1 / units.meV, "meV/atom", len(idx), len(ref)),
                 fontsize=10)
    return _save(fig, path)


def _forces_plot(pred: dict, path: Path) -> Path:
    ref = np.asarray(pred["forces_ref"], float).reshape(-1)
    out = np.asarray(pred["forces_pred"], float).reshape(-1)
    species = np.repeat(np.asarray(pred["numbers"]), 3)
    idx = _subsample(len(ref), MAX_POINTS, labels=species)
    fig, (ax,) = _figure(5.0, 5.0)
    for z in np.unique(species):
        sel = idx[species[idx] == z]
        diff = out[species == z] - ref[species == z]
        ax.scatter(ref[sel], out[sel], s=4, alpha=0.5, lw=0, rasterized=True,
                   label=f"{chemical_symbols[int(z)]} (MAE {np.mean(np.abs(diff)) * 1e3:.3g})")
    _parity_axes(ax, ref, out, "force component (eV/Å)")
    leg = ax.legend(title="species (meV/Å)", fontsize=8, title_fontsize=8, markerscale=3,
                    loc="upper left")
    for handle in leg.legend_handles:
        handle.set_alpha(1.0)
    ax.set_title(_title("Forces", out - ref, 1 / units.meV, "meV/Å", len(idx), len(ref)),
                 fontsize=10)
    return _save(fig, path)


def _stress_plot(pred: dict, path: Path) -> Path:
    # eV/Å³ is an awkward scale to read; show GPa
    ref = np.asarray(pred["stress_ref"], float).reshape(-1) / units.GPa
    out = np.asarray(pred["stress_pred"], float).reshape(-1) / units.GPa
    idx = _subsample(len(ref), MAX_POINTS)
    fig, (ax,) = _figure(5.0, 5.0)
    ax.scatter(ref[idx], out[idx], s=8, alpha=0.7, lw=0, color="tab:red", rasterized=True)
    _parity_axes(ax, ref, out, "stress component (GPa)")
    ax.set_title(_title("Stress", out - ref, 1.0, "GPa", len(idx), len(ref)), fontsize=10)
    return _save(fig, path)


def parity_plots(pred: dict, directory) -> list[Path]:
    """Write parity plots of a :func:`mlipkit.training.metrics.predict` result.

    Writes, where the labels exist, ``energy_parity.png`` (energy per atom),
    ``forces_parity.png`` (force components coloured by species) and
    ``stress_parity.png`` (stress components in GPa) into ``directory``
    (created if needed). Titles give MAE and RMSE over all points; at most
    :data:`MAX_POINTS` points are drawn. Returns the paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if "energy_ref" in pred and len(pred["energy_ref"]) > 0:
        written.append(_energy_plot(pred, directory / "energy_parity.png"))
    if "forces_ref" in pred and len(pred["forces_ref"]) > 0:
        written.append(_forces_plot(pred, directory / "forces_parity.png"))
    if "stress_ref" in pred and len(pred["stress_ref"]) > 0:
        written.append(_stress_plot(pred, directory / "stress_parity.png"))
    return written


# -- learning curves -----------------------------------------------------------
def _read_log(path: Path) -> dict[str, np.ndarray]:
    """Numeric columns of a CSV log (empty or non-numeric cells become NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"the training log '{path}' has no rows; nothing to plot")
    columns = {}
    for name in rows[0]:
        if name is None:
            continue
        values = []
        for row in rows:
            try:
                values.append(float(row.get(name) or "nan"))
            except ValueError:
                values.append(math.nan)
        arr = np.array(values)
        if np.isfinite(arr).any():
            columns[name.strip()] = arr
    return columns


def _plot_series(ax, x: np.ndarray, y: np.ndarray, label: str, **kwargs) -> bool:
    ok = np.isfinite(y)
    if not ok.any():
        return False
    ax.plot(x[ok], y[ok], marker="o" if ok.sum() < 30 else None, ms=3, label=label, **kwargs)
    return True


def _log_if_positive(ax, arrays: list[np.ndarray]) -> None:
    values = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.array([])
    if values.size and (values > 0).all():
        ax.set_yscale("log")


def learning_curves(log_csv, directory) -> Path:
    """Plot a training log (CSV, one row per epoch) to ``directory/learning_curves.png``.

    ``log_csv`` is the CSV file or a run folder holding ``log.csv``. Columns
    used where present: ``epoch`` (else the row number), ``time`` (s),
    ``lr``, every ``*_loss`` column (top panel, log scale), every
    ``valid_*_mae`` column (middle panel; energies in meV, forces in meV/Å,
    stress in meV/Å³) and ``lr`` (bottom panel, log scale). Panels without
    data are left out.
    """
    log_csv = Path(log_csv)
    if log_csv.is_dir():
        log_csv = log_csv / "log.csv"
    if not log_csv.is_file():
        raise FileNotFoundError(f"no training log at '{log_csv}'")
    cols = _read_log(log_csv)
    n_rows = len(next(iter(cols.values()))) if cols else 0
    if not cols:
        raise ValueError(f"the training log '{log_csv}' has no numeric columns; nothing to plot")
    x = cols.get("epoch", np.arange(n_rows, dtype=float))
    losses = [k for k in cols if k.endswith("loss")]
    maes = [k for k in cols if k.startswith("valid_") and k.endswith("_mae")]
    panels = [p for p, names in (("loss", losses), ("mae", maes), ("lr", ["lr"] * ("lr" in cols)))
              if names]
    if not panels:
        panels = ["loss"]  # an empty frame says there was nothing to plot

    fig, axes = _figure(6.5, 2.4 * len(panels) + 0.6, nrows=len(panels), sharex=True)
    for ax, panel in zip(axes, panels):
        if panel == "loss":
            drawn = [cols[k] for k in losses if _plot_series(ax, x, cols[k], k)]
            _log_if_positive(ax, drawn)
            ax.set_ylabel("loss")
            if not drawn:
                ax.text(0.5, 0.5, "no loss columns in the log", ha="center", va="center",
                        transform=ax.transAxes)
        elif panel == "mae":
            drawn = []
            for k in maes:
                quantity = k[len("valid_") : -len("_mae")]
                unit = {"energy": "meV", "forces": "meV/Å", "stress": "meV/Å³"}.get(quantity, "")
                y = cols[k] / units.meV
                if _plot_series(ax, x, y, f"{k} ({unit})" if unit else k):
                    drawn.append(y)
            _log_if_positive(ax, drawn)
            ax.set_ylabel("validation MAE")
        else:
            _plot_series(ax, x, cols["lr"], "lr", color="tab:gray")
            _log_if_positive(ax, [cols["lr"]])
            ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3, lw=0.5, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    title = f"{log_csv.parent.name or log_csv.name}: {n_rows} epochs"
    if "time" in cols and np.isfinite(cols["time"]).any():
        title += f", {np.nanmax(cols['time']):.0f} s"
    axes[0].set_title(title, fontsize=10)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return _save(fig, directory / "learning_curves.png")
