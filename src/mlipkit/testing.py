"""Reusable physics assertions for any potential (DESIGN.md §5).

Each ``assert_*`` function evaluates a potential on ASE structures, compares
it with physics (finite differences, symmetry, conservation, an independent
reference) and raises ``AssertionError`` with the measured deviation when a
threshold is exceeded. Each returns the measured deviation so that callers
can report it. Default thresholds follow the potential's dtype.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as _ASECalculator
from ase.calculators.fd import calculate_numerical_stress
from scipy.spatial.transform import Rotation

from mlipkit.calculators import Calculator
from mlipkit.data.batch import Batch
from mlipkit.data.convert import from_atoms
from mlipkit.models.base import Potential

# tolerances per dtype; float64 values are DESIGN.md §5's
TOLERANCES = {
    torch.float64: dict(fd_force=1e-5, fd_delta=1e-4, fd_stress=1e-6, stress_delta=1e-5,
                        invariance=1e-10, smooth=1e-6, extensive=1e-10, supercell_rel=1e-8,
                        batch=1e-10),
    torch.float32: dict(fd_force=5e-3, fd_delta=1e-2, fd_stress=2e-3, stress_delta=1e-3,
                        invariance=1e-4, smooth=1e-4, extensive=1e-4, supercell_rel=1e-5,
                        batch=1e-4),
}


def tolerance(potential: Potential, name: str) -> float:
    return TOLERANCES[potential.dtype][name]


def evaluate(potential: Potential, atoms: Atoms, forces: bool = True, stress: bool = False):
    """Energy (float), forces [N,3] and stress [3,3] as float64 numpy arrays."""
    out = potential(from_atoms(atoms, potential.dtype), forces=forces, stress=stress)
    e = float(out["energy"][0])
    f = out["forces"].detach().double().cpu().numpy() if forces else None
    s = out["stress"][0].detach().double().cpu().numpy() if stress else None
    return e, f, s


def _check(value: float, tol: float, what: str) -> float:
    if not value <= tol:
        raise AssertionError(f"{what}: deviation {value:.3e} exceeds {tol:.1e}")
    return value


def assert_forces_match_fd(potential: Potential, atoms: Atoms, delta: float | None = None,
                           tol: float | None = None) -> float:
    """Forces equal central differences of the energy: max |F - F_fd| (eV/Å)."""
    delta = delta or tolerance(potential, "fd_delta")
    tol = tol or tolerance(potential, "fd_force")
    _, forces, _ = evaluate(potential, atoms)
    fd = np.zeros_like(forces)
    work = atoms.copy()
    pos0 = atoms.get_positions()
    for a in range(len(atoms)):
        for k in range(3):
            energies = []
            for sign in (1, -1):
                pos = pos0.copy()
                pos[a, k] += sign * delta
                work.set_positions(pos)
                energies.append(evaluate(potential, work, forces=False)[0])
            fd[a, k] = -(energies[0] - energies[1]) / (2 * delta)
    return _check(np.abs(forces - fd).max(), tol, "forces vs finite differences")


def assert_stress_matches_fd(potential: Potential, atoms: Atoms, delta: float | None = None,
                             tol: float | None = None) -> float:
    """Stress equals (1/V) dE/dε by central differences over symmetric strains (eV/Å³)."""
    delta = delta or tolerance(potential, "stress_delta")
    tol = tol or tolerance(potential, "fd_stress")
    _, _, stress = evaluate(potential, atoms, forces=False, stress=True)
    volume = atoms.get_volume()
    cell0 = atoms.cell.array.copy()
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * sign * delta
                eps[b, a] += 0.5 * sign * delta
                work = atoms.copy()
                work.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
                energies.append(evaluate(potential, work, forces=False)[0])
            fd[a, b] = (energies[0] - energies[1]) / (2 * delta * volume)
    return _check(np.abs(stress - fd).max(), tol, "stress vs finite differences")


def assert_invariance(potential: Potential, atoms: Atoms, tol: float | None = None,
                      seed: int = 0) -> float:
    """E is invariant and F equivariant under rotation, translation and permutation."""
    tol = tol or tolerance(potential, "invariance")
    rng = np.random.default_rng(seed)
    e0, f0, _ = evaluate(potential, atoms)
    worst = 0.0
    rot = Rotation.random(random_state=seed).as_matrix()
    rotated = atoms.copy()
    rotated.set_positions(atoms.get_positions() @ rot.T)
    rotated.set_cell(atoms.cell.array @ rot.T)
    e, f, _ = evaluate(potential, rotated)
    worst = max(worst, _check(abs(e - e0), tol, "energy under rotation"))
    worst = max(worst, _check(np.abs(f - f0 @ rot.T).max(), tol, "forces under rotation"))
    shifted = atoms.copy()
    shifted.translate(rng.normal(size=3) * 3.0)
    e, f, _ = evaluate(potential, shifted)
    worst = max(worst, _check(abs(e - e0), tol, "energy under translation"))
    worst = max(worst, _check(np.abs(f - f0).max(), tol, "forces under translation"))
    perm = rng.permutation(len(atoms))
    e, f, _ = evaluate(potential, atoms[perm])
    worst = max(worst, _check(abs(e - e0), tol, "energy under permutation"))
    worst = max(worst, _check(np.abs(f - f0[perm]).max(), tol, "forces under permutation"))
    return worst


def assert_smooth_cutoff(potential: Potential, symbols: Sequence[str], step: float = 1e-5,
                         tol: float | None = None) -> float:
    """A dimer moved ``step`` Å across the cutoff of the potential, and of each
    potential it is composed of, changes E and F by ≤ tol; beyond the largest
    cutoff the force vanishes."""
    tol = tol or tolerance(potential, "smooth")
    cutoffs = sorted({m.capabilities.cutoff for m in potential.modules()
                      if isinstance(m, Potential)})

    def dimer(r):
        return Atoms(symbols, positions=[[0, 0, 0], [r, 0, 0]])

    worst = 0.0
    for rc in cutoffs:
        e_in, f_in, _ = evaluate(potential, dimer(rc - step / 2))
        e_out, f_out, _ = evaluate(potential, dimer(rc + step / 2))
        worst = max(worst, _check(abs(e_in - e_out), tol, f"energy change across {rc} Å"))
        worst = max(worst, _check(np.abs(f_in - f_out).max(), tol,
                                  f"force change across {rc} Å"))
    _, f_far, _ = evaluate(potential, dimer(cutoffs[-1] + 0.5))
    return max(worst, _check(np.abs(f_far).max(), 0.0, "force beyond the cutoff"))


def assert_extensive(potential: Potential, a: Atoms, b: Atoms, separation: float = 40.0,
                     tol: float | None = None) -> float:
    """Two fragments far apart: E = E_A + E_B and forces are those of each fragment."""
    tol = tol or tolerance(potential, "extensive")
    far = b.copy()
    far.translate(a.get_positions().max(0) - b.get_positions().min(0) + [separation, 0, 0])
    both = a + far
    both.pbc = False
    both.cell = np.zeros((3, 3))
    ea, fa, _ = evaluate(potential, a)
    eb, fb, _ = evaluate(potential, b)
    e, f, _ = evaluate(potential, both)
    scale = max(1.0, abs(ea) + abs(eb))
    worst = _check(abs(e - ea - eb) / scale, tol, "energy of separated fragments (relative)")
    return max(worst, _check(np.abs(f - np.vstack([fa, fb])).max(), tol,
                             "forces of separated fragments"))


def assert_isolated_atom(potential: Potential, symbol: str, reference_energy: float,
                         tol: float | None = None) -> float:
    """One atom alone has its reference energy and zero force."""
    tol = tol or tolerance(potential, "extensive")
    e, f, _ = evaluate(potential, Atoms(symbol, positions=[[0.0, 0.0, 0.0]]))
    worst = _check(abs(e - reference_energy), tol * max(1.0, abs(reference_energy)),
                   f"isolated {symbol} energy")
    return max(worst, _check(np.abs(f).max(), tol, f"isolated {symbol} force"))


def assert_supercell_consistent(potential: Potential, atoms: Atoms,
                                repeat: tuple[int, int, int] = (2, 2, 2),
                                rtol: float | None = None) -> float:
    """E(supercell) = n·E(cell), for cells smaller than twice the cutoff included."""
    rtol = rtol or tolerance(potential, "supercell_rel")
    e, f, s = evaluate(potential, atoms, stress=True)
    big = atoms.repeat(repeat)
    n = int(np.prod(repeat))
    e2, f2, s2 = evaluate(potential, big, stress=True)
    scale = max(1.0, abs(n * e))
    worst = _check(abs(e2 - n * e) / scale, rtol, "supercell energy (relative)")
    worst = max(worst, _check(np.abs(f2 - np.tile(f, (n, 1))).max() / max(1.0, np.abs(f).max()),
                              rtol, "supercell forces (relative)"))
    return max(worst, _check(np.abs(s2 - s).max() / max(1.0, np.abs(s).max()), rtol,
                             "supercell stress (relative)"))


def assert_batch_consistent(potential: Potential, structures: Sequence[Atoms],
                            tol: float | None = None) -> float:
    """A collated batch gives what each structure gives alone; inputs stay unmodified."""
    tol = tol or tolerance(potential, "batch")
    singles = [from_atoms(a, potential.dtype) for a in structures]
    before = [{k: v.clone() for k, v in b.items()} for b in singles]
    atoms_before = [a.get_positions().copy() for a in structures]
    periodic = all(a.pbc.all() for a in structures)
    batch = Batch.collate(singles)
    out = potential(batch, forces=True, stress=periodic)
    worst = 0.0
    start = 0
    for k, b in enumerate(singles):
        one = potential(b, forces=True, stress=periodic)
        n = b.n_total_atoms
        worst = max(worst, abs(float(out["energy"][k] - one["energy"][0])))
        worst = max(worst, float((out["forces"][start:start + n] - one["forces"]).abs().max()))
        if periodic:
            worst = max(worst, float((out["stress"][k] - one["stress"][0]).abs().max()))
        start += n
    _check(worst, tol, "batched vs one-by-one")
    for b, saved in zip(singles, before):
        for key, value in saved.items():
            if not torch.equal(b[key], value):
                raise AssertionError(f"evaluation modified the input field '{key}'")
    for a, pos in zip(structures, atoms_before):
        if not np.array_equal(a.get_positions(), pos):
            raise AssertionError("evaluation modified the input Atoms")
    return worst


def energy_drift(state, integrator, forcefield, steps: int, timestep: float, every: int = 10):
    """Integrate ``steps`` steps and follow each replica's conserved energy.

    Returns the final state, the drift of every replica (|slope| of a
    least-squares line, eV/atom/ps) and the conserved energies per atom
    [samples, replicas], sampled every ``every`` steps from the start.
    """
    state = integrator.init(forcefield.evaluate(state))
    n_atoms = state.batch.n_atoms.cpu().double().numpy()
    values, times = [], []
    for k in range(steps + 1):
        if k % every == 0:
            values.append(integrator.conserved(state).detach().cpu().double().numpy() / n_atoms)
            times.append(state.time / 1000.0)
        if k < steps:
            state = integrator.step(state, forcefield, timestep)
    values = np.array(values)
    if not np.all(np.isfinite(values)):
        raise AssertionError("the run produced NaN or inf energies")
    slopes = np.polyfit(np.array(times), values, 1)[0]
    return state, np.abs(slopes), values


def nve_energy_drift(potential: Potential, atoms: Atoms, temperature: float = 300.0,
                     timestep: float = 1.0, duration_ps: float = 10.0, seed: int = 0):
    """Run velocity Verlet (mlipkit's engine, which equals ASE's to round-off)
    from Maxwell–Boltzmann momenta and return (drift in eV/atom/ps, total
    energies every 10 steps).
    """
    from mlipkit.md import ForceField, VelocityVerlet, initial_state

    state = initial_state(atoms, temperature=temperature, seed=seed, dtype=potential.dtype,
                          device=potential.device)
    steps = int(round(duration_ps * 1000 / timestep))
    _, drift, values = energy_drift(state, VelocityVerlet(), ForceField(potential), steps,
                                    timestep)
    return float(drift[0]), values[:, 0] * len(atoms)


def assert_nve_conserves(potential: Potential, atoms: Atoms, max_drift: float = 5e-4,
                         **kwargs) -> float:
    """Total-energy drift below ``max_drift`` eV/atom/ps (default 10 ps at 1 fs, 300 K)."""
    drift, _ = nve_energy_drift(potential, atoms, **kwargs)
    return _check(drift, max_drift, "NVE energy drift (eV/atom/ps)")


class _EnergyOnly(_ASECalculator):
    """Wraps a potential's energy only, so ASE's numerical stress is independent
    of our stress code."""

    implemented_properties = ["energy", "free_energy"]

    def __init__(self, potential):
        super().__init__()
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        super().calculate(atoms, properties, system_changes)
        energy = evaluate(self.potential, self.atoms, forces=False)[0]
        self.results = {"energy": energy, "free_energy": energy}


def assert_calculator_consistent(potential: Potential, atoms: Atoms,
                                 tol: float | None = None) -> float:
    """The ASE calculator returns what the potential returns; on periodic cells
    its Voigt stress agrees with ASE's own numerical stress (sign and order)."""
    tol = tol or tolerance(potential, "batch")
    work = copy.deepcopy(atoms)
    work.calc = Calculator(potential)
    periodic = bool(work.pbc.all())
    e, f, s = evaluate(potential, atoms, stress=periodic)
    worst = _check(abs(work.get_potential_energy() - e), tol, "calculator energy")
    worst = max(worst, _check(np.abs(work.get_forces() - f).max(), tol, "calculator forces"))
    energies = work.get_potential_energies()
    worst = max(worst, _check(abs(energies.sum() - e), tol * max(1, len(atoms)),
                              "per-atom energies sum"))
    if periodic:
        stress = work.get_stress(voigt=True)
        probe = work.copy()
        probe.calc = _EnergyOnly(potential)
        numeric = calculate_numerical_stress(probe, eps=1e-5, voigt=True)
        fd_tol = tolerance(potential, "fd_stress")
        worst = max(worst, _check(np.abs(stress - numeric).max(), fd_tol,
                                  "calculator stress vs ASE numerical stress"))
    return worst
