"""Observers, called every ``interval`` steps with the current state.

Each writes as it goes (flushed), so an interrupted run keeps what it saw.
"""

from __future__ import annotations

import abc
import csv
from pathlib import Path

import numpy as np
import torch
from ase.io import write

from mlipkit.errors import InvalidConfig
from mlipkit.md.state import MDState
from mlipkit.neighbors import neighbor_list
from mlipkit.units import GPa


class Observer(abc.ABC):
    """Base: ``__call__(state, integrator)`` every ``interval`` steps, ``close()`` at the end."""

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise InvalidConfig(f"observer interval must be >= 1, got {interval}")
        self.interval = int(interval)

    @abc.abstractmethod
    def __call__(self, state: MDState, integrator) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook; most observers hold no files
        """Release files; called once when the run ends."""


class ThermoLog(Observer):
    """CSV, one row per replica and call: step, time (fs), potential, kinetic,
    total and conserved energy (eV), temperature (K), volume (Å³), pressure
    (GPa) when stress is evaluated, largest force uncertainty (eV/Å) for
    ensembles. ``conserved`` is empty for integrators without one (NPT)."""

    COLUMNS = ["step", "time_fs", "replica", "epot", "ekin", "etot", "conserved",
               "temperature", "volume", "pressure_gpa", "max_forces_std"]

    def __init__(self, path: str | Path, interval: int = 10) -> None:
        super().__init__(interval)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", newline="")  # a new run starts a new log
        self._writer = csv.writer(self._fh)
        self._writer.writerow(self.COLUMNS)

    def __call__(self, state: MDState, integrator) -> None:
        ekin = state.kinetic_energy()
        cols = [state.energy, ekin, state.energy + ekin, integrator.conserved(state),
                state.temperature(), state.volume()]  # conserved may be None
        cols.append(state.pressure() / GPa if state.stress is not None else None)
        std = state.outputs.get("forces_std")
        cols.append(None if std is None else
                    state.replica_max(torch.linalg.vector_norm(std, dim=-1)))
        values = [None if c is None else c.detach().cpu().double().numpy() for c in cols]
        for b in range(state.n_replicas):
            row = [state.step, f"{state.time:.3f}", b]
            row += ["" if v is None else f"{v[b]:.10g}" for v in values]
            self._writer.writerow(row)
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class Trajectory(Observer):
    """Frames appended to ``<stem>_<replica>.extxyz`` (wrapped positions,
    velocities as momenta, energy, forces)."""

    def __init__(self, directory: str | Path, interval: int = 100, stem: str = "trajectory"
                 ) -> None:
        super().__init__(interval)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.stem = stem
        for old in self.directory.glob(f"{stem}_*.extxyz"):  # frames of an earlier run
            old.unlink()

    def path(self, replica: int) -> Path:
        return self.directory / f"{self.stem}_{replica}.extxyz"

    def __call__(self, state: MDState, integrator) -> None:
        for b, atoms in enumerate(state.to_atoms()):
            write(self.path(b), atoms, format="extxyz", append=True)


class RadialDistribution(Observer):
    """g(r) of periodic replicas, averaged over calls and replicas, from all
    pairs within ``r_max``."""

    def __init__(self, r_max: float = 6.0, bins: int = 120, interval: int = 10) -> None:
        super().__init__(interval)
        self.edges = np.linspace(0.0, r_max, bins + 1)
        self.counts = np.zeros(bins)
        self.norm = 0.0

    def __call__(self, state: MDState, integrator) -> None:
        if not bool(state.batch.pbc.all()):
            raise InvalidConfig("the radial distribution needs periodic replicas")
        positions = state.positions.detach().cpu().double().numpy()
        cells = state.batch.cell.detach().cpu().double().numpy()
        start = 0
        for cell, n in zip(cells, state.batch.n_atoms.tolist()):
            x = positions[start : start + n]
            start += n
            ei, shifts = neighbor_list(x, cell, np.ones(3, dtype=bool), self.edges[-1])
            vec = x[ei[1]] - x[ei[0]] + shifts @ cell
            self.counts += np.histogram(np.linalg.norm(vec, axis=1), self.edges)[0]
            self.norm += n * n / abs(np.linalg.det(cell))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin centres (Å) and g(r)."""
        r = 0.5 * (self.edges[1:] + self.edges[:-1])
        shell = 4.0 / 3.0 * np.pi * (self.edges[1:] ** 3 - self.edges[:-1] ** 3)
        return r, self.counts / (shell * max(self.norm, 1e-300))


class MeanSquaredDisplacement(Observer):
    """MSD (Å²) from the start, per replica, over the moving atoms, with the
    replica's centre-of-mass displacement removed. Positions are unwrapped;
    in periodic cells displacements are taken in fractional coordinates and
    mapped with the current cell, so that cell rescaling (NPT) is not
    counted as motion."""

    def __init__(self, interval: int = 10) -> None:
        super().__init__(interval)
        self.reference: torch.Tensor | None = None
        self.times: list[float] = []
        self.values: list[np.ndarray] = []

    def __call__(self, state: MDState, integrator) -> None:
        cell = state.batch.cell.detach()
        periodic = state.batch.pbc.all(-1) & (torch.linalg.det(cell).abs() > 0)
        eye = torch.eye(3, dtype=cell.dtype, device=cell.device).expand_as(cell)
        cell = torch.where(periodic.view(-1, 1, 1), cell, eye)[state.system]  # [N, 3, 3]
        # fractional coordinates in periodic replicas, Cartesian otherwise
        coords = torch.linalg.solve(cell.transpose(1, 2), state.positions.detach())
        if self.reference is None:
            self.reference = coords.clone()
        d = torch.einsum("na,nab->nb", coords - self.reference, cell)
        moving = (~state.fixed).to(d.dtype)
        count = state.per_replica(moving)
        drift = d.new_zeros(state.n_replicas, 3).index_add(0, state.system, d * moving[:, None])
        d = (d - (drift / count[:, None])[state.system]) * moving[:, None]
        self.times.append(state.time)
        self.values.append((state.per_replica((d**2).sum(-1)) / count).cpu().double().numpy())


class UncertaintyMonitor(Observer):
    """The largest and mean force standard deviation (eV/Å) of an ensemble
    potential over time, per replica."""

    def __init__(self, interval: int = 10) -> None:
        super().__init__(interval)
        self.rows: list[tuple[float, np.ndarray, np.ndarray]] = []

    def __call__(self, state: MDState, integrator) -> None:
        std = state.outputs.get("forces_std")
        if std is None:
            raise InvalidConfig("the uncertainty monitor needs a potential that predicts "
                                "forces_std (an ensemble or a fitted linear model)")
        norm = torch.linalg.vector_norm(std, dim=-1)
        largest = state.replica_max(norm)
        mean = state.per_replica(norm) / state.per_replica(torch.ones_like(norm))
        self.rows.append((state.time, largest.cpu().double().numpy(),
                          mean.cpu().double().numpy()))

