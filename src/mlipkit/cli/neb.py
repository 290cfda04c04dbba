"""`mlipkit neb MODEL INITIAL FINAL --out DIR [--reference CALC]`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mlipkit.cli._properties import add_common, engines, finish

log = logging.getLogger(__name__)

HELP = "climbing-image NEB between two structures, validated against a reference"

# References whose own NEB costs about as much as the model's: run it by default.
CHEAP_REFERENCES = ("emt",)


def add_arguments(parser) -> None:
    add_common(parser, structure=False)
    parser.add_argument("initial", help="initial state, any file ASE reads (last frame)")
    parser.add_argument("final", help="final state, same atoms in the same order and cell")
    parser.add_argument("--images", type=int, default=5, help="interior images (default 5)")
    parser.add_argument("--fmax", type=float, default=0.05,
                        help="convergence of the band and of the end points, eV/Å")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps at most")
    parser.add_argument("--optimizer", choices=["fire", "bfgs"], default="fire")
    parser.add_argument("--spring", type=float, default=0.1, help="spring constant, eV/Å²")
    parser.add_argument("--no-relax-ends", dest="relax_ends", action="store_false",
                        help="use INITIAL and FINAL as given instead of relaxing them first")
    parser.add_argument("--reference-neb", action=argparse.BooleanOptionalAction,
                        help="take the reference barrier from the reference's own NEB rather "
                        "than its single points on the model's images (default: on for a "
                        "model file or emt, off for costlier references)")


def _reference_neb(args) -> bool:
    """Whether to run the reference's own NEB: asked for, or cheap enough to be the default."""
    if args.reference_neb is not None:
        return args.reference_neb
    spec = Path(args.reference)
    cheap = args.reference.lower() in CHEAP_REFERENCES or spec.suffix == ".safetensors" \
        or spec.is_dir()
    if not cheap:
        log.info("reference barrier from single points on the model's images; pass "
                 "--reference-neb for the reference's own NEB")
    return cheap


def run(args) -> int:
    from ase.io import read, write

    from mlipkit.errors import InvalidConfig
    from mlipkit.properties.engines import label
    from mlipkit.properties.neb import check_end_points, neb, validate
    from mlipkit.properties.plots import neb_plot

    if args.reference_neb and not args.reference:
        raise InvalidConfig("--reference-neb needs a reference calculator: add --reference CALC")
    initial, final = read(args.initial, index=-1), read(args.final, index=-1)
    check_end_points(initial, final)  # before building engines: fail fast on bad input
    model, reference = engines(args)
    options = {"images": args.images, "fmax": args.fmax, "steps": args.steps,
               "relax_ends": args.relax_ends, "optimizer": args.optimizer,
               "spring": args.spring}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = neb(initial, final, model, **options)
    # written before the reference runs, so a failing oracle does not lose the model's path
    write(out / "path.extxyz", result.images, format="extxyz")
    reference_result = neb(initial, final, reference, **options) \
        if reference is not None and _reference_neb(args) else None
    report = validate(result, reference, reference_result)
    if reference_result is not None:
        write(out / "reference_path.extxyz", reference_result.images, format="extxyz")
    neb_plot(result, out / "neb.png",
             report["reference"]["profile"] if reference is not None else None,
             model_label=label(model),
             reference_label=f"{label(reference)} (reference)" if reference else "")
    finish(args, "neb", {
        "model": label(model), "reference": label(reference) if reference else None,
        "options": options, "neb": result.as_dict(),
        "reference_neb": reference_result.as_dict() if reference_result else None,
        "validation": report, "pass": report["pass"],
    })
    return 0
