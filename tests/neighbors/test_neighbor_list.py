"""The vesin-backed neighbor list against an O(N²) reference and ASE/matscipy.

Lists are compared as sets of (i, j, Sx, Sy, Sz): the order of edges is not
part of the contract.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list
from matscipy.neighbours import neighbour_list as matscipy_neighbour_list

from mlipkit.data import Batch, from_atoms
from mlipkit.neighbors import attach_neighbors, edge_vectors, neighbor_list
from mlipkit.neighbors.reference import reference_neighbor_list

SEEDS = [0, 1, 2]


# -- helpers -------------------------------------------------------------------
def as_set(edge_index, shifts) -> set[tuple[int, int, int, int, int]]:
    edge_index = np.asarray(edge_index)
    shifts = np.asarray(shifts)
    assert edge_index.shape[0] == 2
    assert shifts.shape == (edge_index.shape[1], 3)
    assert np.array_equal(shifts, np.round(shifts)), "shifts must be integers"
    s = np.round(shifts).astype(np.int64)
    edges = zip(edge_index[0].tolist(), edge_index[1].tolist(), *s.T.tolist())
    out = set(edges)
    assert len(out) == edge_index.shape[1], "duplicate edges in the list"
    return out


def ase_set(positions, cell, pbc, cutoff):
    i, j, s = primitive_neighbor_list(
        "ijS", pbc, cell, positions, cutoff, self_interaction=False
    )
    return as_set(np.stack([i, j]), s)


def matscipy_set(positions, cell, pbc, cutoff):
    i, j, s = matscipy_neighbour_list(
        "ijS", positions=positions, cell=cell, pbc=pbc, cutoff=cutoff
    )
    return as_set(np.stack([i, j]), s)


def opinion_cell(cell, pbc):
    """The cell handed to ASE and matscipy: zero rows along open directions are
    replaced by a vector orthogonal to the other rows. This describes the same
    system (nothing is periodic along it), but ASE's primitive_neighbor_list can
    miss pairs (and take minutes) with a zero row next to a tilted periodic
    cell, and matscipy needs an invertible cell."""
    cell = cell.copy()
    for k in range(3):
        if pbc[k] or np.linalg.norm(cell[k]) > 1e-8:
            continue
        others = [cell[m] for m in range(3) if m != k and np.linalg.norm(cell[m]) > 1e-8]
        v = np.eye(3)[k]
        if len(others) == 2:
            v = np.cross(others[0], others[1])
        else:
            for o in others:
                v = v - (v @ o) / (o @ o) * o
        cell[k] = 10.0 * v / np.linalg.norm(v)
    return cell


def check_all(positions, cell, pbc, cutoff):
    """vesin == reference == ASE == matscipy as edge sets, plus the geometric
    and symmetry contract. Returns the edge set."""
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    edge_index, shifts = neighbor_list(positions, cell, pbc, cutoff)
    assert edge_index.dtype == np.int64 and shifts.dtype == np.int64
    got = as_set(edge_index, shifts)
    ref = as_set(*reference_neighbor_list(positions, cell, pbc, cutoff))
    assert got == ref, _diff(got, ref)
    other_cell = opinion_cell(cell, pbc)
    ase_edges = ase_set(positions, other_cell, pbc, cutoff)
    assert got == ase_edges, _diff(got, ase_edges)
    ms = matscipy_set(positions, other_cell, pbc, cutoff)
    assert got == ms, _diff(got, ms)
    check_contract(positions, cell, pbc, cutoff, edge_index, shifts)
    return got


def check_contract(positions, cell, pbc, cutoff, edge_index, shifts):
    i, j = edge_index
    # no shift along a non-periodic direction
    assert not np.any(shifts[:, ~pbc]), "non-zero shift along a non-periodic direction"
    if len(i):
        d = positions[j] - positions[i] + shifts @ cell
        assert np.all(np.linalg.norm(d, axis=1) < cutoff)
    # no self-edge without a shift
    assert not np.any((i == j) & ~shifts.any(axis=1))
    edges = as_set(edge_index, shifts)
    mirrored = {(b, a, -sx, -sy, -sz) for a, b, sx, sy, sz in edges}
    assert edges == mirrored, "the list is not symmetric under (i,j,S) -> (j,i,-S)"


def _diff(a, b) -> str:
    return f"only in first: {sorted(a - b)[:5]} ({len(a - b)}), " \
           f"only in second: {sorted(b - a)[:5]} ({len(b - a)})"


def random_triclinic(rng, length=6.0, tilt=1.5):
    return np.eye(3) * length + rng.uniform(-tilt, tilt, (3, 3))


# -- fully periodic -----------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_random_triclinic_cell(seed):
    rng = np.random.default_rng(seed)
    cell = random_triclinic(rng)
    positions = rng.uniform(0, 1, (20, 3)) @ cell
    edges = check_all(positions, cell, [True] * 3, 4.0)
    assert len(edges) > 0
    # a cell larger than the cutoff in places still has images across the boundary
    assert any(e[2:] != (0, 0, 0) for e in edges)


@pytest.mark.parametrize("seed", SEEDS)
def test_cell_smaller_than_cutoff(seed):
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * 2.0 + rng.uniform(-0.3, 0.3, (3, 3))
    positions = rng.uniform(0, 1, (2, 3)) @ cell
    edges = check_all(positions, cell, [True] * 3, 5.0)
    # many images per pair, including each atom's own periodic images
    self_images = [e for e in edges if e[0] == e[1]]
    assert len(self_images) > 10
    assert all(e[2:] != (0, 0, 0) for e in self_images)
    pair = [e for e in edges if (e[0], e[1]) == (0, 1)]
    assert len(pair) > 10


@pytest.mark.parametrize("seed", SEEDS)
def test_single_atom_in_small_cell_sees_only_its_images(seed):
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * 2.0 + rng.uniform(-0.3, 0.3, (3, 3))
    edges = check_all(rng.uniform(0, 2, (1, 3)), cell, [True] * 3, 5.0)
    assert len(edges) > 0
    assert all(e[0] == e[1] == 0 for e in edges)


# -- mixed pbc ----------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("zero_row", [False, True], ids=["full-cell", "zero-open-row"])
def test_mixed_pbc(seed, zero_row):
    rng = np.random.default_rng(seed)
    cell = random_triclinic(rng)
    positions = rng.uniform(0, 1, (20, 3)) @ cell
    pbc = np.array([True, False, True])
    if zero_row:
        cell[1] = 0.0
    check_all(positions, cell, pbc, 4.0)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("zero_row", [False, True], ids=["full-cell", "zero-open-row"])
def test_mixed_pbc_small_cell(seed, zero_row):
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * 2.0 + rng.uniform(-0.3, 0.3, (3, 3))
    positions = rng.uniform(0, 1, (3, 3)) @ cell
    if zero_row:
        cell[1] = 0.0
    edges = check_all(positions, cell, [True, False, True], 5.0)
    assert any(e[0] == e[1] for e in edges)


# -- molecules -----------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dummy_cell", [False, True], ids=["zero-cell", "dummy-cell"])
def test_molecule(seed, dummy_cell):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(-4, 4, (15, 3))
    # a small dummy cell with pbc off must be ignored: no images at all
    cell = random_triclinic(rng, length=2.0, tilt=0.3) if dummy_cell else np.zeros((3, 3))
    edges = check_all(positions, cell, [False] * 3, 4.0)
    assert all(e[2:] == (0, 0, 0) for e in edges)
    # brute force without any cell
    d = np.linalg.norm(positions[None] - positions[:, None], axis=-1)
    i, j = np.nonzero((d < 4.0) & ~np.eye(len(positions), dtype=bool))
    assert edges == {(a, b, 0, 0, 0) for a, b in zip(i.tolist(), j.tolist())}


def test_isolated_atoms_give_empty_arrays():
    positions = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    edge_index, shifts = neighbor_list(positions, np.zeros((3, 3)), [False] * 3, 2.0)
    assert edge_index.shape == (2, 0) and shifts.shape == (0, 3)
    assert edge_index.dtype == np.int64 and shifts.dtype == np.int64


# -- positions outside the cell -------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_unwrapped_positions(seed):
    rng = np.random.default_rng(seed)
    cell = random_triclinic(rng)
    frac = rng.uniform(0, 1, (16, 3))
    wrapped = frac @ cell
    # all atoms moved several cells away, each by its own extra -2..2 cells
    n = np.array([7, -5, 4]) + rng.integers(-2, 3, (16, 3))
    unwrapped = wrapped + n @ cell
    edges_unwrapped = check_all(unwrapped, cell, [True] * 3, 4.0)
    edges_wrapped = check_all(wrapped, cell, [True] * 3, 4.0)
    # same physical pairs: S' = S + n_i - n_j
    expected = {
        (i, j, *(np.array(s) + n[i] - n[j]).tolist()) for i, j, *s in edges_wrapped
    }
    assert edges_unwrapped == expected


@pytest.mark.parametrize("seed", SEEDS)
def test_unwrapped_positions_mixed_pbc(seed):
    rng = np.random.default_rng(seed)
    cell = random_triclinic(rng)
    positions = rng.uniform(0, 1, (16, 3)) @ cell
    # far outside, also along the open axis
    positions += (np.array([-6, 9, 5]) + rng.integers(-2, 3, (16, 3))) @ cell
    check_all(positions, cell, [True, False, True], 4.0)


# -- batches -------------------------------------------------------------------
def _three_structures():
    rng = np.random.default_rng(7)
    cell = random_triclinic(rng)
    periodic = Atoms(numbers=rng.integers(1, 9, 12), positions=rng.uniform(0, 1, (12, 3)) @ cell,
                     cell=cell, pbc=True)
    small = np.eye(3) * 2.2 + rng.uniform(-0.2, 0.2, (3, 3))
    tiny = Atoms(numbers=[6, 8], positions=rng.uniform(0, 1, (2, 3)) @ small, cell=small,
                 pbc=True)
    molecule = Atoms(numbers=rng.integers(1, 9, 7), positions=rng.uniform(-2.5, 2.5, (7, 3)))
    return [periodic, molecule, tiny]


def test_attach_neighbors_on_batch_equals_per_structure_lists():
    cutoff = 4.0
    structures = _three_structures()
    batch = attach_neighbors(Batch.collate([from_atoms(a) for a in structures]), cutoff)
    assert batch.edge_index.dtype == torch.long
    assert batch.shifts.dtype == batch.dtype
    got = as_set(batch.edge_index.numpy(), batch.shifts.numpy())
    expected = set()
    offset = 0
    for a in structures:
        ei, sh = neighbor_list(a.get_positions(), a.cell.array, a.pbc, cutoff)
        ref = as_set(*reference_neighbor_list(a.get_positions(), a.cell.array, a.pbc, cutoff))
        assert as_set(ei, sh) == ref
        expected |= {(i + offset, j + offset, *s) for i, j, *s in ref}
        offset += len(a)
    assert got == expected
    # sorted by center, as the models' padding expects without sorting again
    assert bool((batch.edge_index[0, 1:] >= batch.edge_index[0, :-1]).all())
    # every edge stays within one structure
    system = batch.system
    assert torch.equal(system[batch.edge_index[0]], system[batch.edge_index[1]])
    # and split gives each structure its own list back
    for part, a in zip(batch.split(), structures):
        ref = as_set(*reference_neighbor_list(a.get_positions(), a.cell.array, a.pbc, cutoff))
        assert as_set(part.edge_index.numpy(), part.shifts.numpy()) == ref


def test_attach_neighbors_does_not_modify_input():
    batch = Batch.collate([from_atoms(a) for a in _three_structures()])
    before = {k: v.clone() for k, v in batch.items()}
    out = attach_neighbors(batch, 3.0)
    assert "edge_index" not in batch and "edge_index" in out
    for k, v in before.items():
        assert torch.equal(batch[k], v)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_edge_vectors_match_numpy(dtype):
    rng = np.random.default_rng(3)
    structures = []
    for length, n in ((5.0, 10), (2.5, 3)):
        cell = random_triclinic(rng, length=length, tilt=0.4)
        structures.append(Atoms(numbers=rng.integers(1, 9, n),
                                positions=rng.uniform(-0.5, 1.5, (n, 3)) @ cell,
                                cell=cell, pbc=True))
    batch = attach_neighbors(Batch.collate([from_atoms(a, dtype) for a in structures]), 4.5)
    vec = edge_vectors(batch)
    assert vec.dtype == dtype and vec.shape == (batch.n_edges, 3)
    pos = np.concatenate([a.get_positions() for a in structures])
    cells = np.stack([a.cell.array for a in structures])
    i, j = batch.edge_index.numpy()
    s = batch.shifts.double().numpy()
    sys_i = batch.system.numpy()[i]
    expected = pos[j] - pos[i] + np.einsum("ea,eab->eb", s, cells[sys_i])
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(vec.double().numpy(), expected, rtol=0, atol=tol)
    assert np.all(np.linalg.norm(expected, axis=1) < 4.5)
    # both structures contribute edges, including images across the boundary
    assert set(sys_i.tolist()) == {0, 1}
    assert np.any(s != 0)


def test_edge_vectors_differentiable_in_positions_and_cell():
    rng = np.random.default_rng(4)
    cell = random_triclinic(rng, length=3.0, tilt=0.3)
    atoms = Atoms("CO", positions=rng.uniform(0, 1, (2, 3)) @ cell, cell=cell, pbc=True)
    batch = attach_neighbors(from_atoms(atoms), 4.0)
    pos = batch.positions.clone().requires_grad_(True)
    cel = batch.cell.clone().requires_grad_(True)
    vec = edge_vectors(batch.replace(positions=pos, cell=cel))
    w = torch.tensor(rng.normal(size=(batch.n_edges, 3)), dtype=pos.dtype)
    g_pos, g_cell = torch.autograd.grad((vec * w).sum(), (pos, cel))
    # L = sum_e w_e · (x_j - x_i + S_e @ cell): dL/dcell = S^T w, dL/dx_j += w_e, dL/dx_i -= w_e
    torch.testing.assert_close(g_cell[0], batch.shifts.T @ w)
    i, j = batch.edge_index
    expected = torch.zeros_like(pos).index_add(0, j, w).index_add(0, i, -w)
    torch.testing.assert_close(g_pos, expected)


def test_edge_vectors_without_edges():
    atoms = Atoms("H2", positions=[[0, 0, 0], [9, 0, 0]])
    batch = attach_neighbors(from_atoms(atoms), 2.0)
    assert batch.n_edges == 0
    assert edge_vectors(batch).shape == (0, 3)


# -- errors --------------------------------------------------------------------
@pytest.mark.parametrize("cutoff", [0.0, -1.0])
def test_non_positive_cutoff_raises(cutoff):
    positions = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(positions, np.eye(3) * 5, [True] * 3, cutoff)
    batch = from_atoms(Atoms("H2", positions=positions))
    with pytest.raises(ValueError, match="cutoff"):
        attach_neighbors(batch, cutoff)
