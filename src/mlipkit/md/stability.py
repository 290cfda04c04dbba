"""Linear stability of the Verlet and BAOAB updates for a given potential.

Near a minimum each normal mode is a harmonic oscillator x'' = −ω² x − γ x'
(+ noise). One step of a splitting integrator maps the mean (x, v) of a mode
linearly; the step is stable when that 2×2 matrix has spectral radius ≤ 1.
For the stiffest mode (ω² the largest eigenvalue of the mass-weighted
Hessian) this bounds the time step: ω·dt < 2 for velocity Verlet and BAOAB.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from ase import Atoms

from mlipkit.errors import InvalidConfig
from mlipkit.models.base import Potential
from mlipkit.units import amu_A2_per_fs2

SCHEMES = ("verlet", "baoab")


def largest_curvature(potential: Potential, atoms: Atoms, max_atoms: int = 300) -> float:
    """ω²_max in 1/fs²: the largest eigenvalue of M^-1/2 H M^-1/2."""
    if len(atoms) > max_atoms:
        raise InvalidConfig(f"the full Hessian of {len(atoms)} atoms is too costly here "
                            f"(limit {max_atoms}); use a smaller cell of the same material")
    from mlipkit.properties.engines import potential_hessian
    from mlipkit.properties.vibrations import mass_weighted

    weighted = mass_weighted(potential_hessian(potential, atoms), atoms)
    return float(np.linalg.eigvalsh(weighted)[-1]) / amu_A2_per_fs2


def step_matrix(omega: float, timestep: float, friction: float = 0.0,
                scheme: str = "verlet") -> np.ndarray:
    """The 2×2 map of the mean (x, v) of an oscillator over one step."""
    if scheme not in SCHEMES:
        raise InvalidConfig(f"scheme must be one of {SCHEMES}, got {scheme!r}")

    def kick(h):
        return np.array([[1.0, 0.0], [-omega * omega * h, 1.0]])

    def drift(h):
        return np.array([[1.0, h], [0.0, 1.0]])

    h = 0.5 * timestep
    if scheme == "verlet":
        return kick(h) @ drift(timestep) @ kick(h)
    damp = np.diag([1.0, math.exp(-friction * timestep)])
    return kick(h) @ drift(h) @ damp @ drift(h) @ kick(h)


def spectral_radius(omega: float, timestep: float, friction: float = 0.0,
                    scheme: str = "verlet") -> float:
    return float(np.abs(np.linalg.eigvals(step_matrix(omega, timestep, friction, scheme))).max())


def max_stable_timestep(omega: float, friction: float = 0.0, scheme: str = "verlet") -> float:
    """The largest time step (fs) whose update is stable for frequency ω (1/fs)."""
    if omega <= 0:
        return math.inf
    lo, hi = 0.0, 10.0 / omega
    for _ in range(100):  # bisection on spectral radius <= 1
        mid = 0.5 * (lo + hi)
        if spectral_radius(omega, mid, friction, scheme) <= 1.0 + 1e-12:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class StabilityReport:
    omega_max: float  # 1/fs
    period_fs: float  # of the stiffest mode
    wavenumber_cm: float
    timestep: float
    spectral_radius: float
    stable: bool
    max_timestep: float  # fs, linear stability limit

    def as_dict(self) -> dict:
        return asdict(self)


def stability(potential: Potential, atoms: Atoms, timestep: float, friction: float = 0.0,
              scheme: str = "verlet") -> StabilityReport:
    """Is ``timestep`` (fs) stable for the stiffest mode of ``atoms`` (at its
    current geometry; a minimum is where the analysis is exact)?"""
    curvature = largest_curvature(potential, atoms)
    omega = math.sqrt(max(curvature, 0.0))
    period = 2 * math.pi / omega if omega > 0 else math.inf
    wavenumber = omega * 1e15 / (2 * math.pi * 2.99792458e10)  # 1/fs -> cm^-1
    rho = spectral_radius(omega, timestep, friction, scheme)
    return StabilityReport(omega_max=omega, period_fs=period, wavenumber_cm=wavenumber,
                           timestep=timestep, spectral_radius=rho, stable=rho <= 1.0 + 1e-12,
                           max_timestep=max_stable_timestep(omega, friction, scheme))
