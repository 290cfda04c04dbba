"""mlipkit: machine-learning interatomic potentials, from data to simulations.

The subpackages and the top-level names load on first use, so that light
modules (the oracles run in worker processes, the command line's help) do
not pay for importing torch.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("data", "models", "neighbors", "physics", "units")
_NAMES = {"Calculator": "mlipkit.calculators", "load": "mlipkit.models.checkpoint",
          "save": "mlipkit.models.checkpoint"}

__all__ = ["Calculator", "data", "load", "models", "neighbors", "physics", "save", "units"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"mlipkit.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'mlipkit' has no attribute {name!r}")
