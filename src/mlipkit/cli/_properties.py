"""Arguments and output shared by the property commands (vib, phonons, elastic, ...)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_common(parser, structure: bool = True) -> None:
    parser.add_argument("model", help="model .safetensors file (or run folder), or an ASE "
                        "calculator: emt, gfn2, gfn1, or package.module:Class{json kwargs}")
    if structure:
        parser.add_argument("structure", help="any file ASE reads (extxyz, cif, POSCAR, ...)")
        parser.add_argument("--index", default="-1", help="frame of STRUCTURE (default: last)")
    parser.add_argument("--reference", metavar="CALC",
                        help="compute the same property with this calculator (same forms as "
                        "MODEL) and report both with the errors")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                        help="precision of a mlipkit model (default float64)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", required=True, help="output folder for JSON and plots")


def add_no_relax(parser) -> None:
    parser.add_argument("--no-relax", action="store_true",
                        help="keep the given cell (default: relax cell and positions with each "
                        "calculator first, so that each is at its own equilibrium)")


def equilibrium(atoms, calc, args):
    """``atoms`` with cell and positions relaxed by ``calc`` unless --no-relax."""
    if args.no_relax:
        return atoms
    from mlipkit.properties.engines import require_periodic
    from mlipkit.properties.relax import relax

    require_periodic(atoms, f"mlipkit {args.command}")
    return relax(atoms, calc, fmax=1e-4, cell=True).atoms


def engines(args):
    """(model calculator, reference calculator or None) from the common arguments."""
    from mlipkit.properties.engines import engine

    model = engine(args.model, dtype=args.dtype, device=args.device)
    reference = engine(args.reference, dtype=args.dtype, device=args.device) \
        if args.reference else None
    return model, reference


def structure(args):
    from ase.io import read

    atoms = read(args.structure, index=args.index)
    if isinstance(atoms, list):
        raise ValueError(f"--index {args.index!r} selects {len(atoms)} frames; give one")
    return atoms


def finish(args, name: str, result: dict) -> Path:
    """Write ``out/NAME.json``; unless --quiet print its scalar figures (one line)."""
    from mlipkit.properties.report import jsonable, write_json

    path = write_json(Path(args.out) / f"{name}.json", result)
    log.info("wrote %s", path)
    if not args.quiet:
        print(json.dumps({"report": str(path), **_scalars(jsonable(result))}))
    return path


def _scalars(tree: dict, depth: int = 2) -> dict:
    """The numbers, strings, booleans and short lists of numbers of a report,
    nested dicts to ``depth`` levels; matrices, long arrays and per-site
    records stay in the file."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and depth > 1:
            inner = _scalars(value, depth - 1)
            if inner:
                out[key] = inner
        elif isinstance(value, list):
            if len(value) <= 64 and all(isinstance(v, (int, float)) for v in value):
                out[key] = value
        elif not isinstance(value, dict):
            out[key] = value
    return out
