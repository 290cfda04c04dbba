"""The MD loop: integrate, check guards, call observers, show progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from ase.io import write
from tqdm.auto import tqdm

from mlipkit.errors import InvalidConfig, SimulationUnstable
from mlipkit.md.forcefield import ForceField
from mlipkit.md.guards import Guard
from mlipkit.md.integrators import Integrator
from mlipkit.md.observers import Observer
from mlipkit.md.state import MDState

log = logging.getLogger(__name__)


def simulate(state: MDState, integrator: Integrator, forcefield: ForceField, timestep: float,
             steps: int, observers: Sequence[Observer] = (), guard: Guard | None = None,
             directory: str | Path | None = None, progress: bool = True) -> MDState:
    """Run ``steps`` steps of ``timestep`` fs and return the final state.

    Forces are evaluated for the initial positions first. If a guard trips,
    the last good frame of every replica is written to
    ``directory/last_good.extxyz`` and :class:`SimulationUnstable` is raised.
    """
    if timestep <= 0:
        raise InvalidConfig(f"timestep must be > 0 fs, got {timestep}")
    if steps < 0:
        raise InvalidConfig(f"steps must be >= 0, got {steps}")
    if integrator.needs_stress and not forcefield.stress:
        raise InvalidConfig("this integrator needs the stress: ForceField(..., stress=True)")
    guard = guard or Guard()
    state = integrator.init(forcefield.evaluate(state))
    guard.check(state)
    for obs in observers:
        if state.step % obs.interval == 0:
            obs(state, integrator)
    bar = tqdm(total=steps, unit="step", disable=not progress, dynamic_ncols=True)
    start, shown = time.perf_counter(), 0
    try:
        for k in range(steps):
            new = integrator.step(state, forcefield, timestep)
            try:
                guard.check(new)
            except SimulationUnstable as exc:
                if directory is not None:
                    path = Path(directory) / "last_good.extxyz"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write(path, state.to_atoms(), format="extxyz")
                    raise SimulationUnstable(f"{exc}; the last good frame is in {path}") from None
                raise
            state = new
            for obs in observers:
                if state.step % obs.interval == 0:
                    obs(state, integrator)
            if progress and (k + 1 - shown >= 50 or k + 1 == steps):
                bar.update(k + 1 - shown)
                shown = k + 1
                bar.set_postfix(speed_summary(state, timestep, shown, start))
    except KeyboardInterrupt:
        if directory is not None:
            path = Path(directory) / "interrupted.extxyz"
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path, state.to_atoms(), format="extxyz")
            log.warning("interrupted at step %d; the last frame is in %s", state.step, path)
        raise
    finally:
        bar.close()
        for obs in observers:
            obs.close()
    return state


def speed_summary(state: MDState, timestep: float, steps: int, start: float) -> dict:
    elapsed = max(time.perf_counter() - start, 1e-9)
    ns_per_day = steps * timestep * 1e-6 / (elapsed / 86400.0)
    with torch.no_grad():
        temperature = float(state.temperature().mean())
    return {"ns/day": f"{ns_per_day:.3g}", "T": f"{temperature:.0f}K"}
