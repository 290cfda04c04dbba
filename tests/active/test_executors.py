"""Labelling survives what reference codes do: raise, hang, return NaN, kill
their process, or have the labelling run itself killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ase.build import bulk

from mlipkit.active.executors import InProcess, ProcessPool, label_pending, make_executor
from mlipkit.active.oracles import Oracle, structure_hash
from mlipkit.active.store import LabelStore
from mlipkit.errors import InvalidConfig
from tests.conftest import rattled

ROOT = Path(__file__).resolve().parents[2]


def _cells(n, seed=0):
    return rattled(bulk("Cu", "fcc", a=3.6, cubic=True), n, 0.05, seed=seed)


def _faulty(tmp_path, behaviour, delay=0.0):
    return Oracle("tests.active.faulty:Faulty", {"behaviour": behaviour, "delay": delay,
                                                 "marker_dir": str(tmp_path)})


def test_process_pool_survives_raise_hang_nan_and_dying_workers(tmp_path):
    cells = _cells(7)
    modes = ["raise", "hang", "nan", "die", "flaky"]
    behaviour = {structure_hash(a): m for a, m in zip(cells, modes)}
    store = LabelStore(tmp_path / "labels.db")
    store.add(cells, origin="explore")
    pool = ProcessPool(workers=2, timeout=10.0)
    try:
        start = time.perf_counter()
        summary = label_pending(store, _faulty(tmp_path, behaviour), pool, max_attempts=2)
        elapsed = time.perf_counter() - start
    finally:
        pool.close()
    # four hopeless structures fail twice each, the flaky one once
    assert summary == {"calls": 7 + 4 + 1, "ok": 3, "failed": 9, "given_up": 4}
    assert elapsed < 90  # the hanging calls were killed at the timeout
    errors = {f["hash"]: f["error"] for f in store.failures()}
    hashes = [structure_hash(a) for a in cells]
    assert "crashed" in errors[hashes[0]]
    assert "timed out after 10 s" in errors[hashes[1]]
    assert "NaN" in errors[hashes[2]]
    assert "worker process died" in errors[hashes[3]]
    assert hashes[4] not in errors and store.counts()["ok"] == 3
    assert len(store.labelled()) == 3


def test_executor_choices():
    assert isinstance(make_executor("inprocess"), InProcess)
    with pytest.raises(InvalidConfig, match="timeout"):
        make_executor("inprocess", timeout=3)
    with pytest.raises(InvalidConfig, match="executor must be"):
        make_executor("slurm")


_LABEL_SCRIPT = """
import sys
from mlipkit.active.executors import InProcess, label_pending
from mlipkit.active.oracles import Oracle
from mlipkit.active.store import LabelStore
store = LabelStore(sys.argv[1])
oracle = Oracle("tests.active.faulty:Faulty", {"delay": 0.2, "marker_dir": sys.argv[2]})
print(label_pending(store, oracle, InProcess()))
"""


def test_kill_9_while_labelling_loses_no_label_and_repeats_no_finished_call(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    cells = _cells(30)
    store.add(cells, origin="seed")
    command = [sys.executable, "-c", _LABEL_SCRIPT, str(tmp_path / "labels.db"), str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    log = tmp_path / "calls.log"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().split()) < 8):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = LabelStore(tmp_path / "labels.db").counts()["ok"]
    assert 7 <= done < 30  # the eighth call may have finished but not been stored
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    assert LabelStore(tmp_path / "labels.db").counts() == {"queued": 0, "ok": 30, "failed": 0}
    finished = log.read_text().split()
    # each structure finished once, except at most the one in flight at the kill
    repeats = len(finished) - len(set(finished))
    assert set(finished) == {structure_hash(a) for a in cells} and repeats <= 1


def test_dask_local_cluster_labels_and_records_failures(tmp_path):
    pytest.importorskip("distributed")
    from mlipkit.active.executors import Dask

    cells = _cells(5, seed=20)
    behaviour = {structure_hash(a): m for a, m in zip(cells, ["raise", "hang", "die"])}
    store = LabelStore(tmp_path / "labels.db")
    store.add(cells, origin="explore")
    executor = Dask(workers=2, timeout=10.0)
    try:
        summary = label_pending(store, _faulty(tmp_path, behaviour), executor, max_attempts=1)
    finally:
        executor.close()
    assert summary == {"calls": 5, "ok": 2, "failed": 3, "given_up": 3}
    errors = {f["hash"]: f["error"] for f in store.failures()}
    hashes = [structure_hash(a) for a in cells]
    assert "crashed" in errors[hashes[0]] and "timed out after 10 s" in errors[hashes[1]]
    assert "worker process died" in errors[hashes[2]]
