"""Fitting the scale of a model's predicted spreads on held-out data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlipkit.data.batch import Batch
from mlipkit.errors import InvalidConfig, MissingLabel
from mlipkit.models.base import Potential, check_std_scale, uncertainty_head
from mlipkit.uncertainty.calibration import (
    LEVELS,
    coverage,
    fit_interval_table,
    fit_std_scale,
    uncertainty_metrics,
)


def calibrate(model: Potential, batches: Sequence[Batch], batch_size: int = 32,
              progress: bool = False, plots: str | Path | None = None,
              isotonic: bool = False) -> dict:
    """Set the ``std_scale`` (energy, forces) of ``model``'s uncertainty so
    that its Gaussian spreads maximise the likelihood of the errors on
    ``batches``; with ``isotonic`` also fit the force-interval table that
    makes every central interval hold its nominal share of these errors
    (otherwise the table is cleared). Returns the factors and the figures
    before and after.

    ``plots`` names a folder for ``reliability.png``: observed against
    expected coverage of the central intervals, before and after.
    """
    from mlipkit.training.metrics import predict

    holder = uncertainty_head(model)
    if holder is None:
        raise InvalidConfig("this model predicts no uncertainty (it is neither an ensemble "
                            "nor a Bayesian linear model); there is nothing to calibrate")
    if len(batches) < 2:
        raise ValueError(f"calibration needs at least 2 labelled structures, got {len(batches)}")
    if not all("energy" in b and "forces" in b for b in batches):
        raise MissingLabel("calibration needs energy and force labels on every structure")
    holder.std_scale, holder.interval_table = [1.0, 1.0], None
    pred = predict(model, batches, batch_size=batch_size, progress=progress)
    if "forces_std" not in pred or "energy_std" not in pred:
        raise InvalidConfig("the model gave no spreads on these structures (an unfitted "
                            "linear model?); there is nothing to calibrate")
    energy_error = pred["energy_pred"] - pred["energy_ref"]
    force_error = pred["forces_pred"] - pred["forces_ref"]
    group = np.repeat(np.arange(len(pred["n_atoms"])), pred["n_atoms"])
    scale = [fit_std_scale(energy_error, pred["energy_std"]),
             fit_std_scale(force_error, pred["forces_std"])]
    holder.std_scale = check_std_scale(scale)
    scaled = scale[1] * pred["forces_std"]
    if isotonic:
        holder.interval_table = fit_interval_table(force_error, scaled)
    table = holder.interval_table
    before = uncertainty_metrics(force_error, pred["forces_std"], group)
    after = uncertainty_metrics(force_error, scaled, group, table)
    if plots is not None:
        from mlipkit.uncertainty.plots import reliability_diagram

        reliability_diagram({"as trained": coverage(force_error, pred["forces_std"]),
                             "calibrated": coverage(force_error, scaled, table=table)},
                            LEVELS, Path(plots) / "reliability.png")
    return {"std_scale": {"energy": scale[0], "forces": scale[1]}, "isotonic": isotonic,
            "before": before, "after": after, "n_structures": int(len(pred["n_atoms"]))}
