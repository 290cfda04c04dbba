"""The named exceptions users see.

Each message says what is wrong and how to fix it. They subclass the builtin
exception a caller would naturally catch (``ValueError``, ``KeyError`` ...) so
generic handlers still work.
"""

from ase.calculators.calculator import PropertyNotImplementedError


class MlipkitError(Exception):
    """Base class of every mlipkit error."""


class InvalidStructure(MlipkitError, ValueError):
    """A structure that cannot be evaluated: NaN/inf coordinates, an empty
    structure, a singular cell with periodic boundaries, inconsistent shapes."""


class UnknownSpecies(MlipkitError, KeyError):
    """An element the model was not built for."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MissingLabel(MlipkitError, KeyError):
    """A data frame lacks a label (energy, forces, stress) that was asked for."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidModelFile(MlipkitError, ValueError):
    """A model file that is not a valid, untampered mlipkit safetensors file."""


class InvalidConfig(MlipkitError, ValueError):
    """A configuration value that is out of range or inconsistent."""


class StressUndefined(MlipkitError, PropertyNotImplementedError):
    """Stress was asked for a structure that is not periodic in all directions."""


class SimulationUnstable(MlipkitError, RuntimeError):
    """A simulation guard tripped: non-finite values, a force above its limit,
    atoms closer than allowed or an uncertainty above its limit."""


class HessianUnavailable(MlipkitError, ValueError):
    """An exact Hessian was asked of a calculator that cannot differentiate twice."""


class PathMismatch(MlipkitError, ValueError):
    """The end points of a reaction path do not hold the same atoms."""


class OracleFailures(MlipkitError, RuntimeError):
    """Too many reference calculations failed for an active-learning run to
    go on; the labels already obtained are kept."""


class RunInProgress(MlipkitError, RuntimeError):
    """Another process is running `mlipkit learn` in the same run folder."""
