"""Reading and writing labelled structures: extxyz, ase.db (SQLite), rMD17 npz.

Every reader returns a list of single-structure :class:`Batch` objects (collate
them with :meth:`Batch.collate`); every writer accepts such a list or one
collated Batch. Labels are in mlipkit units: energy eV, forces eV/Å, stress
eV/Å³ (ASE sign, σ = (1/V) ∂E/∂ε), Hessian eV/Å².

Where a label is looked for (``*_key`` names the key in the file):

- extxyz: ``atoms.info`` and ``atoms.arrays`` (custom keys such as
  ``REF_energy``), then the SinglePointCalculator that ASE builds from the
  standard names (``energy``, ``forces``, ``stress``, ``free_energy``, ...);
- ase.db: the row's calculator results and key-value pairs, then ``row.data``.

A key set to ``None`` is never read. A label named in ``require`` that a frame
lacks raises :class:`~mlipkit.errors.MissingLabel`; any other missing label is
simply left out of that frame's Batch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import all_properties
from ase.io.formats import string2index

from mlipkit import units
from mlipkit.data.batch import Batch
from mlipkit.data.convert import from_atoms, to_atoms
from mlipkit.data.keys import LABEL_KEYS
from mlipkit.errors import InvalidStructure, MissingLabel

__all__ = [
    "read", "read_extxyz", "read_db", "read_rmd17", "write_extxyz", "write_db", "FORMATS",
]

_LABELS = LABEL_KEYS


# -- helpers -----------------------------------------------------------------
def _existing(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such data file: '{p}'")
    return p


def _label_keys(energy_key, forces_key, stress_key, hessian_key, require) -> dict[str, str]:
    keys = {
        label: key
        for label, key in zip(_LABELS, (energy_key, forces_key, stress_key, hessian_key))
        if key is not None
    }
    for label in require:
        if label not in _LABELS:
            raise ValueError(f"require={tuple(require)!r}: '{label}' is not one of {_LABELS}")
        if label not in keys:
            raise ValueError(f"'{label}' is required but {label}_key is None; give the key name")
    return keys


def _shape_label(label: str, value, n_atoms: int):
    """Bring file layouts to what ``from_atoms`` takes (it checks shapes itself)."""
    arr = np.asarray(value, dtype=np.float64)
    if label == "stress" and arr.shape == (9,):
        arr = arr.reshape(3, 3)
    elif label == "hessian" and arr.size == 9 * n_atoms**2:
        # per-atom column [N, 9N], flat [9N²] or [N,3,N,3]: all row-major (atom, xyz)
        arr = arr.reshape(3 * n_atoms, 3 * n_atoms)
    return arr


def _collect_labels(
    lookup: Callable[[str], object],
    available: Callable[[], list[str]],
    keys: dict[str, str],
    require: Sequence[str],
    n_atoms: int,
    where: str,
) -> dict[str, np.ndarray]:
    labels = {}
    for label, key in keys.items():
        value = lookup(key)
        if value is None:
            if label in require:
                raise MissingLabel(
                    f"{where} has no '{key}' (asked for as the {label} label); "
                    f"this frame has the keys {available()}. Pass {label}_key=<one of them>, "
                    f"or leave '{label}' out of require= to skip it"
                )
            continue
        labels[label] = _shape_label(label, value, n_atoms)
    return labels


def _frame_names(index, count: int) -> list:
    """File frame numbers for the frames ``ase.io.read(index=index)`` returned."""
    idx = string2index(index) if isinstance(index, str) else index
    if isinstance(idx, int) and idx >= 0:
        return [idx]
    if isinstance(idx, slice) and (idx.start or 0) >= 0 and (idx.step or 1) > 0:
        start, step = idx.start or 0, idx.step or 1
        return [start + k * step for k in range(count)]
    return [f"{k} of index={index!r}" for k in range(count)]


def _as_batches(batches: Batch | Sequence[Batch]) -> list[Batch]:
    items = [batches] if isinstance(batches, Batch) else list(batches)
    if not items:
        raise ValueError("nothing to write: the list of batches is empty")
    return items


def _temp_beside(path: Path, suffix: str) -> str:
    """A temporary file in the target's folder (so os.replace is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    # mkstemp makes it 0600; give the result the permissions the target had
    os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    return tmp


