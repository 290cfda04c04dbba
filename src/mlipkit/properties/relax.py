"""Relaxation of positions (and the cell) with ASE optimizers, or with a
rational-function Newton optimizer that uses a mlipkit model's exact Hessian."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

from mlipkit.errors import InvalidConfig
from mlipkit.properties.engines import attach, exact_hessian, require_periodic
from mlipkit.units import GPa

log = logging.getLogger(__name__)

OPTIMIZERS = ("bfgs", "lbfgs", "fire", "newton")


@dataclass
class Relaxation:
    atoms: Atoms          # relaxed copy, calculator attached
    energy: float         # eV
    max_force: float      # eV/Å, largest atomic force at the end
    steps: int            # optimizer iterations (force evaluations for newton)
    converged: bool

    def as_dict(self) -> dict:
        return {"energy_eV": self.energy, "max_force_eV_A": self.max_force,
                "steps": self.steps, "converged": self.converged}


def relax(atoms: Atoms, calc, fmax: float = 0.01, steps: int = 1000, cell: bool = False,
          optimizer: str = "bfgs", pressure: float = 0.0) -> Relaxation:
    """Relax a copy of ``atoms``; the input is never modified.

    ``cell=True`` also relaxes the cell (ASE's FrechetCellFilter) at
    ``pressure`` GPa. ``optimizer='newton'`` takes rational-function (RFO)
    steps with the exact Hessian of a mlipkit model, positions only.
    """
    if optimizer not in OPTIMIZERS:
        raise InvalidConfig(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if fmax <= 0:
        raise InvalidConfig(f"fmax must be > 0 eV/Å, got {fmax}")
    if cell:
        require_periodic(atoms, "a cell relaxation (or relax positions only, cell=False)")
    work = attach(atoms, calc)
    if optimizer == "newton":
        if cell:
            raise InvalidConfig("the Newton optimizer relaxes positions only; use bfgs with "
                                "cell=True, then newton for the positions")
        n, converged = _newton(work, fmax, steps)
    else:
        from ase.filters import FrechetCellFilter
        from ase.optimize import BFGS, FIRE, LBFGS

        target = FrechetCellFilter(work, scalar_pressure=pressure * GPa) if cell else work
        opt = {"bfgs": BFGS, "lbfgs": LBFGS, "fire": FIRE}[optimizer](
            target, logfile=None)
        converged = bool(opt.run(fmax=fmax, steps=steps))
        n = opt.nsteps
    forces = work.get_forces()
    result = Relaxation(work, float(work.get_potential_energy()),
                        float(np.linalg.norm(forces, axis=1).max()) if len(work) else 0.0,
                        int(n), converged)
    if not converged:
        log.warning("relaxation did not converge in %d steps (max force %.3g eV/Å > %g)",
                    steps, result.max_force, fmax)
    return result


def _free_mask(atoms: Atoms) -> np.ndarray:
    """[3N] True for Cartesian coordinates not held by FixAtoms."""
    free = np.ones(len(atoms), dtype=bool)
    for c in atoms.constraints:
        if isinstance(c, FixAtoms):
            free[c.index] = False
        else:
            raise InvalidConfig(f"the Newton optimizer supports FixAtoms only, not "
                                f"{type(c).__name__}; use bfgs")
    return np.repeat(free, 3)


def _newton(atoms: Atoms, fmax: float, steps: int, max_step: float = 0.2) -> tuple[int, bool]:
    """RFO steps on the exact Hessian (Banerjee et al., J. Phys. Chem. 89, 52 (1985)).

    The lowest eigenvector of the gradient-augmented Hessian gives a step that
    goes downhill along negative-curvature modes and is Newton's step near a
    minimum. The largest atomic displacement is capped at ``max_step`` Å.
    """
    free = _free_mask(atoms)
    for it in range(steps + 1):
        forces = atoms.get_forces()
        if np.linalg.norm(forces, axis=1).max() < fmax:
            return it, True
        if it == steps:
            break
        g = -forces.reshape(-1)[free]
        h = exact_hessian(atoms, atoms.calc)[np.ix_(free, free)]
        aug = np.zeros((len(g) + 1, len(g) + 1))
        aug[:-1, :-1], aug[:-1, -1], aug[-1, :-1] = h, g, g
        v = np.linalg.eigh(aug)[1][:, 0]
        step = np.zeros(free.size)
        step[free] = v[:-1] / v[-1]
        step = step.reshape(-1, 3)
        largest = np.linalg.norm(step, axis=1).max()
        if largest > max_step:
            step *= max_step / largest
        atoms.set_positions(atoms.get_positions() + step)
    return steps, False
