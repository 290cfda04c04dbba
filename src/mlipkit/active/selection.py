"""Choosing which candidate structures to label next.

Every strategy returns indices into the candidate list, best first:

- :func:`max_uncertainty`: the highest scores;
- :func:`trust_band`: scores in [lo, hi] (above hi the structures are
  likely unphysical and are skipped), most uncertain first (or ordered by
  another measure), optionally thinned for diversity by
  :func:`weighted_farthest_point`;
- :func:`d_optimal`: greedy maximisation of log det(A + Σ x xᵀ) over the
  candidates' feature rows (e.g. linear-model design rows), which picks the
  structures that shrink the posterior volume most;
- :func:`farthest_point`: farthest-point sampling in a descriptor space;
- :func:`kernel_density`: how typical each candidate is among all of them
  (to weigh uncertainty by representativeness);
- :func:`adversarial`: moves atoms to raise the committee's force
  disagreement while a Boltzmann factor keeps the energy plausible.
"""

from __future__ import annotations

import numpy as np
import torch

from mlipkit.data.batch import Batch
from mlipkit.data.keys import LABEL_KEYS
from mlipkit.units import kB


def _check_count(count: int) -> None:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")


def max_uncertainty(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest scores, largest first."""
    _check_count(count)
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:count]


def trust_band(scores: np.ndarray, lo: float, hi: float, count: int,
               features: np.ndarray | None = None,
               labelled: np.ndarray | None = None,
               ranking: np.ndarray | None = None) -> np.ndarray:
    """Up to ``count`` candidates with lo ≤ score ≤ hi. Without ``features``
    the most uncertain come first; with them (one row per candidate) the
    band is thinned by :func:`weighted_farthest_point`, which also keeps
    away from the ``labelled`` rows (the training set) when given.
    ``ranking`` (one value per candidate) orders and weighs the band instead
    of the scores, which then only decide who is in it."""
    _check_count(count)
    if not lo <= hi:
        raise ValueError(f"need lo <= hi, got [{lo}, {hi}]")
    scores = np.asarray(scores, dtype=float)
    ranking = scores if ranking is None else np.asarray(ranking, dtype=float)
    band = np.nonzero((scores >= lo) & (scores <= hi))[0]
    band = band[np.argsort(-ranking[band], kind="stable")]
    if features is None or (len(band) <= count and labelled is None):
        return band[:count]
    return band[weighted_farthest_point(ranking[band], np.asarray(features)[band], count,
                                        labelled)]


def weighted_farthest_point(scores: np.ndarray, features: np.ndarray, count: int,
                            labelled: np.ndarray | None = None) -> np.ndarray:
    """Greedy picks of the candidate with the largest score × distance, the
    distance (Euclidean, in ``features``) being to the nearest earlier pick
    or ``labelled`` row. Without labelled rows the first pick is the highest
    score. A candidate at zero distance (a duplicate) is never picked."""
    _check_count(count)
    scores = np.asarray(scores, dtype=float)
    x = np.asarray(features, dtype=float).reshape(len(scores), -1)
    distance = np.full(len(x), np.inf)  # nothing picked or labelled: scores alone
    if labelled is not None and len(labelled):
        ref = np.asarray(labelled, dtype=float).reshape(len(labelled), -1)
        distance = np.linalg.norm(x[:, None] - ref[None], axis=-1).min(1)
    picks: list[int] = []
    for _ in range(min(count, len(x))):
        gain = scores * np.where(np.isinf(distance), 1.0, distance)
        gain[picks] = -np.inf
        best = int(np.argmax(gain))
        if not distance[best] > 0:
            break  # the rest duplicates what is picked or labelled
        picks.append(best)
        distance = np.minimum(distance, np.linalg.norm(x - x[best], axis=1))
    return np.array(picks, dtype=int)


def farthest_point(features: np.ndarray, count: int, start: int | None = None) -> np.ndarray:
    """Greedy farthest-point sampling: each pick is the candidate farthest
    (Euclidean) from all earlier picks. ``start`` is the first pick (default:
    the candidate farthest from the mean)."""
    _check_count(count)
    x = np.asarray(features, dtype=float).reshape(len(features), -1)
    if len(x) == 0 or count == 0:
        return np.zeros(0, dtype=int)
    first = int(np.argmax(np.linalg.norm(x - x.mean(0), axis=1))) if start is None else start
    picks = [first]
    distance = np.linalg.norm(x - x[first], axis=1)
    for _ in range(min(count, len(x)) - 1):
        nxt = int(np.argmax(distance))
        if distance[nxt] <= 0:
            break  # the rest duplicates what was picked
        picks.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(x - x[nxt], axis=1))
    return np.array(picks)


def kernel_density(features: np.ndarray, bandwidth: float | None = None) -> np.ndarray:
    """Gaussian kernel density of each row among all rows (itself
    included), scaled so that the densest row has 1. The default
    ``bandwidth`` is the median distance between distinct rows."""
    if len(features) == 0:
        return np.zeros(0)
    x = np.asarray(features, dtype=float).reshape(len(features), -1)
    norms = np.square(x).sum(1)  # |a - b|² without an [N, N, D] array
    squared = np.maximum(norms[:, None] + norms[None] - 2 * x @ x.T, 0.0)
    if bandwidth is None:
        distances = np.sqrt(squared[np.triu_indices(len(x), 1)])
        distances = distances[distances > 0]
        bandwidth = float(np.median(distances)) if len(distances) else 1.0
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
    density = np.exp(-squared / (2 * bandwidth**2)).mean(1)
    return density / density.max()


def d_optimal(rows: list[np.ndarray], count: int, prior: float = 1e-6,
              information: np.ndarray | None = None) -> np.ndarray:
    """Greedy D-optimal design. ``rows[k]`` is candidate k's feature block
    [r_k, P] (one row per label it would bring); ``information`` is the
    current XᵀX [P, P] (labelled data), regularised by ``prior``·I. Each step
    takes the candidate with the largest log det(I + X_k A⁻¹ X_kᵀ), the gain
    in log det A, and adds its rows to A."""
    _check_count(count)
    blocks = [np.atleast_2d(np.asarray(r, dtype=float)) for r in rows]
    if not blocks:
        return np.zeros(0, dtype=int)
    p = blocks[0].shape[1]
    a = prior * np.eye(p) if information is None else information + prior * np.eye(p)
    inverse = np.linalg.inv(a)
    chosen: list[int] = []
    for _ in range(min(count, len(blocks))):
        best, best_gain = -1, -np.inf
        for k, x in enumerate(blocks):
            if k in chosen:
                continue
            gain = np.linalg.slogdet(np.eye(len(x)) + x @ inverse @ x.T)[1]
            if gain > best_gain:
                best, best_gain = k, gain
        chosen.append(best)
        x = blocks[best]  # Woodbury update of A⁻¹ after adding xᵀx
        middle = np.linalg.inv(np.eye(len(x)) + x @ inverse @ x.T)
        inverse = inverse - inverse @ x.T @ middle @ x @ inverse
    return np.array(chosen)


def adversarial(ensemble, batch: Batch, temperature: float = 300.0, steps: int = 30,
                step_size: float = 0.01, max_displacement: float = 0.3) -> Batch:
    """Displace the atoms of ``batch`` (one structure, neighbor list attached
    or not) to maximise log σ_F − (E − E₀)/k_BT, where σ_F² is the mean
    squared force deviation of the committee and E the committee's mean
    energy. Gradient ascent with at most ``step_size`` Å per atom per step
    and ``max_displacement`` Å in all; returns the displaced structure."""
    if batch.n_structures != 1:
        raise ValueError("adversarial() moves one structure at a time")
    start = batch.positions.detach().clone()
    positions = start.clone()
    kt = kB * temperature
    e0 = None
    for _ in range(steps):
        current = ensemble.prepare(batch.replace(positions=positions).without(
            "edge_index", "shifts"))
        x = current.positions.detach().requires_grad_(True)
        moved = current.replace(positions=x)
        energies, forces = [], []
        for member in ensemble.members:
            energy = member.atomic_energies(moved).sum()
            (gradient,) = torch.autograd.grad(energy, x, create_graph=True)
            energies.append(energy)
            forces.append(-gradient)
        forces = torch.stack(forces)
        energy = torch.stack(energies).mean()
        if e0 is None:
            e0 = float(energy.detach())
        spread = (forces - forces.mean(0)).square().sum(-1).mean()
        objective = 0.5 * torch.log(spread + 1e-12) - (energy - e0) / kt
        (grad,) = torch.autograd.grad(objective, x)
        length = torch.linalg.vector_norm(grad, dim=-1, keepdim=True).clamp(min=1e-12)
        step = step_size * grad / length.max()
        shift = positions + step.detach() - start
        norm = torch.linalg.vector_norm(shift, dim=-1, keepdim=True)
        positions = start + shift * torch.clamp(max_displacement / norm.clamp(min=1e-12),
                                                max=1.0)
    # the labels, if any, belonged to the old geometry
    return batch.replace(positions=positions.detach()).without("edge_index", "shifts",
                                                                *LABEL_KEYS)
