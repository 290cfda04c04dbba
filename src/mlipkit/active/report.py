"""The report of a `mlipkit learn` run (PNG, Agg canvas, no pyplot):

- ``learning_curve.png``: test force RMSE against the oracle calls spent
  on training data, one point per round (curves of several runs, e.g.
  active against random selection, with :func:`learning_curves`);
- ``uncertainty.png``: per round, the distribution of the committee's max
  force deviation over the explored frames, with the trust band.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure(size=(5.0, 4.0)):
    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def learning_curves(runs: dict[str, list[dict]], path: Path) -> Path | None:
    """Test force RMSE (meV/Å) against oracle calls, one line per run history."""
    fig, ax = _figure()
    drawn = False
    for name, history in runs.items():
        points = [(h["oracle_calls"], h["test_forces_rmse"]) for h in history
                  if "test_forces_rmse" in h]
        if points:
            calls, rmse = zip(*points)
            ax.plot(calls, 1000 * np.asarray(rmse), marker="o", label=name)
            drawn = True
    if not drawn:
        return None
    ax.set_xlabel("oracle calls (training data)")
    ax.set_ylabel("test force RMSE (meV/Å)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, path)


def uncertainty_histograms(run: Path, lo: float, hi: float, path: Path) -> Path | None:
    """Max-force-deviation histograms of the explored frames, one per round."""
    rounds = sorted((run / "rounds").glob("round_*/exploration.json"))
    if not rounds:
        return None
    data = [(p.parent.name.removeprefix("round_"), json.loads(p.read_text())["deviation"])
            for p in rounds]
    values = np.concatenate([d for _, d in data if d] or [[lo, hi]])
    top = max(float(np.max(values)), hi) * 1.05
    bins = np.linspace(0.0, top, 40)
    fig, ax = _figure((5.5, 4.0))
    for name, deviation in data:
        if deviation:
            ax.hist(deviation, bins=bins, histtype="step", label=f"round {int(name)}")
    for x in (lo, hi):
        ax.axvline(x, color="0.4", linestyle="--")
    ax.set_xlabel("max atomic force deviation (eV/Å)")
    ax.set_ylabel("explored frames")
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_report(run: Path, history: list[dict], lo: float, hi: float) -> list[Path]:
    """The report figures of the run folder ``run``; returns those written."""
    report = run / "report"
    written = [learning_curves({"active learning": history}, report / "learning_curve.png"),
               uncertainty_histograms(run, lo, hi, report / "uncertainty.png")]
    return [p for p in written if p is not None]
