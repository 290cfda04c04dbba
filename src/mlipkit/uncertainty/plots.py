"""Reliability diagram of predicted spreads (PNG, Agg canvas, no pyplot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def reliability_diagram(curves: dict[str, np.ndarray], levels: np.ndarray, path: Path) -> Path:
    """Observed fraction of force errors inside the central p-interval against
    p, one line per entry of ``curves``; the diagonal is perfect calibration."""
    fig = Figure(figsize=(4.5, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="ideal")
    for label, observed in curves.items():
        area = float(np.mean(np.abs(observed - levels)))
        ax.plot(levels, observed, label=f"{label} (miscalibration area {area:.3f})")
    ax.set_xlabel("expected coverage of the central interval")
    ax.set_ylabel("observed coverage (force components)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path
