"""Elastic constants and the equation of state of EMT Cu against values
computed independently here: the lattice constant by minimising the energy,
C11, C12, C44 from second derivatives of the energy (not the stress)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from scipy.optimize import minimize_scalar

from mlipkit.calculators import Calculator
from mlipkit.cli import main
from mlipkit.errors import InvalidStructure
from mlipkit.properties.elastic import (
    elastic_constants,
    equation_of_state,
    strain_tensor,
    strained,
    stress_3x3,
)
from mlipkit.properties.engines import attach
from mlipkit.units import GPa
from tests.conftest import CU_REF, build_potential, triclinic_cu


def emt_energy(atoms):
    atoms = atoms.copy()
    atoms.calc = EMT()
    return atoms.get_potential_energy()


@pytest.fixture(scope="module")
def cu():
    """EMT Cu at its lattice constant, found by a 1-D minimisation."""
    res = minimize_scalar(lambda a: emt_energy(bulk("Cu", "fcc", a=a)), bracket=(3.5, 3.6, 3.7),
                          tol=1e-10)
    return res.x, bulk("Cu", "fcc", a=res.x)


def energy_curvature(atoms, eps_of, h=1e-3):
    """d²E/de² / V (GPa) for the strain path ε(e), by central differences of energies."""
    e = [emt_energy(strained(atoms, eps_of(x))) for x in (-h, 0.0, h)]
    return (e[0] - 2 * e[1] + e[2]) / h**2 / atoms.get_volume() / GPa


def test_equation_of_state_of_emt_cu(cu):
    a0, atoms = cu
    eos = equation_of_state(bulk("Cu", "fcc", a=3.65), EMT())
    assert (4 * eos.v0 / len(atoms)) ** (1 / 3) == pytest.approx(a0, abs=1e-3)
    # B = V d²E/dV², from energies under isotropic strain: d²E/de² = 9 V B for V(1+e)³
    b = energy_curvature(atoms, lambda x: x * np.eye(3)) / 9
    assert eos.bulk_modulus == pytest.approx(b, rel=0.02)


def test_elastic_constants_of_emt_cu(cu):
    _, atoms = cu
    el = elastic_constants(atoms, EMT())
    c11 = energy_curvature(atoms, lambda x: strain_tensor(0, x))           # E/V = C11 e²/2
    c11_plus_c12 = energy_curvature(atoms, lambda x: strain_tensor(0, x) + strain_tensor(1, x)) / 2
    c44 = energy_curvature(atoms, lambda x: strain_tensor(3, x))           # E/V = C44 γ²/2
    assert el.C[0, 0] == pytest.approx(c11, rel=0.01)
    assert el.C[0, 1] == pytest.approx(c11_plus_c12 - c11, rel=0.01)
    assert el.C[3, 3] == pytest.approx(c44, rel=0.01)
    cubic = np.zeros((6, 6))
    cubic[:3, :3] = el.C[0, 1]
    cubic[np.diag_indices(3)] = el.C[0, 0]
    cubic[3:, 3:] = np.eye(3) * el.C[3, 3]
    np.testing.assert_allclose(el.C, cubic, atol=0.05)  # cubic symmetry, GPa
    m = el.moduli
    assert m["bulk_modulus_GPa"] == pytest.approx((el.C[0, 0] + 2 * el.C[0, 1]) / 3, rel=1e-6)
    assert m["mechanically_stable"]
    assert m["shear_modulus_reuss_GPa"] <= m["shear_modulus_GPa"] <= m["shear_modulus_voigt_GPa"]


def test_model_stress_is_symmetric_on_a_triclinic_cell():
    model = build_potential(["Cu"], [triclinic_cu(seed=s) for s in range(4)], CU_REF,
                            torch.float64)
    sigma, asymmetry = stress_3x3(attach(triclinic_cu(), Calculator(model)))
    assert np.abs(sigma).max() > 1e-4
    assert asymmetry < 1e-12


def test_non_periodic_input_is_refused(tmp_path, capsys):
    with pytest.raises(InvalidStructure, match="periodic in all three"):
        elastic_constants(molecule("H2O"), EMT())
    molecule("CO").write(tmp_path / "co.xyz")
    assert main(["elastic", "emt", str(tmp_path / "co.xyz"), "--out", str(tmp_path)]) == 2
    assert "bulk structure" in capsys.readouterr().err


def test_elastic_cli_reports_model_against_reference(tmp_path):
    bulk("Cu", "fcc", a=3.6).write(tmp_path / "cu.extxyz")
    lj = 'ase.calculators.lj:LennardJones{"sigma": 2.33, "epsilon": 0.409, "rc": 6.0, ' \
         '"smooth": true}'
    out = tmp_path / "out"
    assert main(["--quiet", "elastic", "emt", str(tmp_path / "cu.extxyz"), "--out", str(out),
                 "--reference", lj]) == 0
    result = json.loads((out / "elastic.json").read_text())
    row = result["comparison"]["C11"]
    assert row["model"] == pytest.approx(result["elastic"]["C11"])
    assert row["reference"] == pytest.approx(result["reference"]["elastic"]["C11"])
    assert row["error"] == pytest.approx(row["model"] - row["reference"])
    assert abs(row["error"]) > 10  # LJ is not EMT: the report must show it
    assert result["relaxation"]["converged"]
    assert (out / "elastic.png").exists() and (out / "eos.png").exists()
