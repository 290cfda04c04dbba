"""predict / error_metrics / evaluate: hand-computed numbers and one-by-one agreement."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from mlipkit.data import Batch, from_atoms
from mlipkit.models import BehlerParrinello
from mlipkit.training.metrics import error_metrics, evaluate, predict

EXACT = dict(rel=1e-12, abs=1e-15)


# -- error_metrics on a hand-made prediction -------------------------------------
def hand_made():
    return {
        "n_atoms": np.array([1, 2]),
        "numbers": np.array([1, 8, 1]),
        "energy_ref": np.array([1.0, 2.0]),
        "energy_pred": np.array([1.5, 1.0]),  # errors +0.5 (1 atom), -1.0 (2 atoms)
        "forces_ref": np.zeros((3, 3)),
        "forces_pred": np.array([[0.1, 0.0, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, -0.2]]),
        "stress_index": np.array([1]),
        "stress_ref": np.zeros((1, 3, 3)),
        "stress_pred": np.array([[[0.0, 0.01, 0.0], [0.01, 0.0, 0.0], [0.0, 0.0, -0.03]]]),
    }


def test_error_metrics_hand_computed():
    m = error_metrics(hand_made())
    assert m["n_structures"] == 2 and m["n_atoms"] == 3
    assert m["energy_mae"] == pytest.approx(0.75, **EXACT)
    assert m["energy_rmse"] == pytest.approx(math.sqrt((0.25 + 1.0) / 2), **EXACT)
    # per atom: +0.5/1 and -1.0/2
    assert m["energy_mae_per_atom"] == pytest.approx(0.5, **EXACT)
    assert m["energy_rmse_per_atom"] == pytest.approx(0.5, **EXACT)
    assert m["forces_mae"] == pytest.approx(0.6 / 9, **EXACT)
    assert m["forces_rmse"] == pytest.approx(math.sqrt((0.01 + 0.09 + 0.04) / 9), **EXACT)
    assert m["forces_mae_per_species"] == pytest.approx({"H": 0.3 / 6, "O": 0.3 / 3}, **EXACT)
    assert list(m["forces_mae_per_species"]) == ["H", "O"]  # by atomic number
    assert m["stress_mae"] == pytest.approx(0.05 / 9, **EXACT)
    assert m["stress_rmse"] == pytest.approx(math.sqrt((2e-4 + 9e-4) / 9), **EXACT)
    json.dumps(m)  # JSON-able as it is
    assert all(type(v) in (int, float, dict) for v in m.values())


def test_error_metrics_leaves_out_absent_labels():
    p = hand_made()
    for key in ("energy_ref", "forces_ref", "stress_ref", "stress_pred", "stress_index"):
        del p[key]
    assert error_metrics(p) == {"n_structures": 2, "n_atoms": 3}
    p = hand_made()
    del p["forces_ref"], p["stress_ref"]
    m = error_metrics(p)
    assert "energy_mae" in m and not any(k.startswith(("forces", "stress")) for k in m)


def test_perfect_prediction_gives_zero():
    p = hand_made()
    p["energy_pred"], p["forces_pred"] = p["energy_ref"], p["forces_ref"]
    p["stress_pred"] = p["stress_ref"]
    m = error_metrics(p)
    assert all(m[k] == 0.0 for k in m if k.endswith(("mae", "rmse", "per_atom")))


# -- predict on a real potential -------------------------------------------------
def rattled(atoms, amplitude, seed):
    a = atoms.copy()
    a.rattle(amplitude, seed=seed)
    return a


@pytest.fixture(scope="module")
def potential():
    torch.manual_seed(0)
    return BehlerParrinello(["H", "C", "O", "Cu"], cutoff=4.0, hidden=(16, 16)).double()


def one(potential, batch, stress=False):
    out = potential(batch, forces=True, stress=stress)
    return {k: v.detach().numpy() for k, v in out.items()}


def labelled(potential, atoms, seed, stress=False):
    """Labels from the potential itself on a slightly different geometry."""
    other = rattled(atoms, 0.03, seed + 1000)
    ref = one(potential, from_atoms(other), stress=stress)
    labels = {"energy": ref["energy"][0], "forces": ref["forces"]}
    if stress:
        labels["stress"] = ref["stress"][0]
    return from_atoms(atoms, labels=labels)


def molecules(potential, n=9):
    names = ["CH3CH2OH", "H2O", "CH3OH", "CH4", "CO2"]
    return [labelled(potential, rattled(molecule(names[k % 5]), 0.05, k), k) for k in range(n)]


def cu_cells(potential):
    cells = [bulk("Cu", "fcc", a=3.6, cubic=True), bulk("Cu", "fcc", a=3.55),
             bulk("Cu", "fcc", a=3.65, cubic=True) * (2, 1, 1)]
    return [labelled(potential, rattled(c, 0.05, 50 + k), 50 + k, stress=True)
            for k, c in enumerate(cells)]


def test_predict_matches_one_by_one(potential):
    data = molecules(potential)
    pred = predict(potential, data, batch_size=4)
    start = 0
    for k, b in enumerate(data):
        ref = one(potential, b)
        n = b.n_total_atoms
        assert pred["n_atoms"][k] == n
        assert pred["energy_pred"][k] == pytest.approx(ref["energy"][0], abs=1e-10)
        np.testing.assert_allclose(pred["forces_pred"][start : start + n], ref["forces"],
                                   atol=1e-10)
        assert pred["energy_ref"][k] == float(b.energy[0])
        np.testing.assert_array_equal(pred["forces_ref"][start : start + n], b.forces.numpy())
        np.testing.assert_array_equal(pred["numbers"][start : start + n], b.numbers.numpy())
        start += n
    assert start == len(pred["forces_pred"]) == pred["n_atoms"].sum()
    assert "stress_pred" not in pred and "stress_ref" not in pred
    for key in ("energy_ref", "energy_pred", "forces_ref", "forces_pred"):
        assert pred[key].dtype == np.float64
    m = error_metrics(pred)
    assert m["n_structures"] == len(data) and m["energy_mae"] > 0 and m["forces_mae"] > 0
    assert set(m["forces_mae_per_species"]) == {"H", "C", "O"}


def test_batch_size_does_not_matter(potential):
    data = molecules(potential) + cu_cells(potential)
    a = predict(potential, data, batch_size=1)
    b = predict(potential, data, batch_size=7)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-10, rtol=0, err_msg=key)


def test_mixed_molecules_and_periodic_cells(potential):
    mols, cells = molecules(potential, 5), cu_cells(potential)
    # a periodic cell without a stress label, and a slab (not fully periodic)
    # whose stress label must be ignored
    plain = from_atoms(rattled(bulk("Cu", "fcc", a=3.6, cubic=True), 0.05, 77),
                       labels={"energy": 1.0, "forces": np.zeros((4, 3))})
    slab_atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab_atoms.pbc = (True, True, False)
    slab = from_atoms(slab_atoms, labels={"energy": 0.0, "forces": np.zeros((4, 3)),
                                          "stress": np.zeros((3, 3))})
    data = [mols[0], cells[0], mols[1], plain, cells[1], slab, mols[2], cells[2], mols[3]]
    metrics, pred = evaluate(potential, data, batch_size=3)

    np.testing.assert_array_equal(pred["stress_index"], [1, 4, 7])
    assert pred["stress_pred"].shape == pred["stress_ref"].shape == (3, 3, 3)
    start = np.concatenate([[0], np.cumsum(pred["n_atoms"])])
    for j, k in enumerate(pred["stress_index"]):
        ref = one(potential, data[k], stress=True)
        np.testing.assert_allclose(pred["stress_pred"][j], ref["stress"][0], atol=1e-12)
        np.testing.assert_array_equal(pred["stress_ref"][j], data[k].stress[0].numpy())
    for k, b in enumerate(data):  # order is kept across the periodic / molecular chunks
        ref = one(potential, b)
        assert pred["energy_pred"][k] == pytest.approx(ref["energy"][0], abs=1e-10)
        np.testing.assert_allclose(pred["forces_pred"][start[k] : start[k + 1]], ref["forces"],
                                   atol=1e-10)
    assert metrics["n_structures"] == len(data)
    assert metrics["stress_mae"] > 0 and metrics["stress_rmse"] >= metrics["stress_mae"]
    assert set(metrics["forces_mae_per_species"]) == {"H", "C", "O", "Cu"}
    json.dumps(metrics)


def test_missing_labels_and_collated_input(potential):
    data = molecules(potential, 4)
    data[2] = data[2].without("forces")
    pred = predict(potential, [Batch.collate(data[:2]), data[2], data[3]], batch_size=2)
    assert len(pred["energy_pred"]) == 4
    assert "energy_ref" in pred and "forces_ref" not in pred
    m = error_metrics(pred)
    assert "energy_mae" in m and "forces_mae" not in m and "forces_mae_per_species" not in m

    unlabelled = [b.without("energy", "forces") for b in data]
    pred = predict(potential, unlabelled, progress=True)
    assert error_metrics(pred) == {"n_structures": 4, "n_atoms": int(pred["n_atoms"].sum())}


def test_float32_potential_gives_float64_arrays(potential):
    data = molecules(potential, 3)
    p32 = BehlerParrinello(["H", "C", "O", "Cu"], cutoff=4.0, hidden=(16, 16)).float()
    p32.load_state_dict(potential.state_dict())
    p32 = p32.float()
    pred32 = predict(p32, data)
    pred64 = predict(potential, data)
    assert pred32["energy_pred"].dtype == np.float64
    np.testing.assert_allclose(pred32["energy_pred"], pred64["energy_pred"], atol=1e-3)
    np.testing.assert_allclose(pred32["forces_pred"], pred64["forces_pred"], atol=1e-3)


def test_bad_arguments(potential):
    with pytest.raises(ValueError, match="empty"):
        predict(potential, [])
    with pytest.raises(ValueError, match="batch_size"):
        predict(potential, molecules(potential, 1), batch_size=0)
