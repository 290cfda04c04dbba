"""Phonons through phonopy against a dynamical matrix built by hand, harmonic
thermodynamics against direct sums over the mesh, and `mlipkit phonons`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase import units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.io import write
from scipy.optimize import minimize_scalar

from mlipkit.cli import main
from mlipkit.errors import InvalidConfig, InvalidStructure
from mlipkit.properties.phonons import compare_phonons, phonons
from mlipkit.properties.plots import phonon_bands_plot

# sqrt(eV/Å²/amu) as an angular frequency, in THz (cycles per ps)
THZ = np.sqrt(units._e / units._amu) * 1e10 / (2.0 * np.pi * 1e12)
H_EV_S = 2.0 * np.pi * units._hbar / units._e  # Planck's constant, eV·s


@pytest.fixture(scope="module")
def cu():
    """Primitive fcc Cu at the EMT equilibrium lattice constant (≈ 3.59 Å)."""

    def energy(a):
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = EMT()
        return atoms.get_potential_energy()

    a = minimize_scalar(energy, bounds=(3.4, 3.8), method="bounded",
                        options={"xatol": 1e-6}).x
    assert abs(a - 3.59) < 0.02
    return bulk("Cu", "fcc", a=a)


@pytest.fixture(scope="module")
def cu_phonons(cu):
    # 2x2x2 makes Γ, X and L commensurate: the supercell's force constants
    # give their frequencies exactly, with no interpolation to disagree on.
    return phonons(cu, EMT(), supercell=(2, 2, 2), mesh=(12, 12, 12), t_max=2000.0,
                   progress=False)


def hand_frequencies(atoms, q, primitive_cell, repeat=2, delta=0.01):
    """[3] THz at q (fractional coordinates of the reciprocal lattice of
    ``primitive_cell``) for a one-atom cell, numpy only: central-difference force
    constants Φ(0α, jβ) of a repeat³ supercell, D(q) = Σ_j Φ e^{iq·r_0j} / m."""
    sc = atoms * (repeat, repeat, repeat)
    sc.calc = EMT()
    x0 = sc.get_positions()
    phi = np.zeros((len(sc), 3, 3))
    for alpha in range(3):
        forces = []
        for sign in (1.0, -1.0):
            x = x0.copy()
            x[0, alpha] += sign * delta
            sc.set_positions(x)
            forces.append(sc.get_forces())
        phi[:, alpha, :] = -(forces[0] - forces[1]) / (2.0 * delta)
    q_cart = 2.0 * np.pi * np.linalg.inv(primitive_cell) @ np.asarray(q)
    d = np.einsum("j,jab->ab", np.exp(1j * (x0 - x0[0]) @ q_cart), phi) / atoms.get_masses()[0]
    eig = np.linalg.eigvalsh(0.5 * (d + d.conj().T))
    return np.sign(eig) * np.sqrt(np.abs(eig)) * THZ


def test_frequencies_match_a_hand_built_dynamical_matrix(cu, cu_phonons):
    assert cu_phonons.path == "GXWKGLUWLK,UX"
    assert np.abs(cu_phonons.special_frequencies["G"]).max() < 1e-3  # acoustic sum rule
    assert cu_phonons.sum_rule_residual < 1e-6  # EMT forces sum to zero already
    for name in ("X", "L"):
        q = cu_phonons.special_points[name]
        expected = hand_frequencies(cu, q, cu_phonons.primitive_cell)
        # phonopy displaces along [011], the hand code along x, y, z: they differ by O(δ²)
        np.testing.assert_allclose(cu_phonons.special_frequencies[name], expected, atol=2e-3)
    # transverse modes are degenerate at X and L; longitudinal is the highest
    x = cu_phonons.special_frequencies["X"]
    assert abs(x[0] - x[1]) < 1e-6 and x[2] > x[1] + 1.0
    assert cu_phonons.lowest_frequency > -1e-3


def test_tetragonal_cell_with_multi_letter_special_points(cu, cu_phonons, tmp_path):
    strained = cu.copy()
    strained.set_cell(cu.cell.array * [1.0, 1.0, 1.03], scale_atoms=True)  # fcc -> bct
    r = phonons(strained, EMT(), supercell=(2, 2, 2), mesh=(6, 6, 6), progress=False)
    assert {"S1", "Y1"} <= set(r.special_points)
    assert all(a in r.special_points and b in r.special_points for a, b in r.segments)
    commensurate = [name for name, q in r.special_points.items() if np.allclose(2 * q,
                                                                                np.rint(2 * q))]
    assert set(commensurate) >= {"G", "X", "Z", "N"}
    for name in commensurate:
        # phonopy 4 picks its own basis for this primitive cell; q refers to that basis
        expected = hand_frequencies(strained, r.special_points[name], r.primitive_cell)
        np.testing.assert_allclose(r.special_frequencies[name], expected, atol=2e-3)
    assert phonon_bands_plot(r, tmp_path / "bands.png").stat().st_size > 0
    with pytest.raises(InvalidConfig, match="different crystals"):
        compare_phonons(r, cu_phonons)


def test_same_crystal_at_another_lattice_constant_compares(cu, cu_phonons):
    """Model and reference each at their own equilibrium: same path, other cell."""
    expanded = cu.copy()
    expanded.set_cell(cu.cell.array * 1.01, scale_atoms=True)
    r = phonons(expanded, EMT(), supercell=(2, 2, 2), mesh=(6, 6, 6), progress=False)
    errors = compare_phonons(r, cu_phonons)
    assert errors["frequencies_THz"]["X"]["max_abs_error"] > 0.05  # softer when expanded
    assert np.all(errors["frequencies_THz"]["X"]["error"] < 0)


def test_conventional_cell_gives_the_same_phonons(cu, cu_phonons):
    cubic = bulk("Cu", "fcc", a=cu.cell.lengths()[0] * np.sqrt(2.0), cubic=True)
    found = phonons(cubic, EMT(), supercell=(2, 2, 2), mesh=(12, 12, 12), progress=False)
    assert found.primitive_atoms == 1 and found.path == cu_phonons.path
    for name in ("G", "X", "L"):  # commensurate with both supercells
        np.testing.assert_allclose(found.special_frequencies[name],
                                   cu_phonons.special_frequencies[name], atol=2e-3)
    # taken as its own primitive cell, the cube folds the three X points onto Γ
    folded = phonons(cubic, EMT(), supercell=(2, 2, 2), mesh=(6, 6, 6), primitive_matrix=None,
                     progress=False)
    assert folded.primitive_atoms == 4 and folded.path.startswith("GXMG")
    x = found.special_frequencies["X"]  # same supercell, same force constants
    np.testing.assert_allclose(folded.special_frequencies["G"],
                               np.sort(np.concatenate([[0.0, 0.0, 0.0], x, x, x])), atol=1e-6)
    # thermal properties are per atom whatever the cell (up to the q-point sampling)
    t = np.searchsorted(folded.temperatures, 300.0)
    assert folded.zero_point_energy == pytest.approx(found.zero_point_energy, rel=5e-3)
    assert folded.heat_capacity[t] == pytest.approx(found.heat_capacity[t], rel=5e-3)
    assert folded.free_energy[t] == pytest.approx(found.free_energy[t], abs=1e-3)  # eV


def test_thermal_properties_are_harmonic(cu_phonons):
    r = cu_phonons
    assert abs(r.heat_capacity[-1] / units.kB - 3.0) < 0.01  # Dulong–Petit at 2000 K
    assert r.heat_capacity[0] == 0.0 and r.entropy[0] == 0.0
    nu = r.mesh_frequencies.reshape(-1) * 1e12
    w = np.repeat(r.mesh_weights, r.mesh_frequencies.shape[1]) / r.mesh_weights.sum()
    keep = nu > 1e9  # the three acoustic modes at Γ carry no heat
    nu, w = nu[keep], w[keep]
    for temperature in (50.0, 300.0, 1000.0):
        i = int(np.argmin(np.abs(r.temperatures - temperature)))
        kt = units.kB * r.temperatures[i]
        x = H_EV_S * nu / kt
        free = np.sum(w * (0.5 * x * kt + kt * np.log1p(-np.exp(-x))))
        entropy = units.kB * np.sum(w * (x / np.expm1(x) - np.log1p(-np.exp(-x))))
        cv = units.kB * np.sum(w * x**2 * np.exp(x) / np.expm1(x) ** 2)
        np.testing.assert_allclose([r.free_energy[i], r.entropy[i], r.heat_capacity[i]],
                                   [free, entropy, cv], rtol=1e-5)
    assert r.zero_point_energy == pytest.approx(np.sum(w * 0.5 * H_EV_S * nu), rel=1e-5)
    # S = -dF/dT, by central differences where S is smooth on the 10 K grid
    hot = r.temperatures >= 100.0
    t, f, s = r.temperatures[hot], r.free_energy[hot], r.entropy[hot]
    np.testing.assert_allclose(-np.diff(f) / np.diff(t), 0.5 * (s[1:] + s[:-1]), rtol=1e-3)


def test_comparison_of_identical_results_is_zero(cu_phonons):
    report = compare_phonons(cu_phonons, cu_phonons)
    assert report["max_abs_error_THz"] == 0.0 and report["band_rms_error_THz"] == 0.0
    assert all(row["error"] == 0.0 for row in report["thermal"].values())


def test_molecule_is_rejected():
    with pytest.raises(InvalidStructure, match="periodic in all three directions"):
        phonons(molecule("H2O"), EMT(), progress=False)


def test_cli_writes_report_and_plots(cu, cu_phonons, tmp_path):
    structure = tmp_path / "cu.extxyz"
    write(structure, cu)
    out = tmp_path / "out"
    code = main(["--quiet", "phonons", "emt", str(structure), "--reference", "emt",
                 "--out", str(out), "--supercell", "2", "2", "2", "--mesh", "8", "8", "8",
                 "--tmax", "500"])
    assert code == 0
    for name in ("phonons.json", "bands.png", "dos.png", "thermal.png", "band.csv",
                 "dos.csv", "thermal.csv"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "phonons.json").read_text())
    assert report["model"] == report["reference"] == "EMT"
    np.testing.assert_allclose(report["frequencies_THz"]["X"],
                               cu_phonons.special_frequencies["X"], atol=1e-8)
    assert report["thermal"]["temperature_K"] == 300.0
    comparison = report["comparison"]
    assert comparison["max_abs_error_THz"] == 0.0
    assert all(max(abs(e) for e in row["error"]) == 0.0
               for row in comparison["frequencies_THz"].values())
    assert all(row["error"] == 0.0 for row in comparison["thermal"].values())


@pytest.mark.parametrize("structure, options, message", [
    ("molecule", [], "periodic in all three directions"),
    ("crystal", ["--supercell", "0", "2", "2"], "supercell"),
    ("crystal", ["--tmax", "100"], "--tmax"),
])
def test_cli_rejects_bad_input(cu, tmp_path, capsys, structure, options, message):
    path = tmp_path / "input.extxyz"
    write(path, molecule("H2O") if structure == "molecule" else cu)
    code = main(["--quiet", "phonons", "emt", str(path), "--out", str(tmp_path / "out"),
                 *options])
    assert code == 2
    assert message in capsys.readouterr().err
