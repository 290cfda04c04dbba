"""The Batch: several structures concatenated into flat tensors.

Fields and their shapes are declared in :mod:`mlipkit.data.keys`; this module
only relies on those declarations, so collate, split and ``to`` have no
special cases per field.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from mlipkit.data.keys import KEYS, Field

_REQUIRED = ("positions", "numbers", "system", "cell", "pbc", "n_atoms")


class Batch:
    """A dict-like, immutable-by-convention container of tensors.

    Access fields as attributes (``batch.positions``) or items
    (``batch["positions"]``). ``batch.get(name)`` returns ``None`` for an
    absent field. Methods that change content return a new Batch; tensors are
    shared, never modified in place.
    """

    __slots__ = ("_data",)

    def __init__(self, **fields: torch.Tensor) -> None:
        unknown = set(fields) - set(KEYS)
        if unknown:
            raise KeyError(f"unknown batch fields {sorted(unknown)}; known: {sorted(KEYS)}")
        missing = [k for k in _REQUIRED if k not in fields]
        if missing:
            raise KeyError(f"a Batch needs the fields {missing}")
        object.__setattr__(self, "_data", dict(fields))

    # -- access -----------------------------------------------------------
    def __getattr__(self, name: str) -> torch.Tensor:
        if name.startswith("_"):  # e.g. _data before it is set: no recursion
            raise AttributeError(name)
        try:
            return self._data[name]
        except KeyError:
            if name in KEYS:
                raise AttributeError(f"this batch has no '{name}' field") from None
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("Batch is immutable; use batch.replace(name=value)")

    def __reduce__(self):
        # pickle / copy would otherwise set _data through the blocked __setattr__
        return (_rebuild, (self._data,))

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._data[name]

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def get(self, name: str, default=None):
        return self._data.get(name, default)

    def keys(self):
        return self._data.keys()

    def items(self):
        return self._data.items()

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={list(v.shape)}" for k, v in self._data.items())
        return f"Batch({self.n_structures} structures, {self.n_total_atoms} atoms: {parts})"

    @property
    def n_structures(self) -> int:
        return int(self._data["n_atoms"].shape[0])

    @property
    def n_total_atoms(self) -> int:
        return int(self._data["positions"].shape[0])

    @property
    def n_edges(self) -> int:
        ei = self._data.get("edge_index")
        return 0 if ei is None else int(ei.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self._data["positions"].dtype

    @property
    def device(self) -> torch.device:
        return self._data["positions"].device

    # -- transformations ----------------------------------------------------
    def replace(self, **fields: torch.Tensor | None) -> Batch:
        """A new Batch with some fields replaced, added, or (``None``) removed."""
        data = dict(self._data)
        for k, v in fields.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v
        return Batch(**data)

    def without(self, *names: str) -> Batch:
        return self.replace(**dict.fromkeys(names))

    def to(self, device=None, dtype: torch.dtype | None = None) -> Batch:
        """Move to a device; cast floating fields (only) to ``dtype``."""
        out = {}
        for k, v in self._data.items():
            if dtype is not None and KEYS[k].kind == "float":
                v = v.to(device=device, dtype=dtype)
            else:
                v = v.to(device=device)
            out[k] = v
        return Batch(**out)

    # -- collate / split -----------------------------------------------------
    @staticmethod
    def collate(batches: Sequence[Batch]) -> Batch:
        """Concatenate batches (each of one or more structures) into one."""
        if len(batches) == 0:
            raise ValueError("cannot collate an empty list of batches")
        if len(batches) == 1:
            return batches[0]
        names = set(batches[0].keys())
        for b in batches[1:]:
            if set(b.keys()) != names:
                raise ValueError(
                    "cannot collate batches with different fields: "
                    f"{sorted(names)} vs {sorted(b.keys())}"
                )
        offsets = {"atom": 0, "system": 0}
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in names}
        for b in batches:
            for k in names:
                f = KEYS[k]
                v = b[k]
                if f.index_of is not None:
                    v = v + offsets[f.index_of]
                parts[k].append(v)
            offsets["atom"] += b.n_total_atoms
            offsets["system"] += b.n_structures
        out = {}
        for k, vs in parts.items():
            f = KEYS[k]
            out[k] = torch.block_diag(*vs) if f.scope == "atom_pair" else torch.cat(vs, f.cat_dim)
        return Batch(**out)

    def split(self) -> list[Batch]:
        """Split into one Batch per structure (inverse of :meth:`collate`)."""
        n_atoms = self._data["n_atoms"].tolist()
        atom_start = [0]
        for n in n_atoms:
            atom_start.append(atom_start[-1] + n)
        edge_ptr = None
        if "edge_index" in self._data:
            edge_system = self._data["system"][self._data["edge_index"][0]]
            counts = torch.bincount(edge_system, minlength=len(n_atoms)).tolist()
            edge_ptr = [0]
            for c in counts:
                edge_ptr.append(edge_ptr[-1] + c)
            order = torch.argsort(edge_system, stable=True)
        out = []
        for s in range(len(n_atoms)):
            a0, a1 = atom_start[s], atom_start[s + 1]
            fields = {}
            for k, v in self._data.items():
                f: Field = KEYS[k]
                if f.scope == "atom":
                    v = v[a0:a1]
                elif f.scope == "system":
                    v = v[s : s + 1]
                elif f.scope == "atom_pair":
                    v = v[3 * a0 : 3 * a1, 3 * a0 : 3 * a1]
                else:  # edge
                    idx = order[edge_ptr[s] : edge_ptr[s + 1]]
                    v = v.index_select(f.cat_dim, idx)
                if f.index_of == "atom":
                    v = v - a0
                elif f.index_of == "system":
                    v = v - s
                fields[k] = v
            out.append(Batch(**fields))
        return out


def _rebuild(fields: dict[str, torch.Tensor]) -> Batch:
    return Batch(**fields)
