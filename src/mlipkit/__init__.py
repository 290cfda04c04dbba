"""mlipkit: machine-learning interatomic potentials, from data to simulations."""

__version__ = "0.1.0"

from mlipkit import data, models, neighbors, physics, units  # noqa: E402
from mlipkit.calculators import Calculator  # noqa: E402
from mlipkit.models.checkpoint import load, save  # noqa: E402

__all__ = ["Calculator", "data", "load", "models", "neighbors", "physics", "save", "units"]
