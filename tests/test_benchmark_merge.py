"""benchmarks/active_learning.py --merge: entries of one setting that differ
only in their seeds become one entry; anything else is refused. --random-from
reads another entry's random-selection curves only where nothing they
depend on differs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "active_learning.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("active_learning_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(seed: int, scale: float) -> dict:
    """A seed whose active curve falls faster than its random one."""
    curve = {s: [{"round": r, "oracle_calls": 4 + 4 * r,
                  "test_forces_rmse": scale / (1 + r) ** (2 if s == "trust_band" else 1)}
                 for r in range(n)] for s, n in (("trust_band", 4), ("random", 8))}
    return {"seed": seed, "ratio": 0.4 + 0.1 * seed, "curves": curve}


def _entry(seeds, **settings) -> dict:
    per_seed = [_run(seed, 1.0 + 0.1 * seed) for seed in seeds]
    return {"settings": {"rounds": 4, "seeds": list(seeds), "jobs": 2, **settings},
            "test_structures": 30, "per_seed": per_seed}


def test_entries_that_differ_only_in_their_seeds_merge(bench):
    # the first entry was recorded before max_failed_fraction existed: its default applies
    record = {"x_a": _entry([0, 1]), "x_b": _entry([2, 3], max_failed_fraction=0.05)}
    merged = bench.merge_entries(record, "x", ["_a", "_b"])
    assert merged["settings"]["seeds"] == [0, 1, 2, 3] and merged["merged_from"] == ["x_a",
                                                                                   "x_b"]
    assert merged["ratios"] == pytest.approx([0.4, 0.5, 0.6, 0.7])
    assert merged["ratio_median"] == pytest.approx(0.55)
    # the median curves are those of all four seeds, round by round
    active = merged["median_curves"]["trust_band"]["test_forces_rmse_meV"]
    expected = [1000 * np.median([1.0 + 0.1 * s for s in range(4)]) / (1 + r) ** 2
                for r in range(4)]
    np.testing.assert_allclose(active, expected, atol=0.01)


def test_entries_of_other_settings_seeds_or_test_sets_are_refused(bench):
    record = {"x_a": _entry([0, 1]), "x_lo": _entry([2], lo=0.01), "x_same": _entry([1]),
              "x_test": {**_entry([5]), "test_structures": 31}}
    with pytest.raises(SystemExit, match=r"differs from x_a in \['lo'\]"):
        bench.merge_entries(record, "x", ["_a", "_lo"])
    with pytest.raises(SystemExit, match="a seed is repeated"):
        bench.merge_entries(record, "x", ["_a", "_same"])
    with pytest.raises(SystemExit, match="do not share one test set"):
        bench.merge_entries(record, "x", ["_a", "_test"])
    with pytest.raises(SystemExit, match="no recorded multi-seed entry"):
        bench.merge_entries(record, "x", ["_a", "_missing"])


def test_a_test_set_hash_is_recorded_only_when_every_entry_records_it(bench):
    record = {"x_a": _entry([0]), "x_b": {**_entry([1]), "test_sha256": "0fbf"},
              "x_c": {**_entry([2]), "test_sha256": "0fbf"},
              "x_d": {**_entry([3]), "test_sha256": "e2a9"}}
    assert "test_sha256" not in bench.merge_entries(record, "x", ["_a", "_b"])
    assert bench.merge_entries(record, "x", ["_b", "_c"])["test_sha256"] == "0fbf"
    with pytest.raises(SystemExit, match=r"do not share one test set \(test_sha256\)"):
        bench.merge_entries(record, "x", ["_a", "_b", "_d"])


def test_random_from_reads_recorded_curves_of_the_same_test_set_and_settings(bench, tmp_path,
                                                                           monkeypatch):
    test = hashlib.sha256(b"frames").hexdigest()
    settings = {"random_rounds": 8, "per_round": 4, "steps": 200, "members": 3, "epochs": 200,
                "hi": 1.0, "test_per_run": 10, "rattle": 3}
    runs = [{**_run(seed, 1.0), "wall_s": {"trust_band": 1.0, "random": 60.0 + seed}}
            for seed in (0, 1)]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "active_learning.json").write_text(json.dumps({
        "x_a": {"settings": settings, "test_sha256": test, "per_seed": runs},
        "x_nohash": {"settings": settings, "per_seed": runs},
        "x_other": {"settings": settings, "test_sha256": "0" * 64, "per_seed": runs}}))
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    args = SimpleNamespace(random_from="_a", seeds=[1], max_failed_fraction=0.05, **settings)
    curves = bench.recorded_random_runs("x", args, test)
    assert list(curves) == [1] and len(curves[1]) == 8
    assert curves[1][-1]["elapsed_s"] == 61.0  # the run's own time, for the entry's wall_s
    assert curves[1][:-1] == runs[1]["curves"]["random"][:-1]
    for tag, changes, message in (("_nohash", {}, "records no test-set hash"),
                                  ("_other", {}, "has another test set"),
                                  ("_a", {"per_round": 8}, r"differs in \['per_round'\]"),
                                  ("_a", {"seeds": [2]}, r"has no seeds \[2\]"),
                                  ("_none", {}, "no recorded multi-seed entry")):
        with pytest.raises(SystemExit, match=message):
            bench.recorded_random_runs("x", SimpleNamespace(**{**vars(args), "random_from": tag,
                                                               **changes}), test)


def test_a_saved_entry_records_the_commit_and_cpu(bench, tmp_path, capsys):
    path = tmp_path / "results.json"
    bench.save_entry(path, "cu_x", {"ratio_median": 0.5})
    entry = json.loads(path.read_text())["cu_x"]
    head = bench.subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=SCRIPT.parent,
                                capture_output=True, text=True).stdout.strip()
    assert entry["commit"].removesuffix("-dirty") == head
    assert entry["cpu"] and entry["ratio_median"] == 0.5
