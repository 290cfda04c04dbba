"""`mlipkit calibrate MODEL DATA [--output FILE] [--plots DIR] [--json]`."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "fit the scale of a model's predicted uncertainty on labelled validation data"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model .safetensors file (ensemble or linear), or a run "
                        "folder holding one")
    parser.add_argument("data", help="labelled validation data: extxyz, ase.db or rMD17 .npz")
    parser.add_argument("--output", help="calibrated model file (default: overwrite MODEL)")
    parser.add_argument("--plots", metavar="DIR", help="write reliability.png here")
    parser.add_argument("--isotonic", action="store_true",
                        help="also fit an isotonic table of force-interval widths, for "
                        "errors that are not Gaussian in the predicted spread")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--batch-size", type=int, default=32)


def run(args) -> int:
    from mlipkit.models.checkpoint import load, read_metadata, save
    from mlipkit.training.data import check_labels, read_labelled
    from mlipkit.uncertainty.calibrate import calibrate

    source = Path(args.model)
    path = source / "model.safetensors" if source.is_dir() else source
    model = load(path)
    data = check_labels(read_labelled(args.data, args.energy_key, args.forces_key, None),
                        args.data)
    report = calibrate(model, data, batch_size=args.batch_size,
                       progress=not (args.json or args.quiet), plots=args.plots,
                       isotonic=args.isotonic)
    extra = dict(read_metadata(path).get("extra", {}), calibration=report)
    report["output"] = str(save(model, args.output or path, extra=extra))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"std scale: energy {report['std_scale']['energy']:.4g}, "
              f"forces {report['std_scale']['forces']:.4g}  -> {report['output']}")
        for key, before in report["before"].items():
            after = report["after"][key]
            if before is not None:
                print(f"{key:>16}: {before:.4g} -> {after:.4g}")
    return 0
