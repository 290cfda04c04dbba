"""Plots of an MD thermo log."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def thermo_plot(csv_path: str | Path, png_path: str | Path, max_lines: int = 8) -> Path:
    """Temperature, potential energy and conserved energy against time, one
    line per replica (the mean and its spread for many replicas)."""
    series: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(csv_path, newline="") as fh:
        for row in csv.DictReader(fh):
            s = series[int(row["replica"])]
            for key in ("time_fs", "temperature", "epot", "conserved"):
                s[key].append(float(row[key]) if row[key] else np.nan)
    panels = [("temperature", "temperature (K)"), ("epot", "potential energy (eV)"),
              ("conserved", "conserved energy (eV)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 7), sharex=True)
    for ax, (key, label) in zip(axes, panels):
        if len(series) <= max_lines:
            for replica, s in sorted(series.items()):
                ax.plot(np.array(s["time_fs"]) / 1000, s[key], lw=0.8, label=f"replica {replica}")
        else:
            n = min(len(s[key]) for s in series.values())
            values = np.array([s[key][:n] for s in series.values()])
            t = np.array(next(iter(series.values()))["time_fs"][:n]) / 1000
            mean, std = values.mean(0), values.std(0)
            ax.plot(t, mean, lw=1.0, label=f"mean of {len(series)} replicas")
            ax.fill_between(t, mean - std, mean + std, alpha=0.3)
        ax.set_ylabel(label)
    axes[-1].set_xlabel("time (ps)")
    axes[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path


def rdf_plot(r: np.ndarray, g: np.ndarray, png_path: str | Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(r, g, lw=1.0)
    ax.axhline(1.0, color="0.6", lw=0.6, ls="--")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    fig.tight_layout()
    png_path = Path(png_path)
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return png_path
