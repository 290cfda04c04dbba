"""Calibration figures of predicted standard deviations against actual errors.

Predicted σ are read as Gaussian: a central interval of probability p is
±z_p σ with z_p = Φ⁻¹((1 + p)/2). A calibrated model's p-intervals hold a
fraction p of the errors at every p.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import spearmanr

LEVELS = np.linspace(0.01, 0.99, 99)  # probabilities of the calibration curve


def _z(p):
    return ndtri(0.5 * (1.0 + np.asarray(p, dtype=float)))


def coverage(errors: np.ndarray, std: np.ndarray, levels=LEVELS) -> np.ndarray:
    """Observed fraction of errors inside each central interval (per level)."""
    ratio = np.abs(np.ravel(errors)) / np.ravel(std)
    return np.array([float(np.mean(ratio <= z)) for z in _z(levels)])


def fit_std_scale(errors: np.ndarray, std: np.ndarray) -> float:
    """The factor s for which s·σ maximises the Gaussian likelihood of the
    errors: s² = mean(err² / σ²)."""
    errors, std = np.ravel(errors), np.ravel(std)
    if errors.size < 2:
        raise ValueError("calibration needs at least two errors")
    if not np.all(std > 0):
        raise ValueError("predicted standard deviations must be positive")
    return float(np.sqrt(np.mean((errors / std) ** 2)))


def uncertainty_metrics(errors: np.ndarray, std: np.ndarray, group: np.ndarray) -> dict:
    """Figures for force components ``errors`` [n, 3] (prediction − reference)
    with predicted ``std`` [n, 3]; ``group`` [n] names each row's structure.

    - ``spearman_forces``: rank correlation, over structures, of the mean
      predicted σ and the mean absolute error;
    - ``coverage_50``, ``coverage_90``, ``coverage_95``: fraction of
      components inside the central 50/90/95% intervals;
    - ``nll``: mean Gaussian negative log-likelihood per component;
    - ``ece``: miscalibration area, the mean |observed − expected| coverage
      over levels 0.01 … 0.99.
    """
    errors, std, group = np.asarray(errors, float), np.asarray(std, float), np.asarray(group)
    std = np.maximum(std, 1e-9)  # a zero spread (e.g. symmetry-zero forces) stays finite
    if errors.shape != std.shape or errors.shape[0] != group.shape[0]:
        raise ValueError(f"shapes differ: errors {errors.shape}, std {std.shape}, "
                         f"group {group.shape}")
    _, index = np.unique(group, return_inverse=True)
    count = np.bincount(index)
    mean_std = np.bincount(index, std.mean(axis=1)) / count
    mean_error = np.bincount(index, np.abs(errors).mean(axis=1)) / count
    spearman = float(spearmanr(mean_std, mean_error).statistic) if len(count) > 2 else None
    observed = coverage(errors, std)
    p50, p90, p95 = coverage(errors, std, [0.5, 0.9, 0.95])
    nll = float(np.mean(0.5 * np.log(2 * np.pi * std**2) + 0.5 * (errors / std) ** 2))
    return {"spearman_forces": spearman, "coverage_50": float(p50), "coverage_90": float(p90),
            "coverage_95": float(p95), "nll": nll,
            "ece": float(np.mean(np.abs(observed - LEVELS)))}
