"""Vacancies, surfaces and relaxations of EMT Cu against the same quantities
computed directly with ASE in the test (its own slab builder and optimizer)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.optimize import BFGS

from mlipkit.cli import main
from mlipkit.properties.defects import site_classes, vacancy_energies
from mlipkit.properties.surfaces import J_PER_M2, surface_energies

A0 = 3.5900  # EMT Cu lattice constant (tests/properties/test_elastic.py finds it)


def ase_relaxed_energy(atoms, fmax=1e-3):
    atoms = atoms.copy()
    atoms.calc = EMT()
    BFGS(atoms, logfile=None).run(fmax=fmax, steps=500)
    return atoms.get_potential_energy()


@pytest.fixture(scope="module")
def cu32():
    return bulk("Cu", "fcc", a=A0, cubic=True).repeat(2)


def test_vacancy_formation_energy_of_emt_cu(cu32):
    result = vacancy_energies(cu32, EMT(), fmax=1e-3, progress=False)
    assert len(result["sites"]) == 1 and result["sites"][0]["multiplicity"] == 32
    e_perfect = ase_relaxed_energy(cu32)
    defect = cu32.copy()
    del defect[7]
    expected = ase_relaxed_energy(defect) - 31 / 32 * e_perfect
    assert result["mean_formation_energy_eV"] == pytest.approx(expected, abs=2e-3)
    assert result["sites"][0]["relaxation_eV"] < 0  # relaxation lowers the energy


def test_random_alloy_samples_every_distinct_site(cu32):
    alloy = cu32.copy()
    alloy.numbers = np.random.default_rng(0).choice([28, 29], len(alloy))
    classes = site_classes(alloy)
    assert sum(len(c) for c in classes) == len(alloy)
    assert len(classes) > len(alloy) // 2  # a random alloy has few equivalent sites
    mu = {"Cu": -0.1, "Ni": -0.2}
    result = vacancy_energies(alloy, EMT(), chemical_potentials=mu, fmax=1e-3, progress=False)
    assert len(result["sites"]) == len(classes)
    row = result["sites"][3]
    defect = alloy.copy()
    del defect[row["site"]]
    expected = ase_relaxed_energy(defect) - ase_relaxed_energy(alloy) + mu[row["element"]]
    assert row["formation_energy_eV"] == pytest.approx(expected, abs=3e-3)
    assert result["std_formation_energy_eV"] > 0.01


def test_surface_energy_of_emt_cu_111():
    result = surface_energies(bulk("Cu", "fcc", a=A0), EMT(), layers=(3, 4, 5), fmax=1e-3,
                              progress=False)
    e_atom = ase_relaxed_energy(bulk("Cu", "fcc", a=A0))
    slab = fcc111("Cu", size=(1, 1, 5), a=A0, vacuum=10.0)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    expected = (ase_relaxed_energy(slab) - len(slab) * e_atom) / (2 * area) * J_PER_M2
    assert result["slabs"][-1]["surface_energy_J_m2"] == pytest.approx(expected, abs=2e-3)
    assert result["convergence_J_m2"] < 0.01
    assert result["fit_surface_energy_J_m2"] == pytest.approx(expected, abs=0.01)
    assert all(s["surface_energy_J_m2"] <= s["unrelaxed_surface_energy_J_m2"] + 1e-9
               for s in result["slabs"])


def test_property_clis_write_reports(tmp_path, cu32):
    cu32.write(tmp_path / "cu32.extxyz")
    bulk("Cu", "fcc", a=3.62).write(tmp_path / "cu.extxyz")
    rattled = cu32.copy()
    rattled.rattle(0.05, seed=2)
    rattled.write(tmp_path / "rattled.extxyz")
    runs = {
        "vacancy": ["vacancy", "emt", str(tmp_path / "cu32.extxyz"), "--reference", "emt"],
        "surface": ["surface", "emt", str(tmp_path / "cu.extxyz"), "--layers", "3", "4",
                    "--reference", "emt"],
        "relax": ["relax", "emt", str(tmp_path / "rattled.extxyz"), "--compare-optimizers",
                  "--reference", "emt"],
    }
    for name, argv in runs.items():
        out = tmp_path / name
        assert main(["--quiet", *argv, "--out", str(out)]) == 0, name
        result = json.loads((out / f"{name}.json").read_text())
        assert "comparison" in result
    vacancy = json.loads((tmp_path / "vacancy" / "vacancy.json").read_text())
    assert vacancy["comparison"]["mean_formation_energy_eV"]["error"] == pytest.approx(0, abs=1e-9)
    assert (tmp_path / "vacancy" / "vacancy.png").exists()
    surface = json.loads((tmp_path / "surface" / "surface.json").read_text())
    assert [s["layers"] for s in surface["slabs"]] == [3, 4]
    assert (tmp_path / "surface" / "surface.png").exists()
    relax = json.loads((tmp_path / "relax" / "relax.json").read_text())
    assert relax["converged"] and relax["comparison"]["position_rmsd_A"] < 1e-6
    assert set(relax["optimizers"]) == {"bfgs", "lbfgs", "fire"}
    assert (tmp_path / "relax" / "relaxed.extxyz").exists()


def test_bad_property_input_gets_a_clear_error(tmp_path, capsys):
    from ase.build import molecule

    molecule("H2O").write(tmp_path / "water.xyz")
    for command in ("vacancy", "surface", "phonons", "elastic"):
        assert main([command, "emt", str(tmp_path / "water.xyz"), "--out",
                     str(tmp_path / command)]) == 2, command
        assert "periodic" in capsys.readouterr().err
    assert main(["vacancy", "emt", str(tmp_path / "water.xyz"), "--mu", "Cu", "--out",
                 str(tmp_path)]) == 2


def test_unstable_stiffness_has_no_reuss_bound_and_empty_sites_are_refused(cu32):
    from mlipkit.errors import InvalidConfig
    from mlipkit.properties.elastic import moduli

    c = np.diag([100.0, 100.0, 100.0, -5.0, 50.0, 50.0])  # a negative shear stiffness
    m = moduli(c)
    assert not m["mechanically_stable"] and np.isnan(m["bulk_modulus_reuss_GPa"])
    assert m["bulk_modulus_voigt_GPa"] == pytest.approx(100.0 / 3)
    with pytest.raises(InvalidConfig, match="no sites"):
        vacancy_energies(cu32, EMT(), sites=[], progress=False)
