"""Reaction paths: climbing-image NEB with ASE, and its validation against a reference.

The band is ASE's (``ase.mep.NEB``, improved-tangent springs, climbing image,
IDPP interpolation); this module sets it up, records what came out and checks
it. A path is ``M = images + 2`` structures, initial and final included;
energies are in eV, positions and path lengths in Å, forces in eV/Å.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import find_mic

from mlipkit.calculators import Calculator as MlipkitCalculator
from mlipkit.errors import InvalidConfig, PathMismatch
from mlipkit.properties.engines import label
from mlipkit.properties.relax import Relaxation, relax
from mlipkit.properties.report import compare, criterion

log = logging.getLogger(__name__)

OPTIMIZERS = ("fire", "bfgs")
END_ENERGY_LIMIT = 0.05      # eV, |E_model − E_ref| of each end state
BARRIER_LIMIT = 0.10         # relative error of the forward barrier
CONTINUITY_LIMIT = 0.05      # eV, floor of the force-continuity limit
CONTINUITY_FRACTION = 0.10   # of the barrier, the force-continuity limit above the floor
CELL_TOLERANCE = 1e-6        # Å


@dataclass
class NEBResult:
    images: list[Atoms]         # [M] initial, interior, final; energy and forces frozen on each
    total_energies: np.ndarray  # [M] eV, as the calculator gives them
    path: np.ndarray            # [M] Å, cumulative path length (the reaction coordinate)
    climbing: int               # index of the highest image, the climbing one
    max_force: float            # eV/Å, largest NEB force (projected + spring) at the end
    fmax: float                 # eV/Å, the convergence threshold it was run with
    converged: bool
    steps: int                  # optimizer iterations of the band
    ends: tuple[Relaxation | None, Relaxation | None]  # end-point relaxations, if run

    @property
    def energies(self) -> np.ndarray:
        """[M] eV relative to the initial state."""
        return self.total_energies - self.total_energies[0]

    @property
    def barrier(self) -> float:
        """Forward barrier, eV: E(climbing image) − E(initial)."""
        return float(self.energies[self.climbing])

    @property
    def backward_barrier(self) -> float:
        """eV: E(climbing image) − E(final)."""
        return float(self.energies[self.climbing] - self.energies[-1])

    @property
    def reaction_energy(self) -> float:
        """eV: E(final) − E(initial)."""
        return float(self.energies[-1])

    def as_dict(self) -> dict:
        return {
            "images": len(self.images) - 2, "energies_eV": self.energies,
            "path_A": self.path, "climbing_image": self.climbing,
            "barrier_eV": self.barrier, "backward_barrier_eV": self.backward_barrier,
            "reaction_energy_eV": self.reaction_energy,
            "initial_energy_eV": float(self.total_energies[0]),
            "final_energy_eV": float(self.total_energies[-1]),
            "max_force_eV_A": self.max_force, "fmax_eV_A": self.fmax,
            "converged": self.converged, "steps": self.steps,
            "end_relaxations": [None if r is None else r.as_dict() for r in self.ends],
        }


def check_end_points(initial: Atoms, final: Atoms) -> None:
    """Raise PathMismatch unless both ends hold the same atoms, in the same order,
    in the same cell with the same boundary conditions (NEB moves atoms, nothing else)."""
    if len(initial) != len(final):
        raise PathMismatch(
            f"the initial state has {len(initial)} atoms and the final state {len(final)}; "
            "a path connects the same atoms, so add or remove atoms until both match")
    a, b = initial.get_atomic_numbers(), final.get_atomic_numbers()
    if np.any(a != b):
        if sorted(a) != sorted(b):
            raise PathMismatch(
                f"the end points hold different atoms ({initial.get_chemical_formula()} vs "
                f"{final.get_chemical_formula()}); give both the same composition")
        i = int(np.flatnonzero(a != b)[0])
        raise PathMismatch(
            f"the end points list the same elements in a different order (atom {i} is "
            f"{initial[i].symbol} in the initial state, {final[i].symbol} in the final); "
            "reorder the final state so that each index is the same atom in both")
    if np.any(initial.pbc != final.pbc):
        raise PathMismatch(
            f"the boundary conditions differ (pbc {initial.pbc.tolist()} vs "
            f"{final.pbc.tolist()}); give both end points the same pbc")
    # only periodic directions matter: a molecule's box is free to differ
    gaps = np.abs(initial.cell.array - final.cell.array)[initial.pbc]
    gap = float(gaps.max()) if gaps.size else 0.0
    if gap > CELL_TOLERANCE:
        raise PathMismatch(
            f"the cells differ by up to {gap:.3g} Å; NEB keeps the cell fixed, so build the "
            "final state in the initial state's cell (relax both at the same cell)")


def interpolate(initial: Atoms, final: Atoms, images: int) -> list[Atoms]:
    """[images + 2] structures from ``initial`` to ``final`` by IDPP interpolation
    (Smidstrup et al., J. Chem. Phys. 140, 214106 (2014)); no calculators attached.

    With periodic boundaries every atom moves the short way (minimum image),
    so an atom wrapped across the cell in one file does not cross the box.
    """
    from ase.mep import NEB

    band = [initial.copy() for _ in range(images + 1)] + [final.copy()]
    periodic = bool(np.any(initial.pbc))
    NEB(band, method="improvedtangent").interpolate("idpp", mic=periodic)
    return band


def neb(initial: Atoms, final: Atoms, calc, images: int = 5, fmax: float = 0.05,
        steps: int = 1000, relax_ends: bool = True, optimizer: str = "fire",
        spring: float = 0.1) -> NEBResult:
    """Climbing-image NEB from ``initial`` to ``final`` (the inputs are not modified).

    ``images`` interior images, springs of ``spring`` eV/Å²; the band is
    converged when the largest NEB force is below ``fmax`` eV/Å, the climbing
    image then sitting on the saddle point. The end points are first relaxed
    to the same ``fmax`` unless ``relax_ends=False``.
    """
    from ase.mep import NEB

    _check_options(images, fmax, steps, optimizer, spring)
    check_end_points(initial, final)
    ends = (relax(initial, calc, fmax=fmax, steps=steps),
            relax(final, calc, fmax=fmax, steps=steps)) if relax_ends else (None, None)
    start = [initial, final] if ends[0] is None else [r.atoms for r in ends]
    band = interpolate(*start, images)
    for atoms, image_calc in zip(band, image_calculators(calc, len(band))):
        atoms.calc = image_calc
    path = NEB(band, k=spring, climb=True, method="improvedtangent",
               allow_shared_calculator=True)
    opt = _optimizer(optimizer, path)
    opt.attach(lambda: log.info("NEB step %d: barrier %.4f eV", opt.nsteps,
                                path.emax - path.energies[0]), interval=10)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    max_force = float(np.linalg.norm(path.get_forces(), axis=1).max())
    frozen = _freeze(band, path.energies, path.real_forces)
    result = NEBResult(frozen, np.array(path.energies, dtype=float), path_length(frozen),
                       int(np.argmax(path.energies[1:-1])) + 1, max_force, fmax, converged,
                       int(opt.nsteps), ends)
    log.info("NEB with %s: barrier %.4f eV (backward %.4f eV), %d steps, max force %.3g eV/Å",
             label(calc), result.barrier, result.backward_barrier, result.steps, max_force)
    if not converged:
        log.warning("NEB did not converge in %d steps (max force %.3g eV/Å > %g)",
                    steps, max_force, fmax)
    return result


def _check_options(images: int, fmax: float, steps: int, optimizer: str, spring: float) -> None:
    if images < 1:
        raise InvalidConfig(f"a band needs at least 1 interior image, got {images}")
    if fmax <= 0:
        raise InvalidConfig(f"fmax must be > 0 eV/Å, got {fmax}")
    if steps < 1:
        raise InvalidConfig(f"steps must be >= 1, got {steps}")
    if optimizer not in OPTIMIZERS:
        raise InvalidConfig(f"the NEB optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if spring <= 0:
        raise InvalidConfig(f"the spring constant must be > 0 eV/Å², got {spring}")


def image_calculators(calc, n: int) -> list:
    """[n] calculators for the images: copies of ``calc`` where it can be copied.

    Sharing one instance is always correct (ASE's results cache is keyed on the
    atoms' state, so each image is recomputed, never served another's results),
    but calculators such as EMT keep a neighbour list that a shared instance
    rebuilds at every image: 9x slower on a 31-atom vacancy hop. A mlipkit
    calculator keeps nothing between calls and is shared rather than copying
    the model; one holding native handles (tblite) cannot be copied and is shared.
    """
    if isinstance(calc, MlipkitCalculator):
        return [calc] * n
    try:
        return [copy.deepcopy(calc) for _ in range(n)]
    except Exception as exc:  # any failure to copy leaves the always-correct sharing
        log.info("sharing one %s between the images (it cannot be copied: %s)",
                 label(calc), exc)
        return [calc] * n


def _optimizer(name: str, path):
    from ase.optimize import BFGS, FIRE

    return {"fire": FIRE, "bfgs": BFGS}[name](path, logfile=None)


def _freeze(band: list[Atoms], energies: np.ndarray, interior_forces: np.ndarray) -> list[Atoms]:
    """Copies of ``band`` holding their energy and true (unprojected) forces.

    ASE's NEB keeps the interior forces of its last evaluation but zeros for
    the end points, so those two are evaluated here.
    """
    frozen = []
    for i, atoms in enumerate(band):
        interior = 0 < i < len(band) - 1
        forces = interior_forces[i] if interior else atoms.get_forces(apply_constraint=False)
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, energy=float(energies[i]),
                                          forces=np.array(forces, dtype=float))
        frozen.append(copy)
    return frozen


def single_points(images: list[Atoms], calc) -> list[Atoms]:
    """Copies of ``images`` with ``calc``'s energy and forces frozen on each."""
    out = []
    for atoms in images:
        work = atoms.copy()
        work.calc = calc
        energy = work.get_potential_energy()
        forces = work.get_forces(apply_constraint=False)
        work.calc = SinglePointCalculator(work, energy=energy, forces=forces)
        out.append(work)
    return out


