"""`make demo`: generate reference data with EMT, train a potential, use it.

Everything runs on embedded defaults; no user data is needed:

1. reference data from ASE's EMT calculator for fcc Cu (32-atom cells):
   Langevin MD snapshots at 300/600/900 K, strained and sheared cells, and a
   vacancy; a held-out test set from MD at 750 K;
2. ``mlipkit.training`` trains a Behler–Parrinello potential (+ZBL);
3. evaluation on the test set, with parity plots and the learning curve;
4. NVE molecular dynamics with the trained potential, its energy
   conservation, and EMT re-evaluated on those MD frames as a check that the
   potential stays accurate where its own dynamics goes;
5. lattice constant, bulk modulus, elastic constants, vacancy formation energy
   and phonons of the trained model against EMT's own (``mlipkit.properties``);
6. a finite-difference check of the trained model's forces.

Writes ``summary.json``, ``summary.md`` and PNG figures to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import mlipkit
from mlipkit import md, testing
from mlipkit.data import from_atoms, write_extxyz
from mlipkit.md.plots import thermo_plot
from mlipkit.training.config import DataConfig, ModelConfig, RunConfig, TrainingConfig
from mlipkit.training.run import train

log = logging.getLogger("mlipkit.demo")


def _label(atoms):
    atoms.calc = EMT()
    return from_atoms(atoms, labels={"energy": atoms.get_potential_energy(),
                                     "forces": atoms.get_forces(),
                                     "stress": atoms.get_stress()})


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
        frames.append(_label(atoms.copy()))
    return frames


def _thermalize(atoms, temperature, rng):
    from ase.md import velocitydistribution as vd

    thermalize = getattr(vd, "thermalize_momenta", vd.MaxwellBoltzmannDistribution)
    thermalize(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)


def reference_data(seed: int = 0) -> tuple[list, list]:
    """Training and test structures labelled by EMT."""
    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    train_set = []
    for k, temperature in enumerate((300.0, 600.0, 900.0)):
        train_set += _md_frames(cell, temperature, 40, 20, seed + k)
    rng = np.random.default_rng(seed)
    for _ in range(40):  # strained and sheared cells
        strain = np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3))
        atoms = cell.copy()
        atoms.set_cell(cell.cell.array @ (0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        train_set.append(_label(atoms))
    vacancy = cell.copy()
    del vacancy[0]
    train_set += _md_frames(vacancy, 600.0, 30, 20, seed + 10)
    test_set = _md_frames(cell, 750.0, 40, 20, seed + 20)
    test_set += _md_frames(vacancy, 750.0, 20, 20, seed + 21)
    return train_set, test_set


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
              title=f"NVE with the trained model: drift {drift:.1e} eV/atom/ps")
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
    parser = argparse.ArgumentParser(description="mlipkit demo: EMT data -> BPNN -> MD")
    parser.add_argument("--output", type=Path, default=Path("demo_output"))
    parser.add_argument("--train-seconds", type=float, default=150.0)
    parser.add_argument("--md-ps", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = args.output
    (out / "data").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary: dict = {}

    log.info("1/6 labelling structures with EMT ...")
    train_set, test_set = reference_data()
    write_extxyz(out / "data" / "train.xyz", train_set)
    write_extxyz(out / "data" / "test.xyz", test_set)
    summary["data"] = {"train_structures": len(train_set), "test_structures": len(test_set),
                       "reference": "ASE EMT", "seconds": round(time.perf_counter() - t0, 1)}

    log.info("2/6 training a Behler-Parrinello potential for %.0f s ...", args.train_seconds)
    run_dir = out / "run"
    config = RunConfig(
        data=DataConfig(train=str((out / "data" / "train.xyz").resolve()),
                        test=str((out / "data" / "test.xyz").resolve()), valid_fraction=0.1),
        model=ModelConfig(cutoff=4.5, hidden=[32, 32]),
        training=TrainingConfig(max_epochs=400, max_time=args.train_seconds, batch_size=4,
                                lr=2e-3, warmup_epochs=2, plateau_patience=15),
        output=str(run_dir))
    if (run_dir / "checkpoint.safetensors").exists():
        import shutil

        shutil.rmtree(run_dir)
    t1 = time.perf_counter()
    metrics = train(config, progress=True)
    summary["training"] = {"seconds": round(time.perf_counter() - t1, 1),
                           "epochs": len((run_dir / "log.csv").read_text().splitlines()) - 1}
    summary["test"] = {k: metrics["test"][k] for k in
                       ("n_structures", "energy_mae_per_atom", "forces_mae", "stress_mae")}

    log.info("3/6 parity plots and learning curve are in %s/plots", run_dir)
    model = mlipkit.load(run_dir / "model.safetensors").double()

    log.info("4/6 molecular dynamics with the trained potential (%.1f ps NVE) ...", args.md_ps)
    summary["md"] = run_md(model, out, args.md_ps)

    log.info("5/6 properties of the trained model against EMT ...")
    summary["properties_vs_emt"] = properties_vs_emt(model, out)

    log.info("6/6 finite-difference check of the trained forces ...")
    probe = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    probe.rattle(0.05, seed=3)
    summary["trained_model_checks"] = {
        "forces_vs_finite_differences_eV_per_A": testing.assert_forces_match_fd(model, probe),
        "stress_vs_finite_differences_eV_per_A3": testing.assert_stress_matches_fd(model, probe),
    }
    summary["wall_time_s"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(_markdown(summary, run_dir))
    print(_markdown(summary, run_dir))


def _markdown(s: dict, run_dir: Path) -> str:
    t, md = s["test"], s["md"]
    return "\n".join([
        "# mlipkit demo: EMT reference data -> BPNN -> MD", "",
        f"- data: {s['data']['train_structures']} training and {s['data']['test_structures']} "
        f"test structures of fcc Cu (32/31 atoms) labelled by ASE EMT",
        f"- training: {s['training']['epochs']} epochs in {s['training']['seconds']} s",
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
        f"- figures: {run_dir}/plots/ (parity, learning curve), md.png, md/thermo.png, "
        "properties/eos.png, properties/phonon_bands.png",
        f"- wall time {s['wall_time_s']} s", ""])


if __name__ == "__main__":
    main()
