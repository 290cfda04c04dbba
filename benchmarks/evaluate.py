"""Energy+forces throughput of a model (float32, CPU or GPU).

Models: the default BehlerParrinello, or an equivariant preset. Cases: (a) a
2,048-atom fcc Cu supercell at a 5 Å cutoff, (b) 100 rMD17 aspirin structures
in one batch. Each repeat builds the neighbor list and evaluates energy and
forces, timing the two parts; medians over repeats are reported. ASE's EMT
calculator on the same structures is a baseline measured in the same run.
Memory is the growth of the process's peak resident size during a case's
first evaluation, per atom (cases run largest first); on a GPU it is the peak
device memory allocated by that evaluation. ``--compile`` times the
model eager and then through ``torch.compile``, in the same run.

Prints one JSON line and writes it to benchmarks/results/evaluate[_MODEL].json.

    python benchmarks/evaluate.py [--repeats 10] [--threads 2]
    python benchmarks/evaluate.py [--model equivariant --preset small] [--compile]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import torch
from ase.build import bulk
from ase.calculators.emt import EMT

import mlipkit
from mlipkit.data import Batch, from_atoms, read_rmd17, to_atoms
from mlipkit.models import BehlerParrinello, Equivariant
from mlipkit.models.equivariant import PRESETS
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


def build(model: str, preset: str, species, cutoff: float, batch: Batch):
    torch.manual_seed(0)
    if model == "equivariant":
        return Equivariant(species, cutoff=cutoff, **PRESETS[preset]).float()
    pot = BehlerParrinello(species, cutoff=cutoff).float()
    pot.fit_standardization(batch.split()[:8])
    return pot


def bench_case(name: str, batch: Batch, structures, species, cutoff: float, repeats: int,
               model: str, preset: str, device: str, compile: bool = False) -> dict:
    pot = build(model, preset, species, cutoff, batch).to(device)
    batch = batch.to(device, torch.float32)
    n_atoms = batch.n_total_atoms

    with_nl = attach_neighbors(batch, cutoff)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    pot(with_nl, forces=True)  # warm-up
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    if device.startswith("cuda"):
        rss_kib = torch.cuda.max_memory_allocated() / 1024
    extra = {}
    if compile:
        def evaluate():
            pot(with_nl, forces=True)
            _synchronize(device)

        extra["eager_model_s"] = median_time(evaluate, repeats)
        pot.compile_inference()
        t0 = time.perf_counter()
        evaluate()
        extra["compile_s"] = time.perf_counter() - t0
    t_nl, t_model = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with_nl = attach_neighbors(batch, cutoff)
        t1 = time.perf_counter()
        pot(with_nl, forces=True)
        _synchronize(device)
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
        # CPU: growth of the process's peak resident size; GPU: peak allocated device memory
        "peak_memory_growth_kib_per_atom": rss_kib / n_atoms,
        "emt_atoms_per_s": n_atoms / t_emt,
        "speedup_vs_emt": t_emt / t_total,
        **extra,
        **({"compiled_vs_eager": extra["eager_model_s"] / statistics.median(t_model)}
           if compile else {}),
    }


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model", default="bpnn", choices=["bpnn", "equivariant"])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rmd17", type=Path, default=RMD17, help="the aspirin file of case (b)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the model through torch.compile")
    parser.add_argument("--output", type=Path,
                        help="default: benchmarks/results/evaluate[_MODEL].json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = dict(repeats=args.repeats, model=args.model, preset=args.preset, device=args.device,
                  compile=args.compile)

    results = []
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((8, 8, 8))
    cu.rattle(0.01, seed=0)
    results.append(bench_case("cu_fcc_2048", from_atoms(cu, torch.float32), [cu], ["Cu"], 5.0,
                              **common))
    if args.rmd17.exists():
        frames = read_rmd17(args.rmd17, indices=range(100), dtype=torch.float32)
        batch = Batch.collate(frames)
        results.append(bench_case("aspirin_100", batch, to_atoms(batch), ["H", "C", "O"], 5.0,
                                  **common))
    if args.model == "equivariant":
        described = (f"equivariant preset {args.preset} {PRESETS[args.preset]}, float32"
                     + (", torch.compile" if args.compile else ""))
        name = f"evaluate_equivariant_{args.preset}" + ("_compiled" if args.compile else "")
    else:
        described = ("BehlerParrinello default (hidden 64x64, ACSF from cutoff), float32"
                     + (", torch.compile" if args.compile else ""))
        name = "evaluate" + ("_compiled" if args.compile else "")
    output = args.output or ROOT / "results" / f"{name}.json"
    record = {
        "benchmark": "evaluate",
        "model": described,
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "mlipkit": mlipkit.__version__,
        "torch": torch.__version__,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "results": results,
    }
    line = json.dumps(record)
    print(line)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(line + "\n")


if __name__ == "__main__":
    main()
