"""Building a potential from a ModelConfig and the training data."""

from __future__ import annotations

import logging

import numpy as np
import torch

from mlipkit.data.batch import Batch
from mlipkit.data.dataset import fit_reference_energies, label_statistics, species_of
from mlipkit.descriptors.acsf import default_parameters
from mlipkit.errors import InvalidConfig
from mlipkit.models import (
    BayesianLinear,
    BehlerParrinello,
    Equivariant,
    ScaleShift,
    SumPotential,
)
from mlipkit.models.base import Potential
from mlipkit.models.equivariant import PRESETS
from mlipkit.neighbors import edge_vectors
from mlipkit.physics import ZBL

log = logging.getLogger(__name__)


def energy_scale(batches: list[Batch], references: dict[int, float]) -> float:
    """A typical magnitude of the learned part: the force RMS if forces are
    labelled, else the spread of the per-atom energy after references."""
    stats = label_statistics(batches, references)
    for key in ("forces_rms", "energy_per_atom_std"):
        value = stats.get(key)
        if value is not None and np.isfinite(value) and value > 1e-8:
            return float(value)
    return 1.0


def equivariant_network(config, species: list[int], batches: list[Batch]) -> Equivariant:
    """The configured preset with the config's overrides; neighbour sums are
    divided by the mean neighbour count of the training structures."""
    settings = dict(PRESETS[config.preset])
    for key in ("channels", "l_max", "n_layers", "correlation"):
        if getattr(config, key) is not None:
            settings[key] = getattr(config, key)
    edges = atoms = 0
    for b in batches[:2000]:
        r = torch.linalg.vector_norm(edge_vectors(b), dim=-1)
        edges += int((r < config.cutoff).sum())
        atoms += b.n_total_atoms
    settings["avg_neighbors"] = max(edges / max(atoms, 1), 1.0)
    try:
        return Equivariant(species, cutoff=config.cutoff, **settings)
    except ValueError as exc:  # e.g. l_max above the preset's harmonics
        raise InvalidConfig(f"model (preset {config.preset!r}): {exc}") from None


def _linear_descriptor(config) -> dict:
    if config.descriptor == "soap":
        return {"n_radial": config.soap_n_radial, "l_max": config.soap_l_max}
    return _acsf_parameters(config)


def _acsf_parameters(config) -> dict:
    try:
        return default_parameters(config.cutoff, n_radial=config.n_radial,
                                  n_angular_radial=config.n_angular_radial,
                                  zetas=tuple(config.zetas), angular_range=config.angular_range,
                                  four_body=config.four_body)
    except ValueError as exc:
        raise InvalidConfig(f"model: {exc}") from None


def build_model(config, batches: list[Batch], seed: int, dtype: torch.dtype) -> Potential:
    """Reference energies by least squares, descriptor statistics and the
    output scale from ``batches``; network weights from ``seed``."""
    species = species_of(batches)
    references = fit_reference_energies(batches, species)
    scale = energy_scale(batches, references)
    torch.manual_seed(seed)
    if config.type == "equivariant":
        network = equivariant_network(config, species, batches).to(dtype)
        model: Potential = ScaleShift(network, scale=scale, shift=references)
    elif config.type == "linear":
        network = BayesianLinear(species, cutoff=config.cutoff, descriptor=config.descriptor,
                                 params=_linear_descriptor(config)).to(dtype)
        network.fit_scale(batches[:2000])
        model = ScaleShift(network, scale=1.0, shift=references)  # weights carry the scale
    else:
        network = BehlerParrinello(species, cutoff=config.cutoff, hidden=config.hidden,
                                   descriptor=_acsf_parameters(config)).to(dtype)
        network.fit_standardization(batches[:2000])
        model = ScaleShift(network, scale=scale, shift=references)
    if config.zbl:
        model = SumPotential(model, ZBL())
    log.info("model: %s, species %s, output scale %.4g eV, reference energies %s",
             config.type, species, scale, {k: round(v, 4) for k, v in references.items()})
    return model.to(dtype)
