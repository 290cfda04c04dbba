"""The Potential contract.

A potential defines per-atom energies only; ``forward`` turns them into the
total energy and, through :mod:`mlipkit.models.derivatives`, forces, stress
and Hessians. Every potential is a ``torch.nn.Module`` (``.double()`` and
``.to(device)`` work) and can describe itself as a JSON-able config so that
model files never need pickle.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from ase.data import chemical_symbols
from torch import nn

from mlipkit.data.batch import Batch
from mlipkit.errors import UnknownSpecies
from mlipkit.neighbors import attach_neighbors, edge_vectors

OUTPUTS = ("energy", "atomic_energies", "forces", "stress", "hessian")


@dataclass(frozen=True)
class Capabilities:
    """What a potential can evaluate.

    ``species`` are atomic numbers; ``None`` means any element (e.g. ZBL).
    ``cutoff`` in Å is the neighbor-list radius the potential needs.
    """

    species: tuple[int, ...] | None
    cutoff: float
    dtype: torch.dtype
    outputs: tuple[str, ...] = OUTPUTS


def to_numbers(species) -> list[int]:
    """Symbols or atomic numbers -> sorted unique atomic numbers."""
    out = []
    for s in species:
        if isinstance(s, str):
            if s not in chemical_symbols[1:]:
                raise UnknownSpecies(f"'{s}' is not a chemical symbol")
            out.append(chemical_symbols.index(s))
        else:
            z = int(s)
            if not 0 < z < len(chemical_symbols):
                raise UnknownSpecies(f"{z} is not an atomic number")
            out.append(z)
    if not out:
        raise ValueError("a potential needs at least one species")
    return sorted(set(out))


class Potential(nn.Module, metaclass=abc.ABCMeta):
    """Abstract base: subclasses implement ``atomic_energies``, ``config`` and
    ``capabilities``, and register their ``type_name`` in ``models.REGISTRY``."""

    type_name: ClassVar[str] = ""

    @abc.abstractmethod
    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        """Per-atom energies [N] in eV. ``batch`` holds a neighbor list with at
        least ``capabilities.cutoff``; positions and cell may be strained."""

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-able description from which ``from_config`` rebuilds the module."""

    @classmethod
    def from_config(cls, config: dict) -> Potential:
        cfg = {k: v for k, v in config.items() if k != "type"}
        return cls(**cfg)

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """Species, cutoff and dtype of this potential."""

    @property
    def dtype(self) -> torch.dtype:
        for t in self.parameters():
            return t.dtype
        for t in self.buffers():
            if t.is_floating_point():
                return t.dtype
        return torch.get_default_dtype()

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def prepare(self, batch: Batch) -> Batch:
        """Cast to this potential's dtype/device, check species, and attach a
        neighbor list if the batch has none."""
        caps = self.capabilities
        batch = batch.to(self.device, self.dtype)
        check_species(batch.numbers, caps.species)
        if "edge_index" not in batch:
            batch = attach_neighbors(batch, caps.cutoff)
        return batch

    def forward(self, batch: Batch, forces: bool = True, stress: bool = False,
                hessian: bool = False, training: bool = False) -> dict[str, torch.Tensor]:
        """Evaluate; returns ``energy`` [B], ``atomic_energies`` [N] and, as
        asked, ``forces`` [N,3], ``stress`` [B,3,3], ``hessian`` [3N,3N].

        ``training=True`` keeps the graph (``create_graph``) so that losses on
        forces, stress or Hessians can be back-propagated.
        """
        from mlipkit.models.derivatives import evaluate

        batch = self.prepare(batch)
        out = evaluate(self, batch, forces=forces, stress=stress, hessian=hessian,
                       create_graph=training)
        if not training:
            out.update(self.uncertainty(batch, forces=forces))
        return out

    def uncertainty(self, batch: Batch, forces: bool = True) -> dict[str, torch.Tensor]:
        """``energy_std`` [B] (and ``forces_std`` [N,3]) from a term of this
        potential that has a fitted posterior (see
        :class:`~mlipkit.models.linear.BayesianLinear`); empty if none has.
        The other terms count as exact: the spread is that term's, which
        ``mlipkit train`` composes with scale 1."""
        term = posterior_term(self)
        return {} if term is None else term.predictive_std(batch, forces=forces)


def combine_capabilities(parts: list[Capabilities], dtype: torch.dtype) -> Capabilities:
    """Capabilities of potentials evaluated together: the species every part
    supports and the largest cutoff."""
    species = None
    for c in parts:
        if c.species is not None:
            species = c.species if species is None else tuple(
                sorted(set(species) & set(c.species)))
    return Capabilities(species=species, cutoff=max(c.cutoff for c in parts), dtype=dtype)


def check_species(numbers: torch.Tensor, species: tuple[int, ...] | None) -> None:
    if species is None:
        return
    present = torch.unique(numbers).tolist()
    unknown = sorted(set(present) - set(species))
    if unknown:
        names = [chemical_symbols[z] for z in unknown]
        known = [chemical_symbols[z] for z in species]
        raise UnknownSpecies(
            f"this model knows the elements {known} but the structure contains {names}; "
            "train or choose a model that covers them"
        )


def local_edges(batch: Batch, cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges within ``cutoff``: (edge_index [2,E'], vectors [E',3], distances [E'])."""
    vec = edge_vectors(batch)
    r = torch.linalg.vector_norm(vec, dim=-1)
    edge_index = batch.edge_index
    keep = r < cutoff
    if not bool(keep.all()):
        edge_index, vec, r = edge_index[:, keep], vec[keep], r[keep]
    return edge_index, vec, r


def check_std_scale(std_scale) -> list[float]:
    """(energy, forces) factors applied to predicted standard deviations."""
    values = [float(v) for v in std_scale]
    if len(values) != 2 or not all(0 < v < math.inf for v in values):
        raise ValueError(f"std_scale must be two positive numbers (energy, forces), got "
                         f"{std_scale}")
    return values


def check_interval_table(table) -> list[float] | None:
    """An isotonic interval table (see :mod:`mlipkit.uncertainty.calibration`),
    or None."""
    if table is None:
        return None
    from mlipkit.uncertainty.calibration import LEVELS

    values = [float(v) for v in table]
    if (len(values) != len(LEVELS) or not all(0 < v < math.inf for v in values)
            or any(b < a for a, b in zip(values, values[1:]))):
        raise ValueError(f"interval_table must be {len(LEVELS)} positive, non-decreasing "
                         "numbers")
    return values


def posterior_term(model: nn.Module) -> nn.Module | None:
    """The term of ``model`` with a fitted posterior (``predictive_std``), or None."""
    return next((m for m in model.modules()
                 if getattr(m, "fitted", False) and hasattr(m, "predictive_std")), None)


def uncertainty_head(model: nn.Module) -> nn.Module | None:
    """The module of ``model`` that predicts spreads (it holds ``std_scale``
    and ``interval_table``), or None."""
    return next((m for m in model.modules() if hasattr(m, "std_scale")), None)


def species_lookup(numbers: list[int]) -> torch.Tensor:
    """Table mapping atomic number -> index in ``numbers`` (-1 if absent)."""
    table = torch.full((len(chemical_symbols),), -1, dtype=torch.long)
    table[torch.tensor(numbers)] = torch.arange(len(numbers))
    return table
