"""`mlipkit elastic MODEL STRUCTURE --out DIR [--reference CALC]`."""

from __future__ import annotations

from pathlib import Path

from mlipkit.cli import _properties as common

HELP = "elastic constants (6x6), moduli and the Birch-Murnaghan equation of state of a crystal"


def add_arguments(parser) -> None:
    common.add_common(parser)
    parser.add_argument("--strain", type=float, default=0.005,
                        help="strain step; the fit uses ±1 and ±2 steps (default 0.005)")
    parser.add_argument("--span", type=float, default=0.06,
                        help="equation of state: volumes within ±SPAN of equilibrium")
    parser.add_argument("--no-relax", action="store_true",
                        help="keep the given cell (default: relax cell and positions first)")
    parser.add_argument("--fmax", type=float, default=1e-4,
                        help="force threshold of every relaxation, eV/Å")


def compute(atoms, calc, args) -> dict:
    """Relaxed cell, equation of state and elastic constants for one calculator."""
    from mlipkit.properties.elastic import elastic_constants, equation_of_state
    from mlipkit.properties.engines import require_periodic
    from mlipkit.properties.relax import relax

    require_periodic(atoms, "elastic")
    relaxation = None
    if not args.no_relax:
        relaxation = relax(atoms, calc, fmax=args.fmax, cell=True)
        atoms = relaxation.atoms
    eos = equation_of_state(atoms, calc, span=args.span, fmax=args.fmax)
    elastic = elastic_constants(atoms, calc, strain=args.strain, fmax=args.fmax)
    return {"atoms": atoms, "eos": eos, "elastic": elastic, "relaxation": relaxation}


def summary(res: dict) -> dict:
    out = {"eos": res["eos"].as_dict(res["atoms"]), "elastic": res["elastic"].as_dict(),
           "cell_A": res["atoms"].cell.array}
    if res["relaxation"] is not None:
        out["relaxation"] = res["relaxation"].as_dict()
    return out


SCALARS = ("C11", "C12", "C44", "bulk_modulus_GPa", "shear_modulus_GPa", "young_modulus_GPa",
           "poisson_ratio")


def run(args) -> int:
    import numpy as np

    from mlipkit.properties.engines import label
    from mlipkit.properties.plots import elastic_plot, eos_plot
    from mlipkit.properties.report import compare

    calc, reference = common.engines(args)
    atoms = common.structure(args)
    model = compute(atoms, calc, args)
    result = {"model": label(calc), **summary(model)}
    ref = None
    if reference is not None:
        ref = compute(atoms, reference, args)
        result["reference"] = {"calculator": label(reference), **summary(ref)}
        m, r = result["elastic"], result["reference"]["elastic"]
        scalars = compare(m, r, SCALARS)
        eos = compare(result["eos"], result["reference"]["eos"],
                      ["volume_per_atom_A3", "bulk_modulus_GPa", "energy_per_atom_eV"])
        scalars.update({f"eos_{key}": row for key, row in eos.items()})
        lengths = np.asarray(result["eos"]["lattice_lengths_A"])
        ref_lengths = np.asarray(result["reference"]["eos"]["lattice_lengths_A"])
        c_ref = np.asarray(r["C_GPa"])
        big = np.abs(c_ref) > 1.0  # GPa; relative errors of components that are not zero
        result["comparison"] = {
            **scalars,
            "lattice_lengths_error_A": lengths - ref_lengths,
            "C_error_GPa": np.asarray(m["C_GPa"]) - c_ref,
            "C_max_relative_error": float(np.max(np.abs(m["C_GPa"] - c_ref)[big]
                                                 / np.abs(c_ref[big]))) if big.any() else 0.0,
        }
    out = Path(args.out)
    elastic_plot(model["elastic"], out / "elastic.png", ref and ref["elastic"])
    eos_plot(model["eos"], len(atoms), out / "eos.png", ref and ref["eos"])
    common.finish(args, "elastic", result)
    return 0
