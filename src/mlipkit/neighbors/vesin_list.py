"""The production neighbor list, backed by vesin."""

from __future__ import annotations

import numpy as np
import torch
import vesin

from mlipkit.data.batch import Batch


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbor list of one structure.

    Returns ``edge_index`` [2, E] (int64) and ``shifts`` [E, 3] (int64) such
    that r_ij = x_j - x_i + shifts @ cell has |r_ij| < cutoff. Works for
    molecules (any cell, pbc off), mixed pbc, triclinic cells and cells
    smaller than the cutoff (several images of the same atom).
    """
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    box = np.ascontiguousarray(cell, dtype=np.float64) if pbc.any() else np.zeros((3, 3))
    # with copy=False the arrays are views into `calculator`, which must stay
    # alive until they are converted (copied) below
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = calculator.compute(positions, box, pbc.tolist(), "ijS", copy=False)
    # vesin gives uint64 indices (always < 2**63, so viewing them as int64 is exact)
    edge_index = np.stack([i, j]).view(np.int64)
    shifts = np.array(s, dtype=np.int64).reshape(-1, 3)
    del calculator
    return edge_index, shifts


def attach_neighbors(batch: Batch, cutoff: float) -> Batch:
    """A new Batch with ``edge_index`` and ``shifts`` for the given cutoff,
    edges sorted by their center atom.

    Periodic structures get one vesin call each. All non-periodic structures
    of the batch share one call: each is translated along x past the previous
    one by more than the cutoff, so no pair spans two structures (only the
    choice of pairs uses these translated copies; the model never sees them).
    """
    pos = batch.positions.detach().cpu().double().numpy()
    cell = batch.cell.detach().cpu().double().numpy()
    pbc = batch.pbc.cpu().numpy()
    n_atoms = batch.n_atoms.cpu().numpy()
    starts = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    edges, shifts = [], []
    open_structures = [s for s in range(len(n_atoms)) if not pbc[s].any()]
    if open_structures:
        edges_open = _open_structures(pos, starts, n_atoms, open_structures, cutoff)
        edges.append(edges_open)
        shifts.append(np.zeros((edges_open.shape[1], 3), dtype=np.int64))
    for s in range(len(n_atoms)):
        if not pbc[s].any():
            continue
        start, n = starts[s], n_atoms[s]
        ei, sh = neighbor_list(pos[start : start + n], cell[s], pbc[s], cutoff)
        ei += start
        edges.append(ei)
        shifts.append(sh)
    edge_np = edges[0] if len(edges) == 1 else np.concatenate(edges, axis=1)
    shift_np = shifts[0] if len(shifts) == 1 else np.concatenate(shifts, axis=0)
    if (np.diff(edge_np[0]) < 0).any():  # so that models need not sort them per call
        order = np.argsort(edge_np[0], kind="stable")
        edge_np, shift_np = edge_np[:, order], shift_np[order]
    edge_index = torch.from_numpy(edge_np).to(batch.device)
    shift_t = torch.from_numpy(shift_np).to(batch.device, batch.dtype)
    return batch.replace(edge_index=edge_index, shifts=shift_t)


def _open_structures(pos, starts, n_atoms, which, cutoff) -> np.ndarray:
    """Edges of several non-periodic structures from one neighbor-list call."""
    index = np.concatenate([np.arange(starts[s], starts[s] + n_atoms[s]) for s in which])
    placed = pos[index].copy()
    offset = 0.0
    k = 0
    for s in which:
        block = placed[k : k + n_atoms[s]]
        low, high = block[:, 0].min(), block[:, 0].max()
        block[:, 0] += offset - low
        offset += high - low + 2.0 * cutoff + 1.0
        k += n_atoms[s]
    local, _ = neighbor_list(placed, np.zeros((3, 3)), np.zeros(3, dtype=bool), cutoff)
    return index[local]
