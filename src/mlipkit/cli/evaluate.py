"""`mlipkit eval MODEL DATA [--json] [--plots DIR]`."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "evaluate a model file (or a run folder) on labelled data"


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model .safetensors file, or a run folder holding one")
    parser.add_argument("data", help="labelled data: extxyz, ase.db or rMD17 .npz")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plots", metavar="DIR", help="write parity plots (and, for a run "
                        "folder, learning curves) as PNG")
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--stress-key", default="stress")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "float64"],
                        help="evaluate in this precision (default: the model's)")


def run(args) -> int:
    import torch

    from mlipkit.models.checkpoint import load
    from mlipkit.training.data import check_labels, read_labelled
    from mlipkit.training.metrics import evaluate
    from mlipkit.training.plots import learning_curves, parity_plots

    source = Path(args.model)
    model = load(source / "model.safetensors" if source.is_dir() else source)
    if args.dtype:
        model = model.to(getattr(torch, args.dtype))
    data = check_labels(read_labelled(args.data, args.energy_key, args.forces_key,
                                       args.stress_key), args.data)
    metrics, predictions = evaluate(model, data, batch_size=args.batch_size,
                                    progress=not (args.json or args.quiet))
    if args.plots:
        parity_plots(predictions, args.plots)
        if source.is_dir() and (source / "log.csv").exists():
            learning_curves(source / "log.csv", args.plots)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:>28}: {value}")
    return 0
