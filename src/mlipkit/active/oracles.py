"""Reference calculations ("oracles") behind one small interface.

Any ASE calculator can be an oracle, named by import path
(``"ase.calculators.emt:EMT"``) with keyword arguments. Ready-made short
names:

- ``emt``: ASE's effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt; instant);
- ``gfn2-xtb``: GFN2-xTB through tblite (molecules, milliseconds; extra ``xtb``);
- ``pyscf``: Kohn–Sham DFT through PySCF's own ASE calculator (seconds per
  small molecule; extra ``dft``); keywords ``xc``, ``basis``, ``charge``,
  ``spin``, ``conv_tol``, ``max_cycle``.

:meth:`Oracle.label` never raises: a calculation that fails, gives NaN or
does not converge comes back as a :class:`Label` with ``ok`` False and the
error, so one bad structure cannot stop a run.
"""

from __future__ import annotations

import hashlib
import importlib
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from mlipkit.errors import InvalidConfig

SHORT_NAMES = {
    "emt": "ase.calculators.emt:EMT",
    "gfn2-xtb": "mlipkit.active.oracles:xtb",
    "pyscf": "mlipkit.active.oracles:pyscf_dft",
}


def xtb(atoms: Atoms, method: str = "GFN2-xTB", **kwargs) -> Calculator:
    """tblite's calculator, quiet by default. tblite raises when its SCF does
    not converge, so a result is a converged one."""
    from tblite.ase import TBLite

    return TBLite(method=method, **{"verbosity": 0, **kwargs})


def pyscf_dft(atoms: Atoms, xc: str = "pbe", basis: str = "def2-svp", charge: int = 0,
              spin: int = 0, conv_tol: float = 1e-9, max_cycle: int = 100) -> Calculator:
    """Restricted (spin 0) or unrestricted Kohn–Sham DFT on a molecule
    (``spin`` = N_alpha − N_beta) through :class:`pyscf.pbc.tools.pyscf_ase.PySCF`,
    which raises when the SCF does not converge."""
    if atoms.pbc.any():
        raise InvalidConfig("the pyscf oracle handles molecules (no periodic boundaries)")
    from pyscf import gto
    from pyscf.pbc.tools.pyscf_ase import PySCF, ase_atoms_to_pyscf

    mol = gto.M(atom=ase_atoms_to_pyscf(atoms), basis=basis, charge=charge, spin=spin,
                unit="Angstrom", verbose=0)
    mf = mol.RKS(xc=xc) if spin == 0 else mol.UKS(xc=xc)
    mf.conv_tol, mf.max_cycle = conv_tol, max_cycle
    return PySCF(method=mf)


def _resolve(name: str):
    path = SHORT_NAMES.get(name.lower(), name)
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module:
        raise InvalidConfig(f"oracle {name!r} is neither a short name {sorted(SHORT_NAMES)} "
                            "nor an import path such as 'ase.calculators.emt:EMT'")
    try:
        return path, getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidConfig(f"cannot import oracle {path!r}: {exc}. Is its package installed "
                            "(pip install 'mlipkit[xtb]' for tblite, 'mlipkit[dft]' for "
                            "PySCF)?") from None


def structure_hash(atoms: Atoms) -> str:
    """sha256 of the numbers, positions, cell and pbc (positions and cell
    rounded to 1e-8 Å): the same structure always gets the same hash."""
    digest = hashlib.sha256()
    digest.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for array in (atoms.positions, atoms.cell.array):
        digest.update((np.round(np.asarray(array, dtype=np.float64), 8) + 0.0).tobytes())
    digest.update(np.asarray(atoms.pbc, dtype=np.bool_).tobytes())
    return digest.hexdigest()


@dataclass
class Label:
    """One oracle call: ``energy`` (eV), ``forces`` [N,3] (eV/Å), ``stress``
    [3,3] (eV/Å³, periodic cells whose calculator gives it) when ``ok``;
    otherwise ``error``. ``converged`` is None where the code has no SCF."""

    hash: str
    ok: bool
    wall_s: float
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    converged: bool | None = None
    error: str | None = None


def _converged(calc: Calculator | None, succeeded: bool = True) -> bool | None:
    """The SCF convergence flag where the calculator exposes one."""
    if calc is None:
        return None
    # PySCF: the scanner that ran, or the mean-field object itself
    for name in ("method_scan", "method"):
        value = getattr(getattr(calc, name, None), "converged", None)
        if value is not None:
            return bool(value)
    if type(calc).__name__ == "TBLite":  # raises when its SCF fails
        return True if succeeded else None
    value = getattr(calc, "converged", None)
    return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class Oracle:
    """``calculator``: a short name (:data:`SHORT_NAMES`) or an import path to
    a Calculator class or to a function ``(atoms, **kwargs) -> Calculator``;
    ``kwargs`` go to it."""

    calculator: str
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        _resolve(self.calculator)  # fail at configuration time, not on a worker

    @property
    def settings(self) -> dict:
        """What the labels record: the resolved import path and the keywords."""
        return {"calculator": _resolve(self.calculator)[0], "kwargs": dict(self.kwargs)}

    def calculator_for(self, atoms: Atoms) -> Calculator:
        _, target = _resolve(self.calculator)
        if isinstance(target, type):
            return target(**self.kwargs)
        return target(atoms, **self.kwargs)

    def label(self, atoms: Atoms) -> Label:
        """Energy, forces (and stress for periodic cells) of ``atoms``."""
        atoms = atoms.copy()
        key = structure_hash(atoms)
        start, calc = time.perf_counter(), None
        try:
            atoms.calc = calc = self.calculator_for(atoms)
            energy = float(atoms.get_potential_energy())
            forces = np.array(atoms.get_forces(), dtype=np.float64)
            stress = None
            if atoms.pbc.all() and "stress" in calc.implemented_properties:
                stress = np.array(atoms.get_stress(voigt=False), dtype=np.float64)
            converged = _converged(calc)
        except Exception as exc:  # any failure of the reference code is recorded
            return Label(key, False, time.perf_counter() - start, converged=_converged(calc, False),
                         error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        wall = time.perf_counter() - start
        values = [energy, forces] + ([stress] if stress is not None else [])
        if not all(np.isfinite(v).all() for v in values):
            return Label(key, False, wall, converged=converged,
                         error="the oracle returned NaN or inf")
        if converged is False:  # a code that reports it without raising
            return Label(key, False, wall, converged=False, error="the SCF did not converge")
        return Label(key, True, wall, energy, forces, stress, converged)
