"""Forces for MD: a potential plus a Verlet neighbor list with a skin."""

from __future__ import annotations

import torch

from mlipkit.data.batch import Batch
from mlipkit.errors import InvalidConfig
from mlipkit.md.state import MDState
from mlipkit.models.base import Potential, check_species, posterior_term
from mlipkit.models.derivatives import evaluate
from mlipkit.neighbors import attach_neighbors, edge_vectors


class VerletList:
    """A neighbor list at ``cutoff + skin``, rebuilt only when needed.

    With A = h₀⁻¹h the cell deformation since the build (identity without a
    cell) and dᵢ = xᵢ − xᵢ⁰A each atom's displacement beyond it, every pair
    vector is r = r⁰A + (dⱼ − dᵢ), so |r| ≥ σ_min(A)|r⁰| − 2 max|d|. A pair
    left out of the list had |r⁰| ≥ cutoff + skin, so it is still beyond the
    cutoff while 2 max|d| ≤ σ_min(A)(cutoff + skin) − cutoff; otherwise the
    list is rebuilt. Without cell changes this is the usual half-skin rule.
    """

    def __init__(self, cutoff: float, skin: float = 1.0) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.builds = 0
        self._positions: torch.Tensor | None = None
        self._inverse_cell: torch.Tensor | None = None
        self._full: torch.Tensor | None = None
        self._cell: torch.Tensor | None = None

    def update(self, batch: Batch) -> Batch:
        """``batch`` with a valid neighbor list: the old one if it still is."""
        if "edge_index" in batch and not self.needs_rebuild(batch):
            return batch
        batch = attach_neighbors(batch.without("edge_index", "shifts"), self.cutoff + self.skin)
        self._positions = batch.positions.detach().clone()
        cell = batch.cell.detach()
        full = torch.linalg.det(cell).abs() > 0
        eye = torch.eye(3, dtype=cell.dtype, device=cell.device).expand_as(cell)
        # replicas without a full cell never change it: A stays the identity
        self._inverse_cell = torch.where(full.view(-1, 1, 1), torch.linalg.inv(
            torch.where(full.view(-1, 1, 1), cell, eye)), torch.zeros_like(cell))
        self._full, self._cell = full, cell.clone()
        self.builds += 1
        return batch

    def within_cutoff(self, batch: Batch) -> Batch:
        """``batch`` with only the listed pairs now inside the cutoff, found
        without a graph, so that derivatives never visit the skin's pairs."""
        if self.skin == 0:
            return batch
        with torch.no_grad():
            inside = torch.linalg.vector_norm(edge_vectors(batch), dim=-1) < self.cutoff
        if bool(inside.all()):  # e.g. a small molecule: nothing to drop, nothing to copy
            return batch
        kept = torch.nonzero(inside).squeeze(-1)  # keeps the edges sorted by centre
        return batch.replace(edge_index=batch.edge_index.index_select(1, kept),
                             shifts=batch.shifts.index_select(0, kept))

    def needs_rebuild(self, batch: Batch) -> bool:
        if self._positions is None or self._positions.shape != batch.positions.shape:
            return True
        if self.skin == 0:
            return True
        positions = batch.positions.detach()
        if torch.equal(batch.cell, self._cell):  # fixed cells (or none): the half-skin rule
            moved = torch.linalg.vector_norm(positions - self._positions, dim=-1)
            return bool((2.0 * moved > self.skin).any())
        cell = batch.cell.detach()
        eye = torch.eye(3, dtype=cell.dtype, device=cell.device).expand_as(cell)
        deform = torch.where(self._full.view(-1, 1, 1), self._inverse_cell @ cell, eye)
        system = batch.system
        mapped = torch.einsum("na,nab->nb", self._positions, deform[system])
        moved = torch.linalg.vector_norm(positions - mapped, dim=-1)
        largest = moved.new_zeros(batch.n_structures).scatter_reduce(0, system, moved, "amax")
        stretch = torch.linalg.svdvals(deform)[:, -1]
        reach = stretch * (self.cutoff + self.skin) - self.cutoff
        return bool((2.0 * largest > reach).any())


class ForceField:
    """Evaluates a potential on an :class:`MDState` (energy, forces and, for
    NPT, stress), reusing the neighbor list between steps.

    The potential's own dtype and device are used; the state must match.
    """

    def __init__(self, potential: Potential, skin: float = 1.0, stress: bool = False) -> None:
        self.potential = potential
        caps = potential.capabilities
        self.species = caps.species
        self.neighbors = VerletList(caps.cutoff, skin)
        self.stress = stress
        # a term with a posterior (a fitted linear model) adds its spread every step
        self.posterior = posterior_term(potential) is not None

    def evaluate(self, state: MDState) -> MDState:
        """The state with forces, energy (stress) for its current positions."""
        builds = self.neighbors.builds
        batch = self.neighbors.update(state.batch)
        if self.neighbors.builds != builds:  # new or moved structures: check them here
            check_species(batch.numbers, self.species)
            if batch.dtype != self.potential.dtype:
                raise InvalidConfig(f"the state is {batch.dtype} but the potential is "
                                    f"{self.potential.dtype}; build the state with its dtype")
        pairs = self.neighbors.within_cutoff(batch)
        if type(self.potential).forward is Potential.forward:
            # checked above at every rebuild: skip the per-call casting and species check
            out = evaluate(self.potential, pairs, forces=True, stress=self.stress)
            if self.posterior:
                out.update(self.potential.uncertainty(pairs))
        else:  # e.g. ensembles, which add their spread
            out = self.potential(pairs, forces=True, stress=self.stress)
        forces = out["forces"].masked_fill(state.fixed.unsqueeze(-1), 0.0)
        extra = {k: v for k, v in out.items() if k.endswith("_std")}
        # the energy keeps the potential's output dtype (float64 reference energies
        # of a float32 model), so energy sums stay precise in large systems
        return state.replace(batch=batch, forces=forces, energy=out["energy"].detach(),
                             stress=out.get("stress"), outputs=extra)
