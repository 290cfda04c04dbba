"""Elastic constants from stress–strain fits and the Birch–Murnaghan equation of state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from mlipkit.calculators import Calculator as MlipkitCalculator
from mlipkit.errors import InvalidConfig, InvalidStructure
from mlipkit.properties.engines import attach, require_periodic
from mlipkit.properties.relax import relax
from mlipkit.units import GPa

VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def strain_tensor(component: int, magnitude: float) -> np.ndarray:
    """ε [3, 3] for a Voigt component (shear as engineering strain γ = 2ε_ab)."""
    eps = np.zeros((3, 3))
    a, b = VOIGT[component]
    if a == b:
        eps[a, a] = magnitude
    else:
        eps[a, b] = eps[b, a] = 0.5 * magnitude
    return eps


def strained(atoms: Atoms, eps: np.ndarray) -> Atoms:
    """A copy with cell (and atoms) deformed by (I + ε); rows are lattice vectors."""
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ (np.eye(3) + eps).T, scale_atoms=True)
    return out


def stress_3x3(atoms: Atoms) -> tuple[np.ndarray, float]:
    """σ [3, 3] in eV/Å³ and its asymmetry max|σ − σᵀ|.

    A mlipkit model gives the full tensor, so its symmetry is a real check;
    ASE calculators hand back six Voigt numbers, symmetric by construction.
    """
    calc = atoms.calc
    if isinstance(calc, MlipkitCalculator):
        from mlipkit.data.convert import from_atoms

        batch = from_atoms(atoms, dtype=calc.potential.dtype)
        sigma = calc.potential(batch, forces=False, stress=True)["stress"][0]
        sigma = sigma.detach().double().cpu().numpy()
    else:
        sigma = atoms.get_stress(voigt=False)
    return sigma, float(np.abs(sigma - sigma.T).max())


@dataclass
class Elastic:
    """The 6×6 stiffness (GPa, Voigt order xx yy zz yz xz xy) and derived moduli."""

    C: np.ndarray
    strains: np.ndarray          # [S] magnitudes applied to each component
    stresses: np.ndarray         # [6, S, 6] Voigt stress (GPa) per component and magnitude
    fit_residual: float          # GPa, largest deviation of a stress from its straight line
    max_stress_asymmetry: float  # GPa, max |σ − σᵀ| over every stress evaluated
    ion_relaxation_steps: int

    @property
    def moduli(self) -> dict:
        return moduli(self.C)

    def as_dict(self) -> dict:
        c = self.C
        return {"C_GPa": c, "C11": c[0, 0], "C12": c[0, 1], "C44": c[3, 3],
                **self.moduli, "symmetry_error_GPa": float(np.abs(c - c.T).max()),
                "fit_residual_GPa": self.fit_residual,
                "max_stress_asymmetry_GPa": self.max_stress_asymmetry,
                "ion_relaxation_steps": self.ion_relaxation_steps}


def moduli(C: np.ndarray) -> dict:
    """Voigt–Reuss–Hill bulk and shear moduli, Young's modulus, Poisson ratio (GPa)."""
    c = 0.5 * (C + C.T)
    kv = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[1, 2] + c[0, 2])) / 9
    gv = (c[0, 0] + c[1, 1] + c[2, 2] - (c[0, 1] + c[1, 2] + c[0, 2])
          + 3 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15
    eig = np.linalg.eigvalsh(c)
    stable = bool(eig.min() > 0)
    if stable:
        s = np.linalg.inv(c)
        kr = 1 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[1, 2] + s[0, 2]))
        gr = 15 / (4 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4 * (s[0, 1] + s[1, 2] + s[0, 2])
                   + 3 * (s[3, 3] + s[4, 4] + s[5, 5]))
    else:  # no Reuss bound (nor Hill average) without a positive-definite C
        kr = gr = float("nan")
    k, g = 0.5 * (kv + kr), 0.5 * (gv + gr)
    return {"bulk_modulus_GPa": k, "shear_modulus_GPa": g,
            "bulk_modulus_voigt_GPa": kv, "bulk_modulus_reuss_GPa": kr,
            "shear_modulus_voigt_GPa": gv, "shear_modulus_reuss_GPa": gr,
            "young_modulus_GPa": 9 * k * g / (3 * k + g),
            "poisson_ratio": (3 * k - 2 * g) / (2 * (3 * k + g)),
            "mechanically_stable": stable, "smallest_eigenvalue_GPa": float(eig.min())}


