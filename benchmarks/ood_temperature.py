"""Flagging hotter MD: how well each uncertainty score, fitted on 500 K
ethanol frames, tells 1,000 K frames of the same potential from other 500 K
frames, next to the best any score can do.

Frames: GFN2-xTB (tblite) Langevin MD of ethanol, the protocol of
`uncertainty.py` (trajectories from rMD17 test structures, 1 ps to
equilibrate, then a frame every 25 fs). At 500 K, ``2 × --runs``
trajectories: the first half gives the training frames, the other half the
inside set; at 1,000 K, ``--runs`` trajectories give the outside set. The
two temperatures draw from different random streams.

Scores, fitted on the training frames: Mahalanobis distance and kernel
distance of SOAP environments, the force spread of the Bayesian linear model
(fitted on the GFN2-xTB energies and forces) and, with ``--ensemble-budget``,
the force deviation of a BPNN committee trained by `mlipkit train` on them.
ROC AUC of the per-structure score (largest atom score / mean atom score),
with a 2.5–97.5 % interval from bootstrap resamples of whole trajectories
(frames of one trajectory are correlated).

The bound: configurations of one potential U sampled canonically at two
temperatures have densities ∝ exp(−U/kT), so their likelihood ratio is a
monotone function of U. By the Neyman–Pearson lemma a threshold on U is the
most powerful test at every false-alarm rate, and the ROC AUC of U itself
(the GFN2-xTB energy of the same frames) bounds that of any score. The
harmonic value of that bound: with n = 3N − 6 modes, U − U_min is
Gamma(n/2, kT) distributed, so P(U_hot > U_cold) = P(B < T_hot / (T_hot +
T_cold)) with B ~ Beta(n/2, n/2).

Prints one JSON line and writes benchmarks/results/ood_temperature.json.

    python benchmarks/ood_temperature.py [--runs 4 --per-run 50 --ensemble-budget 600]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
from scipy.special import betainc

import mlipkit
from mlipkit.data import from_atoms
from mlipkit.neighbors import attach_neighbors
from mlipkit.training.config import ModelConfig
from uncertainty import committee, gfn2_ethanol, ood_estimators, roc_auc

ROOT = Path(__file__).resolve().parent


def harmonic_auc(n_modes: int, cold: float, hot: float) -> float:
    return float(betainc(0.5 * n_modes, 0.5 * n_modes, hot / (hot + cold)))


def auc_with_interval(inside, inside_runs, outside, outside_runs, samples=2000, seed=0):
    """ROC AUC and its 2.5 / 97.5 % bootstrap points, resampling trajectories."""
    rng = np.random.default_rng(seed)
    groups = []
    for values, runs in ((inside, inside_runs), (outside, outside_runs)):
        values, runs = np.asarray(values), np.asarray(runs)
        groups.append([values[runs == r] for r in np.unique(runs)])
    aucs = [roc_auc(*(np.concatenate([g[k] for k in rng.integers(0, len(g), len(g))])
                      for g in groups)) for _ in range(samples)]
    return [roc_auc(inside, outside), *(float(q) for q in np.percentile(aucs, [2.5, 97.5]))]


def batches(frames, labels: bool = False):
    out = []
    for a in frames:
        known = {"energy": a.get_potential_energy(), "forces": a.get_forces()} if labels else None
        out.append(attach_neighbors(from_atoms(a, dtype=torch.float32, labels=known), 6.0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--per-run", type=int, default=50)
    parser.add_argument("--cold", type=float, default=500.0)
    parser.add_argument("--hot", type=float, default=1000.0)
    parser.add_argument("--ensemble-budget", type=float, default=0.0,
                        help="seconds to train the committee in all (0: no committee)")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path("runs/ood_temperature"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    cold = gfn2_ethanol(args.cold, 2 * args.runs, args.per_run, seed=1000)
    train = [a for a in cold if a.info["run"] < args.runs]
    inside = [a for a in cold if a.info["run"] >= args.runs]
    outside = gfn2_ethanol(args.hot, args.runs, args.per_run)
    runs = [[a.info["run"] for a in part] for part in (inside, outside)]
    energies = [[a.get_potential_energy() for a in part] for part in (inside, outside)]
    record = {
        "benchmark": "ood_temperature", "molecule": "ethanol", "method": "GFN2-xTB (tblite)",
        "cold_K": args.cold, "hot_K": args.hot, "runs": args.runs, "per_run": args.per_run,
        "n_train": len(train), "n_inside": len(inside), "n_outside": len(outside),
        "bound_roc_auc_energy": auc_with_interval(energies[0], runs[0], energies[1], runs[1]),
        "bound_roc_auc_harmonic": harmonic_auc(3 * 9 - 6, args.cold, args.hot),
    }
    ensemble = None
    if args.ensemble_budget > 0:
        args.output.mkdir(parents=True, exist_ok=True)
        data = args.output / "ethanol_gfn2_train.extxyz"
        ase.io.write(data, train)
        ensemble = committee(data, len(train), args.ensemble_budget, args.members, args.output)
    estimators = ood_estimators(batches(train, labels=True),
                                ModelConfig(type="linear", cutoff=5.0), ensemble)
    inside_b, outside_b = batches(inside), batches(outside)
    for name, estimator in estimators.items():
        s_in, s_out = estimator.score(inside_b), estimator.score(outside_b)
        record[name] = {
            "roc_auc": auc_with_interval(s_in.per_structure, runs[0], s_out.per_structure,
                                         runs[1]),
            "roc_auc_mean_atom": auc_with_interval(s_in.mean_per_structure, runs[0],
                                                   s_out.mean_per_structure, runs[1])}
    record.update({"ensemble_budget_s": args.ensemble_budget, "members": args.members,
                   "wall_s": round(time.perf_counter() - t0, 1),
                   "mlipkit": mlipkit.__version__, "torch": torch.__version__,
                   "threads": torch.get_num_threads(), "machine": platform.machine(),
                   "date": time.strftime("%Y-%m-%d")})
    line = json.dumps(record)
    print(line)
    (ROOT / "results" / "ood_temperature.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
