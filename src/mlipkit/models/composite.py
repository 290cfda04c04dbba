"""Potentials built from other potentials: sums and per-species scale/shift."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from ase.data import chemical_symbols
from torch import nn

from mlipkit.data.batch import Batch
from mlipkit.models.base import (
    Capabilities,
    Potential,
    combine_capabilities,
    species_lookup,
    to_numbers,
)


class SumPotential(Potential):
    """E_i = Σ_terms E_i^term, e.g. ``SumPotential(nn, ZBL())``.

    The neighbor list is built once at the largest cutoff; each term uses the
    edges within its own cutoff. Species are those every term supports.
    """

    type_name = "sum"

    def __init__(self, *terms: Potential) -> None:
        super().__init__()
        if not terms:
            raise ValueError("SumPotential needs at least one term")
        self.terms = nn.ModuleList(terms)

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        return sum(term.atomic_energies(batch) for term in self.terms)

    def config(self) -> dict:
        return {"type": self.type_name, "terms": [t.config() for t in self.terms]}

    @classmethod
    def from_config(cls, config: dict) -> SumPotential:
        from mlipkit.models.registry import build

        return cls(*(build(c) for c in config["terms"]))

    @property
    def capabilities(self) -> Capabilities:
        return combine_capabilities([t.capabilities for t in self.terms], self.dtype)


class ScaleShift(Potential):
    """E_i = scale · E_i^inner + shift[Z_i].

    ``shift`` maps elements to reference energies in eV (for example from
    :func:`mlipkit.data.fit_reference_energies`); ``scale`` is dimensionless.
    Both are kept as float64 numbers in the config, and the shifted energies
    are float64 even for a float32 inner model: reference energies of
    -1000 eV per atom would otherwise lose meV-level precision.
    """

    type_name = "scale_shift"

    def __init__(self, inner: Potential, scale: float = 1.0,
                 shift: Mapping[str | int, float] | None = None) -> None:
        super().__init__()
        self.inner = inner
        species = inner.capabilities.species
        by_number = {to_numbers([k])[0]: float(v) for k, v in (shift or {}).items()}
        if species is None:
            if not by_number:
                raise ValueError("the inner potential takes any element; give shift per element")
            species = tuple(sorted(by_number))
        missing = set(by_number) - set(species)
        if missing:
            names = [chemical_symbols[z] for z in sorted(missing)]
            raise ValueError(f"shift given for elements the inner model lacks: {names}")
        self.species = list(species)
        self.scale = float(scale)
        self.shift_values = [by_number.get(z, 0.0) for z in self.species]
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        shift = torch.tensor(self.shift_values, dtype=torch.float64, device=batch.device)
        inner = self.inner.atomic_energies(batch)
        return self.scale * inner.to(torch.float64) + shift[self.lookup[batch.numbers]]

    def shifts(self) -> dict[str, float]:
        return {chemical_symbols[z]: v for z, v in zip(self.species, self.shift_values)}

    def config(self) -> dict:
        return {"type": self.type_name, "inner": self.inner.config(), "scale": self.scale,
                "shift": self.shifts()}

    @classmethod
    def from_config(cls, config: dict) -> ScaleShift:
        from mlipkit.models.registry import build

        return cls(build(config["inner"]), scale=config["scale"], shift=config["shift"])

    @property
    def capabilities(self) -> Capabilities:
        c = self.inner.capabilities
        return Capabilities(species=tuple(self.species), cutoff=c.cutoff, dtype=self.dtype)
