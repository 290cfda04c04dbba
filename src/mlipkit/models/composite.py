"""Potentials built from other potentials: sums and per-species scale/shift."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from ase.data import chemical_symbols
from torch import nn

from mlipkit.data.batch import Batch
from mlipkit.models.base import Capabilities, Potential, species_lookup, to_numbers


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
        caps = [t.capabilities for t in self.terms]
        species = None
        for c in caps:
            if c.species is not None:
                species = c.species if species is None else tuple(
                    sorted(set(species) & set(c.species)))
        return Capabilities(species=species, cutoff=max(c.cutoff for c in caps), dtype=self.dtype)


class ScaleShift(Potential):
    """E_i = scale · E_i^inner + shift[Z_i].

    ``shift`` maps elements to reference energies in eV (for example from
    :func:`mlipkit.data.fit_reference_energies`); ``scale`` is dimensionless.
    """

    type_name = "scale_shift"

    def __init__(self, inner: Potential, scale: float = 1.0,
                 shift: Mapping[str | int, float] | None = None) -> None:
        super().__init__()
        self.inner = inner
        species = inner.capabilities.species
        shift = dict(shift or {})
        numbers = to_numbers(list(shift)) if shift else []
        if species is None:
            if not numbers:
                raise ValueError("the inner potential takes any element; give shift per element")
            species = tuple(numbers)
        missing = set(numbers) - set(species)
        if missing:
            raise ValueError(f"shift given for elements the inner model lacks: {sorted(missing)}")
        self.species = list(species)
        values = torch.zeros(len(self.species), dtype=torch.get_default_dtype())
        by_number = {to_numbers([k])[0]: float(v) for k, v in shift.items()}
        for k, z in enumerate(self.species):
            values[k] = by_number.get(z, 0.0)
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)
        self.register_buffer("scale", torch.tensor(float(scale), dtype=values.dtype))
        self.register_buffer("shift", values)

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        shift = self.shift[self.lookup[batch.numbers]]
        return self.scale * self.inner.atomic_energies(batch) + shift

    def shifts(self) -> dict[str, float]:
        return {chemical_symbols[z]: float(v) for z, v in zip(self.species, self.shift)}

    def config(self) -> dict:
        # the values live in the tensors; the config only fixes shapes and order
        return {"type": self.type_name, "inner": self.inner.config(),
                "species": [chemical_symbols[z] for z in self.species]}

    @classmethod
    def from_config(cls, config: dict) -> ScaleShift:
        from mlipkit.models.registry import build

        return cls(build(config["inner"]), shift=dict.fromkeys(config["species"], 0.0))

    @property
    def capabilities(self) -> Capabilities:
        c = self.inner.capabilities
        return Capabilities(species=tuple(self.species), cutoff=c.cutoff, dtype=self.dtype)
