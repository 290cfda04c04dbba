"""`make demo`: active learning with EMT as the oracle, then use the potential.

Everything runs on embedded defaults; no user data is needed:

1. ``mlipkit learn`` on fcc Cu (32-atom cells: the equilibrium cell, two
   strained ones and a vacancy) with ASE's EMT as the oracle: rattled seeds,
   then rounds of committee training, Langevin exploration at 300–1,100 K,
   selection where the committee disagrees, and EMT labels; a held-out test
   set from EMT MD at 750 K measures each round;
2. the final committee on the test set, with parity plots;
3. NVE molecular dynamics with the committee, its energy conservation, and
   EMT re-evaluated on Langevin MD frames as a check that the potential
   stays accurate where its own dynamics goes;
4. lattice constant, bulk modulus, elastic constants, vacancy formation
   energy and phonons of the committee against EMT's own
   (``mlipkit.properties``);
5. a finite-difference check of the committee's forces and stress.

Writes ``summary.json``, ``summary.md`` and PNG figures to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import mlipkit
from mlipkit import md, testing
from mlipkit.active.config import LearnConfig
from mlipkit.active.loop import learn
from mlipkit.active.store import LabelStore
from mlipkit.md.plots import thermo_plot
from mlipkit.training.metrics import evaluate
from mlipkit.training.plots import parity_plots

log = logging.getLogger("mlipkit.demo")


def _md_frames(atoms, temperature: float, n_frames: int, interval: int, seed: int):
    atoms = atoms.copy()
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    _thermalize(atoms, temperature, rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng,
                   fixcm=False)
    dyn.run(200)  # equilibrate
    frames = []
    for _ in range(n_frames):
        dyn.run(interval)
        frames.append(Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=True))
    return frames


def _thermalize(atoms, temperature, rng):
    from ase.md import velocitydistribution as vd

    thermalize = getattr(vd, "thermalize_momenta", vd.MaxwellBoltzmannDistribution)
    thermalize(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)


def starting_structures() -> list[Atoms]:
    """The equilibrium 32-atom cell, the same at ±2 % lattice constant, and a vacancy."""
    cells = [bulk("Cu", "fcc", a=3.61 * f, cubic=True) * (2, 2, 2) for f in (1.0, 0.98, 1.02)]
    vacancy = cells[0].copy()
    del vacancy[0]
    return cells + [vacancy]


def test_structures(seed: int = 20) -> list[Atoms]:
    """EMT MD at 750 K, a temperature the loop does not explore."""
    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    vacancy = cell.copy()
    del vacancy[0]
    return _md_frames(cell, 750.0, 40, 20, seed) + _md_frames(vacancy, 750.0, 20, 20, seed + 1)


def learn_config(out: Path, train_seconds: float) -> LearnConfig:
    rounds, members = 4, 2
    return LearnConfig.from_dict({
        "structures": str(out / "data" / "starts.xyz"), "test": str(out / "data" / "test.xyz"),
        "oracle": {"calculator": "emt"}, "executor": {"kind": "inprocess"},
        "seed": {"rattle": 6, "amplitude": 0.05, "strain": 0.02},
        "explore": {"temperatures": [300, 700, 1100], "steps": 200, "sample_every": 10},
        "select": {"lo": 0.02, "hi": 1.0, "per_round": 16},
        "stop": {"max_rounds": rounds, "uncertain_fraction": 0.02},
        "model": {"cutoff": 4.5, "hidden": [32, 32]},
        "training": {"ensemble": members, "max_epochs": 400, "batch_size": 4, "lr": 2e-3,
                     "warmup_epochs": 2, "plateau_patience": 15,
                     "max_time": train_seconds / (rounds * members)},
        "output": str(out / "learn")})


def run_md(model, out: Path, duration_ps: float, seed: int = 1) -> dict:
    """NVE with the trained potential; EMT re-evaluated on its frames."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (3, 3, 3)
    drift, totals = testing.nve_energy_drift(model, atoms, temperature=600.0,
                                             duration_ps=duration_ps, seed=seed)
    # independent Langevin trajectories (4 replicas in one batch), sampled every
    # 50 fs and re-evaluated by the reference code
    check = _ReferenceCheck(interval=25)
    state = md.initial_state([atoms] * 4, temperature=600.0, seed=seed, dtype=model.dtype)
    md.simulate(state, md.Langevin(600.0, friction=0.02, seed=seed), md.ForceField(model),
                timestep=2.0, steps=500, progress=False, directory=out / "md",
                observers=[md.ThermoLog(out / "md" / "thermo.csv", interval=25), check])
    thermo_plot(out / "md" / "thermo.csv", out / "md" / "thermo.png")
    e_model = np.array(check.model_energy)  # [frames, replicas]
    e_ref = np.array(check.reference_energy)
    offset = np.mean(e_model - e_ref)
    fig = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 2)
    t = np.arange(len(totals)) * 10 / 1000
    ax[0].plot(t, (totals - totals[0]) * 1000 / len(atoms))
    ax[0].set(xlabel="time (ps)", ylabel="E_total - E_0 (meV/atom)",
              title=f"NVE with the committee: drift {drift:.1e} eV/atom/ps")
    ax[1].plot(e_ref[:, 0] * 1000, label="EMT (reference)", marker="o")
    ax[1].plot((e_model[:, 0] - offset) * 1000, label="trained model (mean offset removed)",
               marker=".")
    ax[1].set(xlabel="frame (every 50 fs, 600 K; replica 0)", ylabel="energy (meV/atom)",
              title="Langevin MD with the model, checked by EMT")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "md.png", dpi=120)
    return {"atoms": len(atoms), "nve_duration_ps": duration_ps,
            "nve_drift_eV_per_atom_per_ps": drift,
            "md_vs_emt_energy_mae_meV_per_atom": float(np.abs(e_model - e_ref).mean() * 1000),
            "md_vs_emt_forces_mae_meV_per_A": float(np.mean(check.force_error) * 1000)}


