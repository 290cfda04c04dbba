"""`mlipkit md MODEL STRUCTURE --ensemble ... --out DIR`."""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

HELP = "molecular dynamics with a model file, on one or many replicas"

ENSEMBLES = ("nve", "nvt-langevin", "nvt-bussi", "nvt-nose-hoover", "npt")


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model .safetensors file, or a run folder holding one")
    parser.add_argument("structure", help="any file ASE reads (extxyz, cif, POSCAR, traj, ...)")
    parser.add_argument("--index", default="-1",
                        help="frames of STRUCTURE to simulate, ASE syntax (default: the last; "
                        "':' for all, each a replica)")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="nvt-langevin")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--pressure", type=float, default=0.0, help="GPa (npt)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=1,
                        help="copies of every frame, each with its own velocities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-velocities", action="store_true",
                        help="start from the momenta stored in STRUCTURE (e.g. a final.extxyz "
                        "or interrupted.extxyz) instead of drawing them at --temperature")
    parser.add_argument("--friction", type=float, default=0.01, help="1/fs (nvt-langevin)")
    parser.add_argument("--tau", type=float, default=100.0,
                        help="thermostat time constant, fs (bussi, nose-hoover, npt)")
    parser.add_argument("--tau-p", type=float, default=1000.0, help="barostat time, fs (npt)")
    parser.add_argument("--compressibility", type=float, default=0.01,
                        help="1/GPa, sets the barostat's speed only (npt)")
    parser.add_argument("--fix", type=int, nargs="*", default=[],
                        help="indices of atoms held fixed")
    parser.add_argument("--skin", type=float, default=1.0, help="neighbor-list skin, Å")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--traj-interval", type=int, default=100)
    parser.add_argument("--max-force", type=float, help="stop above this force, eV/Å")
    parser.add_argument("--min-distance", type=float, default=0.5,
                        help="stop when two atoms come closer, Å")
    parser.add_argument("--max-uncertainty", type=float,
                        help="stop when the predicted force std (an ensemble's or a fitted "
                        "linear model's) exceeds this, eV/Å")
    parser.add_argument("--rdf", type=float, metavar="R_MAX",
                        help="accumulate g(r) up to R_MAX Å (periodic cells): rdf.csv, rdf.png")
    parser.add_argument("--msd", action="store_true",
                        help="mean-squared displacement per replica: msd.csv")
    parser.add_argument("--check-stability", action="store_true",
                        help="before running, compare the time step with the stiffest mode "
                        "of the first structure (its Hessian)")
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help="precision (default: the model's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true",
                        help="run the model through torch.compile (the first step compiles: "
                        "tens of seconds on a CPU; pays off for long runs)")
    parser.add_argument("--out", default="md-output", help="output folder")


def _integrator(args):
    from mlipkit import md
    from mlipkit.units import GPa

    t = args.temperature
    return {
        "nve": lambda: md.VelocityVerlet(),
        "nvt-langevin": lambda: md.Langevin(t, friction=args.friction, seed=args.seed),
        "nvt-bussi": lambda: md.Bussi(t, tau=args.tau, seed=args.seed),
        "nvt-nose-hoover": lambda: md.NoseHooverChain(t, tau=args.tau),
        "npt": lambda: md.StochasticCellRescaling(
            t, pressure=args.pressure * GPa, tau=args.tau, tau_p=args.tau_p,
            compressibility=args.compressibility / GPa, seed=args.seed),
    }[args.ensemble]()