# -- extxyz -------------------------------------------------------------------
def _atoms_lookup(atoms: Atoms, key: str):
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays:
        return atoms.arrays[key]
    if atoms.calc is not None:
        return atoms.calc.results.get(key)
    return None


def _atoms_keys(atoms: Atoms) -> list[str]:
    names = set(atoms.info) | (set(atoms.arrays) - {"numbers", "positions"})
    if atoms.calc is not None:
        names |= set(atoms.calc.results)
    return sorted(names)


def read_extxyz(
    path,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = "stress",
    hessian_key: str | None = None,
    require: Sequence[str] = ("energy", "forces"),
    index: str | int = ":",
    dtype: torch.dtype = torch.float64,
) -> list[Batch]:
    """Frames of an extended-XYZ file, one Batch each.

    ``index`` is ASE's frame selection (``":"``, ``"10:20"``, ``-1`` ...).
    Stress may be stored as Voigt-6, 9 numbers or 3x3 (eV/Å³, ASE sign).
    A Hessian is read from ``hessian_key`` as [3N,3N] (what
    :func:`write_extxyz` writes), [N,9N] per-atom columns or 9N² numbers.
    """
    path = _existing(path)
    keys = _label_keys(energy_key, forces_key, stress_key, hessian_key, require)
    frames = ase.io.read(path, index=index, format="extxyz")
    if isinstance(frames, Atoms):
        frames = [frames]
    out = []
    for k, atoms in zip(_frame_names(index, len(frames)), frames):
        where = f"{path} frame {k}"
        labels = _collect_labels(
            lambda key, a=atoms: _atoms_lookup(a, key),
            lambda a=atoms: _atoms_keys(a),
            keys, require, len(atoms), where,
        )
        out.append(from_atoms(atoms, dtype, labels=labels, where=where))
    return out


def write_extxyz(path, batches: Batch | Sequence[Batch]) -> None:
    """Write structures and labels (energy, forces, stress, hessian) as extxyz.

    The file is written beside the target and moved into place, so an
    interrupted write leaves any previous file intact. Labels use the
    standard names (read them back with the default keys; ``hessian_key=
    "hessian"``). ASE writes per-atom columns (positions, forces) with 8
    decimals, so those round-trip to 5e-9 Å, eV/Å; energy, cell, stress and
    Hessian are written with full precision. Other fields (edges, uncertainties)
    are not written.
    """
    path = Path(path)
    atoms = [a for b in _as_batches(batches) for a in to_atoms(b)]
    tmp = _temp_beside(path, ".xyz")
    try:
        with open(tmp, "w") as f:
            ase.io.write(f, atoms, format="extxyz")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- ase.db -------------------------------------------------------------------
def _row_lookup(row, key: str):
    value = row.get(key)  # calculator results and key-value pairs
    if value is None:
        value = row.data.get(key)
    return value


def _row_keys(row) -> list[str]:
    names = {p for p in all_properties if p in row}
    return sorted(names | set(row.key_value_pairs) | set(row.data))


def read_db(
    path,
    energy_key: str | None = "energy",
    forces_key: str | None = "forces",
    stress_key: str | None = "stress",
    hessian_key: str | None = None,
    selection=None,
    require: Sequence[str] = ("energy", "forces"),
    dtype: torch.dtype = torch.float64,
) -> list[Batch]:
    """Rows of an ASE SQLite database, one Batch each, in row-id order.

    ``selection`` is anything ``ase.db``'s ``select`` takes (``"natoms<10"``,
    a row id, ...). Error messages name the row by its id.
    """
    path = _existing(path)  # ase.db.connect would silently create a new, empty file
    keys = _label_keys(energy_key, forces_key, stress_key, hessian_key, require)
    db = ase.db.connect(str(path), type="db")
    out = []
    for row in db.select(selection):
        where = f"{path} row id={row.id}"
        labels = _collect_labels(
            lambda key, r=row: _row_lookup(r, key),
            lambda r=row: _row_keys(r),
            keys, require, row.natoms, where,
        )
        atoms = row.toatoms()
        out.append(from_atoms(atoms, dtype, labels=labels, where=where))
    return out


