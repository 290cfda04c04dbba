"""The explicit registry of potential types, used to rebuild models from configs."""

from __future__ import annotations

from mlipkit.errors import InvalidModelFile
from mlipkit.models.base import Potential
from mlipkit.models.bpnn import BehlerParrinello
from mlipkit.models.composite import ScaleShift, SumPotential
from mlipkit.models.ensemble import EnsemblePotential
from mlipkit.models.equivariant import Equivariant
from mlipkit.models.linear import BayesianLinear
from mlipkit.physics.zbl import ZBL

REGISTRY: dict[str, type[Potential]] = {
    cls.type_name: cls
    for cls in (BehlerParrinello, Equivariant, BayesianLinear, SumPotential, ScaleShift, ZBL,
                EnsemblePotential)
}


def build(config: dict) -> Potential:
    """Rebuild a (randomly initialised) potential from its config."""
    kind = config.get("type")
    if kind not in REGISTRY:
        raise InvalidModelFile(f"unknown potential type {kind!r}; known types: {sorted(REGISTRY)}")
    return REGISTRY[kind].from_config(config)
