"""ZBL repulsion against physics: the bare Coulomb limit, an independent
implementation of the published universal potential, the switch-off, finite
differences and monotonic repulsion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.constants as sc
import torch
from ase import Atoms
from ase.build import molecule
from ase.data import atomic_numbers, covalent_radii
from ase.units import Bohr, Hartree

from mlipkit.data import Batch, from_atoms
from mlipkit.physics import ZBL
from mlipkit.testing import assert_forces_match_fd, assert_stress_matches_fd

# e²/4πε₀ in eV·Å, in the unit system mlipkit takes from ASE
KE = Hartree * Bohr
INNER, OUTER = 0.5, 0.8  # ZBL() defaults
PAIRS = [("H", "H"), ("C", "O"), ("Si", "Si"), ("Cu", "Cu"), ("H", "Au")]


# -- an independent reference -----------------------------------------------------
def zbl_reference(r, z1, z2):
    """Unswitched ZBL universal potential (Ziegler, Biersack, Littmark 1985), eV."""
    r = np.asarray(r, dtype=np.float64)
    a = 0.46850 / (z1**0.23 + z2**0.23)
    x = r / a
    phi = (0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x)
           + 0.28022 * np.exp(-0.40290 * x) + 0.02817 * np.exp(-0.20162 * x))
    return KE * z1 * z2 / r * phi


def zbl_reference_derivative(r, z1, z2):
    """dE/dr of :func:`zbl_reference`."""
    r = np.asarray(r, dtype=np.float64)
    a = 0.46850 / (z1**0.23 + z2**0.23)
    x = r / a
    terms = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))
    phi = sum(c * np.exp(-k * x) for c, k in terms)
    dphi = sum(-c * k * np.exp(-k * x) for c, k in terms) / a
    return KE * z1 * z2 * (dphi / r - phi / r**2)


def bond(s1, s2):
    return covalent_radii[atomic_numbers[s1]] + covalent_radii[atomic_numbers[s2]]


def dimer(s1, s2, r):
    return Atoms([s1, s2], positions=[[0.0, 0.0, 0.0], [r, 0.0, 0.0]])


def dimers_energy_forces(pot, s1, s2, distances):
    """Energy [n] and the x-force on the second atom [n] of many dimers, as one batch."""
    batch = Batch.collate([from_atoms(dimer(s1, s2, r), torch.float64) for r in distances])
    out = pot(batch, forces=True)
    return out["energy"].numpy(), out["forces"][1::2, 0].numpy(), out


@pytest.fixture(scope="module")
def zbl():
    return ZBL().double()


def test_coulomb_constant():
    assert KE == pytest.approx(14.399645, rel=1e-7)
    assert KE == pytest.approx(sc.e / (4 * sc.pi * sc.epsilon_0) / sc.angstrom, rel=1e-7)


# -- (a) bare nuclear Coulomb repulsion at tiny separations --------------------------
# φ(x) = 1 - 1.21·x + O(x²) with x = r/a, and a ≈ 0.1 Å for Cu–Cu or W–W: those
# heavier pairs reach 1e-3 only at r = 1e-5 Å.
@pytest.mark.parametrize("s1,s2,r", [("H", "H", 1e-4), ("C", "O", 1e-4), ("Si", "Si", 1e-4),
                                     ("H", "Au", 1e-4), ("Cu", "Cu", 1e-5), ("W", "W", 1e-5)])
def test_unscreened_limit(zbl, s1, s2, r):
    z1, z2 = atomic_numbers[s1], atomic_numbers[s2]
    energy, force, _ = dimers_energy_forces(zbl, s1, s2, [r])
    ratio = energy[0] * r / (z1 * z2 * 14.399645)
    assert ratio == pytest.approx(1.0, rel=1e-3)
    # the screening only ever reduces the repulsion, by the first-order amount
    a = 0.46850 / (z1**0.23 + z2**0.23)
    assert 1.0 - 1.22 * r / a < energy[0] * r / (z1 * z2 * KE) < 1.0
    # and the force approaches Coulomb's Z1 Z2 e²/r² too
    assert force[0] * r**2 / (z1 * z2 * KE) == pytest.approx(1.0, rel=1e-3)


# -- (b) the published formula below the switching region ----------------------------
@pytest.mark.parametrize("s1,s2", PAIRS + [("W", "W"), ("O", "H")])
def test_matches_universal_formula_below_switch(zbl, s1, s2):
    z1, z2 = atomic_numbers[s1], atomic_numbers[s2]
    r = np.linspace(0.01, INNER * bond(s1, s2), 60)[:-1]
    energy, force, out = dimers_energy_forces(zbl, s1, s2, r)
    np.testing.assert_allclose(energy, zbl_reference(r, z1, z2), rtol=1e-10, atol=0)
    # F on the second atom (at +r x̂) = -dE/dr
    np.testing.assert_allclose(force, -zbl_reference_derivative(r, z1, z2), rtol=1e-9, atol=0)
    # the pair energy is split evenly between the two atoms
    atomic = out["atomic_energies"].numpy().reshape(-1, 2)
    np.testing.assert_allclose(atomic[:, 0], atomic[:, 1], rtol=1e-14)


def test_switch_lies_between_zero_and_bare_zbl(zbl):
    s1, s2 = "C", "O"
    d = bond(s1, s2)
    r = np.linspace(INNER * d, OUTER * d, 50)[1:-1]
    energy, _, _ = dimers_energy_forces(zbl, s1, s2, r)
    bare = zbl_reference(r, atomic_numbers[s1], atomic_numbers[s2])
    assert np.all(energy > 0)
    assert np.all(energy < bare)
    # the switch fraction falls monotonically from 1 to 0
    assert np.all(np.diff(energy / bare) < 0)


# -- (c) nothing beyond the switch-off --------------------------------------------------
@pytest.mark.parametrize("s1,s2", PAIRS)
def test_zero_beyond_switch_off(zbl, s1, s2):
    off = OUTER * bond(s1, s2)
    r = np.concatenate([[off + 1e-6, off + 1e-3], np.linspace(off + 0.01, zbl.cutoff + 1.0, 20)])
    energy, _, out = dimers_energy_forces(zbl, s1, s2, r)
    assert np.all(energy == 0.0)
    assert torch.all(out["forces"] == 0.0)
    assert torch.all(out["atomic_energies"] == 0.0)


def test_zero_beyond_switch_off_in_a_crystal(zbl):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))  # nearest neighbours 2.55 Å > 0.8·2.64
    atoms.rattle(0.01, seed=0)
    out = zbl(from_atoms(atoms, torch.float64), forces=True, stress=True)
    assert float(out["energy"][0]) == 0.0
    assert torch.all(out["forces"] == 0.0)
    assert torch.all(out["stress"] == 0.0)


def test_cutoff_covers_every_switch_off(zbl):
    assert zbl.capabilities.cutoff >= OUTER * 2 * covalent_radii.max()
    assert zbl.capabilities.species is None


# -- (d) forces are the gradient of the energy -----------------------------------------
def compressed_water(scale):
    atoms = molecule("H2O")
    atoms.set_positions(atoms.get_positions() * scale)
    return atoms


def cu3():
    # sides 1.50, 1.70, 1.91 Å: all inside Cu–Cu's switch (1.32 .. 2.11 Å)
    return Atoms("Cu3", positions=[[0, 0, 0], [1.5, 0, 0], [0.5, 1.6, 0.3]])


def _pairs_in_switch(atoms):
    d = atoms.get_all_distances()
    n = len(atoms)
    inside = []
    for i in range(n):
        for j in range(i + 1, n):
            b = bond(atoms[i].symbol, atoms[j].symbol)
            inside.append(INNER * b < d[i, j] < OUTER * b)
    return inside


def test_forces_match_finite_differences(zbl):
    atoms = cu3()
    assert all(_pairs_in_switch(atoms))
    assert_forces_match_fd(zbl, atoms, delta=1e-4, tol=1e-5)


def _energy(pot, atoms):
    return float(pot(from_atoms(atoms, torch.float64), forces=False)["energy"][0])


@pytest.mark.parametrize("scale", [0.4, 0.65, 0.75], ids=["below-inner", "in-switch", "near-off"])
def test_forces_match_five_point_differences_when_steep(zbl, scale):
    """Compressed water. For O–H the switch spans only 0.29 Å on top of ~10 eV,
    so the third derivative of E is ~1e4 eV/Å³ and central differences at
    δ = 1e-4 carry a truncation error of 1-2e-5 eV/Å (it falls 4x when δ
    halves). A five-point stencil at the same δ is far more accurate."""
    atoms = compressed_water(scale)
    if scale > 0.5:
        assert any(_pairs_in_switch(atoms))
    forces = zbl(from_atoms(atoms, torch.float64), forces=True)["forces"].numpy()
    delta = 1e-4
    pos0 = atoms.get_positions()
    fd = np.zeros_like(pos0)
    work = atoms.copy()
    for a in range(len(atoms)):
        for k in range(3):
            e = {}
            for m in (-2, -1, 1, 2):
                pos = pos0.copy()
                pos[a, k] += m * delta
                work.set_positions(pos)
                e[m] = _energy(zbl, work)
            fd[a, k] = -(-e[2] + 8 * e[1] - 8 * e[-1] + e[-2]) / (12 * delta)
    assert np.abs(forces).max() > 1.0
    np.testing.assert_allclose(forces, fd, rtol=0, atol=1e-5)
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-10)  # Newton's third law


def test_periodic_forces_match_finite_differences(zbl):
    # a small triclinic cell in which an atom is close to its own periodic image
    # (C–C image at 1.1 Å, C–O at 0.81 Å: both inside their switches)
    cell = np.array([[1.1, 0.0, 0.0], [0.4, 2.6, 0.0], [0.3, 0.4, 2.8]])
    atoms = Atoms("CO", positions=[[0.1, 0.2, 0.3], [0.6, 0.7, 0.7]], cell=cell, pbc=True)
    assert _energy(zbl, atoms) > 0
    assert_forces_match_fd(zbl, atoms, delta=1e-4, tol=1e-5)
    assert_stress_matches_fd(zbl, atoms, delta=1e-5, tol=1e-6)


# -- (e) repulsive everywhere ----------------------------------------------------------
def test_energy_decreases_monotonically_for_carbon(zbl):
    off = OUTER * bond("C", "C")
    r = np.linspace(0.05, off, 1500)[:-1]
    energy, force, _ = dimers_energy_forces(zbl, "C", "C", r)
    assert np.all(energy > 0)
    assert np.all(np.diff(energy) < 0)
    assert np.all(force > 0)  # the second atom is pushed away along +x


# -- (f) bad parameters ----------------------------------------------------------------
@pytest.mark.parametrize("inner,outer", [(0.9, 0.5), (0.5, 0.5), (0.0, 0.8), (-0.1, 0.8)])
def test_bad_switch_raises(inner, outer):
    with pytest.raises(ValueError):
        ZBL(inner=inner, outer=outer)


def test_float32_agrees_with_float64():
    atoms = cu3()
    e64 = ZBL().double()(from_atoms(atoms, torch.float64), forces=True)
    e32 = ZBL().float()(from_atoms(atoms, torch.float32), forces=True)
    np.testing.assert_allclose(e32["energy"].double().numpy(), e64["energy"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(e32["forces"].double().numpy(), e64["forces"].numpy(),
                               rtol=1e-4, atol=1e-4)


def test_imports_first_and_alone():
    """`mlipkit.physics` imported before anything else (the model registry imports it)."""
    subprocess.run([sys.executable, "-c", "from mlipkit.physics import ZBL; ZBL()"], check=True)


def test_no_pair_in_range_gives_zero_derivatives():
    """Beyond every switch-off nothing is left to differentiate: forces and
    Hessian are zero, not an error."""
    out = ZBL().double()(from_atoms(molecule("CH3CH2OH")), forces=True, hessian=True)
    assert float(out["energy"]) == 0.0
    assert not out["forces"].any() and not out["hessian"].any()
