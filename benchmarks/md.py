"""MD speed of the native engine against ASE's VelocityVerlet driving the same
potential through the mlipkit calculator, measured in the same run.

Potential: the default BPNN (+ZBL) architecture of `mlipkit train`, float32,
CPU, built on EMT-labelled structures (timings do not depend on the weights).
Cases: ethanol alone; 64 ethanol replicas in one batch (against ASE running
ethanol alone, replica after replica); 4,000-atom fcc Cu. NVE at 0.5 fs from
300 K; each timing is the median of ``--repeats`` runs of ``--steps`` steps,
the engines taking turns within each repeat.

Each case also times the potential alone (energy and forces on a batch
with its neighbor list already built, in a loop): the cost any engine pays.
ASE's step over that time is the largest ratio a native engine could reach
with this potential (``ceiling_speedup``), were its own work free. The
calculator also computes the stress on every call for a periodic cell (so
that cell filters need no second evaluation); for such cells the potential
is timed with the stress too.

With ``--compile`` every case is timed twice more with the model's inference
core through ``torch.compile`` (see mlipkit.models.compiled), in the native
engine and in the calculator alike, so both ratios come from one run.

Prints one JSON line and writes benchmarks/results/md{--tag}.json.

    python benchmarks/md.py [--repeats 5] [--steps 200] [--cu-steps 10] [--compile]
                            [--threads N] [--tag _NAME]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from ase import units
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet as AseVerlet

import mlipkit
from mlipkit import md
from mlipkit.calculators import Calculator
from mlipkit.data import Batch, from_atoms
from mlipkit.models.compiled import compile_for_inference
from mlipkit.models.derivatives import evaluate
from mlipkit.training.config import ModelConfig
from mlipkit.training.setup import build_model

ROOT = Path(__file__).resolve().parent


def model_for(atoms, seed=0):
    """The default model architecture with statistics from rattled, EMT-labelled copies."""
    frames = []
    for k in range(8):
        a = atoms.copy()
        a.rattle(0.05, seed=k)
        a.calc = EMT()
        b = from_atoms(a)
        frames.append(b.replace(energy=torch.tensor([a.get_potential_energy()],
                                                    dtype=b.positions.dtype)))
    return build_model(ModelConfig(), frames, seed, torch.float32)


def interleaved_rates(runners: dict, steps: int, repeats: int) -> dict:
    """Median steps per second of each ``runner(steps)``. The runners take
    turns within every repeat, in a rotating order, so that a machine that
    drifts slower or faster during the case affects them alike."""
    for run in runners.values():
        run(min(steps, 5))  # warm-up (and compilation)
    times = {name: [] for name in runners}
    names = list(runners)
    for k in range(repeats):
        for name in names[k % len(names):] + names[:k % len(names)]:  # rotating order
            run = runners[name]
            t0 = time.perf_counter()
            run(steps)
            times[name].append(time.perf_counter() - t0)
    return {name: steps / statistics.median(t) for name, t in times.items()}


def ase_runner(model, atoms):
    atoms = atoms.copy()
    state = md.initial_state(atoms, temperature=300, seed=0, dtype=torch.float32)
    atoms.set_momenta(state.momenta.double().numpy() / units.fs)
    atoms.calc = Calculator(model)
    return AseVerlet(atoms, timestep=0.5 * units.fs).run


def native_runner(model, frames):
    state = md.initial_state(frames, temperature=300, seed=0, dtype=torch.float32)
    ff = md.ForceField(model, skin=1.0)
    integrator = md.VelocityVerlet()
    holder = {"state": integrator.init(ff.evaluate(state))}

    def run(n):
        s = holder["state"]
        for _ in range(n):
            s = integrator.step(s, ff, 0.5)
        holder["state"] = s

    return run


def potential_runner(model, frames, stress=False):
    """Energy+forces (and stress) evaluations on a prepared batch of ``frames``."""
    batch = model.prepare(Batch.collate([from_atoms(a) for a in frames]))

    def run(n):
        for _ in range(n):
            evaluate(model, batch, forces=True, stress=stress)

    return run


def case(name, model, frames, steps, repeats):
    """Native, potential-alone and ASE rates for ``model`` (a dict: eager and
    maybe compiled); ASE runs the first structure alone."""
    n_atoms = sum(len(a) for a in frames)
    ase_atoms = len(frames[0])
    result = {"case": name, "atoms": n_atoms, "replicas": len(frames)}
    periodic = all(a.pbc.all() for a in frames)
    for kind, pot in model.items():
        runners = {"native": native_runner(pot, frames), "alone": potential_runner(pot, frames),
                   "ase": ase_runner(pot, frames[0])}
        if periodic:  # the calculator adds the stress on such cells
            runners["stress"] = potential_runner(pot, frames, stress=True)
        rates = interleaved_rates(runners, steps, repeats)
        native, alone, ase = rates["native"], rates["alone"], rates["ase"]
        prefix = "" if kind == "eager" else f"{kind}_"
        result.update({
            f"{prefix}native_steps_per_s": round(native, 2),
            f"{prefix}native_atom_steps_per_s": round(native * n_atoms, 1),
            f"{prefix}ase_steps_per_s": round(ase, 2),
            f"{prefix}ase_atom_steps_per_s": round(ase * ase_atoms, 1),
            f"{prefix}speedup_atom_steps": round(native * n_atoms / (ase * ase_atoms), 2),
            f"{prefix}potential_only_atom_steps_per_s": round(alone * n_atoms, 1),
            f"{prefix}ceiling_speedup": round(alone * n_atoms / (ase * ase_atoms), 2),
        })
        if periodic:
            result[f"{prefix}potential_with_stress_atom_steps_per_s"] = round(
                rates["stress"] * n_atoms, 1)
    if "compiled" in model:  # the compiled engine against ASE with the eager calculator
        result["compiled_native_vs_eager_ase"] = round(
            result["compiled_native_atom_steps_per_s"] / result["ase_atom_steps_per_s"], 2)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--cu-steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--compile", action="store_true",
                        help="also time both engines with the compiled model")
    parser.add_argument("--tag", default="", help="suffix of the result file name")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    def models(atoms):
        eager = model_for(atoms)
        # the copy compiles in the warm-up of its first timing, which no median includes
        return {"eager": eager, "compiled": compile_for_inference(copy.deepcopy(eager))
                } if args.compile else {"eager": eager}

    ethanol = molecule("CH3CH2OH")
    ethanol_models = models(ethanol)
    alone = case("ethanol", ethanol_models, [ethanol], args.steps, args.repeats)
    replicas = case("ethanol_x64", ethanol_models, [ethanol] * 64, args.steps, args.repeats)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True) * (10, 10, 10)
    copper = case("cu_4000", models(cu), [cu], args.cu_steps, args.repeats)
    record = {
        "benchmark": "md", "timestep_fs": 0.5, "dtype": "float32", "integrator": "nve",
        "compiled": args.compile, "repeats": args.repeats, "steps": args.steps,
        "cu_steps": args.cu_steps,
        "cases": [alone, replicas, copper],
        "mlipkit": mlipkit.__version__, "torch": torch.__version__, "threads": args.threads,
        "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"),
    }
    line = json.dumps(record)
    print(line)
    out = ROOT / "results" / f"md{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(line + "\n")


if __name__ == "__main__":
    main()
