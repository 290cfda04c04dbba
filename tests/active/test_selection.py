"""Query strategies against brute force and their defining properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase.build import molecule

from mlipkit.active.selection import (
    adversarial,
    d_optimal,
    farthest_point,
    kernel_density,
    max_uncertainty,
    trust_band,
    weighted_farthest_point,
)
from mlipkit.data import from_atoms
from mlipkit.models.ensemble import EnsemblePotential
from tests.conftest import ETHANOL_REFS, build_potential, molecule_fit_frames


def test_max_uncertainty_and_trust_band():
    scores = np.array([0.1, 0.9, 0.5, 3.0, 0.7, 0.05])
    assert max_uncertainty(scores, 3).tolist() == [3, 1, 4]
    assert trust_band(scores, 0.2, 1.0, 5).tolist() == [1, 4, 2]  # 3.0 is beyond trust
    # 2 nearly duplicates 1 (the most uncertain): diversity takes 4 instead
    features = np.array([[0.0], [5.0], [5.01], [9.0], [0.0], [0.0]])
    assert trust_band(scores, 0.2, 1.0, 2, features=features).tolist() == [1, 4]
    picks = trust_band(np.array([0.5, 0.6, 0.55]), 0.0, 1.0, 2,
                       features=np.array([[0.0], [0.01], [4.0]]))
    assert picks.tolist() == [1, 2]  # the most uncertain, then the one far from it
    # another measure orders the band; the scores still decide who is in it
    ranking = np.array([9.0, 0.1, 0.3, 9.0, 0.2, 9.0])
    assert trust_band(scores, 0.2, 1.0, 5, ranking=ranking).tolist() == [2, 4, 1]
    # and weighs the diversity: 2 (0.3) first, then 4 (0.2 x 5.01) beats 1 (0.1 x 0.01);
    # weighed by the scores, 1 (0.9) would come first
    assert trust_band(scores, 0.2, 1.0, 2, features=features, ranking=ranking).tolist() == [2, 4]
    with pytest.raises(ValueError):
        trust_band(scores, 1.0, 0.5, 2)


def test_kernel_density_by_hand():
    # bandwidth 1: five rows at 0 and one at 10 (exp(-50) ~ 2e-22 adds nothing):
    # the cluster's rows have 5/6, the lone row 1/6
    x = np.array([[0.0], [0.0], [0.0], [0.0], [0.0], [10.0]])
    assert np.allclose(kernel_density(x, bandwidth=1.0), [1, 1, 1, 1, 1, 0.2])
    # default bandwidth: the median of the distances 1, 3, 2 is 2, so each pair
    # at distance d adds exp(-d^2 / 8)
    d1, d2, d3 = np.exp(-1 / 8), np.exp(-4 / 8), np.exp(-9 / 8)
    raw = np.array([1 + d1 + d3, 1 + d1 + d2, 1 + d3 + d2])
    assert np.allclose(kernel_density(np.array([[0.0], [1.0], [3.0]])), raw / raw.max())
    assert np.allclose(kernel_density(np.array([[3.0], [0.0], [1.0]])),
                       raw[[2, 0, 1]] / raw.max())  # the order of the rows does not matter
    assert kernel_density(np.zeros((0, 2))).shape == (0,)
    with pytest.raises(ValueError):
        kernel_density(x, bandwidth=0.0)


def test_weighted_farthest_point_keeps_away_from_the_training_set():
    scores = np.array([1.0, 0.5, 0.4])
    features = np.array([[0.05], [3.0], [6.0]])
    assert weighted_farthest_point(scores, features, 2).tolist() == [0, 2]
    # a labelled structure next to the most uncertain one makes it the last choice
    picks = weighted_farthest_point(scores, features, 3, labelled=np.array([[0.0]]))
    assert picks.tolist() == [2, 1, 0]
    assert trust_band(scores, 0.0, 1.0, 1, features, np.array([[0.0]])).tolist() == [2]
    # duplicates of labelled structures are never labelled again
    assert len(weighted_farthest_point(scores, np.zeros((3, 1)), 3, np.zeros((1, 1)))) == 0
    # against the definition: each pick maximises score x distance to picks and labels
    rng = np.random.default_rng(3)
    x, s, ref = rng.normal(size=(30, 4)), rng.uniform(0.1, 1.0, 30), rng.normal(size=(5, 4))
    picks = weighted_farthest_point(s, x, 6, ref)
    for k in range(6):
        near = np.vstack([ref, x[picks[:k]]])
        gain = s * np.linalg.norm(x[:, None] - near[None], axis=-1).min(1)
        assert gain[picks[k]] == pytest.approx(gain.max())


def test_farthest_point_is_greedy_maximin():
    x = np.random.default_rng(0).normal(size=(40, 3))
    picks = farthest_point(x, 6)
    assert picks[0] == np.argmax(np.linalg.norm(x - x.mean(0), axis=1))
    for k in range(1, 6):
        d = np.min(np.linalg.norm(x[:, None] - x[picks[:k]][None], axis=-1), axis=1)
        assert d[picks[k]] == pytest.approx(d.max())
    assert len(farthest_point(np.zeros((5, 2)), 3)) == 1  # duplicates add nothing


def test_d_optimal_matches_brute_force_greedy():
    rng = np.random.default_rng(1)
    rows = [rng.normal(size=(rng.integers(1, 4), 5)) for _ in range(12)]
    information = np.eye(5) * 0.5
    picks = d_optimal(rows, 4, information=information, prior=0.0)
    chosen, a = [], information.copy()
    for _ in range(4):
        gains = [np.linalg.slogdet(a + rows[k].T @ rows[k])[1] if k not in chosen else -np.inf
                 for k in range(12)]
        chosen.append(int(np.argmax(gains)))
        a = a + rows[chosen[-1]].T @ rows[chosen[-1]]
    assert picks.tolist() == chosen
    # with a duplicate of the first pick available, the second pick is new information
    e = np.eye(3)
    assert d_optimal([e[:1], e[:1], e[1:2] * 0.9], 2).tolist() == [0, 2]
    # greedy does at least as well as most random sets of the same size
    best = np.linalg.slogdet(information + sum(rows[k].T @ rows[k] for k in picks))[1]
    others = [np.linalg.slogdet(information + sum(rows[k].T @ rows[k] for k in c))[1]
              for c in itertools.combinations(range(12), 4)]
    assert np.mean(np.array(others) <= best + 1e-9) > 0.95


def test_adversarial_moves_raise_disagreement_within_bounds():
    members = [build_potential(["H", "C", "O"], molecule_fit_frames(), ETHANOL_REFS,
                               torch.float64, seed=s) for s in range(3)]
    ensemble = EnsemblePotential(members)
    start = from_atoms(molecule("CH3CH2OH"))
    moved = adversarial(ensemble, start, temperature=1000.0, steps=15, step_size=0.02,
                        max_displacement=0.2)
    shift = torch.linalg.vector_norm(moved.positions - start.positions, dim=-1)
    assert float(shift.max()) <= 0.2 + 1e-9 and float(shift.max()) > 0.05

    def spread(b):
        return float(ensemble(b)["forces_std"].square().sum(-1).mean())

    assert spread(moved) > 1.5 * spread(start)
    with pytest.raises(ValueError, match="one structure"):
        from mlipkit.data import Batch

        adversarial(ensemble, Batch.collate([start, start]))
