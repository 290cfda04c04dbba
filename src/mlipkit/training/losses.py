"""Weighted loss terms: per-atom energy, forces, stress and Hessian.

Terms are returned as (sum, count) so that data-parallel ranks can divide by
the global count and reproduce the single-process loss exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlipkit.data.batch import Batch


def _penalty_sum(pred: torch.Tensor, ref: torch.Tensor, kind: str,
                 delta: float) -> tuple[torch.Tensor, int]:
    if kind == "huber":
        value = F.huber_loss(pred, ref, delta=delta, reduction="sum")
    else:
        value = F.mse_loss(pred, ref, reduction="sum")
    return value, pred.numel()


def loss_sums(out: dict[str, torch.Tensor], batch: Batch, weights: dict[str, float],
              kind: str = "mse", huber_delta: float = 0.01
              ) -> dict[str, tuple[torch.Tensor, int]]:
    """(sum of penalties, number of elements) per term present in both the
    prediction and the labels; terms with zero weight are skipped.

    - ``energy``: energy per atom, (E_pred - E_ref) / n_atoms, in eV;
    - ``forces``: every force component, eV/Å;
    - ``stress``: every component of the virial per atom, σ·V/N, in eV (on the
      scale of the per-atom energy, so the same weights suit soft and stiff
      materials);
    - ``hessian``: every Hessian element, eV/Å².

    The penalty is the squared error (``mse``) or the Huber function.
    """
    sums = {}
    if weights.get("energy", 0) > 0 and "energy" in batch:
        n = batch.n_atoms.to(out["energy"].dtype)
        ref = batch.energy.to(out["energy"].dtype)
        sums["energy"] = _penalty_sum(out["energy"] / n, ref / n, kind, huber_delta)
    if weights.get("stress", 0) > 0 and "stress" in batch and "stress" in out:
        per_atom = (torch.linalg.det(batch.cell).abs() / batch.n_atoms).view(-1, 1, 1)
        per_atom = per_atom.to(out["stress"].dtype)
        sums["stress"] = _penalty_sum(out["stress"] * per_atom,
                                      batch.stress.to(per_atom.dtype) * per_atom,
                                      kind, huber_delta)
    for key in ("forces", "hessian"):
        if weights.get(key, 0) > 0 and key in batch and key in out:
            pred = out[key]
            sums[key] = _penalty_sum(pred, batch[key].to(pred.dtype), kind, huber_delta)
    return sums


def loss_terms(out: dict[str, torch.Tensor], batch: Batch, weights: dict[str, float],
               kind: str = "mse", huber_delta: float = 0.01) -> dict[str, torch.Tensor]:
    """Mean penalty per term (see :func:`loss_sums`)."""
    return {k: s / n for k, (s, n) in loss_sums(out, batch, weights, kind, huber_delta).items()}


def total_loss(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    return sum(weights[k] * v for k, v in terms.items())
