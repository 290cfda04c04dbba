"""`mlipkit learn`: seed -> train a committee -> explore -> select -> label, in rounds.

Run folder::

    config.yaml            the resolved config
    labels.db              every oracle call (see :mod:`mlipkit.active.store`)
    history.json           one entry per finished round
    rounds/round_R/        train.xyz, the committee's training run (train/),
                           selected.xyz and exploration.json
    model.safetensors      the last round's committee
    report/                learning curve and uncertainty histograms
    .lock                  held while a loop runs here (:mod:`mlipkit.active.lock`)

Everything a round decides is written before it is acted on (the selected
structures before they are queued, each label the moment it arrives), so
running the same command after an interruption, even a kill -9, carries on
where it stopped without repeating a finished oracle call. A run stopped
by a limit (rounds, calls, time, target error) goes on when that limit is
raised.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from mlipkit.active.config import LearnConfig, save_learn_config
from mlipkit.active.executors import label_pending, make_executor
from mlipkit.active.explore import Exploration, explore
from mlipkit.active.lock import run_lock
from mlipkit.active.oracles import Oracle, structure_hash
from mlipkit.active.report import write_report
from mlipkit.active.selection import kernel_density, trust_band
from mlipkit.active.store import TRAINING_ORIGINS, LabelStore
from mlipkit.data.batch import Batch
from mlipkit.data.convert import from_atoms
from mlipkit.errors import InvalidConfig, OracleFailures
from mlipkit.models.checkpoint import load as load_model
from mlipkit.training.config import DataConfig, RunConfig
from mlipkit.training.metrics import evaluate
from mlipkit.training.run import train

log = logging.getLogger(__name__)


def read_structures(path: str) -> list[Atoms]:
    """Every frame of an extxyz / ase.db / any ASE-readable file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"structures file not found: {path}")
    frames = ase.io.read(path, index=":")
    if not frames:
        raise InvalidConfig(f"{path} holds no structures")
    return [Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc) for a in frames]


def seed_structures(starts: list[Atoms], count: int, amplitude: float, strain: float,
                    seed: int, round: int = 0) -> list[Atoms]:
    """Each start and ``count`` copies with Gaussian displacements (and, for
    periodic cells, a random symmetric strain); each ``round`` draws anew."""
    rng = np.random.default_rng([seed, 7, round])  # round 0: the stream of [seed, 7]
    out = []
    for atoms in starts:
        out.append(atoms.copy())
        for _ in range(count):
            copy = atoms.copy()
            if copy.pbc.all() and strain > 0:
                e = rng.uniform(-strain, strain, (3, 3))
                copy.set_cell(copy.cell.array @ (np.eye(3) + 0.5 * (e + e.T)),
                              scale_atoms=True)
            copy.positions += rng.normal(0.0, amplitude, copy.positions.shape)
            out.append(copy)
    return out


