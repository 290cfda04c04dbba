"""Active learning against random selection, at equal test error.

Two systems, each with a held-out test set labelled by its own oracle from
independent oracle MD (ASE Langevin) at the exploration temperatures, made
once into benchmarks/data/active_learning_test_SYSTEM_N.xyz (N frames per
start and temperature) and reused from there:

- ``cu``: EMT copper: a 32-atom bulk cell, the same with a vacancy, and a
  (100) slab; 300–1,200 K;
- ``ethanol``: GFN2-xTB (tblite) ethanol; 300–1,000 K.

For each system and seed `mlipkit learn` runs twice with the same model,
exploration and seed labels (rounds of ``--per-round`` labels, no early
stop by the uncertain fraction): once selecting from the explored frames by
the trust band on the committee's force deviation plus diversity for
``--rounds`` rounds (it stops early when no explored frame is left in the
band), once drawing uniformly from the same kind of exploration for
``--random-rounds`` rounds (default: twice as many, so that random selection
can reach active learning's final error). At equal test force RMSE (the
larger of the two runs' final ones, which both reach), the figure of merit
is the oracle calls (seed labels included) active learning needs over those
random selection needs, each read off its learning curve between rounds
(the aim is at most 0.5). With several ``--seeds`` (run ``--jobs`` at a
time, one thread each) the entry records every seed's ratio and their
median, the per-round median curves and the ratios read on those (at the
larger final error and at levels a factor sqrt(2) above it); the plot shows
every seed's curves and the median curves. ``--summarise`` recomputes the
median-curve figures of the recorded entries without running anything;
``--merge`` records one entry from entries that differ only in their seeds
(more seeds for a recorded setting, run later), also running nothing.

Prints one JSON line; writes benchmarks/results/active_learning.json and
benchmarks/results/active_learning_SYSTEM.png.

    python benchmarks/active_learning.py [--system cu|ethanol|both] [--rounds 6]
        [--seeds 0 1 2 3 --jobs 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import platform
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk, fcc100, molecule
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

import mlipkit
from mlipkit.active.config import LearnConfig
from mlipkit.active.loop import learn
from mlipkit.active.oracles import Oracle

ROOT = Path(__file__).resolve().parent

SYSTEMS = {
    "cu": {"oracle": {"calculator": "emt"}, "temperatures": [300.0, 600.0, 900.0, 1200.0],
           "timestep": 2.0, "model": {"cutoff": 4.5, "hidden": [32, 32]}},
    "ethanol": {"oracle": {"calculator": "gfn2-xtb"}, "temperatures": [300.0, 600.0, 1000.0],
                "timestep": 0.5, "model": {"cutoff": 5.0, "hidden": [32, 32]}},
}


def starts(system: str) -> list[Atoms]:
    if system == "ethanol":
        return [molecule("CH3CH2OH")]
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    vacancy = cell.copy()
    del vacancy[0]
    slab = fcc100("Cu", size=(2, 2, 6), a=3.61, vacuum=6.0, periodic=True)
    return [cell, vacancy, slab]


def oracle_md(system: str, per_run: int, seed: int) -> list[Atoms]:
    """Test frames from Langevin MD with the oracle itself, a frame every
    50 steps after 500 steps, from every start at every temperature."""
    spec = SYSTEMS[system]
    oracle = Oracle(spec["oracle"]["calculator"])
    frames = []
    for k, start in enumerate(starts(system)):
        for j, temperature in enumerate(spec["temperatures"]):
            atoms = start.copy()
            atoms.calc = oracle.calculator_for(atoms)
            rng = np.random.default_rng([seed, k, j])
            MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
            dyn = Langevin(atoms, spec["timestep"] * units.fs, temperature_K=temperature,
                           friction=0.01 / units.fs, fixcm=False, rng=rng)
            dyn.run(500)
            for _ in range(per_run):
                dyn.run(50)
                frames.append(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell,
                                    pbc=atoms.pbc))
    return frames


def test_set(system: str, per_run: int) -> Path:
    """The held-out frames, kept in benchmarks/data once made, so that every
    run scores on the same frames: oracle MD is chaotic, and the ethanol
    frames of one earlier run differed from these."""
    path = ROOT / "data" / f"active_learning_test_{system}_{per_run}.xyz"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        ase.io.write(path, oracle_md(system, per_run, seed=99))
    return path


def calls_to_reach(history: list[dict], target: float) -> float | None:
    """Oracle calls at which the test RMSE first reaches ``target``
    (linear between rounds), None if it never does."""
    points = [(h["oracle_calls"], h["test_forces_rmse"]) for h in history]
    for (c0, r0), (c1, r1) in zip([points[0]] + points, points):
        if r1 <= target:
            if r0 <= target or r0 == r1:
                return float(c1)
            return float(c0 + (c1 - c0) * (r0 - target) / (r0 - r1))
    return None


def training(members: int, epochs: int, seed: int) -> dict:
    """The committee's training settings, the same for every run of a seed."""
    return {"ensemble": members, "max_epochs": epochs, "batch_size": 4, "lr": 3e-3,
            "warmup_epochs": 0, "early_stopping_patience": 40, "seed": seed}


