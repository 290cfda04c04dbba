"""Learning curves of the committee trained on frames drawn at random from
the oracle's own MD: a reference for benchmarks/active_learning.py.

Random selection there draws from the frames the committee explores, which
stay far from the oracle's own dynamics while the committee is poor. Here
the frames come from oracle MD instead (the test set's recipe: ASE Langevin
at the exploration temperatures from every start, a frame every 50 steps
after 500, with another MD seed), and for each N the committee of a recorded
entry (model, members, epochs, the loop's validation fraction) is trained
from scratch on the first N frames of a random order and scored on the same
test set. The MD itself costs oracle calls (thousands) that this curve does
not count, so it is a reference, not a strategy one could afford with an
expensive oracle: it shows how each strategy's labels compare with labels
drawn from the distribution the test set comes from.

For every seed of the recorded entry SYSTEM+TAG it records the curve and,
for each strategy, the calls this reference needs to reach the strategy's
final error and the strategy's calls over those (with their median over
the seeds where the reference reaches that error) in
benchmarks/results/active_learning_reference.json, and draws the median
curves of all three in benchmarks/results/active_learning_reference_SYSTEM+TAG.png.
A run cut short goes on where it stopped when the command is given again.

    python benchmarks/active_learning_reference.py --system ethanol
        --tag _steps1000_seeds0to3_r4_random60 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import ase.io
import numpy as np
import torch
from active_learning import (
    ROOT,
    SYSTEMS,
    calls_to_reach,
    median_curve,
    oracle_md,
    save_curves,
    save_entry,
    starts,
    test_set,
    training,
)

from mlipkit.active.config import LearnConfig
from mlipkit.active.executors import label_pending, make_executor
from mlipkit.active.oracles import Oracle
from mlipkit.active.store import LabelStore
from mlipkit.training.config import RunConfig
from mlipkit.training.run import train

RESULTS = ROOT / "results" / "active_learning_reference.json"
VALID_FRACTION = {f.name: f.default for f in dataclasses.fields(LearnConfig)}["valid_fraction"]


def labelled(frames, oracle: Oracle, path: Path, seconds: float = 0.0) -> dict:
    """The ``frames`` the oracle labels, written to extxyz at ``path`` once
    (kept there). The labels go through a label store beside it, so a run
    cut short labels only the rest and a failing frame is retried and then
    left out. Returns the number of frames left out and the seconds spent,
    ``seconds`` (making the frames) included."""
    info_file = path.with_suffix(".json")
    if path.exists():
        return json.loads(info_file.read_text())
    start = time.perf_counter()
    store = LabelStore(path.with_suffix(".db"))
    store.add(frames, origin="reference")
    label_pending(store, oracle, make_executor("inprocess"))
    store.export_extxyz(path.with_suffix(".part.xyz"))
    info = {"failed": store.counts()["failed"], "seconds": seconds + time.perf_counter() - start}
    info_file.write_text(json.dumps(info))
    path.with_suffix(".part.xyz").rename(path)  # whole or not at all
    return info


def reference_curve(system: str, settings: dict, seed: int, sizes: list[int],
                    folder: Path) -> dict:
    """One seed's curve: test force RMSE after training on N oracle-MD frames."""
    torch.set_num_threads(1)
    spec = SYSTEMS[system]
    runs = len(starts(system)) * len(spec["temperatures"])
    here = folder / f"seed{seed}"
    here.mkdir(parents=True, exist_ok=True)
    pool_file = here / "pool.xyz"
    start, frames = time.perf_counter(), []
    if not pool_file.exists():
        frames = oracle_md(system, -(-max(sizes) // runs), seed=1000 + seed)
    made = labelled(frames, Oracle(**spec["oracle"]), pool_file, time.perf_counter() - start)
    pool = ase.io.read(pool_file, ":")
    if len(pool) < max(sizes):
        raise SystemExit(f"{system} seed {seed}: {len(pool)} labelled frames, fewer than "
                         f"{max(sizes)}")
    order = np.random.default_rng(seed).permutation(len(pool))
    curve, seconds = [], made["seconds"]
    for n in sizes:
        out = here / f"n{n}"
        if not (out / "metrics.json").exists():  # a size cut short starts again
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            start = time.perf_counter()
            ase.io.write(out / "train.xyz", [pool[k] for k in order[:n]])
            train(RunConfig.from_dict({
                "data": {"train": str(out / "train.xyz"), "valid_fraction": VALID_FRACTION,
                         "test": str(folder / "test.xyz")},
                "model": spec["model"],
                "training": training(settings["members"], settings["epochs"], seed),
                "output": str(out / "train")}), progress=False)
            metrics = json.loads((out / "train" / "metrics.json").read_text())
            metrics["seconds"] = time.perf_counter() - start
            (out / "metrics.json").write_text(json.dumps(metrics))
        metrics = json.loads((out / "metrics.json").read_text())
        seconds += metrics["seconds"]
        curve.append({"oracle_calls": n, "test_forces_rmse": metrics["test"]["forces_rmse"]})
    return {"seed": seed, "curve": curve, "md_failed_labels": made["failed"],
            "wall_s": round(seconds, 1)}


def compare(reference: dict, run: dict) -> dict:
    """For each strategy of ``run``: its final error, its calls to it, the
    reference's (None if its curve never gets there) and their ratio."""
    out = {}
    for strategy, history in run["curves"].items():
        target = history[-1]["test_forces_rmse"]
        ours = calls_to_reach(history, target)
        theirs = calls_to_reach(reference["curve"], target)
        out[strategy] = {"target_forces_rmse": target, "calls": ours, "reference_calls": theirs,
                         "ratio": None if theirs is None else ours / theirs}
    return out


def plot(entry: dict, references: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for strategy, label, color in (("trust_band", "active (trust band + diversity)", "C0"),
                                   ("random", "random from the exploration", "C1")):
        calls, rmse = median_curve([run["curves"][strategy] for run in entry["per_seed"]])
        ax.plot(calls, rmse, color=color, marker="o", lw=2, label=label)
    for ref in references:
        ax.plot([p["oracle_calls"] for p in ref["curve"]],
                [1000 * p["test_forces_rmse"] for p in ref["curve"]], color="C2", alpha=0.3,
                lw=0.8)
    calls, rmse = median_curve([ref["curve"] for ref in references])
    ax.plot(calls, rmse, color="C2", marker="s", lw=2, ls="--",
            label="reference: oracle-MD frames, trained from scratch")
    ax.set_title(f"{title}, medians of {len(references)} seeds", fontsize=10)
    save_curves(fig, ax, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=sorted(SYSTEMS), required=True)
    parser.add_argument("--tag", required=True,
                        help="the recorded entry SYSTEM+TAG of benchmarks/active_learning.py "
                             "whose settings, seeds and test set to use")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 40, 80, 120, 160, 240])
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run at once, in processes; each runs on one thread")
    parser.add_argument("--output", type=Path, default=Path("runs/active_learning_reference"))
    args = parser.parse_args()
    key = args.system + args.tag
    entry = json.loads((ROOT / "results" / "active_learning.json").read_text()).get(key)
    if entry is None or "per_seed" not in entry:
        raise SystemExit(f"no recorded multi-seed entry {key}")
    settings = entry["settings"]
    folder = args.output / key
    folder.mkdir(parents=True, exist_ok=True)
    test_file = test_set(args.system, settings["test_per_run"])
    if "test_sha256" in entry:  # the frames the entry was scored on
        if hashlib.sha256(test_file.read_bytes()).hexdigest() != entry["test_sha256"]:
            raise SystemExit(f"{test_file} is not the test set {key} was scored on")
    made = labelled(ase.io.read(test_file, ":"), Oracle(**SYSTEMS[args.system]["oracle"]),
                    folder / "test.xyz")
    if made["failed"]:
        raise SystemExit(f"the oracle failed on {made['failed']} test frames")
    seeds = [run["seed"] for run in entry["per_seed"]]
    sizes = sorted(set(args.sizes))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, min(args.jobs, len(seeds))), mp_context=context) as pool:
        references = list(pool.map(reference_curve, [args.system] * len(seeds),
                                    [settings] * len(seeds), seeds, [sizes] * len(seeds),
                                    [folder] * len(seeds)))
    for ref, run in zip(references, entry["per_seed"]):
        ref.update(compare(ref, run))
    summary = {}
    for strategy in ("trust_band", "random"):
        ratios = [ref[strategy]["ratio"] for ref in references]
        known = [r for r in ratios if r is not None]
        summary[strategy] = {"ratios": ratios, "seeds_reached": len(known),  # of the error
                             "ratio_median": float(np.median(known)) if known else None}
    plot(entry, references, ROOT / "results" / f"active_learning_reference_{key}.png",
         f"{args.system}{args.tag}")
    save_entry(RESULTS, key, {
        "against": key, "sizes": sizes, "threads": 1, "date": time.strftime("%Y-%m-%d"),
        **summary, "per_seed": references})


if __name__ == "__main__":
    main()
