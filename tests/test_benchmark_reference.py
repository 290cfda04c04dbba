"""benchmarks/active_learning_reference.py: the oracle-MD reference curve is
trained on frames the oracle labelled (checked against EMT itself), and its
calls to each strategy's final error are read off both curves."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def ref():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling
    try:
        spec = importlib.util.spec_from_file_location(
            "active_learning_reference", BENCHMARKS / "active_learning_reference.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # the overlapping atoms
def test_labels_are_the_oracles_and_failures_are_left_out(ref, tmp_path):
    frames = [bulk("Cu", "fcc", a=3.61, cubic=True) for _ in range(3)]
    frames[1].rattle(0.05, seed=1)
    frames[2].positions[1] = frames[2].positions[0]  # EMT gives inf/NaN on overlapping atoms
    from mlipkit.active.oracles import Oracle

    path = tmp_path / "pool.xyz"
    assert ref.labelled(frames, Oracle("emt"), path)["failed"] == 1
    back = ase.io.read(path, ":")
    assert len(back) == 2
    expected = frames[1].copy()
    expected.calc = EMT()
    np.testing.assert_allclose(back[1].get_forces(), expected.get_forces(), atol=1e-6)
    assert back[1].get_potential_energy() == pytest.approx(expected.get_potential_energy())
    assert ref.labelled([], Oracle("emt"), path)["failed"] == 1  # kept: not labelled again


def test_calls_to_each_strategys_final_error(ref):
    run = {"curves": {"trust_band": [{"oracle_calls": 4, "test_forces_rmse": 0.4},
                                     {"oracle_calls": 8, "test_forces_rmse": 0.1}],
                      "random": [{"oracle_calls": 4, "test_forces_rmse": 0.4},
                                 {"oracle_calls": 16, "test_forces_rmse": 0.2}]}}
    reference = {"curve": [{"oracle_calls": 10, "test_forces_rmse": 0.3},
                           {"oracle_calls": 20, "test_forces_rmse": 0.05}]}
    result = ref.compare(reference, run)
    active, random = result["trust_band"], result["random"]
    assert active["calls"] == 8 and random["calls"] == 16
    assert active["reference_calls"] == pytest.approx(10 + 10 * 0.2 / 0.25)
    assert active["ratio"] == pytest.approx(8 / 18)
    assert random["reference_calls"] == pytest.approx(10 + 10 * 0.1 / 0.25)
    never = ref.compare({"curve": reference["curve"][:1]}, run)["trust_band"]
    assert never["reference_calls"] is None and never["ratio"] is None


def test_a_curve_is_made_once_and_read_back(ref, tmp_path, monkeypatch):
    def frames(count, seed):
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(count):
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            out.append(atoms)
        return out

    from mlipkit.active.oracles import Oracle

    ref.labelled(frames(3, 0), Oracle("emt"), tmp_path / "test.xyz")
    asked = []
    monkeypatch.setattr(ref, "oracle_md", lambda system, per_run, seed: asked.append(
        (system, per_run, seed)) or frames(6, seed))
    settings = {"members": 1, "epochs": 2}
    first = ref.reference_curve("cu", settings, 0, [3, 5], tmp_path)
    assert asked == [("cu", 1, 1000)]  # 5 frames from 12 runs: one a run
    assert [p["oracle_calls"] for p in first["curve"]] == [3, 5]
    assert all(np.isfinite(p["test_forces_rmse"]) for p in first["curve"])
    assert first["md_failed_labels"] == 0 and first["wall_s"] > 0
    trained = (tmp_path / "seed0" / "n5" / "metrics.json").stat().st_mtime_ns
    again = ref.reference_curve("cu", settings, 0, [3, 5], tmp_path)
    assert asked == [("cu", 1, 1000)] and again == first  # nothing made or trained again
    assert (tmp_path / "seed0" / "n5" / "metrics.json").stat().st_mtime_ns == trained