def properties_vs_emt(model, out: Path) -> dict:
    """Lattice constant, bulk modulus, elastic constants, vacancy formation
    energy and phonons at X of the trained model and of EMT, each at its own
    equilibrium, by the same code (``mlipkit.properties``)."""
    from mlipkit.properties.defects import vacancy_energies
    from mlipkit.properties.elastic import elastic_constants, equation_of_state
    from mlipkit.properties.phonons import phonons
    from mlipkit.properties.plots import eos_plot, phonon_bands_plot
    from mlipkit.properties.relax import relax

    figures, results = {}, {}
    for name, calc in (("model", mlipkit.Calculator(model)), ("emt", EMT())):
        cell = relax(bulk("Cu", "fcc", a=3.61, cubic=True), calc, fmax=1e-4, cell=True).atoms
        a0 = float(cell.cell.lengths().mean())
        cubic = bulk("Cu", "fcc", a=a0, cubic=True)
        elastic = elastic_constants(cubic, calc)
        eos = equation_of_state(cubic, calc)
        vacancy = vacancy_energies(cubic.repeat(2), calc, fmax=1e-3, progress=False)
        phonon = phonons(bulk("Cu", "fcc", a=a0), calc, supercell=(3, 3, 3), mesh=(8, 8, 8),
                         progress=False)
        figures[name] = (eos, phonon)
        results[name] = {"lattice_constant_A": a0, "bulk_modulus_GPa": eos.bulk_modulus,
                         "C11_GPa": elastic.C[0, 0], "C12_GPa": elastic.C[0, 1],
                         "C44_GPa": elastic.C[3, 3],
                         "vacancy_formation_eV": vacancy["mean_formation_energy_eV"],
                         "phonon_X_max_THz": float(phonon.special_frequencies["X"].max())}
    (out / "properties").mkdir(parents=True, exist_ok=True)
    eos_plot(figures["model"][0], 4, out / "properties" / "eos.png", figures["emt"][0])
    phonon_bands_plot(figures["model"][1], out / "properties" / "phonon_bands.png",
                      figures["emt"][1])
    return {key: {"model": float(value), "emt": float(results["emt"][key]),
                  "error": float(value - results["emt"][key])}
            for key, value in results["model"].items()}