def run_seed(system: str, args, seed: int) -> dict:
    """Both strategies for one seed; each run's history and wall time."""
    torch.set_num_threads(1)
    spec = SYSTEMS[system]
    folder = args.output / (system + args.tag)
    histories = {}
    for strategy, rounds in (("trust_band", args.rounds), ("random", args.random_rounds)):
        if strategy == "random" and args.random_runs:  # recorded: see run_system
            histories[strategy] = args.random_runs[seed]
            continue
        config = LearnConfig.from_dict({
            "structures": str(folder / "starts.xyz"), "test": str(folder / "test.xyz"),
            "oracle": spec["oracle"],
            "executor": {"kind": "inprocess", "max_failed_fraction": args.max_failed_fraction},
            "seed": {"rattle": args.rattle},
            "explore": {"temperatures": spec["temperatures"], "steps": args.steps,
                        "timestep": spec["timestep"], "sample_every": 10},
            "select": {"strategy": strategy, "per_round": args.per_round, "lo": args.lo,
                       "hi": args.hi, "rank_by": args.rank_by, "density": args.density,
                       "by_start": args.by_start,
                       "by_temperature": args.by_temperature},
            "stop": {"max_rounds": rounds, "uncertain_fraction": 0.0},
            "random_seed": seed,
            "model": spec["model"],
            "training": training(args.members, args.epochs, seed),
            "output": str(folder / f"seed{seed}" / strategy)})
        learn(config, progress=False)
        histories[strategy] = json.loads(
            (folder / f"seed{seed}" / strategy / "history.json").read_text())
    active, random = histories["trust_band"], histories["random"]
    target = max(active[-1]["test_forces_rmse"], random[-1]["test_forces_rmse"])
    active_calls, random_calls = calls_to_reach(active, target), calls_to_reach(random, target)
    return {
        "seed": seed, "target_forces_rmse": target, "active_calls_to_target": active_calls,
        "random_calls_to_target": random_calls, "ratio": active_calls / random_calls,
        "curves": {s: [{k: h.get(k) for k in ("round", "oracle_calls", "test_forces_rmse",
                                              "uncertain_fraction", "stopped", "reseeded")}
                       for h in v] for s, v in histories.items()},
        # the run's own time, summed over resumed sessions
        "wall_s": {s: round(v[-1]["elapsed_s"], 1) for s, v in histories.items()},
    }


