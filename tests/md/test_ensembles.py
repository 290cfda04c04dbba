"""Sampled ensembles against statistical mechanics.

Canonical: the kinetic energy of N_f degrees of freedom has mean N_f kT/2 and
variance N_f (kT)²/2; every velocity component is Gaussian with variance
kT/m. Isothermal–isobaric: the mean volume at zero pressure equals the volume
at which the canonical mean pressure vanishes (to O(1/N)).
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from scipy import stats

from mlipkit.md import (
    Bussi,
    ForceField,
    Langevin,
    NoseHooverChain,
    StochasticCellRescaling,
    initial_state,
)
from mlipkit.units import GPa, amu_A2_per_fs2, kB
from tests.md.conftest import LennardJones, NoInteraction, argon

T = 60.0  # K: solid argon
DT = 5.0  # fs
REPLICAS = 12


@pytest.fixture(scope="module")
def lj7():
    return LennardJones(cutoff=7.0).double()


def _sample(state, integrator, ff, equilibrate, steps, every, observe):
    state = integrator.init(ff.evaluate(state))
    for _ in range(equilibrate):
        state = integrator.step(state, ff, DT)
    samples = []
    for k in range(steps):
        state = integrator.step(state, ff, DT)
        if (k + 1) % every == 0:
            samples.append(observe(state))
    return state, np.array(samples)


@pytest.mark.parametrize("make", [
    lambda: Langevin(T, friction=0.01, seed=3),
    lambda: Bussi(T, tau=100, seed=3),
    lambda: NoseHooverChain(T, tau=100),
], ids=["langevin", "bussi", "nose-hoover"])
def test_canonical_kinetic_energy_and_velocities(make, lj7, one_thread):
    frames = [argon(seed=s) for s in range(REPLICAS)]
    state = initial_state(frames, temperature=2 * T, seed=5)
    ff = ForceField(lj7, skin=0.5)

    def observe(s):
        return s.kinetic_energy().numpy().copy()

    state, kinetic = _sample(state, make(), ff, 600, 2400, 8, observe)  # [samples, replicas]
    kT = kB * T
    dof = float(state.degrees_of_freedom()[0])
    # mean: each replica's time average is an independent estimate
    per_replica = kinetic.mean(0) / (0.5 * dof * kT)
    se = per_replica.std(ddof=1) / np.sqrt(REPLICAS)
    assert abs(per_replica.mean() - 1.0) < max(4 * se, 0.005), (per_replica.mean(), se)
    # variance of the kinetic energy: N_f (kT)^2 / 2, within the sampling error
    var_ratio = kinetic.var(0, ddof=1).mean() / (0.5 * dof * kT**2)
    assert abs(var_ratio - 1.0) < 0.15, var_ratio
    # Maxwell–Boltzmann: scaled velocity components are standard normal
    v = (state.momenta / state.masses.unsqueeze(-1)).numpy()
    sigma = np.sqrt(kT / amu_A2_per_fs2 / state.masses.numpy())
    z = (v / sigma[:, None]).ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.var() - dof / (3 * len(frames[0]))) < 0.1


def _mean_pressure(lj7, lattice):
    frames = [argon(a=lattice, seed=s) for s in range(6)]
    state = initial_state(frames, temperature=T, seed=1)
    ff = ForceField(lj7, skin=0.5, stress=True)
    _, p = _sample(state, Bussi(T, tau=100, seed=4), ff, 300, 1200, 4,
                   lambda s: s.pressure().numpy().copy())
    return p.mean()


def test_npt_volume_matches_zero_pressure_volume(lj7, one_thread):
    """Stochastic cell rescaling at P = 0 against the volume where the NVT
    mean pressure is zero (interpolated between three lattice constants)."""
    lattices = np.array([5.40, 5.47, 5.54])
    pressures = np.array([_mean_pressure(lj7, a) for a in lattices])
    assert pressures[0] > 0 > pressures[-1]
    fit = np.polyfit(lattices, pressures, 2)
    roots = [r.real for r in np.roots(fit) if abs(r.imag) < 1e-12 and 5.3 < r.real < 5.7]
    v_zero = (roots[0] ** 3) * 8  # 2x2x2 cubic cells

    frames = [argon(a=5.42, seed=s) for s in range(8)]  # compressed start
    state = initial_state(frames, temperature=T, seed=2)
    ff = ForceField(lj7, skin=0.5, stress=True)
    baro = StochasticCellRescaling(T, pressure=0.0, tau=100, tau_p=500,
                                   compressibility=1 / (3 * GPa), seed=6)
    state, volumes = _sample(state, baro, ff, 600, 2400, 8, lambda s: s.volume().numpy().copy())
    per_replica = volumes.mean(0)
    se = per_replica.std(ddof=1) / np.sqrt(len(frames))
    assert abs(per_replica.mean() / v_zero - 1) < max(4 * se / v_zero, 0.005), \
        (per_replica.mean(), v_zero, se)
    # fluctuations: <δV²> = kT <V> κ_T, with κ_T = -1/(V dP/dV) from the same fit
    a0 = roots[0]
    dp_dv = np.polyval(np.polyder(fit), a0) / (24 * a0**2)
    expected = kB * T * v_zero * (-1.0 / (v_zero * dp_dv))
    measured = volumes.var(0, ddof=1).mean()
    assert 0.65 < measured / expected < 1.5, (measured, expected)
    # atoms stay on their lattice sites as the cell breathes: no atom strays
    # more than 1 Å from its scaled starting site
    start = initial_state(frames).positions.numpy()
    scale = (state.volume().numpy() / (8 * 5.42**3)) ** (1 / 3)
    sites = start * np.repeat(scale, len(frames[0]))[:, None]
    assert np.linalg.norm(state.positions.numpy() - sites, axis=1).max() < 1.0


@pytest.mark.parametrize("remove_com", [True, False])
def test_npt_ideal_gas_volume(remove_com):
    """N free atoms at pressure P: the volume is Gamma-distributed with mean
    NkT/P when the centre-of-mass momentum is removed, (N+1)kT/P otherwise
    (a 25 % difference for N = 4)."""
    n, pressure, temperature = 4, 0.001, 300.0  # eV/Å³, K: ⟨V⟩ ≈ 100 Å³
    frames = [Atoms("Ar4", cell=np.eye(3) * 4.7, pbc=True,
                    scaled_positions=np.random.default_rng(s).random((n, 3)))
              for s in range(128)]
    state = initial_state(frames, temperature=temperature, seed=1, remove_com=remove_com)
    ff = ForceField(NoInteraction().double(), skin=0.5, stress=True)
    baro = StochasticCellRescaling(temperature, pressure=pressure, tau=50, tau_p=1000,
                                   compressibility=1 / pressure, seed=2)
    _, volumes = _sample(state, baro, ff, 500, 3000, 10, lambda s: s.volume().numpy().copy())
    expected = (n if remove_com else n + 1) * kB * temperature / pressure
    se = volumes.mean(0).std(ddof=1) / np.sqrt(len(frames))
    assert abs(volumes.mean() - expected) < max(4 * se, 0.02 * expected), \
        (volumes.mean(), expected, se)
    assert 4 * se < 0.1 * expected  # precise enough to tell N from N + 1
