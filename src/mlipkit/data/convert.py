"""ase.Atoms <-> Batch, with validation of every input.

This is where ASE types enter and leave; everything inside mlipkit works on
:class:`~mlipkit.data.batch.Batch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from mlipkit.data.batch import Batch
from mlipkit.errors import InvalidStructure


def validate_geometry(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, where: str = ""):
    """Raise :class:`InvalidStructure` for input that cannot be evaluated."""
    at = f" ({where})" if where else ""
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise InvalidStructure(f"positions must have shape [N, 3], got {positions.shape}{at}")
    if positions.shape[0] == 0:
        raise InvalidStructure(f"empty structure: it has no atoms{at}")
    if not np.all(np.isfinite(positions)):
        bad = np.unique(np.nonzero(~np.isfinite(positions))[0])
        raise InvalidStructure(
            f"positions contain NaN or inf for atoms {bad[:10].tolist()}{at}; "
            "check the structure source (a diverged simulation or a parse error)"
        )
    if cell.shape != (3, 3) or pbc.shape != (3,):
        raise InvalidStructure(
            f"cell must be [3, 3] and pbc [3], got {cell.shape}, {pbc.shape}{at}"
        )
    if not np.all(np.isfinite(cell)):
        raise InvalidStructure(f"cell contains NaN or inf{at}")
    if pbc.any():
        periodic = cell[pbc]
        lengths = np.linalg.norm(periodic, axis=1)
        if np.any(lengths < 1e-8):
            raise InvalidStructure(
                f"pbc is {pbc.tolist()} but the cell vector(s) along a periodic direction are "
                f"zero{at}; give a cell (atoms.cell = ...) or switch pbc off for that direction"
            )
        # the periodic vectors must span as many dimensions as there are of them
        sv = np.linalg.svd(periodic, compute_uv=False)
        if sv[-1] < 1e-6 * max(sv[0], 1.0):
            raise InvalidStructure(
                f"the periodic cell vectors are linearly dependent (zero volume){at}: "
                f"cell = {cell.tolist()}"
            )


def from_atoms(
    atoms: Atoms,
    dtype: torch.dtype = torch.float64,
    labels: Mapping[str, object] | None = None,
    where: str = "",
) -> Batch:
    """One structure as a Batch.

    ``labels`` may hold ``energy`` (eV), ``forces`` ([N,3] eV/Å), ``stress``
    (3x3 or Voigt-6, eV/Å³, ASE sign) and ``hessian`` ([3N,3N] eV/Å²).
    ``where`` names the source (file and frame) in error messages.
    """
    if not isinstance(atoms, Atoms):
        raise TypeError(f"expected ase.Atoms, got {type(atoms).__name__}")
    positions = np.asarray(atoms.get_positions(), dtype=np.float64)
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    validate_geometry(positions, cell, pbc, where)
    n = len(atoms)
    fields = dict(
        positions=torch.tensor(positions, dtype=dtype),
        numbers=torch.tensor(atoms.numbers, dtype=torch.long),
        system=torch.zeros(n, dtype=torch.long),
        cell=torch.tensor(cell, dtype=dtype).unsqueeze(0),
        pbc=torch.tensor(pbc).unsqueeze(0),
        n_atoms=torch.tensor([n], dtype=torch.long),
    )
    for key, value in (labels or {}).items():
        if value is None:
            continue
        fields[key] = _label_tensor(key, value, n, dtype, where)
    return Batch(**fields)


def _label_tensor(key: str, value, n: int, dtype, where: str) -> torch.Tensor:
    at = f" ({where})" if where else ""
    arr = np.asarray(value, dtype=np.float64)
    if key == "energy":
        if arr.size != 1:
            raise InvalidStructure(f"energy must be one number, got shape {arr.shape}{at}")
        arr = arr.reshape(1)
    elif key == "forces":
        if arr.shape != (n, 3):
            raise InvalidStructure(f"forces must have shape [{n}, 3], got {arr.shape}{at}")
    elif key == "stress":
        if arr.shape == (6,):
            arr = voigt_6_to_full_3x3_stress(arr)
        if arr.shape != (3, 3):
            raise InvalidStructure(f"stress must be Voigt-6 or 3x3, got {arr.shape}{at}")
        arr = arr.reshape(1, 3, 3)
    elif key == "hessian":
        if arr.shape == (n, 3, n, 3):
            arr = arr.reshape(3 * n, 3 * n)
        if arr.shape != (3 * n, 3 * n):
            raise InvalidStructure(
                f"hessian must have shape [{3 * n}, {3 * n}], got {arr.shape}{at}"
            )
    else:
        raise KeyError(f"unknown label '{key}'; labels are energy, forces, stress, hessian")
    if not np.all(np.isfinite(arr)):
        raise InvalidStructure(f"label '{key}' contains NaN or inf{at}")
    return torch.tensor(arr, dtype=dtype)


def atoms_to_batch(
    structures: Atoms | Iterable[Atoms], dtype: torch.dtype = torch.float64
) -> Batch:
    """One or several structures (no labels) as one Batch."""
    if isinstance(structures, Atoms):
        return from_atoms(structures, dtype)
    items = [from_atoms(a, dtype, where=f"structure {k}") for k, a in enumerate(structures)]
    if not items:
        raise InvalidStructure("no structures given")
    return Batch.collate(items)


def to_atoms(batch: Batch) -> list[Atoms]:
    """Each structure of a batch as ase.Atoms; labels become a SinglePointCalculator."""
    out = []
    for b in batch.split():
        atoms = Atoms(
            numbers=b.numbers.cpu().numpy(),
            positions=b.positions.detach().cpu().double().numpy(),
            cell=b.cell[0].detach().cpu().double().numpy(),
            pbc=b.pbc[0].cpu().numpy(),
        )
        results = {}
        if "energy" in b:
            results["energy"] = float(b.energy[0])
        if "forces" in b:
            results["forces"] = b.forces.detach().cpu().double().numpy()
        if "stress" in b:
            sigma = b.stress[0].detach().cpu().double().numpy()
            results["stress"] = full_3x3_to_voigt_6_stress(sigma)
        if results:
            atoms.calc = SinglePointCalculator(atoms, **results)
        if "hessian" in b:
            atoms.info["hessian"] = b.hessian.detach().cpu().double().numpy()
        out.append(atoms)
    return out
