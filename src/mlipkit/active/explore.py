"""Exploration: MD driven by the committee, watched by its own disagreement.

Every starting structure runs at every temperature as one replica of a
batched Langevin (or, with a pressure, stochastic cell rescaling) run.
Each step the largest atomic force deviation of each replica is checked:
a replica above ``hi`` has left the trust region and is stopped there; its
last frame inside the region (one step earlier) is kept as a candidate, as
are its samples until then. A replica that leaves at its first step keeps
no such frame: one step earlier it was its start, which the seed labels
hold already (with a float32 model, a rounded copy of it). Every
``sample_every`` steps the running replicas' frames become candidates,
with their deviation (largest over the atoms) and spread (root mean square
over the atoms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from tqdm.auto import tqdm

from mlipkit.md.forcefield import ForceField
from mlipkit.md.integrators import Langevin, StochasticCellRescaling
from mlipkit.md.state import initial_state
from mlipkit.units import GPa


@dataclass
class Exploration:
    """Candidate ``frames`` with their max atomic force ``deviation`` (eV/Å),
    its root mean square over the atoms (``spread``, eV/Å), ``temperature``
    (K) and ``start`` (the index of the starting structure); ``last_trusted``
    indexes the frames that are a stopped trajectory's last one inside the
    trust region (not samples);
    ``stopped`` counts trajectories that left the trust region,
    ``trajectories`` all of them, ``lost`` the samples the stopped ones did
    not take."""

    frames: list[Atoms] = field(default_factory=list)
    deviation: list[float] = field(default_factory=list)
    spread: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    last_trusted: list[int] = field(default_factory=list)
    trajectories: int = 0
    stopped: int = 0
    lost: int = 0

    @property
    def samples(self) -> np.ndarray:
        """Indices of the regularly sampled frames."""
        extra = set(self.last_trusted)
        return np.array([k for k in range(len(self.frames)) if k not in extra], dtype=int)

    def uncertain_fraction(self, lo: float) -> float:
        """Share of samples above ``lo``, counting the samples a stopped
        trajectory did not take as uncertain."""
        values = np.asarray(self.deviation)[self.samples]
        total = len(values) + self.lost
        return (int((values > lo).sum()) + self.lost) / total if total else 1.0


def _deviations(state) -> tuple[torch.Tensor, torch.Tensor]:
    """[B] the largest |σ_F| over each replica's atoms (the committee's
    force deviation sqrt(mean_k |F_k − F̄|²) for an uncalibrated ensemble),
    and [B] its root mean square over the atoms."""
    std = state.outputs.get("forces_std")
    if std is None:
        raise ValueError("exploration needs a committee (a potential that predicts forces_std)")
    values = torch.linalg.vector_norm(std.detach(), dim=-1)
    bad = ~torch.isfinite(state.forces).all(-1) | ~torch.isfinite(state.positions).all(-1)
    values = values.masked_fill(bad, float("inf"))
    atoms = state.batch.n_atoms.to(values.dtype)
    return state.replica_max(values), (state.per_replica(values.square()) / atoms).sqrt()


def explore(model, starts: list[Atoms], temperatures, steps: int, timestep: float,
            friction: float, sample_every: int, hi: float, pressure: float | None = None,
            seed: int = 0, progress: bool = False) -> Exploration:
    """Run the committee ``model`` from every start at every temperature."""
    result = Exploration()
    dtype = model.dtype
    for t_index, temperature in enumerate(temperatures):
        replicas = [a.copy() for a in starts]
        result.trajectories += len(replicas)
        forcefield = ForceField(model, stress=pressure is not None)
        run_seed = seed * 1000 + t_index
        state = initial_state(replicas, temperature=temperature, seed=run_seed, dtype=dtype,
                              device=model.device)
        integrator = _integrator(temperature, friction, pressure, run_seed)
        state = integrator.init(forcefield.evaluate(state))
        deviation, spread = _deviations(state)
        origin = list(range(len(replicas)))  # the start of each running replica
        label = f"exploring {temperature:g} K"
        for step in tqdm(range(1, steps + 1), desc=label, disable=not progress, unit="step"):
            previous, trusted, trusted_spread = state, deviation, spread
            state = integrator.step(state, forcefield, timestep)
            deviation, spread = _deviations(state)
            out = [k for k in range(len(origin)) if not float(deviation[k]) <= hi]
            sample = step % sample_every == 0
            if sample:
                for k, atoms in enumerate(state.to_atoms()):
                    if k not in out:
                        _keep(result, atoms, float(deviation[k]), float(spread[k]),
                              temperature, origin[k])
            if out:  # these left the trust region: stop them, go on with the rest
                before = previous.to_atoms()
                for k in out:
                    if step > 1 and float(trusted[k]) <= hi:  # not a start
                        result.last_trusted.append(len(result.frames))
                        _keep(result, before[k], float(trusted[k]),
                              float(trusted_spread[k]), temperature, origin[k])
                result.stopped += len(out)
                result.lost += len(out) * (steps // sample_every - step // sample_every + sample)
                keep = [k for k in range(len(origin)) if k not in out]
                origin = [origin[k] for k in keep]
                if not keep:
                    break
                state = forcefield.evaluate(state.select(keep))
                deviation, spread = _deviations(state)
    return result


def _keep(result: Exploration, atoms: Atoms, deviation: float, spread: float,
          temperature: float, start: int) -> None:
    atoms = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    result.frames.append(atoms)
    result.deviation.append(deviation)
    result.spread.append(spread)
    result.temperature.append(float(temperature))
    result.start.append(start)


def _integrator(temperature: float, friction: float, pressure: float | None, seed: int):
    if pressure is None:
        return Langevin(temperature, friction=friction, seed=seed)
    return StochasticCellRescaling(temperature, pressure=pressure * GPa, seed=seed)
