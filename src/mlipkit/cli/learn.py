"""`mlipkit learn CONFIG.yaml [key=value ...]`: run the same command again to resume.

``--status`` prints where the run stands and ``--export FILE`` writes its
labels to extxyz; neither runs anything, so both are safe beside a running
loop.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlipkit.errors import InvalidConfig

HELP = "active learning: explore with a committee, label where it disagrees, retrain"


def add_arguments(parser) -> None:
    parser.add_argument("config", help="YAML config (see mlipkit.active.config)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. select.per_round=8")
    parser.add_argument("--status", action="store_true",
                        help="print the run's rounds, oracle calls and failures; runs nothing")
    parser.add_argument("--export", metavar="FILE",
                        help="write the run's labelled structures (energy, forces, stress; "
                             "hash, origin and round in the info) to this extxyz file; runs "
                             "nothing")
    parser.add_argument("--origins", nargs="+", choices=("seed", "explore", "test"),
                        help="with --export: the labels to write (default: the training "
                             "labels, seed and explore)")


def run(args) -> int:
    from mlipkit.active.config import load_learn_config

    config = load_learn_config(args.config, args.overrides)
    if args.origins and not args.export:
        raise InvalidConfig("--origins chooses what --export writes; give --export FILE too")
    if args.status or args.export:
        from mlipkit.active.store import TRAINING_ORIGINS, LabelStore

        out = Path(config.output)
        if not (out / "labels.db").is_file():
            raise FileNotFoundError(f"no run in {out}: labels.db not found")
        store = LabelStore(out / "labels.db")
        if args.status:
            print(status(out, store))
        if args.export:
            origins = args.origins or TRAINING_ORIGINS
            count = store.export_extxyz(args.export, origins)
            print(f"wrote {count} labelled structures ({', '.join(origins)}) to "
                  f"{args.export}")
        return 0
    from mlipkit.active.loop import learn

    print(json.dumps(learn(config, progress=not args.quiet)))
    return 0


def status(out: Path, store) -> str:
    """Rounds finished (and why the run stopped), labels by status, a line
    per round (``reseeded``: selected structures that are fresh rattled
    copies of the starts) and the first line of each failure's error."""
    from mlipkit.active.lock import holder
    from mlipkit.active.store import TRAINING_ORIGINS

    path = out / "history.json"
    history = json.loads(path.read_text()) if path.exists() else []
    stop = history[-1].get("stop") if history else None
    running = holder(out)
    if running:
        state = f", running now (pid {running})"
    else:
        state = f", stopped: {stop}" if stop else ", not running (run the command to go on)"
    counts = store.counts()
    lines = [f"{out}: {len(history)} round(s) finished{state}",
             f"oracle calls for training data: {store.calls(TRAINING_ORIGINS)}; structures "
             f"(test set included): {counts['ok']} labelled, {counts['failed']} failed, "
             f"{counts['queued']} queued"]
    if history:
        lines.append(f"{'round':>5} {'calls':>6} {'labels':>6} {'test F RMSE meV/Å':>18} "
                     f"{'uncertain':>9} {'selected':>8} {'reseeded':>8} {'stopped MD':>10}")
    for h in history:
        rmse = h.get("test_forces_rmse")
        uncertain = h.get("uncertain_fraction")
        lines.append(f"{h['round']:>5} {h['oracle_calls']:>6} {h['labels']:>6} "
                     f"{'-' if rmse is None else f'{1000 * rmse:.1f}':>18} "
                     f"{'-' if uncertain is None else f'{uncertain:.1%}':>9} "
                     f"{h.get('selected', '-'):>8} {h.get('reseeded', '-'):>8} "
                     f"{h.get('stopped', '-'):>10}")
    for failure in store.failures():
        error = (failure["error"] or "?").splitlines()[0]
        lines.append(f"failed: row {failure['id']} after {failure['attempts']} call(s): "
                     f"{error}")
    return "\n".join(lines)