def write_db(path, batches: Batch | Sequence[Batch], append: bool = False) -> None:
    """Write structures and labels to an ASE SQLite database (exact round trip).

    Energy, forces and stress become the row's calculator results (read them
    back with the default keys); a Hessian goes to ``row.data["hessian"]``.
    Without ``append`` any existing file is replaced, atomically (written
    beside it, then moved); with ``append`` the rows are added in one SQLite
    transaction, so an interruption adds none of them.
    """
    path = Path(path)
    atoms = [a for b in _as_batches(batches) for a in to_atoms(b)]
    target = str(path) if append else _temp_beside(path, ".db")
    try:
        db = ase.db.connect(target, type="db", append=True)
        with db:
            for a in atoms:
                hessian = a.info.pop("hessian", None)
                db.write(a, data={} if hessian is None else {"hessian": hessian})
        if not append:
            os.replace(target, path)
    except BaseException:
        if not append:
            Path(target).unlink(missing_ok=True)
        raise


# -- rMD17 --------------------------------------------------------------------
_RMD17_KEYS = ("nuclear_charges", "coords", "energies", "forces")


def read_rmd17(path, indices=None, dtype: torch.dtype = torch.float64) -> list[Batch]:
    """Frames of a revised-MD17 npz file, one Batch each (non-periodic, zero cell).

    The file holds ``coords`` [F,N,3] Å, ``energies`` [F] kcal/mol and
    ``forces`` [F,N,3] kcal/mol/Å; they are converted to eV and eV/Å.
    ``indices`` picks frames (integers, negative allowed, or a slice).
    Frames share their ``numbers``, ``cell``, ``pbc``, ``system`` tensors.
    """
    path = _existing(path)
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in _RMD17_KEYS if k not in npz.files]
        if missing:
            raise MissingLabel(
                f"{path} is not an rMD17 file: it lacks {missing} (it has {sorted(npz.files)})"
            )
        z, coords, energies, forces = (npz[k] for k in _RMD17_KEYS)
    n_frames, n = coords.shape[0], z.shape[0]
    if coords.shape != (n_frames, n, 3) or forces.shape != coords.shape:
        raise InvalidStructure(
            f"{path}: coords {coords.shape} and forces {forces.shape} must both be "
            f"[frames, {n}, 3] to match nuclear_charges {z.shape}"
        )
    if energies.shape != (n_frames,):
        raise InvalidStructure(f"{path}: energies {energies.shape} must be [{n_frames}]")
    if n == 0:
        raise InvalidStructure(f"empty structure: it has no atoms ({path})")
    frames = np.arange(n_frames)[slice(None) if indices is None else indices]
    frames = np.atleast_1d(frames)
    coords, energies, forces = coords[frames], energies[frames], forces[frames]
    for name, arr in (("positions", coords), ("energy", energies), ("forces", forces)):
        finite = np.isfinite(arr.reshape(len(frames), -1)).all(axis=1)
        if not finite.all():
            bad = int(frames[np.argmin(finite)])
            raise InvalidStructure(f"{name} contain NaN or inf ({path} frame {bad})")

    pos = torch.from_numpy(np.ascontiguousarray(coords)).to(dtype)
    e = torch.from_numpy(energies * units.kcal_per_mol).to(dtype)
    f = torch.from_numpy(forces * units.kcal_per_mol).to(dtype)
    shared = dict(
        numbers=torch.from_numpy(z.astype(np.int64)),
        system=torch.zeros(n, dtype=torch.long),
        cell=torch.zeros(1, 3, 3, dtype=dtype),
        pbc=torch.zeros(1, 3, dtype=torch.bool),
        n_atoms=torch.tensor([n], dtype=torch.long),
    )
    # clone: a view would pin (and pickle) the whole file's storage
    return [
        Batch(positions=pos[k].clone(), energy=e[k : k + 1].clone(), forces=f[k].clone(),
              **shared)
        for k in range(len(frames))
    ]


# -- dispatch -------------------------------------------------------------------
FORMATS: dict[str, Callable[..., list[Batch]]] = {
    ".xyz": read_extxyz,
    ".extxyz": read_extxyz,
    ".db": read_db,
    ".npz": read_rmd17,
}


def read(path, **kwargs) -> list[Batch]:
    """Read a data file, choosing the reader by suffix (see :data:`FORMATS`)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(f"{s} ({FORMATS[s].__name__})" for s in FORMATS)
        raise ValueError(f"cannot tell the format of '{path}' from its suffix; known: {known}")
    return FORMATS[suffix](path, **kwargs)
