"""`mlipkit surface MODEL BULK --miller 1 1 1 --out DIR [--reference CALC]`."""

from __future__ import annotations

from pathlib import Path

from mlipkit.cli import _properties as common

HELP = "surface energy from relaxed slabs, with its convergence in slab thickness"


def add_arguments(parser) -> None:
    common.add_common(parser)
    parser.add_argument("--miller", type=int, nargs=3, default=[1, 1, 1], metavar="H",
                        help="Miller indices in the basis of BULK's cell: give the "
                        "conventional cell (e.g. cubic fcc) for the usual planes")
    parser.add_argument("--layers", type=int, nargs="+", default=[3, 4, 5, 6, 7],
                        help="slab thicknesses in layers (default 3 4 5 6 7)")
    parser.add_argument("--vacuum", type=float, default=10.0, help="Å on each side")
    common.add_no_relax(parser)
    parser.add_argument("--fmax", type=float, default=0.01, help="relaxation threshold, eV/Å")


def compute(atoms, calc, args) -> dict:
    from mlipkit.properties.surfaces import surface_energies

    return surface_energies(common.equilibrium(atoms, calc, args), calc,
                            miller=tuple(args.miller), layers=args.layers, vacuum=args.vacuum,
                            fmax=args.fmax, progress=not args.quiet)


def run(args) -> int:
    from mlipkit.properties.engines import label
    from mlipkit.properties.plots import surface_plot
    from mlipkit.properties.report import compare

    calc, reference = common.engines(args)
    atoms = common.structure(args)
    model = compute(atoms, calc, args)
    result = {"model": label(calc), **model}
    ref = None
    if reference is not None:
        ref = compute(atoms, reference, args)
        result["reference"] = {"calculator": label(reference), **ref}
        result["comparison"] = compare(model, ref, ("surface_energy_J_m2",
                                                    "fit_surface_energy_J_m2"))
    surface_plot(model, Path(args.out) / "surface.png", ref)
    common.finish(args, "surface", result)
    return 0