class _ReferenceCheck(md.Observer):
    """Energies and forces of every replica from the model and from EMT."""

    def __init__(self, interval: int) -> None:
        super().__init__(interval)
        self.model_energy, self.reference_energy, self.force_error = [], [], []

    def __call__(self, state, integrator) -> None:
        if state.step == 0:
            return
        model_e, ref_e = [], []
        for atoms in state.to_atoms():
            forces = atoms.arrays["forces"]
            model_e.append(atoms.info["energy"] / len(atoms))
            atoms.calc = EMT()
            ref_e.append(atoms.get_potential_energy() / len(atoms))
            self.force_error.append(np.abs(atoms.get_forces() - forces).mean())
        self.model_energy.append(model_e)
        self.reference_energy.append(ref_e)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="mlipkit demo: active learning with EMT -> MD")
    parser.add_argument("--output", type=Path, default=Path("demo_output"))
    parser.add_argument("--train-seconds", type=float, default=120.0,
                        help="committee training time over all rounds")
    parser.add_argument("--md-ps", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = args.output
    (out / "data").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary: dict = {}

    log.info("1/5 active learning with EMT as the oracle ...")
    ase.io.write(out / "data" / "starts.xyz", starting_structures())
    ase.io.write(out / "data" / "test.xyz", test_structures())
    if (out / "learn").exists():  # the demo starts afresh; `mlipkit learn` itself resumes
        shutil.rmtree(out / "learn")
    learn(learn_config(out, args.train_seconds), progress=True)
    history = json.loads((out / "learn" / "history.json").read_text())
    summary["active_learning"] = {
        "oracle": "ASE EMT", "seconds": round(time.perf_counter() - t0, 1),
        "stop": history[-1]["stop"],
        "rounds": [{k: h.get(k) for k in ("round", "oracle_calls", "test_forces_rmse",
                                          "uncertain_fraction", "selected")}
                   for h in history]}

    log.info("2/5 the committee on the held-out test set (EMT MD at 750 K) ...")
    model = mlipkit.load(out / "learn" / "model.safetensors").double()
    test = LabelStore(out / "learn" / "labels.db").labelled(origins=("test",))
    metrics, predictions = evaluate(model, test)
    parity_plots(predictions, out / "plots")
    summary["test"] = {k: metrics[k] for k in
                       ("n_structures", "energy_mae_per_atom", "forces_mae", "stress_mae")}

    log.info("3/5 molecular dynamics with the committee (%.1f ps NVE) ...", args.md_ps)
    summary["md"] = run_md(model, out, args.md_ps)

    log.info("4/5 properties of the committee against EMT ...")
    summary["properties_vs_emt"] = properties_vs_emt(model, out)

    log.info("5/5 finite-difference check of the committee's forces ...")
    probe = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    probe.rattle(0.05, seed=3)
    summary["trained_model_checks"] = {
        "forces_vs_finite_differences_eV_per_A": testing.assert_forces_match_fd(model, probe),
        "stress_vs_finite_differences_eV_per_A3": testing.assert_stress_matches_fd(model, probe),
    }
    summary["wall_time_s"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(_markdown(summary, out))
    print(_markdown(summary, out))


def _markdown(s: dict, out: Path) -> str:
    t, md, al = s["test"], s["md"], s["active_learning"]
    curve = ", ".join(f"{r['oracle_calls']} calls: {r['test_forces_rmse'] * 1000:.1f}"
                      for r in al["rounds"])
    return "\n".join([
        "# mlipkit demo: active learning with EMT -> committee -> MD and properties", "",
        f"- active learning on fcc Cu (32/31 atoms, EMT oracle): {len(al['rounds'])} rounds in "
        f"{al['seconds']} s, stopped because {al['stop']}",
        f"- test force RMSE (meV/Å) after each round: {curve}",
        f"- test set (MD at 750 K, unseen temperature): energy MAE "
        f"{t['energy_mae_per_atom'] * 1000:.2f} meV/atom, force MAE {t['forces_mae'] * 1000:.1f}"
        f" meV/Å, stress MAE {t['stress_mae'] * 1000:.2f} meV/Å³",
        f"- NVE, {md['atoms']} atoms, {md['nve_duration_ps']} ps at 1 fs: drift "
        f"{md['nve_drift_eV_per_atom_per_ps']:.1e} eV/atom/ps",
        f"- Langevin MD at 600 K (4 replicas, 1 ps) with the model, frames re-evaluated by "
        f"EMT: energy MAE "
        f"{md['md_vs_emt_energy_mae_meV_per_atom']:.2f} meV/atom, force MAE "
        f"{md['md_vs_emt_forces_mae_meV_per_A']:.1f} meV/Å",
        "- properties, trained model vs EMT (each at its own equilibrium): "
        + "; ".join(f"{key.rsplit('_', 1)[0].replace('_', ' ')} {row['model']:.3f} vs "
                    f"{row['emt']:.3f} {key.rsplit('_', 1)[1].replace('A', 'Å')}"
                    for key, row in s["properties_vs_emt"].items()),
        f"- trained forces vs finite differences: "
        f"{s['trained_model_checks']['forces_vs_finite_differences_eV_per_A']:.1e} eV/Å",
        f"- figures: {out}/learn/report/ (learning curve, uncertainty per round), "
        f"{out}/plots/ (parity), md.png, md/thermo.png, properties/eos.png, "
        "properties/phonon_bands.png",
        f"- wall time {s['wall_time_s']} s", ""])


if __name__ == "__main__":
    main()
