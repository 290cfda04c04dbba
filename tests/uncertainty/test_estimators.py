"""Uncertainty scores: each against its definition or known statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import molecule

from mlipkit.data import Batch, from_atoms
from mlipkit.models.ensemble import EnsemblePotential
from mlipkit.uncertainty.estimators import (
    ConvexHull,
    EnsembleDeviation,
    Environments,
    KernelDistance,
    Mahalanobis,
)
from tests.conftest import ETHANOL_REFS, build_potential, molecule_fit_frames, rattled


def _ethanol(n, amplitude, seed):
    return [from_atoms(a) for a in rattled(molecule("CH3CH2OH"), n, amplitude, seed=seed)]


def test_ensemble_deviation_follows_its_definition():
    members = [build_potential(["H", "C", "O"], molecule_fit_frames(), ETHANOL_REFS,
                               torch.float64, seed=s) for s in range(3)]
    ensemble = EnsemblePotential(members)
    batches = _ethanol(3, 0.1, seed=1)
    forces = torch.stack([m(Batch.collate(batches))["forces"] for m in members]).numpy()
    mean = forces.mean(0)
    expected = np.sqrt(((forces - mean) ** 2).sum(-1).mean(0))
    scores = EnsembleDeviation(ensemble, batch_size=2).score(batches)
    np.testing.assert_allclose(scores.per_atom, expected, rtol=1e-10)
    np.testing.assert_allclose(scores.per_structure, expected.reshape(3, 9).max(1), rtol=1e-10)
    np.testing.assert_allclose(scores.mean_per_structure, expected.reshape(3, 9).mean(1),
                               rtol=1e-10)
    relative = EnsembleDeviation(ensemble, relative=True, floor=0.5).score(batches)
    np.testing.assert_allclose(relative.per_atom,
                               expected / (np.linalg.norm(mean, axis=-1) + 0.5), rtol=1e-10)


def test_mahalanobis_threshold_has_its_false_alarm_rate_on_gaussian_data():
    """Three strong directions and an isotropic rest (the probabilistic-PCA
    model): d² is χ² whether all components are kept or three and the
    residual, so 5% of new samples exceed the 5% threshold."""
    rng = np.random.default_rng(0)
    rotation, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    widths = np.array([5.0, 3.0, 2.0, 0.3, 0.3, 0.3])

    def draw(n):
        return (rng.normal(size=(n, 6)) * widths) @ rotation + 3.0

    train, test = draw(40_000), draw(40_000)
    for variance, kept in ((1.0, 6), (0.95, 3)):
        estimator = Mahalanobis(environments=None, variance=variance, false_alarm=0.05)
        estimator.fitted = {0: estimator._fit(train)}
        assert len(estimator.fitted[0][2]) == kept
        score = estimator._score(estimator.fitted[0], test)
        assert np.mean(score > estimator.threshold()) == pytest.approx(0.05, abs=0.005)


@pytest.fixture(scope="module")
def environments():
    return Environments(["H", "C", "O"], cutoff=4.0, n_radial=4, l_max=3)


def test_descriptor_scores_rise_away_from_the_training_set(environments):
    train = _ethanol(30, 0.05, seed=0)
    near, far = _ethanol(10, 0.05, seed=500), _ethanol(10, 0.35, seed=500)
    other = [from_atoms(molecule(name)) for name in ("CH3OH", "CH3CHO", "HCOOH")]
    for estimator in (Mahalanobis(environments), ConvexHull(environments, components=3),
                      KernelDistance(environments)):
        estimator.fit(train)
        s_near, s_far = estimator.score(near), estimator.score(far)
        assert np.median(s_far.per_structure) > np.median(s_near.per_structure), estimator
        assert estimator.score(other).per_structure.min() > np.median(s_near.per_structure)
        if estimator.threshold() is not None:
            assert np.mean(s_far.per_structure > estimator.threshold()) >= 0.9, estimator


def test_kernel_distance_and_hull_on_the_training_set(environments):
    train = _ethanol(20, 0.05, seed=0)
    kernel = KernelDistance(environments).fit(train)
    np.testing.assert_allclose(kernel.score(train).per_atom, 0.0, atol=1e-6)
    hull = ConvexHull(environments, components=3).fit(train)
    assert hull.score(train).per_atom.max() <= 1e-9  # every training atom is in the hull


def test_unseen_elements_and_unfitted_estimators(environments):
    with pytest.raises(RuntimeError, match="fit"):
        Mahalanobis(environments).score(_ethanol(1, 0.05, seed=0))
    only_h = Environments(["H"], cutoff=4.0)
    with pytest.raises(ValueError, match="element"):
        only_h.vectors(_ethanol(1, 0.05, seed=0))
    estimator = KernelDistance(environments).fit([from_atoms(molecule("H2O"))])
    scores = estimator.score(_ethanol(1, 0.05, seed=0))
    assert np.isinf(scores.per_atom).sum() == 2  # the two carbons: no carbon was seen
