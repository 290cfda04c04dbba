"""Checks run after every MD step; a failed check stops the run with a
message that names the step, replica, atoms and value."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mlipkit.errors import InvalidConfig, SimulationUnstable
from mlipkit.md.state import MDState
from mlipkit.neighbors import edge_vectors


@dataclass(frozen=True)
class Guard:
    """Limits, each optional: ``max_force`` (eV/Å, any force component
    vector norm), ``min_distance`` (Å, between any two atoms within the
    neighbor list) and ``max_uncertainty`` (eV/Å, the largest predicted force
    standard deviation: an ensemble's or a fitted linear model's). Non-finite
    energies, forces, positions or momenta always stop the run."""

    max_force: float | None = None
    min_distance: float | None = None
    max_uncertainty: float | None = None

    def check(self, state: MDState) -> None:
        """Raise :class:`SimulationUnstable` if any limit is exceeded."""
        for name, values in (("positions", state.positions), ("momenta", state.momenta),
                             ("forces", state.forces)):
            bad = ~torch.isfinite(values)
            if bool(bad.any()):
                atom = int(torch.nonzero(bad)[0, 0])
                replica, first = _locate(state, atom)
                atom -= first
                self._fail(state, f"non-finite {name}", f"replica {replica}, atom {atom}", None)
        bad = ~torch.isfinite(state.energy)
        if bool(bad.any()):
            self._fail(state, "non-finite energy", f"replica {int(torch.nonzero(bad)[0, 0])}",
                       None)
        if self.max_force is not None:
            norms = torch.linalg.vector_norm(state.forces, dim=-1)
            self._limit(state, "force", norms, self.max_force, "eV/Å")
        if self.max_uncertainty is not None:
            std = state.outputs.get("forces_std")
            if std is None:
                raise InvalidConfig("max_uncertainty needs a potential that predicts "
                                    "forces_std (an ensemble or a fitted linear model)")
            self._limit(state, "force uncertainty", torch.linalg.vector_norm(std, dim=-1),
                        self.max_uncertainty, "eV/Å")
        if self.min_distance is not None and state.batch.n_edges:
            r = torch.linalg.vector_norm(edge_vectors(state.batch), dim=-1)
            k = int(torch.argmin(r))
            if float(r[k]) < self.min_distance:
                i, j = (int(x) for x in state.batch.edge_index[:, k])
                replica, first = _locate(state, i)
                self._fail(state, "atoms too close",
                           f"replica {replica}, atoms {i - first} and {j - first}",
                           f"{float(r[k]):.3f} Å < {self.min_distance} Å")

    def _limit(self, state, what, per_atom, limit, unit):
        k = int(torch.argmax(per_atom))
        if float(per_atom[k]) > limit:
            replica, first = _locate(state, k)
            self._fail(state, f"{what} above its limit", f"replica {replica}, atom {k - first}",
                       f"{float(per_atom[k]):.3f} {unit} > {limit} {unit}")

    @staticmethod
    def _fail(state: MDState, what: str, where: str, value: str | None) -> None:
        detail = f" ({value})" if value else ""
        raise SimulationUnstable(f"step {state.step} (t = {state.time:.1f} fs): {what} at "
                                 f"{where}{detail}")


def _locate(state: MDState, atom: int) -> tuple[int, int]:
    """(replica, index of its first atom) of a global atom index."""
    replica = int(state.system[atom])
    first = int(state.batch.n_atoms[:replica].sum())
    return replica, first

