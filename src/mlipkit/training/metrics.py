"""Predictions of a potential on labelled structures, and their error metrics.

:func:`predict` evaluates a potential over a list of batches in chunks and
returns flat float64 numpy arrays (references beside predictions);
:func:`error_metrics` turns those into JSON-able numbers; :func:`evaluate`
does both. Units: energy eV, forces eV/Å, stress eV/Å³.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from mlipkit.data.batch import Batch
from mlipkit.models.base import uncertainty_head
from mlipkit.uncertainty import uncertainty_metrics

__all__ = ["predict", "error_metrics", "evaluate", "geometry_batch", "single_structures"]

# what a chunk keeps of each structure: geometry, plus a neighbor list when every
# structure of the chunk has one (labels differ between structures and would
# stop them from being collated)
_GEOMETRY = ("positions", "numbers", "system", "cell", "pbc", "n_atoms")
_EDGES = ("edge_index", "shifts")


def single_structures(batches: Sequence[Batch]) -> list[Batch]:
    """One batch per structure (batches of several are split)."""
    out: list[Batch] = []
    for b in batches:
        if not isinstance(b, Batch):
            raise TypeError(f"expected a list of Batch objects, got {type(b).__name__}")
        out.extend([b] if b.n_structures == 1 else b.split())
    return out


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def geometry_batch(chunk: list[Batch]) -> Batch:
    """The structures of ``chunk`` collated without their labels (and with
    their neighbor lists when all have one)."""
    names = list(_GEOMETRY)
    if all(all(k in b for k in _EDGES) for b in chunk):
        names += _EDGES
    return Batch.collate([Batch(**{k: b[k] for k in names}) for b in chunk])


def predict(potential, batches: Sequence[Batch], batch_size: int = 32,
            progress: bool = False) -> dict[str, np.ndarray]:
    """Evaluate ``potential`` on every structure of ``batches``.

    ``batches`` are usually single-structure batches (as the readers in
    :mod:`mlipkit.data.io` return); batches of several structures are split.
    Structures are evaluated ``batch_size`` at a time; fully periodic and
    other structures go in separate chunks so that stress is asked for only
    where it is defined (and only where a chunk holds a stress label).
    Results are in input order.

    Returns a dict of numpy arrays:

    - ``energy_pred`` [S] (eV), ``n_atoms`` [S], ``numbers`` [N],
      ``forces_pred`` [N,3] (eV/Å);
    - ``energy_std`` [S] (eV) and ``forces_std`` [N,3] (eV/Å) when the
      potential predicts its spread, and ``interval_table`` [99] when it
      carries an isotonic recalibration;
    - ``energy_ref`` [S] and ``forces_ref`` [N,3] when every structure has
      that label;
    - ``stress_pred``, ``stress_ref`` [S',3,3] (eV/Å³) and ``stress_index``
      [S'] (which structures) for the fully periodic structures that carry a
      stress label; present only when there is at least one.

    Floating arrays are float64, whatever the potential's dtype.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    singles = single_structures(batches)
    if not singles:
        raise ValueError("nothing to evaluate: the list of batches is empty")
    n_struct = len(singles)
    n_atoms = np.array([b.n_total_atoms for b in singles], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(n_atoms)])
    periodic = [bool(b.pbc.all()) for b in singles]
    has_stress = [p and "stress" in b for p, b in zip(periodic, singles)]

    energy_pred = np.empty(n_struct)
    energy_std = np.full(n_struct, np.nan)
    forces_pred = np.empty((int(start[-1]), 3))
    forces_std = np.full((int(start[-1]), 3), np.nan)
    stress_pred: dict[int, np.ndarray] = {}
    groups = [[k for k in range(n_struct) if periodic[k] == p] for p in (True, False)]
    with tqdm(total=n_struct, disable=not progress, desc="evaluating", unit="structure") as bar:
        for group in groups:
            for c in range(0, len(group), batch_size):
                idx = group[c : c + batch_size]
                want_stress = any(has_stress[k] for k in idx)
                out = potential(geometry_batch([singles[k] for k in idx]), forces=True,
                                stress=want_stress)
                energy_pred[idx] = _numpy(out["energy"])
                if "energy_std" in out:
                    energy_std[idx] = _numpy(out["energy_std"])
                forces = _numpy(out["forces"])
                std = _numpy(out["forces_std"]) if "forces_std" in out else None
                stress = _numpy(out["stress"]) if want_stress else None
                offset = 0
                for j, k in enumerate(idx):
                    n = int(n_atoms[k])
                    forces_pred[start[k] : start[k] + n] = forces[offset : offset + n]
                    if std is not None:
                        forces_std[start[k] : start[k] + n] = std[offset : offset + n]
                    offset += n
                    if has_stress[k]:
                        stress_pred[k] = stress[j]
                bar.update(len(idx))

    result = {
        "energy_pred": energy_pred,
        "n_atoms": n_atoms,
        "numbers": torch.cat([b.numbers for b in singles]).cpu().numpy().astype(np.int64),
        "forces_pred": forces_pred,
    }
    if not np.isnan(energy_std).any():
        result["energy_std"] = energy_std
    if not np.isnan(forces_std).any():
        result["forces_std"] = forces_std
        table = getattr(uncertainty_head(potential), "interval_table", None)
        if table is not None:
            result["interval_table"] = np.array(table)
    if all("energy" in b for b in singles):
        result["energy_ref"] = np.concatenate([_numpy(b.energy) for b in singles])
    if all("forces" in b for b in singles):
        result["forces_ref"] = np.concatenate([_numpy(b.forces) for b in singles])
    if stress_pred:
        order = sorted(stress_pred)
        result["stress_index"] = np.array(order, dtype=np.int64)
        result["stress_pred"] = np.stack([stress_pred[k] for k in order])
        result["stress_ref"] = np.stack([_numpy(singles[k].stress)[0] for k in order])
    return result


def _mae_rmse(diff: np.ndarray) -> tuple[float, float]:
    return float(np.mean(np.abs(diff))), float(np.sqrt(np.mean(diff**2)))


def error_metrics(pred: dict[str, np.ndarray]) -> dict:
    """Error metrics of a :func:`predict` result, as JSON-able numbers.

    Always ``n_structures`` and ``n_atoms`` (total); with energy labels
    ``energy_mae``, ``energy_rmse`` (eV) and ``energy_mae_per_atom``,
    ``energy_rmse_per_atom`` (eV/atom, each structure's error divided by its
    atom count); with force labels ``forces_mae``, ``forces_rmse`` (eV/Å,
    over all Cartesian components) and ``forces_mae_per_species``
    ({symbol: eV/Å}, by atomic number); with stress labels ``stress_mae``,
    ``stress_rmse`` (eV/Å³, over all 9 components of the structures that have
    them). Keys whose labels are absent are left out. With force labels and
    predicted spreads, ``uncertainty`` holds the calibration figures of
    :func:`mlipkit.uncertainty.uncertainty_metrics`.
    """
    n_atoms = np.asarray(pred["n_atoms"])
    metrics: dict = {"n_structures": int(n_atoms.shape[0]), "n_atoms": int(n_atoms.sum())}
    if "energy_ref" in pred:
        diff = np.asarray(pred["energy_pred"], float) - np.asarray(pred["energy_ref"], float)
        metrics["energy_mae"], metrics["energy_rmse"] = _mae_rmse(diff)
        (metrics["energy_mae_per_atom"],
         metrics["energy_rmse_per_atom"]) = _mae_rmse(diff / n_atoms)
    if "forces_ref" in pred:
        diff = np.asarray(pred["forces_pred"], float) - np.asarray(pred["forces_ref"], float)
        metrics["forces_mae"], metrics["forces_rmse"] = _mae_rmse(diff)
        numbers = np.asarray(pred["numbers"])
        metrics["forces_mae_per_species"] = {
            chemical_symbols[int(z)]: float(np.mean(np.abs(diff[numbers == z])))
            for z in np.unique(numbers)
        }
        if "forces_std" in pred:
            structure = np.repeat(np.arange(n_atoms.shape[0]), n_atoms)
            metrics["uncertainty"] = uncertainty_metrics(diff, pred["forces_std"], structure,
                                                         pred.get("interval_table"))
    if "stress_ref" in pred and len(pred["stress_ref"]) > 0:
        diff = np.asarray(pred["stress_pred"], float) - np.asarray(pred["stress_ref"], float)
        metrics["stress_mae"], metrics["stress_rmse"] = _mae_rmse(diff)
    return metrics


def evaluate(potential, batches: Sequence[Batch], batch_size: int = 32,
             progress: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """``(error_metrics(p), p)`` with ``p = predict(potential, batches, ...)``."""
    pred = predict(potential, batches, batch_size=batch_size, progress=progress)
    return error_metrics(pred), pred
