"""Uncertainty scores with one interface: per-atom and per-structure numbers,
larger meaning less trustworthy.

- :class:`EnsembleDeviation`: force deviation across committee members, as
  DP-GEN and MACE report it (absolute or relative to the force);
- :class:`PosteriorStd`: predictive force spread of a Bayesian linear model;
- :class:`Mahalanobis`: distance of each atom's descriptor vector from the
  training distribution of its element, with a χ² threshold;
- :class:`ConvexHull`: whether each atom's (PCA-reduced) descriptor lies in
  the convex hull of the training atoms, and how far outside it is;
- :class:`KernelDistance`: SOAP-kernel distance to the nearest training
  environment of the same element.

Descriptor-based scores take an :class:`Environments` (the descriptor used)
and are fitted on training structures; model-based scores take the model.
A structure's score is the largest of its atoms' scores (a test for a
local novelty such as one stretched bond); :attr:`Scores.mean_per_structure`
gives their mean (a joint test for a shift that spreads over all atoms, such
as a higher temperature).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull as _Hull
from scipy.spatial import QhullError
from scipy.stats import chi2

from mlipkit.data.batch import Batch
from mlipkit.descriptors.soap import PowerSpectrum
from mlipkit.models.base import species_lookup, to_numbers
from mlipkit.neighbors import attach_neighbors, edge_vectors
from mlipkit.training.metrics import geometry_batch, single_structures


@dataclass
class Scores:
    """``per_atom`` [N] and ``per_structure`` [S] (the largest atom score of
    each structure); ``threshold`` separates trusted from untrusted where the
    estimator defines one; ``structure`` [N] maps atoms to structures."""

    per_atom: np.ndarray
    per_structure: np.ndarray
    structure: np.ndarray
    threshold: float | None = None

    @property
    def mean_per_structure(self) -> np.ndarray:
        """[S] the mean atom score of each structure."""
        count = np.bincount(self.structure, minlength=len(self.per_structure))
        return np.bincount(self.structure, self.per_atom, len(self.per_structure)) / count


def _scores(per_atom: np.ndarray, n_atoms: Sequence[int], threshold=None) -> Scores:
    structure = np.repeat(np.arange(len(n_atoms)), n_atoms)
    per_structure = np.full(len(n_atoms), -np.inf)
    np.maximum.at(per_structure, structure, per_atom)
    return Scores(per_atom, per_structure, structure, threshold)


class EnsembleDeviation:
    """Per atom ε_i = sqrt(mean_k |F_i^k − F̄_i|²) over the K members; with
    ``relative`` it is divided by |F̄_i| + ``floor`` (eV/Å)."""

    def __init__(self, ensemble, relative: bool = False, floor: float = 1.0,
                 batch_size: int = 32) -> None:
        self.ensemble, self.relative, self.floor = ensemble, relative, float(floor)
        self.batch_size = batch_size

    def score(self, batches: Sequence[Batch]) -> Scores:
        singles = single_structures(batches)
        values = []
        for k in range(0, len(singles), self.batch_size):
            out = self.ensemble(geometry_batch(singles[k : k + self.batch_size]), forces=True)
            members = out["forces_members"].double()
            mean = members.mean(0)
            eps = (members - mean).square().sum(-1).mean(0).sqrt()
            if self.relative:
                eps = eps / (torch.linalg.vector_norm(mean, dim=-1) + self.floor)
            values.append(eps.cpu().numpy())
        return _scores(np.concatenate(values), [b.n_total_atoms for b in singles])


class PosteriorStd:
    """Per atom the norm of the predicted force standard deviation of a model
    with a posterior (:class:`~mlipkit.models.linear.BayesianLinear`)."""

    def __init__(self, model, batch_size: int = 32) -> None:
        self.model, self.batch_size = model, batch_size

    def score(self, batches: Sequence[Batch]) -> Scores:
        singles = single_structures(batches)
        values = []
        for k in range(0, len(singles), self.batch_size):
            # the posterior term prepares the batch itself
            std = self.model.uncertainty(geometry_batch(singles[k : k + self.batch_size]))
            if "forces_std" not in std:
                raise ValueError("the model predicts no force uncertainty")
            norm = torch.linalg.vector_norm(std["forces_std"].double(), dim=-1)
            values.append(norm.cpu().numpy())
        return _scores(np.concatenate(values), [b.n_total_atoms for b in singles])


class Environments:
    """Per-atom descriptor vectors (SOAP power spectrum by default) of the
    structures' atoms, with each atom's element."""

    def __init__(self, species, cutoff: float = 5.0, n_radial: int = 6, l_max: int = 4) -> None:
        self.species = to_numbers(species)
        self.lookup = species_lookup(self.species)
        self.cutoff = float(cutoff)
        self.descriptor = PowerSpectrum(len(self.species), cutoff, n_radial, l_max).double()

    @torch.no_grad()
    def vectors(self, batches: Sequence[Batch]) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """(vectors [N, F], element index [N], atoms per structure)."""
        vectors, species, n_atoms = [], [], []
        for b in single_structures(batches):
            # a list of its own: one already attached may have a shorter cutoff
            b = attach_neighbors(b.without("edge_index", "shifts").to(dtype=torch.float64),
                                 self.cutoff)
            s = self.lookup[b.numbers]
            if bool((s < 0).any()):
                raise ValueError("a structure holds an element the environments were not "
                                 f"built for ({self.species})")
            i, j = b.edge_index
            vectors.append(self.descriptor(i, s[j], edge_vectors(b), b.n_total_atoms).cpu().numpy())
            species.append(s.cpu().numpy())
            n_atoms.append(b.n_total_atoms)
        return np.concatenate(vectors), np.concatenate(species), n_atoms


class _PerElement:
    """Fits one model per element on training environments; atoms of an
    element never seen in training score +inf."""

    def __init__(self, environments: Environments) -> None:
        self.environments = environments
        self.fitted: dict[int, object] = {}

    def fit(self, batches: Sequence[Batch]):
        x, s, _ = self.environments.vectors(batches)
        self.fitted = {int(e): self._fit(x[s == e]) for e in np.unique(s)}
        return self

    def score(self, batches: Sequence[Batch]) -> Scores:
        if not self.fitted:
            raise RuntimeError("fit the estimator on training structures first")
        x, s, n_atoms = self.environments.vectors(batches)
        out = np.full(len(x), np.inf)
        for e, state in self.fitted.items():
            mask = s == e
            if mask.any():
                out[mask] = self._score(state, x[mask])
        return _scores(out, n_atoms, self.threshold())

    def threshold(self) -> float | None:
        return None


class Mahalanobis(_PerElement):
    """Squared Mahalanobis distance of an atom's descriptor from its element's
    training vectors, as in probabilistic PCA: d² = Σ_k p_k²/λ_k over the
    leading principal components (those that carry ``variance`` of the
    total, at most ``max_components``) plus |residual|²/σ², with σ² the mean
    variance of the other directions the training data span. For Gaussian
    data d² is χ² with as many degrees of freedom as those directions. The
    score is d² divided by that element's χ² quantile at 1 − ``false_alarm``,
    so the threshold is 1 for every element."""

    def __init__(self, environments: Environments, variance: float = 0.999,
                 max_components: int = 50, false_alarm: float = 0.01) -> None:
        super().__init__(environments)
        self.variance, self.max_components = variance, max_components
        self.false_alarm = false_alarm

    def _fit(self, x):
        mean = x.mean(0)
        _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
        var = sv**2 / max(len(x) - 1, 1)
        rank = max(1, int(np.sum(var > 1e-12 * var[0]))) if var[0] > 0 else 1
        keep = int(np.searchsorted(np.cumsum(var) / max(var.sum(), 1e-300), self.variance) + 1)
        keep = max(1, min(keep, self.max_components, rank))
        noise = float(var[keep:rank].mean()) if rank > keep else None
        dof = rank if noise else keep
        return mean, vt[:keep], np.maximum(var[:keep], 1e-300), noise, \
            chi2.ppf(1.0 - self.false_alarm, dof)

    def _score(self, state, x):
        mean, axes, var, noise, quantile = state
        centred = x - mean
        projection = centred @ axes.T
        d2 = (projection**2 / var).sum(-1)
        if noise:
            residual = np.maximum((centred**2).sum(-1) - (projection**2).sum(-1), 0.0)
            d2 = d2 + residual / noise
        return d2 / quantile

    def threshold(self) -> float | None:
        return 1.0


class ConvexHull(_PerElement):
    """Position of an atom's vector, in the element's first ``components``
    principal axes (scaled to unit variance), relative to the convex hull of
    the training atoms: the largest signed distance to a facet plane. It is
    ≤ 0 exactly inside the hull (minus the distance to the nearest facet) and
    > 0 outside (a lower bound of the distance to the hull); threshold 0."""

    def __init__(self, environments: Environments, components: int = 4) -> None:
        super().__init__(environments)
        self.components = components

    def _fit(self, x):
        mean = x.mean(0)
        _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
        rank = int(np.sum(sv > 1e-9 * max(sv[0], 1e-300)))
        k = min(self.components, len(x) - 2, rank)
        if k < 2:
            raise ValueError("too few distinct training environments of an element for a "
                             f"convex hull ({len(x)} atoms spanning {rank} directions)")
        scale = sv[:k] / np.sqrt(max(len(x) - 1, 1))
        try:
            equations = _Hull((x - mean) @ vt[:k].T / scale).equations
        except QhullError as exc:
            raise ValueError(f"convex hull of the training environments failed: {exc}") from None
        return mean, vt[:k], scale, equations

    def _score(self, state, x):
        mean, axes, scale, equations = state
        y = (x - mean) @ axes.T / scale
        return (y @ equations[:, :-1].T + equations[:, -1]).max(-1)

    def threshold(self) -> float | None:
        return 0.0


class KernelDistance(_PerElement):
    """sqrt(2 − 2 k) with the normalised SOAP kernel k = (x̂·ŷ)^ζ to the
    nearest training environment of the same element (0: seen before)."""

    def __init__(self, environments: Environments, zeta: int = 2) -> None:
        super().__init__(environments)
        self.zeta = zeta

    @staticmethod
    def _unit(x):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-300)

    def _fit(self, x):
        return self._unit(x)

    def _score(self, state, x):
        best = np.zeros(len(x))
        for k in range(0, len(x), 1024):  # bounded memory for large sets
            kernel = np.clip(self._unit(x[k : k + 1024]) @ state.T, 0.0, 1.0) ** self.zeta
            best[k : k + 1024] = kernel.max(-1)
        return np.sqrt(np.maximum(2.0 - 2.0 * best, 0.0))
