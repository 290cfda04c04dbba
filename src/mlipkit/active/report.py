"""The report of a `mlipkit learn` run (PNG, Agg canvas, no pyplot):

- ``learning_curve.png``: test force RMSE against the oracle calls spent
  on training data, one point per round (curves of several runs, e.g.
  active against random selection, with :func:`learning_curves`);
- ``uncertainty.png``: per round, the distribution of the committee's max
  force deviation over the explored frames (log bins, rounds coloured in
  order), with the trust band.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


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
    """Max-force-deviation histograms of the explored frames, one per round.

    Bins are log-spaced, since deviations span decades (meV/Å for a metal
    near its training data, eV/Å for a molecule far from it); rounds are
    coloured in order with a colour bar, so that any number stays readable.
    """
    rounds = sorted((run / "rounds").glob("round_*/exploration.json"))
    data = [(int(p.parent.name.removeprefix("round_")),
             np.asarray(json.loads(p.read_text())["deviation"], dtype=float)) for p in rounds]
    data = [(r, d[d > 0]) for r, d in data if np.any(d > 0)]
    if not data:
        return None
    values = np.concatenate([d for _, d in data])
    bins = np.geomspace(min(values.min(), lo) / 1.2, max(values.max(), hi) * 1.2, 50)
    first, last = data[0][0], data[-1][0]
    colours = ScalarMappable(Normalize(first, max(last, first + 1)), "viridis")
    fig, ax = _figure((5.5, 4.0))
    for r, deviation in data:
        ax.hist(deviation, bins=bins, histtype="step", color=colours.to_rgba(r))
    for x in (lo, hi):
        ax.axvline(x, color="0.4", linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("max atomic force deviation (eV/Å); trust band dashed")
    ax.set_ylabel("explored frames")
    bar = fig.colorbar(colours, ax=ax)
    bar.set_label("round")
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    return _save(fig, path)


def write_report(run: Path, history: list[dict], lo: float, hi: float) -> list[Path]:
    """The report figures of the run folder ``run``; returns those written."""
    report = run / "report"
    written = [learning_curves({"active learning": history}, report / "learning_curve.png"),
               uncertainty_histograms(run, lo, hi, report / "uncertainty.png")]
    return [p for p in written if p is not None]
