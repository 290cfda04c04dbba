"""`make demo`: a short, honest showcase of the foundation on embedded inputs.

No training exists yet, so the model here is an *untrained* Behler–Parrinello
network (descriptor statistics fitted on rattled Cu cells) plus ZBL. The demo
shows that the machinery is right, not that the model is accurate:

1. physics checks from :mod:`mlipkit.testing` with their measured deviations;
2. a model-file round trip (safetensors + sha256);
3. the model driving ASE: a cell + positions relaxation (FrechetCellFilter + BFGS);
4. NVE molecular dynamics through ASE and its energy conservation;
5. the ZBL repulsion against its Coulomb limit.

Writes figures (PNG) and ``summary.json`` / ``summary.md`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.filters import FrechetCellFilter  # noqa: E402
from ase.optimize import BFGS  # noqa: E402

import mlipkit  # noqa: E402
from mlipkit import testing  # noqa: E402
from mlipkit.data import from_atoms  # noqa: E402
from mlipkit.models import BehlerParrinello, ScaleShift, SumPotential  # noqa: E402
from mlipkit.physics import ZBL  # noqa: E402
from mlipkit.physics.zbl import COULOMB  # noqa: E402


def build_model(seed: int = 0) -> SumPotential:
    torch.manual_seed(seed)
    frames = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.5 + 0.05 * k, cubic=True) * (2, 2, 2)
        atoms.rattle(0.1, seed=k)
        frames.append(from_atoms(atoms))
    bp = BehlerParrinello(["Cu"], cutoff=5.0)
    bp.fit_standardization(frames)
    return SumPotential(ScaleShift(bp, scale=0.2, shift={"Cu": -3.5}), ZBL()).double()


def physics_checks(pot) -> dict:
    cell = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    cell.set_cell(cell.cell.array + [[0, 0.2, 0.1], [0.1, 0, 0.3], [0, 0.2, 0]], scale_atoms=True)
    cell.rattle(0.05, seed=1)
    cluster = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0.2], [1.2, 1.2, 2.0]])
    return {
        "forces_vs_finite_differences_eV_per_A": testing.assert_forces_match_fd(pot, cell),
        "stress_vs_finite_differences_eV_per_A3": testing.assert_stress_matches_fd(pot, cell),
        "rotation_translation_permutation": testing.assert_invariance(pot, cell),
        "supercell_2x2x2_relative": testing.assert_supercell_consistent(pot, cell),
        "smoothness_across_cutoff": testing.assert_smooth_cutoff(pot, ["Cu", "Cu"]),
        "separated_fragments": testing.assert_extensive(pot, cluster, cluster.copy()),
        "batched_vs_single": testing.assert_batch_consistent(pot, [cell, cluster]),
        "calculator_vs_potential": testing.assert_calculator_consistent(pot, cell),
    }


def relax(pot, out: Path) -> dict:
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=3)
    atoms.calc = mlipkit.Calculator(pot)
    trace = []
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    opt.attach(lambda: trace.append((atoms.get_potential_energy(),
                                     np.abs(atoms.get_forces()).max(),
                                     np.abs(atoms.get_stress()).max())))
    converged = opt.run(fmax=1e-3, steps=300)
    trace = np.array(trace)
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot((trace[:, 0] - trace[-1, 0]) * 1000, marker=".")
    ax[0].set(xlabel="BFGS step", ylabel="E - E_final (meV)",
              title="cell + positions relaxation")
    ax[1].semilogy(trace[:, 1], label="max |force| (eV/Å)")
    ax[1].semilogy(trace[:, 2], label="max |stress| (eV/Å³)")
    ax[1].set(xlabel="BFGS step")
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(out / "relaxation.png", dpi=120)
    plt.close(fig)
    return {"converged": bool(converged), "steps": len(trace),
            "final_max_force_eV_per_A": float(trace[-1, 1]),
            "final_max_stress_eV_per_A3": float(trace[-1, 2]),
            "final_volume_per_atom_A3": atoms.get_volume() / len(atoms)}


def nve(pot, out: Path, duration_ps: float) -> dict:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    drift, totals = testing.nve_energy_drift(pot, atoms, duration_ps=duration_ps)
    t = np.arange(len(totals)) * 10 / 1000
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(t, (totals - totals[0]) * 1000 / len(atoms))
    ax.set(xlabel="time (ps)", ylabel="E_total - E_0 (meV/atom)",
           title=f"NVE, 1 fs, 300 K: drift {drift:.1e} eV/atom/ps")
    fig.tight_layout()
    fig.savefig(out / "nve_energy.png", dpi=120)
    plt.close(fig)
    return {"duration_ps": duration_ps, "drift_eV_per_atom_per_ps": drift,
            "max_excursion_meV_per_atom": float(np.ptp(totals) * 1000 / len(atoms))}


def zbl_curve(out: Path) -> dict:
    zbl = ZBL().double()
    r = np.geomspace(0.01, 2.5, 200)
    energies = []
    for x in r:
        e, _, _ = testing.evaluate(zbl, Atoms("CC", positions=[[0, 0, 0], [x, 0, 0]]),
                                   forces=False)
        energies.append(e)
    energies = np.array(energies)
    coulomb = COULOMB * 36 / r
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(r, coulomb, "--", label="bare Coulomb Z²e²/r")
    ax.loglog(r, np.maximum(energies, 1e-6), label="ZBL (switched)")
    ax.set(xlabel="C–C distance (Å)", ylabel="energy (eV)", ylim=(1e-3, None),
           title="ZBL repulsion")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "zbl_dimer.png", dpi=120)
    plt.close(fig)
    return {"screening_at_0.01_A": float(energies[0] / coulomb[0])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="mlipkit foundation showcase")
    parser.add_argument("--output", type=Path, default=Path("demo_output"))
    parser.add_argument("--nve-ps", type=float, default=2.0)
    args = parser.parse_args(argv)
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = {"note": "untrained BPNN+ZBL: checks show the machinery is right, not accuracy"}
    pot = build_model()
    print("1/5 physics checks ...", flush=True)
    summary["physics_checks_max_deviation"] = physics_checks(pot)
    print("2/5 model file round trip ...", flush=True)
    path = mlipkit.save(pot, out / "model.safetensors")
    loaded = mlipkit.load(path)
    probe = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    e1, f1, _ = testing.evaluate(pot, probe)
    e2, f2, _ = testing.evaluate(loaded, probe)
    summary["model_file"] = {"path": str(path), "bytes": path.stat().st_size,
                             "reload_energy_difference_eV": abs(e1 - e2)}
    print("3/5 relaxation with FrechetCellFilter + BFGS ...", flush=True)
    summary["relaxation"] = relax(pot, out)
    print(f"4/5 NVE molecular dynamics ({args.nve_ps} ps) ...", flush=True)
    summary["nve"] = nve(pot, out, args.nve_ps)
    print("5/5 ZBL dimer curve ...", flush=True)
    summary["zbl"] = zbl_curve(out)
    summary["wall_time_s"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(_markdown(summary))
    print(_markdown(summary))
    print(f"figures and summary in {out}/")


def _markdown(summary: dict) -> str:
    lines = ["# mlipkit demo", "", summary["note"], "", "| check | max deviation |", "|---|---|"]
    for k, v in summary["physics_checks_max_deviation"].items():
        lines.append(f"| {k} | {v:.2e} |")
    r, n = summary["relaxation"], summary["nve"]
    lines += ["", f"- model file: {summary['model_file']['bytes']} bytes, reload energy "
              f"difference {summary['model_file']['reload_energy_difference_eV']:.1e} eV",
              f"- relaxation: converged={r['converged']} in {r['steps']} steps, max force "
              f"{r['final_max_force_eV_per_A']:.1e} eV/Å, max stress "
              f"{r['final_max_stress_eV_per_A3']:.1e} eV/Å³ (relaxation.png)",
              f"- NVE {n['duration_ps']} ps: drift {n['drift_eV_per_atom_per_ps']:.1e} eV/atom/ps "
              f"(nve_energy.png)",
              f"- ZBL at 0.01 Å is {summary['zbl']['screening_at_0.01_A']:.3f} of bare Coulomb "
              "(zbl_dimer.png)",
              f"- wall time {summary['wall_time_s']:.0f} s", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
