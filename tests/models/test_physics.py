"""Every DESIGN.md §5 check on BPNN+ZBL, in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from mlipkit import testing
from tests.conftest import CU_REF, ETHANOL_REFS, ethanol_frames, triclinic_cu


def compressed_water():
    """Water squeezed so that both O–H pairs sit inside ZBL's switching region
    (0.49–0.78 Å for O–H with the default switch)."""
    return Atoms("OH2", positions=[[0, 0, 0], [0.6, 0.05, 0.0], [-0.2, 0.65, 0.05]])


def test_forces_match_finite_differences(molecule_potential, bulk_potential):
    testing.assert_forces_match_fd(molecule_potential, ethanol_frames()[0])
    if molecule_potential.dtype == torch.float64:
        # ~200 eV/Å forces here: δ = 1e-4 Å leaves a δ² truncation error of 3e-5, so step
        # smaller (the error then falls as δ², which shows the forces are exact). Float32
        # has no step that is both above round-off and below truncation here.
        testing.assert_forces_match_fd(molecule_potential, compressed_water(), delta=1e-5)
    testing.assert_forces_match_fd(bulk_potential, triclinic_cu())


def test_zbl_is_active_in_the_compressed_check(molecule_potential):
    # guards the test above: the squeezed water must feel the repulsion
    zbl = molecule_potential.terms[1]
    e, f, _ = testing.evaluate(zbl, compressed_water())
    assert e > 1.0 and np.abs(f).max() > 1.0


def test_stress_matches_finite_differences_on_triclinic_cell(bulk_potential):
    testing.assert_stress_matches_fd(bulk_potential, triclinic_cu())


def test_invariance(molecule_potential, bulk_potential):
    testing.assert_invariance(molecule_potential, ethanol_frames()[1])
    testing.assert_invariance(bulk_potential, triclinic_cu())


def test_smooth_at_cutoff(molecule_potential, bulk_potential):
    for pair in (["C", "O"], ["H", "H"], ["C", "C"]):
        testing.assert_smooth_cutoff(molecule_potential, pair)
    testing.assert_smooth_cutoff(bulk_potential, ["Cu", "Cu"])


def test_extensive_and_isolated_atoms(molecule_potential):
    a, b = ethanol_frames()[:2]
    testing.assert_extensive(molecule_potential, a, b)
    for symbol, ref in ETHANOL_REFS.items():
        testing.assert_isolated_atom(molecule_potential, symbol, ref)


def test_supercell_of_small_cells(bulk_potential):
    # cell lengths ~2.5-5 Å with a 4 Å cutoff: several images of each atom
    testing.assert_supercell_consistent(bulk_potential, triclinic_cu())
    testing.assert_supercell_consistent(bulk_potential, triclinic_cu(repeat=(1, 1, 1)))


def test_batched_equals_one_by_one(molecule_potential, bulk_potential):
    testing.assert_batch_consistent(molecule_potential,
                                    ethanol_frames() + [molecule("H2O"), compressed_water()])
    testing.assert_batch_consistent(bulk_potential,
                                    [triclinic_cu(), triclinic_cu(repeat=(1, 1, 1), seed=4)])


def test_calculator_matches_potential(molecule_potential, bulk_potential):
    testing.assert_calculator_consistent(molecule_potential, ethanol_frames()[2])
    testing.assert_calculator_consistent(bulk_potential, triclinic_cu())


def test_isolated_atom_reference_for_bulk_model(bulk_potential):
    testing.assert_isolated_atom(bulk_potential, "Cu", CU_REF["Cu"])


@pytest.mark.slow
def test_nve_energy_conservation(bulk_potential_factory, one_thread):
    """DESIGN.md §5 protocol: 10 ps at 1 fs from 300 K, drift < 5e-4 eV/atom/ps.

    Run on bulk Cu: an untrained network on a molecule has no bonds to hold
    it, and its atoms fall into the ZBL wall, which no 1 fs step resolves.
    """
    pot = bulk_potential_factory(torch.float64)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    drift, totals = testing.nve_energy_drift(pot, atoms, duration_ps=10.0)
    assert len(totals) == 1001 and np.all(np.isfinite(totals))
    assert drift < 5e-4, f"drift {drift:.2e} eV/atom/ps"


def test_checks_detect_broken_forces(molecule_potential_factory):
    """The finite-difference check is not vacuous: wrong forces fail it."""
    pot = molecule_potential_factory(torch.float64)

    class Broken(type(pot)):
        def forward(self, batch, **kw):
            out = super().forward(batch, **kw)
            if "forces" in out:
                out["forces"] = out["forces"] * 1.01
            return out

    broken = Broken(*pot.terms)
    with pytest.raises(AssertionError, match="finite differences"):
        testing.assert_forces_match_fd(broken, ethanol_frames()[0])


def test_four_body_descriptor_keeps_every_check():
    from mlipkit.descriptors.acsf import default_parameters
    from tests.conftest import build_potential, molecule_fit_frames

    descriptor = default_parameters(4.0, four_body=True)
    molecule_pot = build_potential(["H", "C", "O"], molecule_fit_frames(), ETHANOL_REFS,
                                   torch.float64, descriptor=descriptor)
    bulk_pot = build_potential(["Cu"], [triclinic_cu(seed=s) for s in range(3)], CU_REF,
                               torch.float64, descriptor=descriptor)
    testing.assert_forces_match_fd(molecule_pot, ethanol_frames()[0])
    testing.assert_stress_matches_fd(bulk_pot, triclinic_cu())
    testing.assert_invariance(molecule_pot, ethanol_frames()[1])
    testing.assert_smooth_cutoff(molecule_pot, ["C", "O"])
