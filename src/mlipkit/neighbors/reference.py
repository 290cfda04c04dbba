"""An O(N²) neighbor list by explicit enumeration of periodic images.

Slow and simple on purpose: it is the reference the vesin-backed list is
tested against, not something to run on large systems.
"""

from __future__ import annotations

import itertools

import numpy as np


def reference_neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Same contract as :func:`mlipkit.neighbors.neighbor_list`."""
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    n_images = np.zeros(3, dtype=int)
    # |S·cell| <= cutoff + diameter for any pair within the cutoff, and the
    # component of S·cell normal to the other periodic vectors is |S_k|·height_k
    diameter = np.linalg.norm(positions.max(0) - positions.min(0))
    for k in range(3):
        if pbc[k]:
            n_images[k] = int(np.ceil((cutoff + diameter) / _height(cell, pbc, k)))
    ranges = [range(-n, n + 1) for n in n_images]
    pairs, shifts = [], []
    for shift in itertools.product(*ranges):
        shift = np.array(shift)
        offset = shift @ cell
        d = positions[None, :, :] + offset - positions[:, None, :]
        dist = np.linalg.norm(d, axis=-1)
        mask = dist < cutoff
        if not shift.any():
            np.fill_diagonal(mask, False)
        i, j = np.nonzero(mask)
        pairs.append(np.stack([i, j]))
        shifts.append(np.repeat(shift[None], len(i), axis=0))
    edge_index = np.concatenate(pairs, axis=1).astype(np.int64)
    shift_arr = np.concatenate(shifts).astype(np.int64).reshape(-1, 3)
    order = np.lexsort(
        (shift_arr[:, 2], shift_arr[:, 1], shift_arr[:, 0], edge_index[1], edge_index[0])
    )
    return edge_index[:, order], shift_arr[order]


def _height(cell: np.ndarray, pbc: np.ndarray, k: int) -> float:
    """Norm of the part of cell[k] orthogonal to the other periodic vectors."""
    others = [cell[m] for m in range(3) if m != k and pbc[m]]
    a = cell[k]
    if not others:
        return float(np.linalg.norm(a))
    basis = np.array(others).T
    coeff, *_ = np.linalg.lstsq(basis, a, rcond=None)
    return float(np.linalg.norm(a - basis @ coeff))
