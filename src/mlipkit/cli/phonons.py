"""`mlipkit phonons MODEL STRUCTURE --out DIR [--reference CALC] [--supercell 3 3 3] ...`."""

from __future__ import annotations

from pathlib import Path

from mlipkit.cli import _properties as common

HELP = "phonon bands, DOS and harmonic thermal properties (phonopy), optionally against a " \
       "reference"

# The temperature of the summary in phonons.json.
SUMMARY_K = 300.0


def add_arguments(parser) -> None:
    common.add_common(parser)
    parser.add_argument("--supercell", type=int, nargs=3, default=[3, 3, 3], metavar="N",
                        help="repetitions of STRUCTURE's cell for the force constants; larger "
                        "than the calculator's interaction range (default 3 3 3)")
    parser.add_argument("--displacement", type=float, default=0.01,
                        help="finite displacement, Å (default 0.01)")
    parser.add_argument("--mesh", type=int, nargs=3, default=[20, 20, 20], metavar="N",
                        help="q-point mesh for the DOS and thermal properties (default 20 20 20)")
    parser.add_argument("--tmax", type=float, default=1000.0,
                        help="highest temperature of the thermal properties, K (default 1000)")
    parser.add_argument("--no-symmetrize", dest="symmetrize", action="store_false",
                        help="keep the raw force constants (no acoustic sum rule)")
    common.add_no_relax(parser)
    parser.add_argument("--primitive", choices=["auto", "input"], default="auto",
                        help="auto: phonopy finds the primitive cell by symmetry; input: "
                        "STRUCTURE's cell is the primitive cell (default auto)")


def run(args) -> int:
    from mlipkit.errors import InvalidConfig
    from mlipkit.properties import phonons as ph
    from mlipkit.properties.engines import label
    from mlipkit.properties.plots import phonon_bands_plot, phonon_dos_plot, phonon_thermal_plot

    if args.tmax < SUMMARY_K:
        raise InvalidConfig(f"--tmax must be at least {SUMMARY_K:g} K, the temperature "
                            f"phonons.json reports, got {args.tmax:g}")
    atoms = common.structure(args)
    calc, reference = common.engines(args)
    options = dict(supercell=args.supercell, displacement=args.displacement, mesh=args.mesh,
                   t_max=args.tmax, symmetrize=args.symmetrize,
                   primitive_matrix="auto" if args.primitive == "auto" else None,
                   progress=not args.quiet)
    model = ph.phonons(common.equilibrium(atoms, calc, args), calc, **options)
    result = {"model": label(calc), "structure": atoms.get_chemical_formula(),
              **ph.summary(model, SUMMARY_K)}
    ref = None
    if reference is not None:
        ref = ph.phonons(common.equilibrium(atoms, reference, args), reference, **options)
        result["reference"] = label(reference)
        result["reference_phonons"] = ph.summary(ref, SUMMARY_K)
        result["comparison"] = ph.compare_phonons(model, ref, SUMMARY_K)
    out = Path(args.out)
    phonon_bands_plot(model, out / "bands.png", ref)
    phonon_dos_plot(model, out / "dos.png", ref)
    phonon_thermal_plot(model, out / "thermal.png", ref)
    ph.write_csv(out, model, ref)
    common.finish(args, "phonons", result)
    return 0