def _write_json(path: Path, value) -> None:
    """Atomically: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Learner:
    """One `mlipkit learn` run folder."""

    def __init__(self, config: LearnConfig, progress: bool = True) -> None:
        self.config, self.progress = config, progress
        self.out = Path(config.output)
        self.out.mkdir(parents=True, exist_ok=True)
        _warn_on_oracle_change(self.out / "config.yaml", config)
        save_learn_config(config, self.out / "config.yaml")
        self.store = LabelStore(self.out / "labels.db")
        self.oracle = Oracle(config.oracle.calculator, config.oracle.kwargs)
        self.starts = read_structures(config.structures)
        if config.explore.pressure is not None and not all(a.pbc.all() for a in self.starts):
            raise InvalidConfig("'explore.pressure' needs starting structures periodic in all "
                                "three directions")
        history = self.out / "history.json"
        self.history: list[dict] = json.loads(history.read_text()) if history.exists() else []

    # -- labelling -----------------------------------------------------------
    def label(self, executor, round: int) -> None:
        """Label everything pending, then stop the run if too much of
        ``round`` failed for good."""
        ex = self.config.executor
        summary = label_pending(self.store, self.oracle, executor, ex.max_attempts,
                                self.progress)
        if summary["calls"]:
            log.info("labelling: %s", summary)
        given_up = [f for f in self.store.failures(round) if f["tries"] >= ex.max_attempts]
        total = sum(self.store.counts(round).values())
        if total and len(given_up) / total > ex.max_failed_fraction:
            report = self.out / f"failures_round_{round}.json"
            _write_json(report, given_up)
            raise OracleFailures(
                f"{len(given_up)} of {total} structures of round {round} failed "
                f"{ex.max_attempts} times (more than {ex.max_failed_fraction:.0%}); nothing was "
                f"trained on them. First error: {given_up[0]['error'].splitlines()[0]}. "
                f"All errors: {report}. Fix the oracle, then run the same command again: "
                "each run gives failed structures their attempts anew. If the oracle cannot "
                "label such structures at all, raise executor.max_failed_fraction instead.")

    # -- one round -----------------------------------------------------------
    def train_round(self, r: int) -> Path:
        folder = self.out / "rounds" / f"round_{r:03d}"
        model_path = folder / "train" / "model.safetensors"
        if model_path.exists():
            return model_path
        folder.mkdir(parents=True, exist_ok=True)
        n = self.store.export_extxyz(folder / "train.xyz", TRAINING_ORIGINS, max_round=r)
        if n < 2:
            raise OracleFailures(f"only {n} labelled structure(s) to train on; check "
                                 f"{self.store.path} for failures")
        previous = self.out / "rounds" / f"round_{r - 1:03d}" / "train" / "model.safetensors"
        training = dataclasses.replace(self.config.training,
                                       init_from=str(previous) if r > 0 else None)
        run = RunConfig(data=DataConfig(train=str(folder / "train.xyz"),
                                        valid_fraction=self.config.valid_fraction),
                        model=self.config.model, training=training,
                        output=str(folder / "train"))
        resume = any((folder / "train").glob("**/checkpoint*.safetensors"))
        train(run, resume=resume, progress=self.progress)
        return model_path

    def add_test(self, structures: list[Atoms]) -> None:
        ids = self.store.add(structures, origin="test", round=0)
        shared = [i for i in ids if self.store.db.get(id=i).origin != "test"]
        if shared:
            raise InvalidConfig(f"{len(shared)} test structure(s) are also seed structures; a "
                                "test set must be held out")

    def test_metrics(self, model) -> dict:
        test = self.store.labelled(origins=("test",))
        if not test:
            return {}
        metrics, _ = evaluate(model, test)
        return {"test_forces_rmse": metrics["forces_rmse"],
                "test_energy_mae_per_atom": metrics["energy_mae_per_atom"]}

    def explore_and_select(self, r: int, model) -> dict:
        """Exploration statistics of round ``r``; the selected structures go
        to ``selected.xyz`` first, then the statistics (the marker that this
        step is done)."""
        folder = self.out / "rounds" / f"round_{r:03d}"
        done = folder / "exploration.json"
        if done.exists():
            return json.loads(done.read_text())
        c = self.config
        result = explore(model, self.starts, c.explore.temperatures, c.explore.steps,
                         c.explore.timestep, c.explore.friction, c.explore.sample_every,
                         c.select.hi, c.explore.pressure, seed=c.random_seed + r,
                         progress=self.progress)
        calls_left = self.calls_left(r)
        chosen = [result.frames[k] for k in self.select(
            result, model, np.random.default_rng([c.random_seed, r]), calls_left)]
        uncertain = result.uncertain_fraction(c.select.lo)
        reseeded = 0
        if (result.stopped and not self.unlabelled(chosen)
                and uncertain >= c.stop.uncertain_fraction):
            # the stopped trajectories' last trusted frames took the round, and each is
            # labelled already (a start, or a frame the trajectories share): select again
            # without them; if that finds nothing new either, the committee distrusts even
            # the starts, so label fresh copies of them
            chosen = self.unlabelled([result.frames[k] for k in self.select(
                result, model, np.random.default_rng([c.random_seed, r]), calls_left,
                skip=self.repeated(result))])
            if not chosen:
                chosen = self.unlabelled(self.rattled_starts(r + 1, self.round_size(calls_left)))
                reseeded = len(chosen)
                log.warning("round %d: %d of %d trajectories left the trust region and none "
                            "gave a new structure; labelling %d rattled copies of the starts",
                            r, result.stopped, result.trajectories, reseeded)
        ase.io.write(folder / "selected.xyz", chosen, format="extxyz")
        stats = {"frames": len(result.samples), "trajectories": result.trajectories,
                 "stopped": result.stopped, "uncertain_fraction": uncertain,
                 "selected": len(chosen), "reseeded": reseeded,
                 "deviation": [round(d, 5) for d in result.deviation],
                 "spread": [round(d, 5) for d in result.spread],
                 "temperature": result.temperature}
        _write_json(done, stats)
        return stats

    def unlabelled(self, structures: list[Atoms]) -> list[Atoms]:
        """Those of ``structures`` not in the store yet."""
        ids = self.store.ids([structure_hash(a) for a in structures])
        return [a for a, i in zip(structures, ids) if i is None]

    def repeated(self, result: Exploration) -> set[int]:
        """Last trusted frames that are in the store or repeat an earlier one."""
        hashes = [structure_hash(result.frames[k]) for k in result.last_trusted]
        seen, out = set(), set()
        for k, key, row in zip(result.last_trusted, hashes, self.store.ids(hashes)):
            if row is not None or key in seen:
                out.add(k)
            seen.add(key)
        return out

    def rattled_starts(self, round: int, count: int) -> list[Atoms]:
        """``count`` rattled (and strained) copies of the starts, drawn for
        ``round``, taking the starts in turn from start ``round`` (modulo
        their number) so that every start gets copies over the rounds."""
        s, n = self.config.seed, len(self.starts)
        per_start = -(-count // n)
        out = seed_structures(self.starts, per_start, s.amplitude, s.strain,
                              self.config.random_seed, round)
        return [out[(i + round) % n * (per_start + 1) + j] for j in range(1, per_start + 1)
                for i in range(n)][:count]

    def round_size(self, calls_left: int | None) -> int:
        """Structures to select: ``per_round``, or fewer if the budget ends."""
        per_round = self.config.select.per_round
        return per_round if calls_left is None else min(per_round, calls_left)

    def calls_left(self, r: int) -> int | None:
        budget = self.config.stop.max_oracle_calls
        if budget is None:
            return None
        return max(budget - self.store.calls(TRAINING_ORIGINS, max_round=r), 0)

    def select(self, result: Exploration, model, rng, calls_left: int | None,
               skip: set[int] = frozenset()) -> list[int]:
        """Indices of the frames to label: the last trusted frames of stopped
        trajectories first, then the trust band (thinned for diversity), or
        for ``random`` a uniform draw of all explored frames (the last
        trusted ones included: they may be all there is when every
        trajectory stops early); at most ``per_round`` and the calls left in
        the budget. The band is on the max atomic force deviation; it is
        ordered by that or, with ``rank_by: rms``, by the deviation's root
        mean square over the atoms. With ``by_start`` each start's frames
        are ranked apart and the starts take turns, the most uncertain
        first, so that no start's structures take a whole round;
        ``by_temperature`` does the same for the temperatures, and both
        together for each trajectory (start and temperature). With
        ``density`` > 0 the ranking is multiplied by each frame's kernel
        density among the explored samples (in the diversity descriptor)
        to that power: frames typical of the exploration before rare ones.
        Frames in ``skip`` are left out."""
        s = self.config.select
        count = self.round_size(calls_left)
        if s.strategy == "random":
            pool = np.array([k for k in range(len(result.frames)) if k not in skip], dtype=int)
            picks = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
            return sorted(pool[picks].tolist())
        samples = result.samples
        chosen = [k for k in result.last_trusted if k not in skip][:count]
        band = samples[(np.asarray(result.deviation)[samples] >= s.lo)
                       & (np.asarray(result.deviation)[samples] <= s.hi)]
        if len(chosen) < count and len(band):
            ranking = np.array(result.spread if s.rank_by == "rms" else result.deviation,
                               dtype=float)
            features = labelled = None
            if s.diversity or s.density:
                pool = samples if s.density else band  # the density is among all samples
                training = self.store.labelled(TRAINING_ORIGINS) if s.diversity else []
                rows = _structure_features(model, [from_atoms(result.frames[k]) for k in pool]
                                           + training)
                candidates = rows[:len(pool)]
                if s.density:  # frames typical of the exploration before rare ones
                    ranking[pool] *= kernel_density(candidates) ** s.density
                    candidates = candidates[np.searchsorted(pool, band)]
                if s.diversity:  # away from each other and from the training set
                    features, labelled = candidates, rows[len(pool):]
            deviation, left = np.asarray(result.deviation), count - len(chosen)
            groups = [np.arange(len(band))]
            if s.by_start or s.by_temperature:  # each group's band, the most uncertain first
                members: dict[tuple, list[int]] = {}
                for i, k in enumerate(band):
                    members.setdefault((result.start[k] if s.by_start else 0,
                                        result.temperature[k] if s.by_temperature else 0),
                                       []).append(i)
                groups = sorted((np.array(members[key]) for key in sorted(members)),
                                key=lambda g: -ranking[band[g]].max())
            ranked = [g[trust_band(deviation[band[g]], s.lo, s.hi, left,
                                   None if features is None else features[g], labelled,
                                   ranking[band[g]])] for g in groups]
            turns = [g[i] for i in range(left) for g in ranked if i < len(g)]
            chosen += band[turns[:left]].tolist()
        return chosen

    # -- the loop ------------------------------------------------------------
    def run(self) -> dict:
        c = self.config
        executor = make_executor(c.executor.kind, **_executor_kwargs(c))
        start = time.perf_counter() - (self.history[-1]["elapsed_s"] if self.history else 0.0)
        try:
            again = self.store.requeue_failed(c.executor.max_attempts)
            if again:
                log.info("retrying %d structures that failed in an earlier run", again)
            if not self.history:  # adding is idempotent: a kill in between is harmless
                seeds = seed_structures(self.starts, c.seed.rattle, c.seed.amplitude,
                                        c.seed.strain, c.random_seed)
                self.store.add(seeds, origin="seed", round=0)
                if c.test:
                    self.add_test(read_structures(c.test))
            self.label(executor, 0)
            last = self.history[-1] if self.history else {}
            if ("stop" in last and "selected" not in last
                    and self.stop_reason(last["round"], last, start) is None):
                # a limit stopped it before exploring and has been raised since: that
                # round (its model and test error kept) explores now
                self.history.pop()
            r = len(self.history)
            while True:
                if self.history and self.history[-1].get("stop"):
                    break
                model_path = self.train_round(r)
                model = load_model(model_path)
                entry = {"round": r,
                         "oracle_calls": self.store.calls(TRAINING_ORIGINS, max_round=r),
                         "labels": self.store.counts_ok(TRAINING_ORIGINS, max_round=r),
                         **self.test_metrics(model)}
                stop = self.stop_reason(r, entry, start)
                if stop is None:
                    stats = self.explore_and_select(r, model)
                    entry.update({k: v for k, v in stats.items()
                                  if k not in ("deviation", "spread", "temperature")})
                    if stats["uncertain_fraction"] < c.stop.uncertain_fraction:
                        stop = (f"converged: {stats['uncertain_fraction']:.1%} of explored "
                                f"frames uncertain (< {c.stop.uncertain_fraction:.1%})")
                    elif stats["selected"] == 0:
                        stop = ("nothing to select: no candidate in the trust band, or the "
                                "oracle budget is spent")
                    else:
                        selected = ase.io.read(self.out / "rounds" / f"round_{r:03d}" /
                                               "selected.xyz", index=":")
                        origin = "seed" if stats.get("reseeded") else "explore"
                        self.store.add(selected, origin=origin, round=r + 1)
                        self.label(executor, r + 1)
                entry["elapsed_s"] = time.perf_counter() - start
                if stop is not None:
                    entry["stop"] = stop
                self.history.append(entry)
                _write_json(self.out / "history.json", self.history)
                log.info("round %d: %s", r, entry)
                r += 1
        finally:
            executor.close()
        shutil.copyfile(self.out / "rounds" / f"round_{self.history[-1]['round']:03d}" /
                        "train" / "model.safetensors", self.out / "model.safetensors")
        write_report(self.out, self.history, c.select.lo, c.select.hi)
        return self.history[-1]

    def stop_reason(self, r: int, entry: dict, start: float) -> str | None:
        s = self.config.stop
        rmse = entry.get("test_forces_rmse")
        if s.forces_rmse is not None and rmse is not None and rmse <= s.forces_rmse:
            return f"test force RMSE {rmse:.4g} eV/Å reached the target {s.forces_rmse:g}"
        if s.max_oracle_calls is not None and entry["oracle_calls"] >= s.max_oracle_calls:
            return f"oracle budget spent ({entry['oracle_calls']} calls)"
        if s.max_time is not None and time.perf_counter() - start >= s.max_time:
            return f"time budget spent ({s.max_time:g} s)"
        if r + 1 >= s.max_rounds:
            return f"{s.max_rounds} rounds done"
        return None


def _warn_on_oracle_change(path: Path, config: LearnConfig) -> None:
    if not path.exists():
        return
    import yaml

    before = (yaml.safe_load(path.read_text()) or {}).get("oracle")
    now = config.to_dict()["oracle"]
    if before is not None and before != now:
        log.warning("the oracle settings changed from %s to %s; labels of both stay in the "
                    "store and are trained on together", before, now)


def _executor_kwargs(config: LearnConfig) -> dict:
    e = config.executor
    if e.kind == "inprocess":
        return {}
    kwargs = {"workers": e.workers, "timeout": e.timeout}
    if e.kind == "dask":
        kwargs["address"] = e.address
    return kwargs


def _structure_features(model, batches: list[Batch]) -> np.ndarray:
    """Mean SOAP power spectrum of each structure's atoms (for diversity)."""
    from mlipkit.uncertainty.estimators import Environments

    caps = model.capabilities
    environments = Environments(list(caps.species), cutoff=caps.cutoff, n_radial=4, l_max=3)
    vectors, _, n_atoms = environments.vectors(batches)
    index = np.repeat(np.arange(len(n_atoms)), n_atoms)
    sums = np.zeros((len(n_atoms), vectors.shape[1]))
    np.add.at(sums, index, vectors)
    return sums / np.asarray(n_atoms)[:, None]


def learn(config: LearnConfig, progress: bool = True) -> dict:
    """Run (or resume) the active-learning loop; returns the last round's entry."""
    with run_lock(Path(config.output)):
        return Learner(config, progress).run()
