"""Uncertainty on rMD17: how well predicted spreads rank and cover real errors,
and how well scores separate unseen molecules.

1. Aspirin: 200 structures of the split-01 training file to train on and
   50 others (the validation split of `mlipkit train`) to calibrate on;
   tested on the 1,000 test structures: force MAE, Spearman correlation
   (per structure) of the predicted force spread with the force error,
   coverage of the 50/90/95% intervals before calibration, after fitting a
   spread factor, and after isotonic recalibration as well. For
   the Bayesian linear model (SOAP), and with ``--ensemble-budget S`` also
   for a committee of ``--members`` BPNNs trained for S seconds in all.
   Also the time to fit the linear model to all 1,000 training structures.
2. Out-of-distribution: scores fitted on 200 ethanol structures, evaluated
   on the 1,000 ethanol test structures (in) against two outside sets: the
   1,000 malonaldehyde test structures, and 200 ethanol structures from
   GFN2-xTB Langevin MD at 1,000 K (tblite; four trajectories from test
   structures, 1 ps to equilibrate, then a frame every 25 fs). ROC AUC of
   the per-structure scores (largest atom score, and mean atom score) for
   the Mahalanobis distance, the kernel distance, the linear model's spread
   and (with a committee) the committee's force deviation. The 1,000 K
   frames come from another potential than the rMD17 ones; see
   `ood_temperature.py` for the same test within one potential, with the
   best AUC any score can reach.

Prints one JSON line and writes benchmarks/results/uncertainty.json.

    python benchmarks/uncertainty.py [--ensemble-budget 1200 --members 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

import mlipkit
from mlipkit.data.io import read_rmd17
from mlipkit.neighbors import attach_neighbors
from mlipkit.training.config import ModelConfig, config_from_overrides
from mlipkit.training.data import split_indices
from mlipkit.training.linear import fit_linear
from mlipkit.training.metrics import evaluate
from mlipkit.training.run import train as train_run
from mlipkit.training.setup import build_model
from mlipkit.uncertainty.calibrate import calibrate
from mlipkit.uncertainty.estimators import (
    EnsembleDeviation,
    Environments,
    KernelDistance,
    Mahalanobis,
    PosteriorStd,
)

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data" / "rmd17"


def roc_auc(inside: np.ndarray, outside: np.ndarray) -> float:
    """Probability that an outside score exceeds an inside one (ties count half)."""
    ranks = rankdata(np.concatenate([inside, outside]))
    n_in, n_out = len(inside), len(outside)
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def frames(molecule: str, part: str, indices=None, cutoff: float = 6.0):
    """Structures with a neighbor list at the committee's 6 Å cutoff (the
    5 Å models take the edges within their own cutoff)."""
    batches = read_rmd17(DATA / f"rmd17_{molecule}_{part}_01.npz", indices=indices,
                         dtype=torch.float32)
    return [attach_neighbors(b, cutoff) for b in batches]


def gfn2_ethanol(temperature: float, n_runs: int = 4, per_run: int = 50, seed: int = 0) -> list:
    """Ethanol frames (ASE Atoms with their GFN2-xTB energy and forces, the
    trajectory number in ``info["run"]``) from GFN2-xTB Langevin MD at
    ``temperature`` K: ``n_runs`` trajectories from evenly spaced rMD17 test
    structures, 1 ps to equilibrate, then a frame every 25 fs. Trajectory k
    draws its noise from the random stream ``seed + k``."""
    from ase import Atoms, units
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tblite.ase import TBLite

    data = np.load(DATA / "rmd17_ethanol_test_01.npz")
    out = []
    for run in range(n_runs):
        atoms = Atoms(numbers=data["nuclear_charges"],
                      positions=data["coords"][run * (len(data["coords"]) // n_runs)])
        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
        rng = np.random.default_rng(seed + run)
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        dyn = Langevin(atoms, 0.5 * units.fs, temperature_K=temperature,
                       friction=0.02 / units.fs, fixcm=False, rng=rng)
        dyn.run(2000)
        for _ in range(per_run):
            dyn.run(50)
            frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, info={"run": run})
            frame.calc = SinglePointCalculator(frame, energy=atoms.get_potential_energy(),
                                               forces=atoms.get_forces())
            out.append(frame)
    return out


def hot_ethanol(n_runs: int = 4, per_run: int = 50, temperature: float = 1000.0):
    """GFN2-xTB ethanol frames at ``temperature`` K as batches with a neighbor list."""
    return [attach_neighbors(mlipkit.data.from_atoms(a).to(dtype=torch.float32), 6.0)
            for a in gfn2_ethanol(temperature, n_runs, per_run)]


def linear_model(train, config: ModelConfig):
    model = build_model(config, train, seed=0, dtype=torch.float32)
    t0 = time.perf_counter()
    info = fit_linear(model, train, progress=False)
    return model, info, time.perf_counter() - t0


def ood_estimators(train, config: ModelConfig, ensemble=None) -> dict:
    """Out-of-distribution scores for ethanol fitted on ``train``: Mahalanobis
    and kernel distance of SOAP environments (``config``'s cutoff and sizes),
    the spread of a linear model fitted on it and, given a committee, its
    force deviation."""
    environments = Environments(["H", "C", "O"], cutoff=config.cutoff,
                                n_radial=config.soap_n_radial, l_max=config.soap_l_max)
    model, _, _ = linear_model(train, config)
    estimators = {"mahalanobis": Mahalanobis(environments).fit(train),
                  "kernel_distance": KernelDistance(environments).fit(train),
                  "linear_posterior_std": PosteriorStd(model)}
    if ensemble is not None:
        estimators["ensemble_force_deviation"] = EnsembleDeviation(ensemble)
    return estimators


def calibrated_figures(model, held, test) -> dict:
    """Test figures before calibrating ``model`` on ``held``, after fitting
    the spread factor, and after the isotonic interval table as well."""
    before, _ = evaluate(model, test)
    report = calibrate(model, held)
    scaled, _ = evaluate(model, test)
    calibrate(model, held, isotonic=True)
    isotonic, _ = evaluate(model, test)
    return {"forces_mae_meV_per_A": scaled["forces_mae"] * 1000,
            "energy_mae_meV": scaled["energy_mae"] * 1000, "std_scale": report["std_scale"],
            "test_before_calibration": before["uncertainty"],
            "test_after_calibration": scaled["uncertainty"],
            "test_after_isotonic_calibration": isotonic["uncertainty"]}


def committee(data: Path, n_train: int, budget: float, members: int, output: Path):
    """A BPNN committee trained by `mlipkit train` on ``data`` (the same split
    as the other models when it is an rMD17 training file)."""
    overrides = [f"data.train={data}",
                 "data.valid_fraction=0.05", f"data.max_train={n_train}",
                 f"training.ensemble={members}", f"training.max_time={budget / members}",
                 f"output={output / f'{data.stem}_{int(time.time())}'}",
                 "model.hidden=[128,128]", "model.n_angular_radial=8", "model.zetas=[1,2,4,8]",
                 "model.n_radial=16", "model.cutoff=6.0", "training.lr=2e-3",
                 "training.optimizer=adamw", "training.weight_decay=0.01"]
    config = config_from_overrides(overrides)
    train_run(config, progress=False)
    return mlipkit.load(Path(config.output) / "model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--ensemble-budget", type=float, default=0.0,
                        help="seconds to train the committee in all (0: no committee)")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path("runs/uncertainty"))
    args = parser.parse_args()
    config = ModelConfig(type="linear", cutoff=5.0)
    record: dict = {"benchmark": "uncertainty",
                    "soap": {"n_radial": config.soap_n_radial, "l_max": config.soap_l_max},
                    "cutoff": config.cutoff}

    # 1. aspirin: ranking and coverage, on the split `mlipkit train` makes (seed 0)
    pool = frames("aspirin", "train")
    train_idx, valid_idx = split_indices(len(pool), 0.05, seed=0)
    train = [pool[i] for i in train_idx[: args.n_train]]
    held = [pool[i] for i in valid_idx]
    test = frames("aspirin", "test")
    model, info, fit_s = linear_model(train, config)
    record["aspirin"] = {"n_train": len(train), "n_calibrate": len(held), "n_test": len(test),
                         "linear": {"fit_s": round(fit_s, 1), "fit": info,
                                    **calibrated_figures(model, held, test)}}
    _, _, fit_all_s = linear_model(pool, config)
    record["aspirin"]["linear"]["fit_1000_s"] = round(fit_all_s, 1)
    if args.ensemble_budget > 0:
        ensemble = committee(DATA / "rmd17_aspirin_train_01.npz", args.n_train,
                             args.ensemble_budget, args.members, args.output)
        record["aspirin"]["ensemble"] = {"members": args.members,
                                         "budget_s": args.ensemble_budget,
                                         **calibrated_figures(ensemble, held, test)}

    write(record)  # the aspirin part survives a failure below

    # 2. out of distribution: ethanol in, malonaldehyde out
    eth_pool = frames("ethanol", "train")
    eth_train = [eth_pool[i] for i in split_indices(len(eth_pool), 0.05, seed=0)[0][
        : args.n_train]]
    inside = frames("ethanol", "test")
    outside = {"malonaldehyde": frames("malonaldehyde", "test"), "ethanol_1000K": hot_ethanol()}
    ensemble = None
    if args.ensemble_budget > 0:
        ensemble = committee(DATA / "rmd17_ethanol_train_01.npz", args.n_train,
                             args.ensemble_budget, args.members, args.output)
    for name, e in ood_estimators(eth_train, config, ensemble).items():
        score_in = e.score(inside)
        for kind, structures in outside.items():
            score_out = e.score(structures)
            record.setdefault(f"ood_ethanol_vs_{kind}", {})[name] = {
                "roc_auc": roc_auc(score_in.per_structure, score_out.per_structure),
                "roc_auc_mean_atom": roc_auc(score_in.mean_per_structure,
                                             score_out.mean_per_structure)}
    print(write(record))


def write(record: dict) -> str:
    record.update({"mlipkit": mlipkit.__version__, "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "machine": platform.machine(),
                   "date": time.strftime("%Y-%m-%d")})
    line = json.dumps(record)
    (ROOT / "results" / "uncertainty.json").write_text(line + "\n")
    return line


if __name__ == "__main__":
    main()
