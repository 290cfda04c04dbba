"""Forces, stress and Hessians from per-atom energies: written once, here.

- forces  F = -∂E/∂R
- stress  σ = (1/V) ∂E/∂ε with a symmetric strain ε applied to positions and
  cell (R -> R(1+ε), cell -> cell(1+ε)); positive under tension (ASE sign)
- Hessian H = ∂²E/∂R², block diagonal over the structures of a batch
"""

from __future__ import annotations

from contextvars import ContextVar

import torch

from mlipkit.data.batch import Batch
from mlipkit.errors import StressUndefined

_FIRST_ORDER_ONLY: ContextVar[bool] = ContextVar("first_order_only", default=False)


def first_order_only() -> bool:
    """True inside :func:`evaluate` when the energies will be differentiated at
    most once (no training graph, no Hessian): compiled code paths serve only
    then; any other caller gets the eager code."""
    return _FIRST_ORDER_ONLY.get()


def evaluate(potential, batch: Batch, forces: bool = True, stress: bool = False,
             hessian: bool = False, create_graph: bool = False) -> dict[str, torch.Tensor]:
    """Energy and its derivatives for a prepared batch (neighbor list attached)."""
    n_struct = batch.n_structures
    positions = batch.positions
    cell = batch.cell
    want_pos = forces or hessian
    # energy alone outside training needs no graph
    grad_enabled = want_pos or stress or create_graph
    with torch.set_grad_enabled(grad_enabled):
        if want_pos:
            positions = positions.detach().requires_grad_(True)
        strain = None
        if stress:
            if not bool(batch.pbc.all()):
                raise StressUndefined(
                    "stress needs a cell periodic in all three directions; "
                    "this structure is (partly) non-periodic"
                )
            strain = torch.zeros(n_struct, 3, 3, dtype=cell.dtype, device=cell.device,
                                 requires_grad=True)
            sym = 0.5 * (strain + strain.transpose(1, 2))
            positions = positions + torch.einsum("na,nab->nb", positions, sym[batch.system])
            cell = cell + torch.bmm(cell, sym)
        strained = batch.replace(positions=positions, cell=cell)
        token = _FIRST_ORDER_ONLY.set(not (create_graph or hessian))
        try:
            atomic = potential.atomic_energies(strained)
        finally:
            _FIRST_ORDER_ONLY.reset(token)
        energy = atomic.new_zeros(n_struct).index_add(0, batch.system, atomic)
        out = {"energy": energy, "atomic_energies": atomic}
        inputs = ([positions] if want_pos else []) + ([strain] if stress else [])
        if not inputs:
            return out
        grads = torch.autograd.grad(
            energy.sum(), inputs, create_graph=create_graph or hessian, allow_unused=True
        )
        grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]
        if want_pos:
            f = -grads[0]
            if forces:
                out["forces"] = f
            if hessian:
                out["hessian"] = _hessian(f, positions, create_graph)
        if stress:
            volume = torch.linalg.det(batch.cell).abs().view(-1, 1, 1)
            out["stress"] = grads[-1] / volume
    if not create_graph:  # the graph is spent; do not hold on to it
        out = {k: v.detach() for k, v in out.items()}
    return out


def _hessian(forces: torch.Tensor, positions: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """H = -∂F/∂R, one backward pass per row (for small systems)."""
    flat = forces.reshape(-1)
    n = flat.numel()
    if not flat.requires_grad:  # forces that do not depend on the positions
        return flat.new_zeros(n, n)
    rows = []
    for k in range(n):
        (g,) = torch.autograd.grad(flat[k], positions, retain_graph=True,
                                   create_graph=create_graph, allow_unused=True)
        rows.append(torch.zeros_like(positions).reshape(-1) if g is None else -g.reshape(-1))
    return torch.stack(rows) if rows else flat.new_zeros(0, 0)
