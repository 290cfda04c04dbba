"""Edge vectors from positions, cell and integer shifts."""

import torch

from mlipkit.data.batch import Batch


def edge_vectors(batch: Batch) -> torch.Tensor:
    """r_ij = x_j - x_i + S_ij · cell, shape [E, 3] in Å.

    Differentiable with respect to ``positions`` and ``cell`` (the strain
    derivative for stress flows through both).
    """
    i, j = batch.edge_index
    # index_select rather than [] indexing: its backward is a cheap index_add
    vec = batch.positions.index_select(0, j) - batch.positions.index_select(0, i)
    if batch.n_edges == 0:
        return vec
    if batch.n_structures == 1:
        return vec + batch.shifts @ batch.cell[0]
    cell_of_edge = batch.cell[batch.system[i]]  # [E, 3, 3]
    return vec + torch.einsum("ea,eab->eb", batch.shifts, cell_of_edge)
