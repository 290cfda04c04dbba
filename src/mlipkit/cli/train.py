"""`mlipkit train CONFIG.yaml [key=value ...]` and `mlipkit train --resume RUN_DIR`."""

from __future__ import annotations

import json
from pathlib import Path

HELP = "train a potential (or an ensemble) from a YAML config"


def add_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config (see mlipkit.training.config)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. training.lr=5e-4")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last checkpoint")


def run(args) -> int:
    from mlipkit.training.config import load_config
    from mlipkit.training.run import train

    overrides = list(args.overrides)
    if args.resume:
        if args.config:  # with --resume, every positional is an override
            overrides.insert(0, args.config)
        config = load_config(Path(args.resume) / "config.yaml", overrides)
        config.output = str(args.resume)
    elif args.config:
        config = load_config(args.config, overrides)
    else:
        raise FileNotFoundError("give a CONFIG.yaml, or --resume RUN_DIR")
    metrics = train(config, resume=bool(args.resume), progress=not args.quiet)
    print(json.dumps(metrics))
    return 0
