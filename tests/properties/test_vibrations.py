"""Vibrations: normal modes against ASE's Vibrations (tblite GFN2-xTB water),
exact against finite-difference Hessians, and the model-vs-reference
diagnostics on a case with a known answer (Lennard-Jones ε scaled)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.cluster import Icosahedron

from mlipkit.calculators import Calculator
from mlipkit.cli import main
from mlipkit.errors import HessianUnavailable
from mlipkit.models.checkpoint import save
from mlipkit.properties.engines import attach, engine, hessian
from mlipkit.properties.relax import relax
from mlipkit.properties.vibrations import acoustic_sum_rule, diagnostics, normal_modes
from tests.conftest import ETHANOL_REFS, build_potential, molecule_fit_frames
from tests.md.conftest import ARGON_EPSILON, LennardJones

pytest.importorskip("tblite")


@pytest.fixture(scope="module")
def water():
    calc = engine("gfn2")
    return relax(molecule("H2O"), calc, fmax=1e-5).atoms, calc


def test_water_frequencies_match_ase_vibrations(water, tmp_path, monkeypatch):
    from ase.vibrations import Vibrations

    atoms, calc = water
    modes = normal_modes(hessian(atoms, calc, method="fd", delta=0.005), atoms)
    monkeypatch.chdir(tmp_path)  # ASE's Vibrations caches displacements in the working folder
    vib = Vibrations(attach(atoms, calc), delta=0.005, nfree=2)
    vib.run()
    ase_cm = np.sort(np.real(vib.get_frequencies()))[-3:]  # ASE keeps the rigid motions
    assert modes.wavenumbers.shape == (3,)
    np.testing.assert_allclose(modes.wavenumbers, ase_cm, atol=0.5)
    assert 1400 < modes.wavenumbers[0] < 1800 and modes.wavenumbers[2] > 3000  # bend, stretches


def test_linear_molecule_has_3n_minus_5_modes():
    calc = engine("gfn2")
    co2 = relax(Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.18], [0, 0, -1.18]]), calc,
                fmax=1e-5).atoms
    modes = normal_modes(hessian(co2, calc, method="fd"), co2)
    assert modes.wavenumbers.shape == (4,)
    assert np.all(modes.wavenumbers > 400)  # no rotation leaks in as a soft mode


@pytest.fixture(scope="module")
def argon13():
    lj = LennardJones(cutoff=9.0).double()
    cluster = Icosahedron("Ar", noshells=2, latticeconstant=5.26)
    cluster.pbc = False
    return relax(cluster, Calculator(lj), fmax=1e-6).atoms, lj


def test_exact_hessian_matches_finite_differences(argon13):
    atoms, lj = argon13
    exact = hessian(atoms, Calculator(lj), method="exact")
    fd = hessian(atoms, Calculator(lj), method="fd", delta=1e-3)
    np.testing.assert_allclose(exact, fd, atol=2e-6 * np.abs(exact).max())
    assert acoustic_sum_rule(exact) < 1e-10  # translation invariance, exactly


def test_diagnostics_of_a_scaled_potential(argon13):
    """LJ with ε' = 1.21 ε has the same minimum and every curvature 1.21×:
    frequencies 1.1×, modal scaling 1.21, identical modes."""
    atoms, lj = argon13
    stiffer = LennardJones(epsilon=1.21 * ARGON_EPSILON, cutoff=9.0).double()
    ref = hessian(atoms, Calculator(lj))
    diag = diagnostics(hessian(atoms, Calculator(stiffer)), ref, atoms)
    assert len(diag["reference_cm"]) == 3 * 13 - 6
    np.testing.assert_allclose(diag["modal_scaling"], 1.21, rtol=1e-8)
    np.testing.assert_allclose(diag["model_cm"], 1.1 * diag["reference_cm"], rtol=1e-8)
    # the icosahedron's modes are degenerate: each reference mode lies wholly in
    # the model's degenerate set of the same (scaled) frequency
    model_cm = normal_modes(hessian(atoms, Calculator(stiffer)), atoms).wavenumbers
    same_level = np.abs(model_cm[:, None] / 1.1 - diag["reference_cm"][None, :]) < 1e-6
    captured = (diag["overlap"] ** 2 * same_level).sum(axis=0)
    np.testing.assert_allclose(captured, 1.0, atol=1e-8)
    same = diagnostics(ref, ref, atoms)
    assert same["frequency_max_error_cm"] < 1e-8
    np.testing.assert_allclose(same["modal_scaling"], 1.0, rtol=1e-10)


def test_newton_relaxation_needs_fewer_steps_than_bfgs(argon13):
    atoms, lj = argon13
    start = atoms.copy()
    start.rattle(0.1, seed=3)
    newton = relax(start, Calculator(lj), fmax=1e-4, optimizer="newton")
    bfgs = relax(start, Calculator(lj), fmax=1e-4, optimizer="bfgs")
    assert newton.converged and bfgs.converged
    assert newton.steps < bfgs.steps
    assert newton.energy == pytest.approx(bfgs.energy, abs=1e-6)


def test_exact_hessian_of_an_ase_calculator_is_refused():
    with pytest.raises(HessianUnavailable, match="finite-difference"):
        hessian(molecule("H2O"), engine("emt"), method="exact")


def test_vib_cli_with_a_model_file_and_a_reference(tmp_path, capsys):
    model = build_potential(["H", "C", "O"], molecule_fit_frames(), ETHANOL_REFS, torch.float64)
    save(model.float(), tmp_path / "model.safetensors")
    molecule("H2O").write(tmp_path / "water.xyz")
    out = tmp_path / "vib"
    code = main(["--quiet", "vib", str(tmp_path / "model.safetensors"), str(tmp_path / "water.xyz"),
                 "--out", str(out), "--no-relax", "--reference", "gfn2"])
    assert code == 0
    result = json.loads((out / "vib.json").read_text())
    assert len(result["wavenumbers_cm"]) == 3
    assert result["acoustic_sum_rule"] < 1e-8  # exact Hessian of the model
    assert len(result["comparison"]["frequency_errors_cm"]) == 3
    assert (out / "vib.png").stat().st_size > 0 and (out / "modes.extxyz").exists()
    code = main(["vib", "emt", str(tmp_path / "water.xyz"), "--out", str(out), "--hessian",
                 "exact"])
    assert code == 2
    assert "finite-difference" in capsys.readouterr().err


def test_finite_difference_hessian_ignores_constraints(argon13):
    from ase.constraints import FixAtoms

    atoms, lj = argon13
    fixed = atoms.copy()
    fixed.set_constraint(FixAtoms(indices=[0, 1]))
    free = hessian(atoms, Calculator(lj), method="fd")
    np.testing.assert_allclose(hessian(fixed, Calculator(lj), method="fd"), free, atol=1e-12)
    assert fixed.constraints  # the input keeps its constraint
