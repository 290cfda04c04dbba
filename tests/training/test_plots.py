"""Parity plots and learning curves are written as valid, small PNG files."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlipkit.training.plots import learning_curves, parity_plots
from tests.conftest import assert_png


def fake_prediction(n_structures=40, atoms_per=6, stress=True, seed=0):
    rng = np.random.default_rng(seed)
    n_atoms = np.full(n_structures, atoms_per)
    n = int(n_atoms.sum())
    numbers = rng.choice([1, 6, 8], size=n, p=[0.6, 0.3, 0.1])
    e_ref = rng.normal(-100.0, 3.0, n_structures)
    f_ref = rng.normal(0.0, 1.0, (n, 3))
    pred = {
        "n_atoms": n_atoms,
        "numbers": numbers,
        "energy_ref": e_ref,
        "energy_pred": e_ref + rng.normal(0, 0.05, n_structures),
        "forces_ref": f_ref,
        "forces_pred": f_ref + rng.normal(0, 0.05, (n, 3)),
    }
    if stress:
        s_ref = rng.normal(0, 0.01, (5, 3, 3))
        pred["stress_index"] = np.arange(5)
        pred["stress_ref"] = s_ref
        pred["stress_pred"] = s_ref + rng.normal(0, 1e-3, (5, 3, 3))
    return pred


def test_parity_plots_with_stress(tmp_path):
    paths = parity_plots(fake_prediction(), tmp_path / "plots")
    assert [p.name for p in paths] == ["energy_parity.png", "forces_parity.png",
                                       "stress_parity.png"]
    for p in paths:
        assert p.parent == tmp_path / "plots"
        assert_png(p)


def test_parity_plots_without_stress(tmp_path):
    paths = parity_plots(fake_prediction(stress=False), tmp_path)
    assert [p.name for p in paths] == ["energy_parity.png", "forces_parity.png"]
    for p in paths:
        assert_png(p)
    assert not (tmp_path / "stress_parity.png").exists()


def test_parity_plots_without_labels(tmp_path):
    pred = fake_prediction(stress=False)
    del pred["energy_ref"], pred["forces_ref"]
    assert parity_plots(pred, tmp_path) == []


def test_parity_plots_large_is_fast_and_small(tmp_path):
    pred = fake_prediction(n_structures=5_000, atoms_per=20, stress=False)  # 100k atoms
    t0 = time.perf_counter()
    paths = parity_plots(pred, tmp_path)
    elapsed = time.perf_counter() - t0
    for p in paths:
        assert_png(p, max_bytes=500_000)
    assert elapsed < 10.0  # ~1 s on a laptop; generous for shared machines


LOG_FULL = """\
epoch,time,lr,train_loss,valid_loss,valid_energy_mae,valid_energy_rmse,valid_forces_mae
0,1.2,0.0001,2.5,2.7,0.12,0.15,0.30
1,2.4,0.0005,1.1,1.3,0.06,0.08,0.20
2,3.5,0.001,0.6,0.7,0.03,0.04,0.12
3,4.7,0.001,0.4,0.5,0.02,0.03,0.09
4,5.9,0.0005,0.3,0.45,0.015,0.02,0.08
"""

LOG_PARTIAL = """epoch,train_loss,lr
0,3.0,1e-3
1,1.5,
2,0.9,5e-4
"""


def test_learning_curves_full_log(tmp_path):
    log = tmp_path / "run" / "log.csv"
    log.parent.mkdir()
    log.write_text(LOG_FULL)
    path = learning_curves(log, tmp_path / "plots")
    assert path == tmp_path / "plots" / "learning_curves.png"
    assert_png(path)
    # a run folder works as well as the file
    assert_png(learning_curves(log.parent, tmp_path / "again"))


def test_learning_curves_missing_columns(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(LOG_PARTIAL)
    assert_png(learning_curves(log, tmp_path))
    log.write_text("epoch,valid_forces_mae\n0,0.2\n1,0.1\n")  # no loss, no lr
    assert_png(learning_curves(log, tmp_path))


def test_learning_curves_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        learning_curves(tmp_path / "missing.csv", tmp_path)
    log = tmp_path / "log.csv"
    log.write_text("epoch,train_loss\n")
    with pytest.raises(ValueError, match="no rows"):
        learning_curves(log, tmp_path)
