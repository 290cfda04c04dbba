"""Weighted loss terms: per-atom energy, forces, stress and Hessian."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlipkit.data.batch import Batch


def _penalty(pred: torch.Tensor, ref: torch.Tensor, kind: str, delta: float) -> torch.Tensor:
    if kind == "huber":
        return F.huber_loss(pred, ref, delta=delta, reduction="mean")
    return F.mse_loss(pred, ref, reduction="mean")


def loss_terms(out: dict[str, torch.Tensor], batch: Batch, weights: dict[str, float],
               kind: str = "mse", huber_delta: float = 0.01) -> dict[str, torch.Tensor]:
    """Unweighted loss terms present in both the prediction and the labels.

    - ``energy``: energy per atom, (E_pred - E_ref) / n_atoms, in eV²;
    - ``forces``: every force component, (eV/Å)²;
    - ``stress``: every component of the virial per atom, σ·V/N, in eV²;
    - ``hessian``: every Hessian element, (eV/Å²)².

    Terms whose weight is zero are skipped.
    """
    terms = {}
    if weights.get("energy", 0) > 0 and "energy" in batch:
        n = batch.n_atoms.to(out["energy"].dtype)
        ref = batch.energy.to(out["energy"].dtype)
        terms["energy"] = _penalty(out["energy"] / n, ref / n, kind, huber_delta)
    if weights.get("stress", 0) > 0 and "stress" in batch and "stress" in out:
        # virial per atom, σ·V/N in eV: on the scale of the per-atom energy, so the
        # same weights work for soft and stiff materials
        per_atom = (torch.linalg.det(batch.cell).abs() / batch.n_atoms).view(-1, 1, 1)
        pred = out["stress"] * per_atom.to(out["stress"].dtype)
        ref = batch.stress.to(pred.dtype) * per_atom.to(pred.dtype)
        terms["stress"] = _penalty(pred, ref, kind, huber_delta)
    for key in ("forces", "hessian"):
        if weights.get(key, 0) > 0 and key in batch and key in out:
            pred = out[key]
            terms[key] = _penalty(pred, batch[key].to(pred.dtype), kind, huber_delta)
    return terms


def total_loss(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[k] * v for k, v in terms.items())
