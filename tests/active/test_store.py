"""The label store: one row per structure, labels kept exactly, failures
kept apart and retried, an extxyz export other codes can read."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from mlipkit.active.oracles import Label, Oracle, structure_hash
from mlipkit.active.store import LabelStore
from tests.conftest import rattled


def _cells(n, seed=0):
    return rattled(bulk("Cu", "fcc", a=3.6, cubic=True), n, 0.05, seed=seed)


def test_labels_round_trip_and_structures_are_never_queued_twice(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    cells = _cells(3)
    ids = store.add(cells + [cells[0].copy()], origin="seed")
    assert ids[3] == ids[0] and len(store) == 3
    assert store.add(cells[:1], origin="explore", round=2) == ids[:1]
    assert store.counts() == {"queued": 3, "ok": 0, "failed": 0}
    oracle = Oracle("emt")
    labels = {}
    for row_id, atoms in store.pending(max_attempts=3):
        labels[row_id] = oracle.label(atoms)
        store.record(row_id, labels[row_id], oracle)
    assert store.pending(max_attempts=3) == []
    reopened = LabelStore(tmp_path / "labels.db")
    assert reopened.counts() == {"queued": 0, "ok": 3, "failed": 0}
    batches = reopened.labelled()
    assert len(batches) == 3
    for batch, row_id in zip(batches, ids[:3]):
        assert float(batch.energy[0]) == pytest.approx(labels[row_id].energy, abs=1e-12)
        np.testing.assert_allclose(batch.forces.numpy(), labels[row_id].forces, atol=1e-12)
        np.testing.assert_allclose(batch.stress.numpy()[0], labels[row_id].stress, atol=1e-12)
    row = reopened.db.get(id=ids[0])
    assert row.origin == "seed" and row.round == 0 and row.attempts == 1
    assert row.oracle == "ase.calculators.emt:EMT" and row.data["oracle"]["kwargs"] == {}
    assert "converged" not in row  # EMT has no SCF
    assert reopened.export_extxyz(tmp_path / "out.xyz") == 3
    frames = ase.io.read(tmp_path / "out.xyz", ":")
    assert [f.info["hash"] for f in frames] == [structure_hash(c) for c in cells]
    np.testing.assert_allclose(frames[1].get_forces(), labels[ids[1]].forces, atol=1e-8)


def test_failures_are_retried_up_to_the_limit_and_never_trained_on(tmp_path):
    store = LabelStore(tmp_path / "labels.db")
    (row_id,) = store.add(_cells(1), origin="explore", round=1)
    atoms = store.pending(2)[0][1]
    failure = Label(structure_hash(atoms), False, 0.5, error="SCF exploded")
    oracle = Oracle("emt")
    store.record(row_id, failure, oracle)
    assert [r for r, _ in store.pending(max_attempts=2)] == [row_id]
    store.record(row_id, failure, oracle)
    assert store.pending(max_attempts=2) == []
    assert store.failures(round=1) == [{"id": row_id, "hash": failure.hash, "attempts": 2,
                                        "tries": 2, "error": "SCF exploded"}]
    assert store.labelled() == [] and store.counts(round=1)["failed"] == 1
    assert store.calls() == 2
    assert store.requeue_failed(max_attempts=2) == 1  # a new run: two more attempts
    assert [r for r, _ in store.pending(max_attempts=2)] == [row_id]
    # a later success replaces the failure
    store.record(row_id, oracle.label(atoms), oracle)
    row = store.db.get(id=row_id)
    assert row.status == "ok" and row.attempts == 3 and "error" not in row
    assert store.calls() == 3
    with pytest.raises(ValueError, match="does not belong"):
        store.record(row_id, oracle.label(_cells(1, seed=9)[0]), oracle)
