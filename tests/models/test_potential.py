"""The Potential contract: outputs, Hessians, dtypes, errors, and the ASE calculator."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

import mlipkit
from mlipkit.data import Batch, fit_reference_energies, from_atoms
from mlipkit.errors import StressUndefined, UnknownSpecies
from mlipkit.models import BehlerParrinello, ScaleShift, SumPotential
from mlipkit.physics import ZBL
from tests.conftest import ethanol_frames, triclinic_cu


def test_hessian_matches_finite_differences_of_forces(molecule_potential_factory):
    pot = molecule_potential_factory(torch.float64)
    atoms = ethanol_frames()[0]
    out = pot(from_atoms(atoms), forces=True, hessian=True)
    hessian = out["hessian"].numpy()
    n = len(atoms)
    assert hessian.shape == (3 * n, 3 * n)
    fd = np.zeros_like(hessian)
    delta = 1e-4
    for a in range(n):
        for k in range(3):
            forces = []
            for sign in (1, -1):
                moved = atoms.copy()
                moved.positions[a, k] += sign * delta
                forces.append(pot(from_atoms(moved))["forces"].numpy().ravel())
            fd[3 * a + k] = -(forces[0] - forces[1]) / (2 * delta)
    assert np.abs(hessian - fd).max() < 1e-5
    assert np.abs(hessian - hessian.T).max() < 1e-10
    # translation invariance: each row sums to zero over atoms for every direction
    assert np.abs(hessian.reshape(3 * n, n, 3).sum(axis=1)).max() < 1e-9


def test_batched_hessian_is_block_diagonal(molecule_potential_factory):
    pot = molecule_potential_factory(torch.float64)
    frames = [ethanol_frames()[0], molecule("H2O")]
    together = pot(Batch.collate([from_atoms(a) for a in frames]), hessian=True)["hessian"]
    h1 = pot(from_atoms(frames[0]), hessian=True)["hessian"]
    h2 = pot(from_atoms(frames[1]), hessian=True)["hessian"]
    torch.testing.assert_close(together, torch.block_diag(h1, h2), rtol=0, atol=1e-10)


def test_training_mode_keeps_graph_for_force_losses(molecule_potential_factory):
    pot = molecule_potential_factory(torch.float64)
    out = pot(from_atoms(ethanol_frames()[0]), forces=True, training=True)
    loss = out["forces"].pow(2).sum()
    loss.backward()
    grads = [p.grad for p in pot.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().max()) > 0 for g in grads)
    pot.zero_grad()
    inference = pot(from_atoms(ethanol_frames()[0]), forces=True)
    assert not inference["forces"].requires_grad and not inference["energy"].requires_grad


def test_unknown_element_is_a_named_error():
    pot = BehlerParrinello(["H", "O"], cutoff=4.0)
    with pytest.raises(UnknownSpecies, match=r"\['H', 'O'\].*\['C'\]"):
        pot(from_atoms(molecule("CH4")))
    atoms = molecule("CH4")
    atoms.calc = mlipkit.Calculator(pot)
    with pytest.raises(UnknownSpecies):
        atoms.get_potential_energy()
    with pytest.raises(UnknownSpecies):
        BehlerParrinello(["Xx"])


def test_stress_of_a_molecule_is_a_named_error(molecule_potential_factory):
    pot = molecule_potential_factory(torch.float64)
    atoms = molecule("CH3CH2OH")
    atoms.calc = mlipkit.Calculator(pot)
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(StressUndefined):
        atoms.get_stress()
    with pytest.raises(StressUndefined):
        pot(from_atoms(atoms), stress=True)


def test_dtype_and_calculator_follow_the_potential():
    pot = SumPotential(BehlerParrinello(["Cu"], cutoff=4.0), ZBL())
    assert pot.dtype == torch.float32
    atoms = triclinic_cu()
    atoms.calc = mlipkit.Calculator(pot)
    e32 = atoms.get_potential_energy()
    pot.double()
    assert pot.dtype == torch.float64
    out = pot(from_atoms(atoms, torch.float32))  # input dtype is converted to the model's
    assert out["energy"].dtype == torch.float64 and out["forces"].dtype == torch.float64
    atoms.calc = mlipkit.Calculator(pot)
    e64 = atoms.get_potential_energy()
    assert abs(e64 - e32) < 1e-4 * max(1.0, abs(e64))


def test_calculator_recomputes_only_when_atoms_change(bulk_potential_factory):
    pot = bulk_potential_factory(torch.float64)
    calls = []
    handle = pot.register_forward_hook(lambda *args: calls.append(1))
    try:
        atoms = triclinic_cu()
        atoms.calc = mlipkit.Calculator(pot)
        atoms.get_potential_energy()
        atoms.get_forces()
        atoms.get_stress()
        atoms.get_potential_energies()
        assert len(calls) == 1
        atoms.positions[0, 0] += 0.01
        atoms.get_forces()
        assert len(calls) == 2
    finally:
        handle.remove()


def test_cell_relaxation_with_ase_filter_reaches_zero_stress(bulk_potential_factory):
    pot = bulk_potential_factory(torch.float64)
    atoms = bulk("Cu", "fcc", a=3.7, cubic=True)
    atoms.rattle(0.02, seed=0)
    atoms.calc = mlipkit.Calculator(pot)
    start = np.abs(atoms.get_stress()).max()
    converged = BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-4, steps=300)
    assert converged
    assert np.abs(atoms.get_forces()).max() < 1e-4
    assert np.abs(atoms.get_stress()).max() < 1e-4 < start


def test_reference_energies_fitted_and_applied():
    """Per-element reference energies from least squares make isolated atoms exact."""
    truth = {1: -13.6, 8: -2041.0}
    frames = []
    for formula in ("H2O", "H2O2", "H2", "O2"):
        atoms = molecule(formula)
        energy = sum(truth[z] for z in atoms.numbers)
        frames.append(from_atoms(atoms, labels={"energy": energy}))
    refs = fit_reference_energies(frames)
    assert refs == pytest.approx(truth, abs=1e-8)
    pot = ScaleShift(BehlerParrinello(["H", "O"], cutoff=4.0), shift=refs).double()
    e = pot(from_atoms(Atoms("O")), forces=False)["energy"]
    assert float(e[0]) == pytest.approx(truth[8], abs=1e-9)
    assert pot.capabilities.species == (1, 8)


def test_sum_potential_capabilities():
    pot = SumPotential(BehlerParrinello(["H", "C"], cutoff=4.5), ZBL())
    caps = pot.capabilities
    assert caps.species == (1, 6) and caps.cutoff == 4.5
    with pytest.raises(ValueError):
        SumPotential()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu(bulk_potential_factory):
    pot = bulk_potential_factory(torch.float64)
    atoms = triclinic_cu()
    cpu = pot(from_atoms(atoms), stress=True)
    gpu_pot = copy.deepcopy(pot).to("cuda")
    gpu = gpu_pot(from_atoms(atoms), stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-10, atol=1e-10)
    atoms.calc = mlipkit.Calculator(gpu_pot)
    assert abs(atoms.get_potential_energy() - float(cpu["energy"][0])) < 1e-10
