"""Guards, observers and the stability helper."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read

from mlipkit.errors import SimulationUnstable
from mlipkit.md import (
    ForceField,
    Guard,
    Langevin,
    MeanSquaredDisplacement,
    RadialDistribution,
    ThermoLog,
    Trajectory,
    UncertaintyMonitor,
    VelocityVerlet,
    initial_state,
    simulate,
)
from mlipkit.md.stability import max_stable_timestep, spectral_radius, stability
from mlipkit.models import EnsemblePotential
from mlipkit.units import amu_A2_per_fs2
from tests.md.conftest import ARGON_EPSILON, ARGON_SIGMA, LennardJones, argon


def test_guard_names_the_close_atoms_and_keeps_the_last_good_frame(lj, tmp_path):
    atoms = argon(seed=0)
    atoms.positions[7] = atoms.positions[3] + [2.6, 0.0, 0.0]
    state = initial_state(atoms)
    state = state.replace(momenta=state.momenta.clone())
    # atoms 3 and 7 approach each other head-on
    state.momenta[3] = torch.tensor([1.0, 0, 0]) * 0.2 * float(state.masses[3])
    state.momenta[7] = -state.momenta[3]
    with pytest.raises(SimulationUnstable, match=r"atoms too close at replica 0, atoms (3 and 7"
                                                 r"|7 and 3) \(\d\.\d+ Å < 2.0 Å\)") as err:
        simulate(state, VelocityVerlet(), ForceField(lj), 1.0, 200,
                 guard=Guard(min_distance=2.0), directory=tmp_path, progress=False)
    assert "last_good.extxyz" in str(err.value)
    frame = read(tmp_path / "last_good.extxyz")
    d = np.linalg.norm(frame.positions[3] - frame.positions[7])
    assert 2.0 <= d < 2.6


def test_guard_force_limit_and_non_finite(lj):
    """Messages name the replica and the atom within it."""
    atoms = argon(seed=1)
    atoms.positions[1] = atoms.positions[0] + [2.5, 0.0, 0.0]
    with pytest.raises(SimulationUnstable, match=r"force above its limit at replica 1, atom "
                                                 r"[01] \(\d+\.\d+ eV/Å > 1.0 eV/Å\)"):
        simulate(initial_state([argon(seed=0), atoms]), VelocityVerlet(), ForceField(lj), 1.0,
                 1, guard=Guard(max_force=1.0), progress=False)
    state = initial_state([argon(seed=2)] * 3, temperature=50, seed=0)
    state.momenta[2 * 32 + 4, 1] = float("nan")
    with pytest.raises(SimulationUnstable, match="non-finite momenta at replica 2, atom 4"):
        simulate(state, VelocityVerlet(), ForceField(lj), 1.0, 1, progress=False)


def test_uncertainty_guard_and_monitor():
    ensemble = EnsemblePotential([LennardJones(sigma=3.40), LennardJones(sigma=3.45)]).double()
    state = initial_state([argon(seed=0), argon(seed=1)], temperature=40, seed=0)
    monitor = UncertaintyMonitor(interval=5)
    simulate(state, Langevin(40, seed=0), ForceField(ensemble), 5.0, 20, observers=[monitor],
             progress=False)
    times, largest, mean = zip(*monitor.rows)
    assert len(times) == 5 and all(np.all(x > 0) for x in largest)
    assert all(np.all(m <= x) for m, x in zip(mean, largest))
    limit = 0.5 * float(np.min(largest))
    with pytest.raises(SimulationUnstable, match="force uncertainty above its limit"):
        simulate(state, Langevin(40, seed=0), ForceField(ensemble), 5.0, 5,
                 guard=Guard(max_uncertainty=limit), progress=False)


def test_observers_write_thermo_trajectory_rdf_and_msd(lj, tmp_path):
    frames = [argon(seed=0), argon(seed=1)]
    state = initial_state(frames, temperature=40, seed=0)
    rdf, msd = RadialDistribution(r_max=6.0, bins=60, interval=5), MeanSquaredDisplacement(5)
    observers = [ThermoLog(tmp_path / "thermo.csv", interval=10),
                 Trajectory(tmp_path, interval=20), rdf, msd]
    simulate(state, Langevin(40, seed=1), ForceField(lj), 5.0, 40, observers=observers,
             progress=False)
    with open(tmp_path / "thermo.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 5  # steps 0, 10, ..., 40 for two replicas
    assert {r["replica"] for r in rows} == {"0", "1"}
    assert all(float(r["temperature"]) > 0 and float(r["volume"]) > 0 for r in rows)
    traj = read(tmp_path / "trajectory_1.extxyz", index=":")
    assert len(traj) == 3 and len(traj[0]) == len(frames[1])
    assert traj[-1].info["md_step"] == 40
    np.testing.assert_allclose(traj[-1].get_scaled_positions(wrap=False) % 1.0,
                               traj[-1].get_scaled_positions(), atol=1e-12)  # wrapped
    r, g = rdf.result()
    first_peak = r[np.argmax(g)]
    assert abs(first_peak - 5.40 / math.sqrt(2)) < 0.15  # fcc nearest neighbors
    assert g[r < 3.0].max() == 0.0
    # normalisation: 12 neighbors in the first shell of fcc
    width = r[1] - r[0]
    density = len(frames[0]) / frames[0].get_volume()
    shell = r < 4.6
    coordination = np.sum(4 * np.pi * r[shell] ** 2 * density * g[shell] * width)
    assert coordination == pytest.approx(12.0, rel=0.03)
    assert 0 < msd.values[-1].max() < 0.5  # atoms vibrate about their sites


def test_stability_of_the_argon_dimer_matches_its_vibration():
    lj = LennardJones().double()
    r0 = 2 ** (1 / 6) * ARGON_SIGMA
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [r0, 0, 0]])
    report = stability(lj, dimer, timestep=5.0)
    # V''(r0) = 36·2^(2/3) ε/σ²; reduced mass m/2
    k = 36 * 2 ** (2 / 3) * ARGON_EPSILON / ARGON_SIGMA**2
    omega = math.sqrt(k / (0.5 * dimer.get_masses()[0]) / amu_A2_per_fs2)
    assert report.omega_max == pytest.approx(omega, rel=1e-6)
    assert report.max_timestep == pytest.approx(2 / omega, rel=1e-6)
    assert report.stable and report.spectral_radius == pytest.approx(1.0, abs=1e-9)
    # BAOAB: the same limit; friction damps below it
    assert max_stable_timestep(omega, 0.01, "baoab") == pytest.approx(2 / omega, rel=1e-6)
    assert spectral_radius(omega, 1.0 / omega, 0.01, "baoab") < 1.0

    # and MD agrees: just below the limit the vibration stays bounded, just above it
    # explodes (the atoms collide or fly apart)
    def amplitude(dt, steps=400):
        atoms = dimer.copy()
        atoms.positions[1, 0] += 0.01
        try:
            state = simulate(initial_state(atoms, remove_com=False), VelocityVerlet(),
                             ForceField(lj), dt, steps, progress=False,
                             guard=Guard(min_distance=2.0))
        except SimulationUnstable:
            return math.inf
        return abs(float(state.positions[1, 0] - state.positions[0, 0]) - r0)

    assert amplitude(0.95 * report.max_timestep) < 0.05
    assert amplitude(1.05 * report.max_timestep) > 1.0


def test_a_fitted_linear_model_feeds_the_uncertainty_guard():
    """MD with a Bayesian linear model: every step carries its posterior force
    spread (the model's own), and the guard stops on it."""
    from ase.build import molecule

    from mlipkit.data import from_atoms
    from mlipkit.models.linear import BayesianLinear
    from tests.models.test_linear import SPECIES, _batches, _model, _teacher_data

    teacher = _model(seed=4)
    model = BayesianLinear(SPECIES, cutoff=4.0, params={"n_radial": 3, "l_max": 2}).double()
    model.scale.copy_(teacher.scale)
    train = _batches(30, seed=100)
    model.fit(train, *_teacher_data(teacher, train, 0.01, 0.02, seed=1))
    state = initial_state(molecule("CH3CH2OH"), temperature=100, seed=0)
    field = ForceField(model)
    state = field.evaluate(state)
    expected = model.predictive_std(from_atoms(molecule("CH3CH2OH")))["forces_std"]
    torch.testing.assert_close(state.outputs["forces_std"], expected)
    limit = 0.5 * float(torch.linalg.vector_norm(expected, dim=-1).max())
    with pytest.raises(SimulationUnstable, match="force uncertainty above its limit"):
        simulate(state, Langevin(100, seed=0), field, 0.5, 3, guard=Guard(max_uncertainty=limit),
                 progress=False)