def elastic_constants(atoms: Atoms, calc, strain: float = 0.005, points: int = 2,
                      relax_ions: bool = True, fmax: float = 1e-4) -> Elastic:
    """Stiffness from linear fits of σ against ±k·``strain`` (k = 1..points) for
    each of the six strain components, ions relaxed in every strained cell.

    ``atoms`` should be at its equilibrium cell (see :func:`equation_of_state`
    or ``relax(cell=True)``); a residual stress shifts every line and, to first order in the strain,
    changes the slopes only slightly.
    """
    require_periodic(atoms, "elastic constants")
    if strain <= 0 or points < 1:
        raise InvalidConfig(f"need strain > 0 and points >= 1, got {strain}, {points}")
    magnitudes = strain * np.concatenate([-np.arange(points, 0, -1), np.arange(1, points + 1)])
    stresses = np.zeros((6, magnitudes.size, 6))
    asym, ion_steps = 0.0, 0
    for j in range(6):
        for s, e in enumerate(magnitudes):
            work = attach(strained(atoms, strain_tensor(j, e)), calc)
            if relax_ions and len(work) > 1:
                r = relax(work, calc, fmax=fmax)
                work, ion_steps = r.atoms, ion_steps + r.steps
            sigma, a = stress_3x3(work)
            asym = max(asym, a)
            stresses[j, s] = [sigma[p, q] for p, q in VOIGT]
    stresses /= GPa
    C = np.zeros((6, 6))
    residual = 0.0
    for j in range(6):
        coeffs = np.polyfit(magnitudes, stresses[j], 1)  # [2, 6]
        C[:, j] = coeffs[0]
        fitted = np.outer(magnitudes, coeffs[0]) + coeffs[1]
        residual = max(residual, float(np.abs(stresses[j] - fitted).max()))
    return Elastic(C, magnitudes, stresses, residual, asym / GPa, ion_steps)


@dataclass
class EquationOfState:
    """Birch–Murnaghan fit of E(V) under isotropic scaling of the cell."""

    volumes: np.ndarray    # [P] Å³ per cell
    energies: np.ndarray   # [P] eV per cell
    v0: float              # Å³ per cell
    e0: float              # eV per cell
    bulk_modulus: float    # GPa
    bprime: float          # dB/dP at V0
    scale: float           # equilibrium lattice lengths / input lengths

    def as_dict(self, atoms: Atoms) -> dict:
        lengths = atoms.cell.lengths() * self.scale
        return {"volume_A3": self.v0, "volume_per_atom_A3": self.v0 / len(atoms),
                "energy_eV": self.e0, "energy_per_atom_eV": self.e0 / len(atoms),
                "bulk_modulus_GPa": self.bulk_modulus, "bulk_modulus_derivative": self.bprime,
                "lattice_lengths_A": lengths,
                "volumes_A3": self.volumes,
                "energies_eV": self.energies}


def equation_of_state(atoms: Atoms, calc, span: float = 0.06, points: int = 11,
                      relax_ions: bool = True, fmax: float = 1e-4) -> EquationOfState:
    """E(V) on volumes V_in·(1 ± ``span``), fitted with ASE's Birch–Murnaghan form."""
    from ase.eos import EquationOfState as AseEOS

    require_periodic(atoms, "an equation of state")
    if not 0 < span < 0.5 or points < 5:
        raise InvalidConfig(f"need 0 < span < 0.5 and points >= 5, got {span}, {points}")
    factors = np.linspace(1 - span, 1 + span, points) ** (1 / 3)
    volumes, energies = [], []
    for f in factors:
        work = attach(atoms, calc)
        work.set_cell(atoms.cell.array * f, scale_atoms=True)
        if relax_ions and len(work) > 1:
            work = relax(work, calc, fmax=fmax).atoms
        volumes.append(work.get_volume())
        energies.append(work.get_potential_energy())
    eos = AseEOS(volumes, energies, eos="birchmurnaghan")
    v0, e0, b = eos.fit(warn=False)
    if not min(volumes) < v0 < max(volumes):
        raise InvalidStructure(f"the energy minimum ({v0:.2f} Å³) lies outside the sampled "
                               f"volumes {min(volumes):.2f}–{max(volumes):.2f} Å³; start "
                               "closer to equilibrium or widen the span")
    return EquationOfState(np.array(volumes), np.array(energies), float(v0), float(e0),
                           float(b / GPa), float(eos.eos_parameters[2]),
                           float((v0 / atoms.get_volume()) ** (1 / 3)))
