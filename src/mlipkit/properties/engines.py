"""Where energies come from: a mlipkit model file or any ASE calculator.

Every property command takes an *engine spec* for the model and, optionally,
one for the reference (the oracle), so that the two are computed the same way
and reported side by side:

- a path to a ``.safetensors`` model (or a run folder holding ``model.safetensors``);
- ``emt`` (ASE's EMT), ``gfn2`` / ``gfn1`` (tblite GFN-xTB, extra ``mlipkit[xtb]``);
- ``package.module:ClassName`` for any ASE calculator, optionally followed by its
  keyword arguments as a JSON object: ``tblite.ase:TBLite{"method": "GFN1-xTB"}``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from mlipkit.calculators import Calculator as MlipkitCalculator
from mlipkit.errors import HessianUnavailable, InvalidConfig, InvalidStructure

BUILTIN = {
    "emt": ("ase.calculators.emt", "EMT", {}),
    "gfn2": ("tblite.ase", "TBLite", {"method": "GFN2-xTB", "verbosity": 0}),
    "gfn1": ("tblite.ase", "TBLite", {"method": "GFN1-xTB", "verbosity": 0}),
}
EXTRAS = {"tblite.ase": "xtb"}


def engine(spec: str, dtype: str = "float64", device: str = "cpu"):
    """An ASE calculator for ``spec`` (see the module docstring).

    A mlipkit model is evaluated in ``dtype`` (float64 by default: properties
    such as Hessians and elastic constants are differences of small numbers).
    """
    path = Path(spec)
    if spec.lower() not in BUILTIN and (path.suffix == ".safetensors" or path.is_dir()):
        from mlipkit.models.checkpoint import load

        model_file = path / "model.safetensors" if path.is_dir() else path
        if not model_file.exists():
            raise FileNotFoundError(f"no model file {model_file}")
        model = load(model_file, device=device).to(getattr(torch, dtype))
        return MlipkitCalculator(model)
    name, kwargs = spec, {}
    if "{" in spec:
        name, _, text = spec.partition("{")
        try:
            kwargs = json.loads("{" + text)
        except json.JSONDecodeError as exc:
            raise InvalidConfig(f"the keyword arguments in {spec!r} are not a JSON object "
                                f"({exc})") from None
    if name.lower() in BUILTIN:
        module_name, class_name, defaults = BUILTIN[name.lower()]
        kwargs = {**defaults, **kwargs}
    elif ":" in name:
        module_name, class_name = name.split(":", 1)
    else:
        raise InvalidConfig(
            f"{spec!r} is neither a model file nor a calculator; give a .safetensors file, "
            f"one of {sorted(BUILTIN)}, or package.module:ClassName"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(module_name)
        hint = f"; install it with pip install 'mlipkit[{extra}]'" if extra else ""
        raise InvalidConfig(f"cannot import {module_name} for {spec!r} ({exc}){hint}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InvalidConfig(f"{module_name} has no {class_name}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InvalidConfig(f"{spec!r}: {class_name} does not take these arguments ({exc})") \
            from None


def label(calc) -> str:
    """A short name for reports: the model's type or the calculator's class."""
    if isinstance(calc, MlipkitCalculator):
        return f"mlipkit {type(calc.potential).__name__}"
    return type(calc).__name__


def attach(atoms: Atoms, calc) -> Atoms:
    """A copy of ``atoms`` with ``calc`` (the input is never modified)."""
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms


def require_periodic(atoms: Atoms, what: str) -> None:
    """Raise InvalidStructure unless ``atoms`` is a non-empty crystal: periodic
    in all three directions with a cell of nonzero volume."""
    if len(atoms) == 0 or not np.all(atoms.pbc) or atoms.cell.rank < 3:
        raise InvalidStructure(f"{what} needs a crystal: a cell periodic in all three directions "
                               f"(got {len(atoms)} atoms, pbc={atoms.pbc.tolist()}, cell rank "
                               f"{atoms.cell.rank}); build or read a bulk structure")


def potential_hessian(potential, atoms: Atoms) -> np.ndarray:
    """∂²E/∂R∂R [3N, 3N] in eV/Å² of a mlipkit Potential, by automatic
    differentiation, symmetrised, float64."""
    from mlipkit.data.convert import from_atoms

    batch = from_atoms(atoms, dtype=potential.dtype)
    h = potential(batch, forces=False, hessian=True)["hessian"].detach().double().cpu().numpy()
    return 0.5 * (h + h.T)


def exact_hessian(atoms: Atoms, calc) -> np.ndarray:
    """∂²E/∂R∂R [3N, 3N] in eV/Å² by automatic differentiation of a mlipkit model."""
    if not isinstance(calc, MlipkitCalculator):
        raise HessianUnavailable(
            f"{label(calc)} gives no analytic Hessian; use the finite-difference Hessian "
            "(method='fd', or --hessian fd on the command line)"
        )
    return potential_hessian(calc.potential, atoms)


def finite_difference_hessian(atoms: Atoms, calc, delta: float = 0.005) -> np.ndarray:
    """Hessian [3N, 3N] in eV/Å² from central differences of the forces, symmetrised."""
    if delta <= 0:
        raise InvalidConfig(f"the displacement must be > 0 Å, got {delta}")
    work = attach(atoms, calc)
    work.set_constraint()  # a full Hessian: constraints would zero rows, as autograd does not
    x0 = work.get_positions()
    n = len(work)
    h = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        forces = []
        for sign in (1.0, -1.0):
            x = x0.copy()
            x[k // 3, k % 3] += sign * delta
            work.set_positions(x)
            forces.append(work.get_forces().reshape(-1))
        h[k] = -(forces[0] - forces[1]) / (2.0 * delta)
    return 0.5 * (h + h.T)


def hessian(atoms: Atoms, calc, method: str = "auto", delta: float = 0.005) -> np.ndarray:
    """``exact`` (autograd, mlipkit models only), ``fd``, or ``auto`` (exact when possible)."""
    if method not in ("auto", "exact", "fd"):
        raise InvalidConfig(f"Hessian method must be auto, exact or fd, got {method!r}")
    if method == "exact" or (method == "auto" and isinstance(calc, MlipkitCalculator)):
        return exact_hessian(atoms, calc)
    return finite_difference_hessian(atoms, calc, delta)
