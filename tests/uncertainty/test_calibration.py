"""Calibration figures on errors drawn from known Gaussians."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from mlipkit.uncertainty import fit_interval_table, fit_std_scale, uncertainty_metrics


def _draw(n_structures=400, atoms=10, seed=0):
    rng = np.random.default_rng(seed)
    sigma_structure = rng.uniform(0.01, 0.2, n_structures)
    std = np.repeat(sigma_structure, atoms)[:, None] * np.ones((1, 3))
    errors = rng.normal(size=std.shape) * std
    group = np.repeat(np.arange(n_structures), atoms)
    return errors, std, group


def test_calibrated_spreads_give_nominal_coverage():
    errors, std, group = _draw()
    m = uncertainty_metrics(errors, std, group)
    assert m["coverage_50"] == pytest.approx(0.5, abs=0.02)
    assert m["coverage_90"] == pytest.approx(0.9, abs=0.015)
    assert m["coverage_95"] == pytest.approx(0.95, abs=0.01)
    assert m["ece"] < 0.01
    assert m["spearman_forces"] > 0.9  # errors follow the per-structure spread
    assert m["nll"] == pytest.approx(-np.mean(norm.logpdf(errors, scale=std)), rel=1e-12)
    assert fit_std_scale(errors, std) == pytest.approx(1.0, abs=0.02)


def test_overconfident_spreads_are_found_and_rescaled():
    errors, std, group = _draw(seed=1)
    narrow = 0.5 * std
    m = uncertainty_metrics(errors, narrow, group)
    assert m["coverage_90"] == pytest.approx(2 * norm.cdf(0.5 * 1.6449) - 1, abs=0.015)
    assert m["ece"] > 0.15
    scale = fit_std_scale(errors, narrow)
    assert scale == pytest.approx(2.0, rel=0.02)
    rescaled = uncertainty_metrics(errors, scale * narrow, group)
    assert rescaled["ece"] < 0.01 and rescaled["nll"] < m["nll"]


def test_isotonic_table_fixes_heavy_tails():
    """Student-t errors (3 degrees of freedom) in units of σ: no single factor
    gets both the 50% and the 95% intervals right; a table fitted on one draw
    holds each level on a fresh draw."""
    def draw(seed):
        rng = np.random.default_rng(seed)
        std = np.repeat(rng.uniform(0.01, 0.2, 400), 10)[:, None] * np.ones((1, 3))
        return rng.standard_t(3, size=std.shape) * std, std, np.repeat(np.arange(400), 10)

    errors, std, _ = draw(4)
    scale = fit_std_scale(errors, std)
    table = fit_interval_table(errors, scale * std)
    assert len(table) == 99 and np.all(np.diff(table) >= 0)
    fresh, fresh_std, group = draw(5)
    gaussian = uncertainty_metrics(fresh, scale * fresh_std, group)
    assert gaussian["coverage_50"] > 0.6 and gaussian["ece"] > 0.05
    recalibrated = uncertainty_metrics(fresh, scale * fresh_std, group, table)
    for level in (50, 90, 95):
        assert recalibrated[f"coverage_{level}"] == pytest.approx(level / 100, abs=0.015)
    assert recalibrated["ece"] < 0.01
    assert recalibrated["nll"] == gaussian["nll"]  # the table leaves σ alone


def test_unrelated_spreads_do_not_rank_errors():
    errors, std, group = _draw(seed=2)
    shuffled = np.random.default_rng(3).permutation(400)
    m = uncertainty_metrics(errors, std.reshape(400, 10, 3)[shuffled].reshape(-1, 3), group)
    assert abs(m["spearman_forces"]) < 0.15


def test_bad_inputs():
    with pytest.raises(ValueError, match="two"):
        fit_std_scale(np.array([0.1]), np.array([0.2]))
    with pytest.raises(ValueError, match="positive"):
        fit_std_scale(np.array([0.1, 0.2]), np.array([0.2, 0.0]))
    with pytest.raises(ValueError, match="at least 99"):
        fit_interval_table(np.ones(50), np.ones(50))
    with pytest.raises(ValueError, match="shapes"):
        uncertainty_metrics(np.zeros((4, 3)), np.ones((5, 3)), np.arange(4))
