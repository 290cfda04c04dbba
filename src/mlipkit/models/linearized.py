"""Per-atom quantities cached at fixed positions, with their first derivatives.

Training evaluates the same structures every epoch at the same positions.
Whatever does not depend on trainable weights (ACSF descriptors, a ZBL
prior) can then be computed once: its values per atom and its derivatives
with respect to the edge vectors around each atom. :func:`linearized`
returns the cached values and passes gradients through the cached
derivatives, so forces and stress (first derivatives) are exact while no
second derivative of the cached quantity is available.
"""

from __future__ import annotations

import torch


class _Linearized(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vec, values, jacobian, center):
        ctx.save_for_backward(jacobian, center)
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        jacobian, center = ctx.saved_tensors
        # written in differentiable operations: a training loss on forces
        # back-propagates through this to the weights that produced ``grad``
        # (row vector) x matrix products: on CPU several times faster than
        # matrix x (column vector) with the same numbers
        per_edge = grad.index_select(0, center).unsqueeze(1)  # [E, 1, F]
        return torch.bmm(per_edge, jacobian.transpose(1, 2)).squeeze(1), None, None, None


def linearized(vec: torch.Tensor, values: torch.Tensor, jacobian: torch.Tensor,
               center: torch.Tensor) -> torch.Tensor:
    """``values`` [N, F] whose derivative with respect to ``vec`` [E, 3] is
    ``jacobian`` [E, 3, F]: d values[center[e]] / d vec[e] (zero for the other
    atoms)."""
    return _Linearized.apply(vec, values, jacobian, center)
