import copy
import pickle

import numpy as np
import pytest
import torch
from ase import Atoms

from mlipkit.data import KEYS, Batch, from_atoms


def _structure(n, seed, periodic=True, n_edges=4):
    rng = np.random.default_rng(seed)
    atoms = Atoms(
        numbers=rng.integers(1, 9, n),
        positions=rng.uniform(0, 4, (n, 3)),
        cell=np.diag([4.0, 5.0, 6.0]) if periodic else np.zeros((3, 3)),
        pbc=periodic,
    )
    h = rng.normal(size=(3 * n, 3 * n))
    labels = dict(
        energy=rng.normal(),
        forces=rng.normal(size=(n, 3)),
        stress=rng.normal(size=6),
        hessian=h + h.T,
    )
    b = from_atoms(atoms, labels=labels)
    edge_index = torch.tensor(rng.integers(0, n, (2, n_edges)), dtype=torch.long)
    shifts = torch.tensor(rng.integers(-1, 2, (n_edges, 3)), dtype=torch.float64)
    return b.replace(edge_index=edge_index, shifts=shifts)


@pytest.fixture
def parts():
    return [_structure(3, 0), _structure(5, 1, periodic=False, n_edges=0), _structure(2, 2)]


def _assert_same(a: Batch, b: Batch):
    assert set(a.keys()) == set(b.keys())
    for k in a.keys():
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def test_collate_shapes_and_offsets(parts):
    b = Batch.collate(parts)
    assert b.n_structures == 3
    assert b.n_total_atoms == 10
    assert b.n_edges == 8
    assert b.system.tolist() == [0] * 3 + [1] * 5 + [2] * 2
    assert b.n_atoms.tolist() == [3, 5, 2]
    assert b.cell.shape == (3, 3, 3)
    assert b.energy.shape == (3,)
    assert b.stress.shape == (3, 3, 3)
    # edge indices of the third structure are offset by the 3 + 5 atoms before it
    assert torch.equal(b.edge_index[:, 4:], parts[2].edge_index + 8)
    assert torch.equal(b.edge_index[:, :4], parts[0].edge_index)
    # Hessians are block diagonal: no coupling between structures
    assert b.hessian.shape == (30, 30)
    assert torch.equal(b.hessian[9:24, 9:24], parts[1].hessian)
    assert torch.all(b.hessian[:9, 9:] == 0)
    assert torch.all(b.hessian[24:, :24] == 0)


def test_split_inverts_collate(parts):
    back = Batch.collate(parts).split()
    assert len(back) == 3
    for a, b in zip(parts, back):
        _assert_same(a, b)


def test_split_with_interleaved_edges(parts):
    # edges need not be grouped by structure: split sorts them (stably) per structure
    b = Batch.collate(parts)
    perm = torch.tensor([4, 0, 5, 1, 2, 6, 7, 3])
    shuffled = b.replace(edge_index=b.edge_index[:, perm], shifts=b.shifts[perm])
    for a, s in zip(parts, shuffled.split()):
        _assert_same(a, s)


def test_collate_of_collated_batches(parts):
    whole = Batch.collate(parts)
    nested = Batch.collate([Batch.collate(parts[:2]), parts[2]])
    _assert_same(whole, nested)


def test_collate_rejects_mismatched_fields(parts):
    with pytest.raises(ValueError, match="different fields"):
        Batch.collate([parts[0], parts[1].without("hessian")])
    with pytest.raises(ValueError, match="empty"):
        Batch.collate([])


def test_to_dtype_casts_only_floats(parts):
    b = Batch.collate(parts).to(dtype=torch.float32)
    for k, v in b.items():
        kind = KEYS[k].kind
        if kind == "float":
            assert v.dtype == torch.float32, k
        elif kind == "int":
            assert v.dtype == torch.long, k
        else:
            assert v.dtype == torch.bool, k
    assert b.dtype == torch.float32
    assert torch.equal(b.numbers, Batch.collate(parts).numbers)


def test_immutable(parts):
    b = parts[0]
    with pytest.raises(AttributeError, match="immutable"):
        b.energy = torch.zeros(1)
    before = b.positions.clone()
    moved = b.replace(positions=b.positions + 1.0)
    assert torch.equal(b.positions, before)
    assert torch.allclose(moved.positions, before + 1.0)
    dropped = b.without("hessian", "stress")
    assert "hessian" in b and "hessian" not in dropped and "stress" not in dropped
    assert dropped.get("hessian") is None


def test_field_errors(parts):
    b = parts[0].without("stress")
    with pytest.raises(AttributeError, match="no 'stress' field"):
        _ = b.stress
    with pytest.raises(KeyError, match="unknown batch fields"):
        b.replace(spin=torch.zeros(3))
    with pytest.raises(KeyError, match="needs the fields"):
        Batch(positions=b.positions, numbers=b.numbers)


def test_pickle_and_deepcopy(parts):
    b = Batch.collate(parts)
    for c in (pickle.loads(pickle.dumps(b)), copy.deepcopy(b), copy.copy(b)):
        assert isinstance(c, Batch)
        _assert_same(b, c)
