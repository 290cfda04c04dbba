"""The configuration of ``mlipkit learn``: typed dataclasses that round-trip
to YAML, checked like ``mlipkit train``'s (one-line errors naming the
dotted key). The ``model`` and ``training`` sections are those of
``mlipkit train``; ``training.ensemble`` is the committee size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlipkit.errors import InvalidConfig
from mlipkit.training.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    _plain,
    _yaml_load,
    apply_overrides,
    build_config,
    check_rules,
)

EXECUTOR_KINDS = ("inprocess", "processes", "dask")
STRATEGIES = ("trust_band", "random")
RANKINGS = ("max", "rms")
PATH_KEYS = ("structures", "test")  # top-level keys holding file paths
# the training defaults of a round (a config's training section goes over them)
TRAINING = {"ensemble": 4, "max_epochs": 300, "warmup_epochs": 2, "early_stopping_patience": 50}


@dataclass
class OracleConfig:
    calculator: str = "emt"  # short name (emt, gfn2-xtb, pyscf) or import path
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecutorConfig:
    kind: str = "processes"  # inprocess | processes | dask
    workers: int = 2
    timeout: float | None = None  # s per oracle call (processes, dask)
    address: str | None = None  # dask scheduler; null: a LocalCluster
    max_attempts: int = 3  # calls per structure before it is given up
    max_failed_fraction: float = 0.05  # of a round's structures; above it the run stops


@dataclass
class SeedConfig:
    rattle: int = 8  # rattled copies of each starting structure, labelled in round 0
    amplitude: float = 0.05  # Å, standard deviation of the displacements
    strain: float = 0.02  # random cell strain (periodic structures), fraction


@dataclass
class ExploreConfig:
    temperatures: list[float] = field(default_factory=lambda: [300.0, 600.0, 900.0, 1200.0])
    pressure: float | None = None  # GPa; null: constant volume
    steps: int = 1000  # per temperature and round
    timestep: float = 2.0  # fs
    friction: float = 0.01  # 1/fs (Langevin)
    sample_every: int = 10  # steps between candidate frames


@dataclass
class SelectConfig:
    strategy: str = "trust_band"  # or random (frames drawn uniformly: the baseline)
    lo: float = 0.05  # eV/Å: max force deviation above which a frame is uncertain
    hi: float = 0.5  # eV/Å: above it a trajectory has left the trust region
    per_round: int = 16  # structures labelled per round, at most
    rank_by: str = "max"  # order the band by the max or the rms (over atoms) force deviation
    diversity: bool = True  # weigh deviation by distance to earlier picks and training data
    density: float = 0.0  # weigh it by (the frame's density among the explored ones)**density
    by_start: bool = False  # share the band's picks among the starts, in turn
    by_temperature: bool = False  # ... among the temperatures (with by_start: trajectories)


@dataclass
class StopConfig:
    max_rounds: int = 10
    uncertain_fraction: float = 0.02  # converged when fewer frames are uncertain
    max_oracle_calls: int | None = None
    max_time: float | None = None  # s
    forces_rmse: float | None = None  # eV/Å on the test set


@dataclass
class LearnConfig:
    structures: str  # starting structures (extxyz, ase.db, ...): seeds and MD starts
    test: str | None = None  # held-out structures, labelled by the oracle (origin "test")
    oracle: OracleConfig = field(default_factory=OracleConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    seed: SeedConfig = field(default_factory=SeedConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(**TRAINING))
    valid_fraction: float = 0.1  # of each round's labels, to pick the best epoch
    random_seed: int = 0
    output: str = "runs/learn"

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, d) -> LearnConfig:
        if isinstance(d, dict) and isinstance(d.get("training"), dict):
            d = {**d, "training": {**TRAINING, **d["training"]}}
        return build_config(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def validate(self) -> LearnConfig:
        check_rules(self, _RULES)
        if not self.select.lo < self.select.hi:
            raise InvalidConfig(f"'select.lo' must be below 'select.hi' ({self.select.lo:g} >= "
                                f"{self.select.hi:g} eV/Å)")
        if self.executor.kind == "inprocess" and self.executor.timeout is not None:
            raise InvalidConfig("'executor.timeout' needs executor.kind 'processes' or 'dask' "
                                "(a call in this process cannot be stopped)")
        if self.explore.sample_every > self.explore.steps:
            raise InvalidConfig(f"'explore.sample_every' ({self.explore.sample_every}) must not "
                                f"exceed 'explore.steps' ({self.explore.steps})")
        # the model and training sections as `mlipkit train` checks them, before any label
        RunConfig(data=DataConfig(train=self.structures), model=self.model,
                  training=self.training)
        return self


_RULES: list[tuple[str, Any, str]] = [
    ("executor.kind", lambda v: v in EXECUTOR_KINDS, f"must be one of {EXECUTOR_KINDS}"),
    ("executor.workers", lambda v: v >= 1, "must be >= 1"),
    ("executor.timeout", lambda v: v > 0, "must be > 0 or null"),
    ("executor.max_attempts", lambda v: v >= 1, "must be >= 1"),
    ("executor.max_failed_fraction", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("seed.rattle", lambda v: v >= 0, "must be >= 0"),
    ("seed.amplitude", lambda v: v >= 0, "must be >= 0"),
    ("seed.strain", lambda v: 0 <= v < 0.5, "must be in [0, 0.5)"),
    ("explore.temperatures", lambda v: len(v) > 0 and all(t > 0 for t in v),
     "must be a non-empty list of positive temperatures (K)"),
    ("explore.steps", lambda v: v >= 1, "must be >= 1"),
    ("explore.timestep", lambda v: v > 0, "must be > 0"),
    ("explore.friction", lambda v: v > 0, "must be > 0"),
    ("explore.sample_every", lambda v: v >= 1, "must be >= 1"),
    ("select.strategy", lambda v: v in STRATEGIES, f"must be one of {STRATEGIES}"),
    ("select.lo", lambda v: v >= 0, "must be >= 0"),
    ("select.per_round", lambda v: v >= 1, "must be >= 1"),
    ("select.rank_by", lambda v: v in RANKINGS, f"must be one of {RANKINGS}"),
    ("select.density", lambda v: v >= 0, "must be >= 0 (0: off)"),
    ("stop.max_rounds", lambda v: v >= 1, "must be >= 1"),
    ("stop.uncertain_fraction", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("stop.max_oracle_calls", lambda v: v >= 1, "must be >= 1 or null"),
    ("stop.max_time", lambda v: v > 0, "must be > 0 or null"),
    ("stop.forces_rmse", lambda v: v > 0, "must be > 0 or null"),
    ("training.ensemble", lambda v: v >= 2, "must be >= 2: the committee's disagreement "
     "drives the selection"),
    ("valid_fraction", lambda v: 0 < v < 1, "must be in (0, 1)"),
    ("output", bool, "must not be empty"),
]


def load_learn_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> LearnConfig:
    """Read a YAML learn config and apply ``dotted.key=value`` overrides;
    relative structure paths are taken relative to the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = _yaml_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidConfig(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidConfig(f"{path} must hold a mapping (structures, oracle, explore, ...)")
    for key in PATH_KEYS:
        value = raw.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            raw[key] = str((path.parent / os.path.expanduser(value)).resolve())
    return LearnConfig.from_dict(apply_overrides(raw, overrides, LearnConfig))


def save_learn_config(config: LearnConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False,
                                         default_flow_style=None))
