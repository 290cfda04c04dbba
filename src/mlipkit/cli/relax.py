"""`mlipkit relax MODEL STRUCTURE --out DIR [--cell] [--optimizer ...]`."""

from __future__ import annotations

from pathlib import Path

from mlipkit.cli import _properties as common

HELP = "relax positions (and the cell) with ASE optimizers or exact-Hessian Newton steps"


def add_arguments(parser) -> None:
    from mlipkit.properties.relax import OPTIMIZERS

    common.add_common(parser)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="bfgs",
                        help="newton: rational-function steps on the model's exact Hessian")
    parser.add_argument("--cell", action="store_true", help="relax the cell too")
    parser.add_argument("--pressure", type=float, default=0.0, help="GPa (with --cell)")
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--compare-optimizers", action="store_true",
                        help="also relax with every other optimizer and report iterations")


def run(args) -> int:
    import time

    import numpy as np
    from ase.io import write

    from mlipkit.calculators import Calculator as MlipkitCalculator
    from mlipkit.properties.engines import label
    from mlipkit.properties.relax import OPTIMIZERS, relax

    calc, reference = common.engines(args)
    atoms = common.structure(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(fmax=args.fmax, steps=args.steps, cell=args.cell, pressure=args.pressure)
    t0 = time.perf_counter()
    relaxed = relax(atoms, calc, optimizer=args.optimizer, **options)
    result = {"model": label(calc), "optimizer": args.optimizer, **relaxed.as_dict(),
              "wall_s": time.perf_counter() - t0}
    write(out / "relaxed.extxyz", relaxed.atoms, format="extxyz")
    if args.compare_optimizers:
        runs = {args.optimizer: result_row(relaxed, result["wall_s"])}
        for name in OPTIMIZERS:
            if name == args.optimizer or (name == "newton" and (
                    args.cell or not isinstance(calc, MlipkitCalculator))):
                continue  # done above; newton: positions only, with a model's exact Hessian
            t0 = time.perf_counter()
            r = relax(atoms, calc, optimizer=name, **options)
            runs[name] = result_row(r, time.perf_counter() - t0)
        result["optimizers"] = runs
    if reference is not None:
        ref = relax(atoms, reference, **options)
        write(out / "relaxed_reference.extxyz", ref.atoms, format="extxyz")
        shift = relaxed.atoms.get_positions() - ref.atoms.get_positions()
        result["reference"] = {"calculator": label(reference), **ref.as_dict(),
                               "energy_of_model_geometry_eV":
                                   _energy(relaxed.atoms, reference)}
        result["comparison"] = {
            "position_rmsd_A": float(np.sqrt((shift ** 2).sum(axis=1).mean())),
            "max_displacement_A": float(np.linalg.norm(shift, axis=1).max()),
            "cell_error_A": relaxed.atoms.cell.array - ref.atoms.cell.array,
            "relaxed_energy_error_eV": relaxed.energy - ref.energy,
        }
    common.finish(args, "relax", result)
    return 0


def result_row(relaxation, wall_s: float) -> dict:
    return {**relaxation.as_dict(), "wall_s": wall_s}


def _energy(atoms, calc) -> float:
    from mlipkit.properties.engines import attach

    return float(attach(atoms, calc).get_potential_energy())
