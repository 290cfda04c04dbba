import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from mlipkit.data import atoms_to_batch, from_atoms, to_atoms
from mlipkit.errors import InvalidStructure


def _triclinic():
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    atoms.cell = atoms.cell.array + np.array([[0.0, 0.1, 0.2], [0.3, 0.0, 0.1], [0.0, 0.2, 0.0]])
    atoms.rattle(0.05, seed=1)
    return atoms


def test_round_trip_with_labels():
    atoms = _triclinic()
    rng = np.random.default_rng(0)
    n = len(atoms)
    voigt = rng.normal(size=6)
    labels = dict(energy=-7.25, forces=rng.normal(size=(n, 3)), stress=voigt)
    b = from_atoms(atoms, labels=labels)
    assert b.positions.dtype == torch.float64 and b.numbers.dtype == torch.long
    assert b.cell.shape == (1, 3, 3) and b.pbc.tolist() == [[True, True, True]]
    assert b.n_atoms.tolist() == [n] and b.system.tolist() == [0] * n
    # Voigt (xx, yy, zz, yz, xz, xy) becomes the symmetric 3x3 matrix
    s = b.stress[0]
    assert s[1, 2] == s[2, 1] == voigt[3] and s[0, 2] == voigt[4] and s[0, 1] == voigt[5]

    (back,) = to_atoms(b)
    assert np.array_equal(back.numbers, atoms.numbers)
    assert np.array_equal(back.positions, atoms.positions)
    assert np.array_equal(back.cell.array, atoms.cell.array)
    assert np.array_equal(back.pbc, atoms.pbc)
    assert back.get_potential_energy() == -7.25
    assert np.array_equal(back.get_forces(), labels["forces"])
    assert np.array_equal(back.get_stress(voigt=True), voigt)


def test_stress_3x3_equals_voigt():
    atoms = _triclinic()
    voigt = np.array([1.0, 2.0, 3.0, 0.4, 0.5, 0.6])
    full = np.array([[1.0, 0.6, 0.5], [0.6, 2.0, 0.4], [0.5, 0.4, 3.0]])
    a = from_atoms(atoms, labels={"stress": voigt})
    b = from_atoms(atoms, labels={"stress": full})
    assert torch.equal(a.stress, b.stress)


def test_molecule_float32_and_hessian():
    atoms = molecule("H2O")
    h = np.arange(81.0).reshape(9, 9)
    b = from_atoms(atoms, dtype=torch.float32, labels={"hessian": h.reshape(3, 3, 3, 3)})
    assert b.positions.dtype == torch.float32 and b.hessian.dtype == torch.float32
    assert b.hessian.shape == (9, 9) and torch.equal(b.hessian, torch.tensor(h).float())
    assert torch.all(b.cell == 0) and not b.pbc.any()
    (back,) = to_atoms(b)
    assert np.array_equal(back.info["hessian"], h)
    assert back.calc is None  # no energy/forces/stress: no calculator


def test_two_dimensional_slab_is_valid():
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], cell=[3, 3, 0], pbc=[True, True, False])
    assert from_atoms(atoms).pbc.tolist() == [[True, True, False]]


def test_atoms_to_batch_list():
    b = atoms_to_batch([molecule("H2O"), molecule("CH4"), _triclinic()])
    assert b.n_structures == 3
    assert b.n_atoms.tolist() == [3, 5, 2]
    assert b.system.tolist() == [0] * 3 + [1] * 5 + [2] * 2
    assert "energy" not in b
    assert len(to_atoms(b)) == 3


def _nan_pos():
    a = molecule("H2O")
    p = a.positions
    p[1, 0] = np.nan
    a.positions = p
    return a


def _inf_pos():
    a = molecule("H2O")
    p = a.positions
    p[2, 2] = np.inf
    a.positions = p
    return a


def _nan_cell():
    a = _triclinic()
    c = a.cell.array.copy()
    c[0, 0] = np.nan
    a.cell = c
    return a


def _pbc_no_cell():
    return Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], pbc=True)


def _singular_cell():
    return Atoms("H", positions=[[0, 0, 0]], cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1]], pbc=True)


@pytest.mark.parametrize(
    "make, labels, match",
    [
        (_nan_pos, None, r"NaN or inf for atoms \[1\]"),
        (_inf_pos, None, r"NaN or inf for atoms \[2\]"),
        (_nan_cell, None, "cell contains NaN"),
        (_pbc_no_cell, None, "zero"),
        (_singular_cell, None, "linearly dependent"),
        (Atoms, None, "empty structure"),
        (lambda: molecule("H2O"), {"forces": np.zeros((2, 3))}, r"forces must have shape \[3, 3\]"),
        (lambda: molecule("H2O"), {"energy": [1.0, 2.0]}, "one number"),
        (lambda: molecule("H2O"), {"energy": np.nan}, "'energy' contains NaN"),
        (lambda: molecule("H2O"), {"stress": np.zeros(5)}, "Voigt-6 or 3x3"),
    ],
)
def test_bad_input_raises_named_error(make, labels, match):
    with pytest.raises(InvalidStructure, match=match) as info:
        from_atoms(make(), labels=labels, where="data.xyz frame 7")
    assert "data.xyz frame 7" in str(info.value)
    assert isinstance(info.value, ValueError)  # generic handlers still catch it


def test_unknown_label_and_wrong_type():
    with pytest.raises(KeyError, match="unknown label"):
        from_atoms(molecule("H2O"), labels={"charges": np.zeros(3)})
    with pytest.raises(TypeError, match="ase.Atoms"):
        from_atoms(np.zeros((3, 3)))
    with pytest.raises(InvalidStructure, match="no structures"):
        atoms_to_batch([])


def test_input_atoms_not_modified():
    atoms = _triclinic()
    atoms.calc = SinglePointCalculator(atoms, energy=1.0)
    pos = atoms.positions.copy()
    b = from_atoms(atoms)
    b.positions.mul_(0)  # even mutating the batch must not reach the Atoms
    assert np.array_equal(atoms.positions, pos)
