"""Potentials: the contract, the models and their composition."""

from mlipkit.models.base import Capabilities, Potential
from mlipkit.models.bpnn import BehlerParrinello
from mlipkit.models.composite import ScaleShift, SumPotential
from mlipkit.models.ensemble import EnsemblePotential
from mlipkit.models.equivariant import Equivariant
from mlipkit.models.linear import BayesianLinear
from mlipkit.models.registry import REGISTRY, build

__all__ = ["Capabilities", "Potential", "BayesianLinear", "BehlerParrinello", "Equivariant",
           "EnsemblePotential", "ScaleShift", "SumPotential", "REGISTRY", "build"]
