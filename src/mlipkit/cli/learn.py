"""`mlipkit learn CONFIG.yaml [key=value ...]`: run the same command again to resume."""

from __future__ import annotations

import json

HELP = "active learning: explore with a committee, label where it disagrees, retrain"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML config (see mlipkit.active.config)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. select.per_round=8")


def run(args) -> int:
    from mlipkit.active.config import load_learn_config
    from mlipkit.active.loop import learn

    config = load_learn_config(args.config, args.overrides)
    print(json.dumps(learn(config, progress=not args.quiet)))
    return 0
