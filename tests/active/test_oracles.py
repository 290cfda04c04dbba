"""Oracles: the same numbers as the reference codes called directly, forces
that are the derivative of the oracle's energy, and failures recorded
instead of raised."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlipkit.active.oracles import Oracle, structure_hash
from mlipkit.errors import InvalidConfig


def _cu(seed=0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_emt_oracle_matches_emt_and_accepts_import_paths():
    atoms = _cu()
    label = Oracle("emt").label(atoms)
    reference = atoms.copy()
    reference.calc = EMT()
    assert label.ok and label.converged is None and label.wall_s > 0
    assert label.energy == pytest.approx(reference.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(label.forces, reference.get_forces(), atol=1e-12)
    np.testing.assert_allclose(label.stress, reference.get_stress(voigt=False), atol=1e-12)
    assert label.hash == structure_hash(atoms)
    for path in ("ase.calculators.emt:EMT", "ase.calculators.emt.EMT"):
        assert Oracle(path).label(atoms).energy == label.energy
    assert Oracle("emt").settings == {"calculator": "ase.calculators.emt:EMT", "kwargs": {}}


def test_bad_oracle_names_fail_at_configuration():
    with pytest.raises(InvalidConfig, match="cannot import"):
        Oracle("ase.calculators.nothing:Nope")
    with pytest.raises(InvalidConfig, match="short name"):
        Oracle("nope")


def test_structure_hash_is_a_content_hash():
    atoms = _cu()
    assert structure_hash(atoms.copy()) == structure_hash(atoms)
    moved = atoms.copy()
    moved.positions[0, 0] += 1e-6
    assert structure_hash(moved) != structure_hash(atoms)
    moved.positions[0, 0] = atoms.positions[0, 0] + 1e-12  # below the 1e-8 Å rounding
    assert structure_hash(moved) == structure_hash(atoms)
    other = atoms.copy()
    other.numbers[0] = 28
    assert structure_hash(other) != structure_hash(atoms)


def test_failures_come_back_as_labels(tmp_path):
    atoms = _cu()
    key = structure_hash(atoms)
    for mode, message in (("raise", "crashed"), ("nan", "NaN")):
        oracle = Oracle("tests.active.faulty:Faulty",
                        {"behaviour": {key: mode}, "marker_dir": str(tmp_path)})
        label = oracle.label(atoms)
        assert not label.ok and message in label.error and label.energy is None
    with pytest.raises(InvalidConfig, match="molecules"):
        Oracle("pyscf").calculator_for(atoms)


def _central_difference(oracle, atoms, atom, axis, h=1e-3):
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * h
        energies.append(oracle.label(moved).energy)
    return -(energies[0] - energies[1]) / (2 * h)


def test_xtb_oracle_forces_are_its_energy_gradient():
    pytest.importorskip("tblite")
    from tblite.ase import TBLite

    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    oracle = Oracle("gfn2-xtb")
    label = oracle.label(atoms)
    assert label.ok and label.converged is True and label.stress is None
    direct = atoms.copy()
    direct.calc = TBLite(method="GFN2-xTB", verbosity=0)
    assert label.energy == pytest.approx(direct.get_potential_energy(), abs=1e-8)
    for atom, axis in ((0, 0), (8, 2)):
        assert label.forces[atom, axis] == pytest.approx(
            _central_difference(oracle, atoms, atom, axis), abs=2e-4)


def test_pyscf_oracle_forces_and_convergence():
    pytest.importorskip("pyscf")
    atoms = molecule("H2O")
    atoms.rattle(0.05, seed=2)
    oracle = Oracle("pyscf", {"xc": "pbe", "basis": "sto-3g"})
    label = oracle.label(atoms)
    assert label.ok and label.converged is True
    for atom, axis in ((0, 2), (1, 0)):
        assert label.forces[atom, axis] == pytest.approx(
            _central_difference(oracle, atoms, atom, axis), abs=2e-4)
    unconverged = Oracle("pyscf", {"xc": "pbe", "basis": "sto-3g", "max_cycle": 1}).label(atoms)
    assert not unconverged.ok and unconverged.converged is False
    assert "not converged" in unconverged.error
