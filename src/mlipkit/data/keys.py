"""Every field a :class:`~mlipkit.data.batch.Batch` can hold, declared once.

A field states its shape (symbolic sizes: ``N`` atoms, ``E`` edges, ``B``
structures), its *scope* (what it is indexed by), its dtype kind and unit.
Collate and split are generic because of these declarations:

- ``atom``: concatenated along the ``N`` axis;
- ``edge``: concatenated along the ``E`` axis;
- ``system``: one row per structure, concatenated along ``B``;
- ``atom_pair``: a ``[3N, 3N]`` matrix per structure (Hessians), collated
  block-diagonally.

Index fields (``index_of``) hold indices into another scope and are offset
when structures are concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["atom", "edge", "system", "atom_pair"]
Kind = Literal["float", "int", "bool"]

SCOPE_AXIS = {"atom": "N", "edge": "E", "system": "B", "atom_pair": "3N"}


@dataclass(frozen=True)
class Field:
    name: str
    shape: tuple[str | int, ...]
    scope: Scope
    kind: Kind
    unit: str
    doc: str
    index_of: Scope | None = None

    @property
    def cat_dim(self) -> int:
        """The tensor dimension along which structures are concatenated."""
        return self.shape.index(SCOPE_AXIS[self.scope])


_FIELDS = [
    # structure
    Field("positions", ("N", 3), "atom", "float", "Å", "Cartesian coordinates"),
    Field("numbers", ("N",), "atom", "int", "", "atomic numbers"),
    Field("system", ("N",), "atom", "int", "", "index of the structure each atom belongs to",
          index_of="system"),
    Field("cell", ("B", 3, 3), "system", "float", "Å",
          "lattice vectors as rows (ASE convention); zeros for a molecule without a cell"),
    Field("pbc", ("B", 3), "system", "bool", "", "periodic along each lattice vector"),
    Field("n_atoms", ("B",), "system", "int", "", "number of atoms in each structure"),
    # neighbor list
    Field("edge_index", (2, "E"), "edge", "int", "",
          "pairs (i, j): j is a neighbor of i; r_ij = x_j - x_i + shifts_ij @ cell",
          index_of="atom"),
    Field("shifts", ("E", 3), "edge", "float", "",
          "integer cell shifts of j's image (stored in the float dtype)"),
    # labels and outputs
    Field("energy", ("B",), "system", "float", "eV", "total potential energy"),
    Field("atomic_energies", ("N",), "atom", "float", "eV", "per-atom energy contributions"),
    Field("forces", ("N", 3), "atom", "float", "eV/Å", "forces, -dE/dR"),
    Field("stress", ("B", 3, 3), "system", "float", "eV/Å³",
          "stress (1/V) dE/d(strain); positive under tension (ASE sign)"),
    Field("hessian", ("3N", "3N"), "atom_pair", "float", "eV/Å²",
          "d²E/dR², rows/columns ordered (atom, xyz); block diagonal over structures"),
    # descriptors cached for training (positions fixed): values and edge derivatives
    Field("descriptors", ("N", "F"), "atom", "float", "",
          "descriptor vector of each atom, computed once for fixed positions"),
    Field("descriptor_jacobian", ("E", 3, "F"), "edge", "float", "1/Å",
          "derivative of the center atom's descriptors with respect to the edge vector"),
    # a ZBL prior cached for training the same way
    Field("zbl_energies", ("N",), "atom", "float", "eV",
          "ZBL energy of each atom, computed once for fixed positions"),
    Field("zbl_edge_gradient", ("E", 3), "edge", "float", "eV/Å",
          "derivative of the center atom's ZBL energy with respect to the edge vector"),
    Field("energy_std", ("B",), "system", "float", "eV", "predicted standard deviation of energy"),
    Field("forces_std", ("N", 3), "atom", "float", "eV/Å",
          "predicted standard deviation of forces"),
]

KEYS: dict[str, Field] = {f.name: f for f in _FIELDS}

LABEL_KEYS = ("energy", "forces", "stress", "hessian")
