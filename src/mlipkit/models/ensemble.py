"""An ensemble (committee) of potentials: mean prediction and spread."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mlipkit.data.batch import Batch
from mlipkit.models.base import (
    Capabilities,
    Potential,
    check_interval_table,
    check_std_scale,
    combine_capabilities,
)
from mlipkit.models.derivatives import evaluate


class EnsemblePotential(Potential):
    """K members evaluated on the same batch.

    ``forward`` returns the member mean as ``energy``, ``forces``, ``stress``
    (and ``hessian``), the spread across members as ``energy_std`` [B] and
    ``forces_std`` [N,3] (population standard deviation), and the per-member
    values as ``energy_members`` [K,B] and ``forces_members`` [K,N,3].
    ``std_scale`` (energy, forces) multiplies the spreads: 1 as trained, a
    fitted value after ``mlipkit calibrate``, which may also fit an isotonic
    ``interval_table`` for the force intervals.
    """

    type_name = "ensemble"

    def __init__(self, members: Sequence[Potential],
                 std_scale: Sequence[float] = (1.0, 1.0),
                 interval_table: Sequence[float] | None = None) -> None:
        super().__init__()
        if len(members) < 1:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.std_scale = check_std_scale(std_scale)
        self.interval_table = check_interval_table(interval_table)

    def config(self) -> dict:
        return {"type": self.type_name, "members": [m.config() for m in self.members],
                "std_scale": self.std_scale, "interval_table": self.interval_table}

    @classmethod
    def from_config(cls, config: dict) -> EnsemblePotential:
        from mlipkit.models.registry import build

        return cls([build(c) for c in config["members"]],
                   std_scale=config.get("std_scale", (1.0, 1.0)),
                   interval_table=config.get("interval_table"))

    @property
    def capabilities(self) -> Capabilities:
        return combine_capabilities([t.capabilities for t in self.members], self.dtype)

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        return torch.stack([m.atomic_energies(batch) for m in self.members]).mean(0)

    def forward(self, batch: Batch, forces: bool = True, stress: bool = False,
                hessian: bool = False, training: bool = False) -> dict[str, torch.Tensor]:
        batch = self.prepare(batch)
        outs = [evaluate(m, batch, forces=forces, stress=stress, hessian=hessian,
                         create_graph=training) for m in self.members]
        result = {}
        for key in outs[0]:
            stacked = torch.stack([o[key] for o in outs])
            result[key] = stacked.mean(0)
            if key in ("energy", "forces"):
                scale = self.std_scale[0 if key == "energy" else 1]
                result[f"{key}_std"] = scale * stacked.std(0, unbiased=False)
                result[f"{key}_members"] = stacked
        return result
