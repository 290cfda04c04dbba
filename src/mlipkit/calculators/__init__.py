"""ASE calculators wrapping mlipkit potentials."""

from mlipkit.calculators.ase_calculator import Calculator

__all__ = ["Calculator"]
