"""Calibration figures of predicted standard deviations against actual errors.

Predicted σ are read as Gaussian: a central interval of probability p is
±z_p σ with z_p = Φ⁻¹((1 + p)/2). A calibrated model's p-intervals hold a
fraction p of the errors at every p.

Where the errors are not Gaussian in σ (a committee's are heavy-tailed), an
isotonic recalibration replaces z_p by a fitted non-decreasing table ``z``
over :data:`LEVELS`: the empirical p-quantiles of |error|/σ on held-out data.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import spearmanr

LEVELS = np.linspace(0.01, 0.99, 99)  # probabilities of the calibration curve


def interval_z(levels, table=None) -> np.ndarray:
    """Half-widths, in units of σ, of the central intervals of probability
    ``levels``: Gaussian, or interpolated in a fitted ``table`` over LEVELS."""
    levels = np.asarray(levels, dtype=float)
    if table is None:
        return ndtri(0.5 * (1.0 + levels))
    return np.interp(levels, LEVELS, np.asarray(table, dtype=float))


def coverage(errors: np.ndarray, std: np.ndarray, levels=LEVELS, table=None) -> np.ndarray:
    """Observed fraction of errors inside each central interval (per level)."""
    ratio = np.abs(np.ravel(errors)) / np.ravel(std)
    return np.array([float(np.mean(ratio <= z)) for z in interval_z(levels, table)])


def fit_interval_table(errors: np.ndarray, std: np.ndarray) -> list[float]:
    """Isotonic recalibration: the non-decreasing table of |error|/σ
    quantiles at LEVELS, so that ±z_p σ holds a fraction p of these errors."""
    errors, std = np.ravel(errors), np.ravel(std)
    if errors.size < len(LEVELS):
        raise ValueError(f"an interval table needs at least {len(LEVELS)} errors, "
                         f"got {errors.size}")
    if not np.all(std > 0):
        raise ValueError("predicted standard deviations must be positive")
    table = np.maximum.accumulate(np.quantile(np.abs(errors) / std, LEVELS))
    return [float(z) for z in table]


def fit_std_scale(errors: np.ndarray, std: np.ndarray) -> float:
    """The factor s for which s·σ maximises the Gaussian likelihood of the
    errors: s² = mean(err² / σ²)."""
    errors, std = np.ravel(errors), np.ravel(std)
    if errors.size < 2:
        raise ValueError("calibration needs at least two errors")
    if not np.all(std > 0):
        raise ValueError("predicted standard deviations must be positive")
    return float(np.sqrt(np.mean((errors / std) ** 2)))


def uncertainty_metrics(errors: np.ndarray, std: np.ndarray, group: np.ndarray,
                        table=None) -> dict:
    """Figures for force components ``errors`` [n, 3] (prediction − reference)
    with predicted ``std`` [n, 3]; ``group`` [n] names each row's structure;
    ``table`` is an isotonic interval table (Gaussian intervals without).

    - ``spearman_forces``: rank correlation, over structures, of the mean
      predicted σ and the mean absolute error;
    - ``coverage_50``, ``coverage_90``, ``coverage_95``: fraction of
      components inside the central 50/90/95% intervals;
    - ``nll``: mean Gaussian negative log-likelihood per component (of σ;
      the table does not enter it);
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
    observed = coverage(errors, std, table=table)
    p50, p90, p95 = coverage(errors, std, [0.5, 0.9, 0.95], table)
    nll = float(np.mean(0.5 * np.log(2 * np.pi * std**2) + 0.5 * (errors / std) ** 2))
    return {"spearman_forces": spearman, "coverage_50": float(p50), "coverage_90": float(p90),
            "coverage_95": float(p95), "nll": nll,
            "ece": float(np.mean(np.abs(observed - LEVELS)))}
