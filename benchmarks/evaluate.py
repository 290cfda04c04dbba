"""Energy+forces throughput of the default BehlerParrinello model (float32, CPU).

Cases: (a) 100 rMD17 aspirin structures in one batch, (b) a 2,048-atom fcc Cu
supercell at a 5 Å cutoff. Each repeat builds the neighbor list and evaluates
energy and forces, timing the two parts; medians over repeats are reported.
ASE's EMT calculator on the same structures is a baseline measured in the
same run.

Prints one JSON line and writes it to benchmarks/results/evaluate.json.

    python benchmarks/evaluate.py [--repeats 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from ase.build import bulk
from ase.calculators.emt import EMT

import mlipkit
from mlipkit.data import Batch, from_atoms, read_rmd17, to_atoms
from mlipkit.models import BehlerParrinello
from mlipkit.neighbors import attach_neighbors

ROOT = Path(__file__).resolve().parent
RMD17 = ROOT.parent.parent / "shared" / "data" / "rmd17" / "rmd17_aspirin_train_01.npz"


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_case(name: str, batch: Batch, structures, species, cutoff: float, repeats: int) -> dict:
    torch.manual_seed(0)
    pot = BehlerParrinello(species, cutoff=cutoff).float()
    pot.fit_standardization(batch.split()[:8])
    batch = batch.to(dtype=torch.float32)
    n_atoms = batch.n_total_atoms

    with_nl = attach_neighbors(batch, cutoff)
    pot(with_nl, forces=True)  # warm-up
    t_nl, t_model = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with_nl = attach_neighbors(batch, cutoff)
        t1 = time.perf_counter()
        pot(with_nl, forces=True)
        t2 = time.perf_counter()
        t_nl.append(t1 - t0)
        t_model.append(t2 - t1)
    t_total = statistics.median(a + b for a, b in zip(t_nl, t_model))

    def emt():
        for atoms in structures:
            atoms.calc = EMT()
            atoms.get_forces()

    t_emt = median_time(emt, max(3, repeats // 3))
    return {
        "case": name,
        "n_atoms": n_atoms,
        "n_edges": with_nl.n_edges,
        "total_s": t_total,
        "atoms_per_s": n_atoms / t_total,
        "neighbor_list_s": statistics.median(t_nl),
        "model_s": statistics.median(t_model),
        "neighbor_list_share": statistics.median(a / (a + b) for a, b in zip(t_nl, t_model)),
        "emt_atoms_per_s": n_atoms / t_emt,
        "speedup_vs_emt": t_emt / t_total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "evaluate.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    if RMD17.exists():
        frames = read_rmd17(RMD17, indices=range(100), dtype=torch.float32)
        batch = Batch.collate(frames)
        results.append(bench_case("aspirin_100", batch, to_atoms(batch), ["H", "C", "O"], 5.0,
                                  args.repeats))
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((8, 8, 8))
    cu.rattle(0.01, seed=0)
    results.append(bench_case("cu_fcc_2048", from_atoms(cu, torch.float32), [cu], ["Cu"], 5.0,
                              args.repeats))
    record = {
        "benchmark": "evaluate",
        "model": "BehlerParrinello default (hidden 64x64, ACSF from cutoff), float32",
        "mlipkit": mlipkit.__version__,
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    line = json.dumps(record)
    print(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(line + "\n")


if __name__ == "__main__":
    main()