def run(args) -> int:
    import torch
    from ase.io import read, write

    from mlipkit import md
    from mlipkit.errors import InvalidConfig
    from mlipkit.md.plots import thermo_plot
    from mlipkit.md.runner import speed_summary
    from mlipkit.md.stability import stability
    from mlipkit.models import EnsemblePotential
    from mlipkit.models.checkpoint import load

    source = Path(args.model)
    model = load(source / "model.safetensors" if source.is_dir() else source,
                 device=args.device, compile=args.compile)
    if args.dtype:
        model = model.to(getattr(torch, args.dtype))
    frames = read(args.structure, index=args.index)
    frames = frames if isinstance(frames, list) else [frames]
    if args.replicas < 1:
        raise ValueError("--replicas must be >= 1")
    if args.keep_velocities and args.replicas > 1 and args.ensemble in ("nve",
                                                                        "nvt-nose-hoover"):
        log.warning("--keep-velocities with --replicas %d: %s is deterministic, so the copies "
                    "of each frame follow the same trajectory", args.replicas, args.ensemble)
    frames = [a for a in frames for _ in range(args.replicas)]
    summary = {}
    if args.check_stability:
        friction = args.friction if args.ensemble == "nvt-langevin" else 0.0
        report = stability(model, frames[0], args.timestep, friction,
                           "baoab" if friction else "verlet")
        summary["stability"] = report.as_dict()
        if not report.stable:
            raise InvalidConfig(f"time step {args.timestep} fs is unstable for the stiffest mode "
                                f"({report.wavenumber_cm:.0f} cm^-1); the limit is "
                                f"{report.max_timestep:.2f} fs")
        log.info("stiffest mode %.0f cm^-1 (period %.1f fs); stable up to %.2f fs",
                 report.wavenumber_cm, report.period_fs, report.max_timestep)
    integrator = _integrator(args)
    start_temperature = 0.0 if args.keep_velocities else args.temperature
    state = md.initial_state(frames, temperature=start_temperature, seed=args.seed,
                             fixed=args.fix or None, dtype=model.dtype, device=args.device)
    ff = md.ForceField(model, skin=args.skin, stress=integrator.needs_stress)
    guard = md.Guard(max_force=args.max_force, min_distance=args.min_distance,
                     max_uncertainty=args.max_uncertainty)
    out = Path(args.out)
    rdf = md.RadialDistribution(args.rdf, interval=args.log_interval) if args.rdf else None
    msd = md.MeanSquaredDisplacement(args.log_interval) if args.msd else None
    uncertainty = md.UncertaintyMonitor(args.log_interval) \
        if isinstance(model, EnsemblePotential) or ff.posterior else None
    observers = [md.ThermoLog(out / "thermo.csv", args.log_interval),
                 md.Trajectory(out, args.traj_interval),
                 *[o for o in (rdf, msd, uncertainty) if o is not None]]
    t0 = time.perf_counter()
    state = md.simulate(state, integrator, ff, args.timestep, args.steps, observers=observers,
                        guard=guard, directory=out, progress=not args.quiet)
    write(out / "final.extxyz", state.to_atoms(), format="extxyz")
    thermo_plot(out / "thermo.csv", out / "thermo.png")
    speed = speed_summary(state, args.timestep, args.steps, t0)
    _write_analyses(out, rdf, msd, uncertainty)
    summary = {
        **summary,
        "ensemble": args.ensemble, "replicas": state.n_replicas,
        "atoms": int(state.batch.n_total_atoms), "steps": args.steps,
        "timestep_fs": args.timestep, "time_ps": state.time / 1000.0,
        "wall_s": round(time.perf_counter() - t0, 2), "ns_per_day": float(speed["ns/day"]),
        "neighbor_list_builds": ff.neighbors.builds,
        "final_temperature_K": state.temperature().tolist(),
        "final_energy_eV": state.energy.tolist(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not args.quiet:
        print(json.dumps(summary))
    return 0


def _write_analyses(out: Path, rdf, msd, uncertainty) -> None:
    """CSV (and a g(r) plot) from the optional observers."""
    if rdf is not None:
        from mlipkit.md.plots import rdf_plot

        r, g = rdf.result()
        _write_csv(out / "rdf.csv", ["r_A", "g"], zip(r, g))
        rdf_plot(r, g, out / "rdf.png")
    if msd is not None:
        rows = [[t, *values] for t, values in zip(msd.times, msd.values)]
        n = len(msd.values[0]) if msd.values else 0
        _write_csv(out / "msd.csv", ["time_fs", *[f"replica_{b}_A2" for b in range(n)]], rows)
    if uncertainty is not None:
        rows = [[t, b, largest[b], mean[b]] for t, largest, mean in uncertainty.rows
                for b in range(len(largest))]
        _write_csv(out / "uncertainty.csv",
                   ["time_fs", "replica", "max_forces_std", "mean_forces_std"], rows)


def _write_csv(path: Path, header: list[str], rows) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