def median_curve(curves: list[list[dict]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-round medians of oracle calls and test force RMSE (meV/Å), over
    the seeds that reached each round."""
    rounds = max(len(c) for c in curves)
    calls, rmse = [], []
    for r in range(rounds):
        points = [c[r] for c in curves if len(c) > r]
        calls.append(np.median([p["oracle_calls"] for p in points]))
        rmse.append(1000 * np.median([p["test_forces_rmse"] for p in points]))
    return np.asarray(calls), np.asarray(rmse)


def median_curve_ratios(per_seed: list[dict]) -> dict:
    """The per-round median curves and the calls ratios read on them: at the
    larger of their final errors, and at levels a factor sqrt(2) apart from
    there up to the error after the seed labels."""
    curves, medians = {}, {}
    for strategy in ("trust_band", "random"):
        calls, rmse = median_curve([run["curves"][strategy] for run in per_seed])
        curves[strategy] = [{"oracle_calls": c, "test_forces_rmse": r}
                            for c, r in zip(calls, rmse)]
        medians[strategy] = {"oracle_calls": [float(c) for c in calls],
                             "test_forces_rmse_meV": [round(float(r), 2) for r in rmse]}
    active, random = curves["trust_band"], curves["random"]
    target = max(active[-1]["test_forces_rmse"], random[-1]["test_forces_rmse"])
    start = min(active[0]["test_forces_rmse"], random[0]["test_forces_rmse"])
    levels = []
    level = target
    while level < start:
        active_calls, random_calls = calls_to_reach(active, level), calls_to_reach(random, level)
        levels.append({"forces_rmse_meV": round(float(level), 2),
                       "active_calls": round(float(active_calls), 1),
                       "random_calls": round(float(random_calls), 1),
                       "ratio": round(float(active_calls / random_calls), 3)})
        level *= 2**0.5
    return {"median_curves": medians,
            "ratio_median_curves": levels[0]["ratio"] if levels else None,
            "median_curve_levels": levels}


def plot_seeds(per_seed: list[dict], path: Path) -> None:
    """Every seed's learning curves (thin) and the per-round medians (bold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for strategy, label, color in (("trust_band", "active (trust band + diversity)", "C0"),
                                   ("random", "random from the exploration", "C1")):
        curves = [run["curves"][strategy] for run in per_seed]
        for curve in curves:
            ax.plot([h["oracle_calls"] for h in curve],
                    [1000 * h["test_forces_rmse"] for h in curve], color=color, alpha=0.3, lw=0.8)
        calls, rmse = median_curve(curves)
        name = f"{label}, median of {len(curves)} seeds" if len(curves) > 1 else label
        ax.plot(calls, rmse, color=color, marker="o", lw=2, label=name)
    save_curves(fig, ax, path)


def save_curves(fig, ax, path: Path) -> None:
    """Axes of a learning-curve plot (log error against oracle calls), saved."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("oracle calls (training data)")
    ax.set_ylabel("test force RMSE (meV/Å)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_system(system: str, args) -> dict:
    folder = args.output / (system + args.tag)
    folder.mkdir(parents=True, exist_ok=True)
    ase.io.write(folder / "starts.xyz", starts(system))
    test_file = folder / "test.xyz"
    if not test_file.exists():
        shutil.copyfile(test_set(system, args.test_per_run), test_file)
    test_sha256 = hashlib.sha256(test_file.read_bytes()).hexdigest()
    args.random_runs = recorded_random_runs(system, args, test_sha256) if args.random_from else {}
    if args.jobs > 1 and len(args.seeds) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(args.jobs, len(args.seeds)), mp_context=context) as pool:
            per_seed = list(pool.map(run_seed, [system] * len(args.seeds), [args] * len(
                args.seeds), args.seeds))
    else:
        per_seed = [run_seed(system, args, seed) for seed in args.seeds]
    plot_seeds(per_seed, ROOT / "results" / f"active_learning_{system}{args.tag}.png")
    return {"test_structures": len(ase.io.read(test_file, ":")),
            "test_sha256": test_sha256,
            **seed_summary(per_seed)}


# the settings a random-selection run depends on
RANDOM_SETTINGS = ("random_rounds", "per_round", "steps", "members", "epochs", "hi",
                   "max_failed_fraction", "test_per_run", "rattle")


def recorded_random_runs(system: str, args, test_sha256: str) -> dict[int, list[dict]]:
    """Each seed's random-selection history from the recorded entry
    SYSTEM+--random-from, which must share the test set and the settings
    random selection depends on (its runs are deterministic given those)."""
    key = system + args.random_from
    entry = json.loads((ROOT / "results" / "active_learning.json").read_text()).get(key)
    if entry is None or "per_seed" not in entry:
        raise SystemExit(f"--random-from: no recorded multi-seed entry {key}")
    if "test_sha256" not in entry:
        raise SystemExit(f"--random-from: {key} records no test-set hash")
    if entry["test_sha256"] != test_sha256:
        raise SystemExit(f"--random-from: {key} has another test set")
    recorded = {**SETTING_DEFAULTS, **entry["settings"]}
    differ = [k for k in RANDOM_SETTINGS if recorded.get(k) != getattr(args, k)]
    if differ:
        raise SystemExit(f"--random-from: {key} differs in {differ}")
    runs = {run["seed"]: run for run in entry["per_seed"]}
    missing = sorted(set(args.seeds) - set(runs))
    if missing:
        raise SystemExit(f"--random-from: {key} has no seeds {missing}")
    return {seed: [*runs[seed]["curves"]["random"][:-1],
                   {**runs[seed]["curves"]["random"][-1],
                    "elapsed_s": runs[seed]["wall_s"]["random"]}] for seed in args.seeds}


def seed_summary(per_seed: list[dict]) -> dict:
    ratios = [run["ratio"] for run in per_seed]
    return {"ratios": ratios, "ratio_median": float(np.median(ratios)),
            **median_curve_ratios(per_seed), "per_seed": per_seed}


# settings that entries recorded before the option existed ran with
SETTING_DEFAULTS = {"max_failed_fraction": 0.05, "rank_by": "max", "by_start": False,
                    "by_temperature": False, "density": 0.0}
# settings that do not change a replicate's result
NOT_COMPARED = ("seeds", "jobs", "random_from", "summarise", "merge")


def merge_entries(record: dict, system: str, tags: list[str]) -> dict:
    """One entry from recorded multi-seed entries of ``system`` that differ
    only in their seeds (same settings and test set)."""
    keys = [system + tag for tag in tags]
    missing = [key for key in keys if "per_seed" not in record.get(key, {})]
    if missing:
        raise SystemExit(f"--merge: no recorded multi-seed entry {missing}")
    entries = [record[key] for key in keys]
    settings = [{k: v for k, v in {**SETTING_DEFAULTS, **e["settings"]}.items()
                 if k not in NOT_COMPARED} for e in entries]
    for key, other in zip(keys[1:], settings[1:]):
        differ = sorted(k for k in settings[0].keys() | other.keys()
                        if settings[0].get(k) != other.get(k))
        if differ:
            raise SystemExit(f"--merge: {key} differs from {keys[0]} in {differ}")
    test = {}
    for field in ("test_structures", "test_sha256"):
        values = {entry.get(field) for entry in entries}
        if len(values - {None}) > 1:
            raise SystemExit(f"--merge: {keys} do not share one test set ({field})")
        if None not in values:  # an entry that does not record it cannot vouch for it
            test[field] = values.pop()
    per_seed = [run for entry in entries for run in entry["per_seed"]]
    seeds = [run["seed"] for run in per_seed]
    if len(set(seeds)) < len(seeds):
        raise SystemExit(f"--merge: a seed is repeated in {seeds}")
    return {"settings": {**settings[0], "seeds": seeds}, "merged_from": keys, **test,
            **seed_summary(per_seed)}


def provenance() -> dict:
    """The commit (``-dirty`` with uncommitted changes other than the
    results) and CPU model this entry was recorded with; a merged entry's
    are those of the merge."""
    def git(*command: str) -> str:
        try:  # without git an hour's runs must still be saved
            return subprocess.run(["git", *command], cwd=ROOT, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:
            return ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", ":(top)",
           ":(top,exclude)benchmarks/results"):
        commit += "-dirty"
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    return {"commit": commit, "cpu": cpu}


def save_entry(path: Path, key: str, entry: dict) -> None:
    """Add ``entry`` to the results file (read just before writing: another
    run may have added its entry meanwhile) and print it without per_seed."""
    entry = {**entry, **provenance()}
    record = json.loads(path.read_text()) if path.exists() else {}
    record.update({"benchmark": path.stem, key: entry, "mlipkit": mlipkit.__version__,
                   "torch": torch.__version__, "machine": platform.machine()})
    path.write_text(json.dumps(record) + "\n")
    print(json.dumps({key: {k: v for k, v in entry.items() if k != "per_seed"}}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("cu", "ethanol", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=6, help="active-learning rounds")
    parser.add_argument("--random-rounds", type=int, default=None,
                        help="random-selection rounds (default: twice --rounds)")
    parser.add_argument("--per-round", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--lo", type=float, default=0.02)
    parser.add_argument("--hi", type=float, default=1.0)
    parser.add_argument("--rank-by", choices=("max", "rms"), default="max",
                        help="order the band by the max or the rms force deviation")
    parser.add_argument("--density", type=float, default=0.0,
                        help="active learning: weigh the ranking by each frame's kernel "
                             "density among the explored frames to this power (0: off)")
    parser.add_argument("--by-start", action="store_true",
                        help="active learning: each start's band frames are ranked apart "
                             "and the starts take turns in a round's picks")
    parser.add_argument("--by-temperature", action="store_true",
                        help="active learning: the same for the temperatures (with "
                             "--by-start: for each trajectory)")
    parser.add_argument("--max-failed-fraction", type=float, default=0.05,
                        help="stop a run when more than this fraction of a round's labels "
                             "fail for good (one of a round of 4 is 0.25)")
    parser.add_argument("--test-per-run", type=int, default=10)
    parser.add_argument("--rattle", type=int, default=3, help="rattled seed copies per start")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="seeds of the rattled copies, exploration, selection and "
                             "training; one replicate each")
    parser.add_argument("--jobs", type=int, default=1,
                        help="replicates run at once, in processes; each runs on one thread")
    parser.add_argument("--tag", default="", help="suffix of the result keys and files")
    parser.add_argument("--random-from", default="", metavar="TAG",
                        help="take the random-selection curves of these seeds from the "
                             "recorded entry SYSTEM+TAG (same test set and the settings "
                             "random selection depends on) instead of running them")
    parser.add_argument("--output", type=Path, default=Path("runs/active_learning"))
    parser.add_argument("--merge", nargs="+", metavar="TAG",
                        help="record the entry SYSTEM+--tag from the recorded multi-seed "
                             "entries SYSTEM+TAG of --system that differ only in their "
                             "seeds, and run nothing")
    parser.add_argument("--summarise", action="store_true",
                        help="recompute the median-curve ratios of every recorded "
                             "multi-seed entry from its stored curves, and run nothing")
    args = parser.parse_args()
    path = ROOT / "results" / "active_learning.json"
    if args.summarise:
        record = json.loads(path.read_text())
        for key, entry in record.items():
            if isinstance(entry, dict) and "per_seed" in entry:
                entry.update(median_curve_ratios(entry["per_seed"]))
                print(key, entry["ratio_median_curves"], [
                    (level["forces_rmse_meV"], level["ratio"])
                    for level in entry["median_curve_levels"]])
        path.write_text(json.dumps(record) + "\n")
        return
    if args.merge:
        if args.system == "both" or not args.tag or args.tag in args.merge:
            raise SystemExit("--merge needs one --system and a --tag for the merged entry "
                             "that is not one of the merged ones")
        entry = {"threads": 1, "date": time.strftime("%Y-%m-%d"),
                 **merge_entries(json.loads(path.read_text()), args.system, args.merge)}
        plot_seeds(entry["per_seed"], ROOT / "results" / f"active_learning_{args.system}"
                   f"{args.tag}.png")
        save_entry(path, args.system + args.tag, entry)
        return
    if args.random_rounds is None:
        args.random_rounds = 2 * args.rounds
    settings = {k: v for k, v in vars(args).items() if k not in ("system", "output", "tag")}
    for system in (("cu", "ethanol") if args.system == "both" else (args.system,)):
        date = time.strftime("%Y-%m-%d")
        result = run_system(system, args)
        # threads and date per entry: the runs of one file differ in both
        save_entry(path, system + args.tag,
                   {"settings": settings, "threads": 1, "date": date, **result})


if __name__ == "__main__":
    main()
