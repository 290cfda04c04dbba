"""Structures and labels as tensors: the Batch, conversions from ASE, file I/O, statistics."""

from mlipkit.data.batch import Batch
from mlipkit.data.convert import atoms_to_batch, from_atoms, to_atoms
from mlipkit.data.dataset import (
    composition,
    fit_reference_energies,
    label_statistics,
    species_of,
)
from mlipkit.data.io import (
    FORMATS,
    read,
    read_db,
    read_extxyz,
    read_rmd17,
    write_db,
    write_extxyz,
)
from mlipkit.data.keys import KEYS

__all__ = [
    "Batch", "KEYS", "from_atoms", "atoms_to_batch", "to_atoms",
    "read", "read_extxyz", "read_db", "read_rmd17", "write_extxyz", "write_db", "FORMATS",
    "species_of", "composition", "fit_reference_energies", "label_statistics",
]
