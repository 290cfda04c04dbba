"""Forces for MD: a potential plus a Verlet neighbor list with a skin."""

from __future__ import annotations

import torch

from mlipkit.data.batch import Batch
from mlipkit.errors import InvalidConfig
from mlipkit.md.state import MDState
from mlipkit.models.base import Potential, check_species
from mlipkit.models.derivatives import evaluate
from mlipkit.neighbors import attach_neighbors


class VerletList:
    """A neighbor list at ``cutoff + skin``, rebuilt only when needed.

    Every edge within the cutoff now was within ``cutoff + skin`` when the list
    was built as long as no atom has moved more than ``skin / 2`` (edges
    through periodic images also stretch with the cell, which is bounded by
    the cell change times the largest image shift in the list).
    """

    def __init__(self, cutoff: float, skin: float = 1.0) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.builds = 0
        self._positions: torch.Tensor | None = None
        self._cell: torch.Tensor | None = None
        self._max_shift = 0.0

    def update(self, batch: Batch) -> Batch:
        """``batch`` with a valid neighbor list: the old one if it still is."""
        if "edge_index" in batch and not self.needs_rebuild(batch):
            return batch
        batch = attach_neighbors(batch.without("edge_index", "shifts"), self.cutoff + self.skin)
        self._positions, self._cell = batch.positions.detach().clone(), batch.cell.detach().clone()
        shifts = batch.shifts
        self._max_shift = float(shifts.abs().sum(-1).max()) if shifts.numel() else 0.0
        self.builds += 1
        return batch

    def needs_rebuild(self, batch: Batch) -> bool:
        if self._positions is None or self._positions.shape != batch.positions.shape:
            return True
        if self.skin == 0:
            return True
        moved = torch.linalg.vector_norm(batch.positions - self._positions, dim=-1).max()
        strain = torch.linalg.vector_norm(batch.cell - self._cell, dim=-1).max()
        return bool(2.0 * moved + self._max_shift * strain > self.skin)


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
        self.evaluations = 0

    def evaluate(self, state: MDState) -> MDState:
        """The state with forces, energy (stress) for its current positions."""
        batch = self.neighbors.update(state.batch)
        if self.evaluations == 0:
            check_species(batch.numbers, self.species)
            if batch.dtype != self.potential.dtype:
                raise InvalidConfig(f"the state is {batch.dtype} but the potential is "
                                    f"{self.potential.dtype}; build the state with its dtype")
        if type(self.potential).forward is Potential.forward:
            # checked once above: skip the per-call casting and species check
            out = evaluate(self.potential, batch, forces=True, stress=self.stress)
        else:  # e.g. ensembles, which add their spread
            out = self.potential(batch, forces=True, stress=self.stress)
        self.evaluations += 1
        forces = out["forces"].masked_fill(state.fixed.unsqueeze(-1), 0.0)
        extra = {k: v for k, v in out.items() if k.endswith("_std")}
        return state.replace(batch=batch, forces=forces, energy=out["energy"].to(forces.dtype),
                             stress=out.get("stress"), outputs=extra)