def _displacements(images: list[Atoms]) -> np.ndarray:
    """[M-1, N, 3] Å, image i to i+1, each atom the short way under pbc."""
    return np.array([find_mic(b.positions - a.positions, a.cell, a.pbc)[0]
                     for a, b in zip(images[:-1], images[1:])])


def path_length(images: list[Atoms]) -> np.ndarray:
    """[M] Å, cumulative length of the path in 3N-dimensional space, 0 at the first image."""
    steps = np.linalg.norm(_displacements(images).reshape(len(images) - 1, -1), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def work_discrepancy(images: list[Atoms]) -> np.ndarray:
    """[M-1] eV: ΔE_i − W_i per segment, where ΔE_i = E_{i+1} − E_i and
    W_i = −½ (F_i + F_{i+1})·(R_{i+1} − R_i) is the trapezoid estimate of ∫ −F·dR.

    Forces that are the gradient of the energies give only the trapezoid rule's
    own error, O(h³ E''') per segment; a model whose forces and energies
    disagree, or jump at a cutoff, shows more.
    """
    energies = np.array([a.get_potential_energy() for a in images])
    forces = np.array([a.get_forces(apply_constraint=False) for a in images])
    mean_forces = 0.5 * (forces[:-1] + forces[1:])
    work = -np.einsum("sij,sij->s", mean_forces, _displacements(images))
    return np.diff(energies) - work


def validate(result: NEBResult, oracle=None, oracle_neb: NEBResult | None = None) -> dict:
    """Pass/fail criteria (``report.criterion``) for a model's NEB ``result``.

    Always: the band converged, and force continuity: max |ΔE_i − W_i|
    (``work_discrepancy``) ≤ max(0.05 eV, 10 % of the barrier); the relative
    part is there because the trapezoid rule's own error grows with the
    barrier (about 5 % of it for 5 images on a vacancy hop).
    With an ``oracle`` calculator, evaluated on the model's images: each
    relaxed end state's |E_model − E_oracle| ≤ 0.05 eV, and the forward barrier
    within 10 % of the oracle's; the oracle's barrier comes from its own NEB
    (``oracle_neb``, preferred) or else from its single points on the model's
    images. The largest force error along the path is reported, not judged.
    """
    if oracle_neb is not None and oracle is None:
        raise InvalidConfig("a reference NEB needs its calculator too (oracle=...): the "
                            "end-state errors are its single points at the model's geometries")
    discrepancy = work_discrepancy(result.images)
    continuity_limit = max(CONTINUITY_LIMIT, CONTINUITY_FRACTION * abs(result.barrier))
    criteria = {
        "converged": criterion(result.max_force, result.fmax,
                               "largest NEB force at the end (eV/Å) ≤ fmax"),
        "force_continuity": criterion(
            float(np.abs(discrepancy).max()), continuity_limit,
            "max over segments of |ΔE − ∫−F·dR| (eV, trapezoid rule with the model's forces) "
            "≤ max(0.05 eV, 10% of the barrier)"),
    }
    report = {"criteria": criteria, "work_discrepancy_eV": discrepancy}
    if oracle is not None:
        report["reference"] = _against_oracle(result, single_points(result.images, oracle),
                                              oracle_neb, criteria)
        report["reference"]["label"] = label(oracle)
    report["pass"] = all(c["pass"] for c in criteria.values())
    return report


def _against_oracle(result: NEBResult, points: list[Atoms], oracle_neb: NEBResult | None,
                    criteria: dict) -> dict:
    """Add the oracle criteria to ``criteria``; the oracle's figures and profile."""
    oracle_energies = np.array([a.get_potential_energy() for a in points])
    for key, i in (("initial_energy", 0), ("final_energy", -1)):
        error = abs(result.total_energies[i] - oracle_energies[i])
        criteria[key] = criterion(error, END_ENERGY_LIMIT,
                                  f"|E_model − E_ref| (eV) of the model's {key.split('_')[0]} "
                                  "state, the reference evaluated at that geometry")
    if oracle_neb is not None:
        source = "reference climbing-image NEB (its own end points and band)"
        figures = _figures(oracle_neb.energies, oracle_neb.climbing)
        profile = {"path_A": oracle_neb.path, "energies_eV": oracle_neb.energies}
        criteria["reference_converged"] = criterion(
            oracle_neb.max_force, oracle_neb.fmax,
            "largest NEB force of the reference band at the end (eV/Å) ≤ fmax")
    else:
        source = "reference single points on the model's images"
        relative = oracle_energies - oracle_energies[0]
        figures = _figures(relative, int(np.argmax(relative[1:-1])) + 1)  # interior, as climbing
        profile = {"path_A": result.path, "energies_eV": relative}
    rows = compare(_figures(result.energies, result.climbing), figures,
                   ("barrier_eV", "backward_barrier_eV", "reaction_energy_eV"))
    barrier = rows["barrier_eV"]["relative_error"]
    criteria["barrier"] = criterion(np.inf if barrier is None else barrier, BARRIER_LIMIT,
                                    f"|barrier_model − barrier_ref| / barrier_ref, the "
                                    f"reference barrier from the {source}")
    model_forces = np.array([a.get_forces() for a in result.images])
    oracle_forces = np.array([a.get_forces() for a in points])
    return {
        "barrier_from": source, "comparison": rows,
        "end_energies_eV": {"initial": float(oracle_energies[0]),
                            "final": float(oracle_energies[-1])},
        "max_force_error_eV_A": float(np.linalg.norm(model_forces - oracle_forces,
                                                     axis=2).max()),
        "profile": profile,
    }


def _figures(energies: np.ndarray, top: int) -> dict:
    """Barriers and reaction energy (eV) from a profile relative to its first image."""
    return {"barrier_eV": float(energies[top]),
            "backward_barrier_eV": float(energies[top] - energies[-1]),
            "reaction_energy_eV": float(energies[-1])}
