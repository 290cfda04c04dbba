"""The `mlipkit` entry point: commands are listed without importing their engines."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from mlipkit.cli import main
try:
    main({argv!r})
except SystemExit as exc:
    assert exc.code == 0, exc.code
print("torch" in sys.modules)
"""


def _imports_torch(argv: list[str]) -> tuple[bool, str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True,
                         text=True, check=True).stdout
    lines = out.strip().splitlines()
    return lines[-1] == "True", out


def test_top_level_help_lists_every_command_without_importing_torch():
    from mlipkit.cli import COMMANDS

    torch_loaded, out = _imports_torch(["--help"])
    assert not torch_loaded
    for name in COMMANDS:
        assert name in out


def test_a_command_gets_its_own_arguments():
    # relax's optimizer choices come from the property module, which needs torch
    torch_loaded, out = _imports_torch(["relax", "--help"])
    assert torch_loaded
    assert "{bfgs,lbfgs,fire,newton}" in out
    assert "--temperature" not in out  # md's arguments are not built for relax
