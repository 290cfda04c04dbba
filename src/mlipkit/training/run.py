"""`mlipkit train`: a RunConfig in, a trained model (or ensemble) and its report out.

Output directory::

    config.yaml        the resolved config
    model.safetensors  best EMA weights (for an ensemble: all K members in one file)
    log.csv            one row per epoch (per member under member_k/ for ensembles)
    metrics.json       final validation (and test) metrics
    plots/             learning curves and parity plots
    checkpoint*.safetensors  for --resume
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from mlipkit.data.batch import Batch
from mlipkit.errors import InvalidConfig, MissingLabel
from mlipkit.models.checkpoint import load as load_model
from mlipkit.models.checkpoint import save as save_model
from mlipkit.models.ensemble import EnsemblePotential
from mlipkit.training.config import RunConfig, save_config
from mlipkit.training.data import (
    cache_fixed_terms,
    check_labels,
    prepare,
    read_labelled,
    split_indices,
)
from mlipkit.training.distributed import from_environment
from mlipkit.training.linear import fit_linear
from mlipkit.training.metrics import evaluate
from mlipkit.training.plots import learning_curves, parity_plots
from mlipkit.training.setup import build_model
from mlipkit.training.trainer import DTYPES, Trainer

log = logging.getLogger(__name__)


def load_datasets(config: RunConfig) -> dict[str, list[Batch]]:
    """train / valid (/ test) lists of single-structure batches, labels checked."""
    d = config.data
    keys = dict(energy_key=d.energy_key, forces_key=d.forces_key, stress_key=d.stress_key)
    frames = read_labelled(d.train, **keys)
    if d.valid:
        train, valid = frames, read_labelled(d.valid, **keys)
    else:
        t_idx, v_idx = split_indices(len(frames), d.valid_fraction, config.training.seed)
        train, valid = [frames[i] for i in t_idx], [frames[i] for i in v_idx]
    if d.max_train is not None:
        train = train[: d.max_train]
    if d.forces_key and config.training.loss.forces > 0 and \
            not any("forces" in b for b in train):
        raise MissingLabel(f"no training structure has forces under '{d.forces_key}'; name "
                           "the right key in data.forces_key, or set it to null to train on "
                           "energies only")
    sets = {"train": check_labels(train, "training data"),
            "valid": check_labels(valid, "validation data")}
    if d.test:
        sets["test"] = check_labels(read_labelled(d.test, **keys), "test data")
    return sets


def _member_train_set(train: list[Batch], member: int, config: RunConfig) -> list[Batch]:
    if not config.training.bootstrap:
        return train
    rng = np.random.default_rng([config.training.seed, member, 1])
    return [train[i] for i in rng.integers(0, len(train), size=len(train))]


def _initial_members(path: str | None) -> list:
    if path is None:
        return []
    model = load_model(path)
    return list(model.members) if isinstance(model, EnsemblePotential) else [model]


def _warm_start(model, initial, path: str) -> None:
    """All weights and buffers of ``initial`` into ``model`` (same architecture)."""
    try:
        model.load_state_dict(initial.state_dict(), strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InvalidConfig(f"'training.init_from' {path} does not match the configured model "
                            f"({first}); use the model section it was trained with") from None


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train as configured; returns the final metrics (also in metrics.json)."""
    out = Path(config.output)
    has_checkpoint = any(out.glob("**/checkpoint*.safetensors"))
    if has_checkpoint and not resume:
        raise InvalidConfig(f"{out} already holds a training run; resume it with "
                            f"`mlipkit train --resume {out}` or choose another output")
    tc = config.training
    ctx = from_environment(tc.device)
    if ctx.active:
        log.info("data-parallel training: rank %d of %d", ctx.rank, ctx.world)
    out.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        save_config(config, out / "config.yaml")
    dtype = DTYPES[tc.dtype]
    start = t0 = time.perf_counter()
    sets = load_datasets(config)
    sets = {k: prepare(v, config.model.cutoff, dtype) for k, v in sets.items()}
    log.info("data: %d train, %d valid%s structures (neighbor lists built in %.1f s)",
             len(sets["train"]), len(sets["valid"]),
             f", {len(sets['test'])} test" if "test" in sets else "", time.perf_counter() - t0)
    if config.model.type == "linear":  # closed form: no epochs, checkpoints or members
        model = build_model(config.model, sets["train"], tc.seed, dtype).to(tc.device)
        info = fit_linear(model, [b.to(tc.device) for b in sets["train"]], progress)
        if not ctx.is_main:
            return {}
        save_model(model, out / "model.safetensors", extra={"fit": info})
        return report(model, sets, out, progress)
    members = []
    initial = _initial_members(tc.init_from)
    for k in range(tc.ensemble):
        directory = out if tc.ensemble == 1 else out / f"member_{k}"
        seed = tc.seed + k
        train_set = _member_train_set(sets["train"], k, config)
        model = build_model(config.model, train_set, seed, dtype).to(tc.device)
        if initial:
            _warm_start(model, initial[k % len(initial)], tc.init_from)
        if k == 0 and tc.loss.hessian == 0:  # the same for every member
            for name in ("train", "valid"):
                sets[name] = cache_fixed_terms(model, sets[name], tc.descriptor_cache_gib)
            train_set = _member_train_set(sets["train"], k, config)
        trainer = Trainer(model, [b.to(tc.device) for b in train_set],
                          [b.to(tc.device) for b in sets["valid"]], tc, directory, seed,
                          progress_bar=progress, context=ctx)
        if not (resume and trainer.restore()) and k == 0:
            trainer.state.elapsed = time.perf_counter() - start  # max_time includes the setup
        trainer.fit(extra_info={"member": k})
        ctx.barrier()  # rank 0 has written the member's model file
        members.append(load_model(directory / "model.safetensors", device=tc.device))
    final = members[0] if len(members) == 1 else EnsemblePotential(members)
    if not ctx.is_main:
        return {}
    if len(members) > 1:
        save_model(final, out / "model.safetensors")
    return report(final, sets, out, progress)


def report(model, sets: dict[str, list[Batch]], out: Path, progress: bool) -> dict:
    """metrics.json and plots for the validation and test sets."""
    metrics = {}
    plots = out / "plots"
    for name in ("valid", "test"):
        if name not in sets:
            continue
        values, predictions = evaluate(model, sets[name], progress=progress)
        metrics[name] = values
        parity_plots(predictions, plots / name)
    for log_csv in sorted(out.glob("**/log.csv")):
        target = plots if log_csv.parent == out else plots / log_csv.parent.name
        learning_curves(log_csv, target)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
