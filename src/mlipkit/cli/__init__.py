"""The `mlipkit` command: one subcommand per workflow."""

from __future__ import annotations

import argparse
import logging
import sys

from ase.calculators.calculator import CalculatorError

from mlipkit.errors import MlipkitError

COMMANDS = {
    "train": "mlipkit.cli.train",
    "learn": "mlipkit.cli.learn",
    "eval": "mlipkit.cli.evaluate",
    "calibrate": "mlipkit.cli.calibrate",
    "md": "mlipkit.cli.md",
    "neb": "mlipkit.cli.neb",
    "vib": "mlipkit.cli.vib",
    "phonons": "mlipkit.cli.phonons",
    "elastic": "mlipkit.cli.elastic",
    "vacancy": "mlipkit.cli.vacancy",
    "surface": "mlipkit.cli.surface",
    "relax": "mlipkit.cli.relax",
}


def main(argv: list[str] | None = None) -> int:
    import importlib

    parser = argparse.ArgumentParser(prog="mlipkit", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    # top-level options take no values, so the first command name is the command;
    # only its arguments are built (some import torch, which takes seconds)
    chosen = next((a for a in argv if a in COMMANDS), None)
    modules = {name: importlib.import_module(path) for name, path in COMMANDS.items()}
    for name, module in modules.items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        if name == chosen:
            module.add_arguments(command)
    args = parser.parse_args(argv)
    if args.command != chosen:  # a top-level option took a value that named a command
        raise RuntimeError(f"mlipkit: built the arguments of {chosen!r}, not {args.command!r}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return modules[args.command].run(args) or 0
    except (MlipkitError, FileNotFoundError, ValueError, FloatingPointError,
            CalculatorError) as exc:
        if args.debug:
            raise
        print(f"mlipkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlipkit {args.command}: interrupted", file=sys.stderr)
        return 130
