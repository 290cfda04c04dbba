"""Per-species statistics of a labelled dataset: species, reference energies, label scales.

Every function takes a sequence of :class:`Batch` objects (each of one or more
structures, e.g. what :mod:`mlipkit.data.io` readers return).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlipkit.data.batch import Batch
from mlipkit.errors import MissingLabel, UnknownSpecies

__all__ = ["species_of", "composition", "fit_reference_energies", "label_statistics"]


def species_of(batches: Sequence[Batch]) -> list[int]:
    """Sorted atomic numbers present in any of the batches."""
    if not batches:
        return []
    return torch.unique(torch.cat([b.numbers.cpu() for b in batches])).tolist()


def composition(batches: Sequence[Batch], species: Sequence[int]) -> np.ndarray:
    """Atom counts per structure and species: ``[n_structures, len(species)]``.

    Raises :class:`UnknownSpecies` for an element not in ``species``.
    """
    species = list(species)
    lookup = torch.full((119,), -1, dtype=torch.long)
    lookup[torch.tensor(species, dtype=torch.long)] = torch.arange(len(species))
    rows = []
    for k, b in enumerate(batches):
        col = lookup[b.numbers.cpu()]
        if (col < 0).any():
            unknown = sorted(set(b.numbers.cpu()[col < 0].tolist()))
            raise UnknownSpecies(
                f"batch {k} contains atomic numbers {unknown}, not in species={species}; "
                "add them to species (or leave species=None to use all present)"
            )
        counts = torch.zeros(b.n_structures, len(species), dtype=torch.float64)
        counts.index_put_((b.system.cpu(), col), torch.ones(len(col), dtype=torch.float64),
                          accumulate=True)
        rows.append(counts)
    return torch.cat(rows).numpy()


def _energies(batches: Sequence[Batch]) -> np.ndarray:
    for k, b in enumerate(batches):
        if "energy" not in b:
            raise MissingLabel(
                f"batch {k} has no energy label; reference energies and energy statistics "
                "need total energies (read the data with require=('energy', ...))"
            )
    return torch.cat([b.energy.detach().cpu().double() for b in batches]).numpy()


def fit_reference_energies(
    batches: Sequence[Batch], species: Sequence[int] | None = None
) -> dict[int, float]:
    """Per-element reference energies (eV) by least squares of E on composition.

    Solves ``min ||C e - E||`` where ``C[s, j]`` counts atoms of ``species[j]``
    in structure ``s`` and ``E`` are total energies. With fewer independent
    compositions than species the system is rank-deficient: for one fixed
    composition (a single molecule, as in each rMD17 file) every solution fits
    the energies equally well, and ``numpy.linalg.lstsq`` returns the
    minimum-norm one. That is still an exact fit of the mean energy of that
    composition, but the split between elements is arbitrary, so do not read
    the values as atomic energies (and do not transfer them to other molecules).
    """
    if not batches:
        raise ValueError("no batches given to fit reference energies on")
    species = species_of(batches) if species is None else sorted(int(z) for z in species)
    energies = _energies(batches)
    counts = composition(batches, species)
    coef, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(c) for z, c in zip(species, coef)}


def label_statistics(
    batches: Sequence[Batch], reference_energies: dict[int, float]
) -> dict[str, float | int | None]:
    """Scales of the labels after subtracting reference energies.

    Returns ``n_structures``, ``n_atoms``, ``energy_per_atom_mean`` and
    ``energy_per_atom_std`` (eV/atom; mean and population std over structures
    of ``(E - Σ_i e_ref[Z_i]) / N``), and ``forces_rms`` (eV/Å; root mean square
    over all force components of the structures that have forces, ``None``
    if none has).
    """
    if not batches:
        raise ValueError("no batches given")
    species = sorted(reference_energies)
    energies = _energies(batches)
    counts = composition(batches, species)
    e_ref = np.array([reference_energies[z] for z in species], dtype=np.float64)
    n_atoms = counts.sum(axis=1)
    residual = (energies - counts @ e_ref) / n_atoms
    forces = [b.forces.detach().cpu().double() for b in batches if "forces" in b]
    forces_rms = float(torch.cat(forces).pow(2).mean().sqrt()) if forces else None
    return {
        "n_structures": int(len(energies)),
        "n_atoms": int(n_atoms.sum()),
        "energy_per_atom_mean": float(residual.mean()),
        "energy_per_atom_std": float(residual.std()),
        "forces_rms": forces_rms,
    }
