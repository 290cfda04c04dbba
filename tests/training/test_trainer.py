"""The training loop end to end: learning, outputs, stopping rules, seeds, ensembles, losses.

Every run is a real `mlipkit.training.run.train` on EMT-labelled Cu data with a
tiny BPNN (see conftest.py); most use 8 training structures and a few epochs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from safetensors import safe_open
from safetensors.torch import load_file

import mlipkit
from mlipkit.data import from_atoms, read
from mlipkit.errors import InvalidConfig
from mlipkit.models.checkpoint import read_metadata
from mlipkit.models.ensemble import EnsemblePotential
from mlipkit.training.config import load_config
from mlipkit.training.losses import loss_terms
from mlipkit.training.metrics import evaluate
from mlipkit.training.run import train
from tests.training.conftest import copy_run, read_log, write_config

pytestmark = pytest.mark.usefixtures("one_thread")

METRIC_KEYS = {"n_structures", "energy_mae", "energy_rmse", "energy_mae_per_atom", "forces_mae",
               "forces_rmse", "forces_mae_per_species", "stress_mae", "stress_rmse"}


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the PNGs (about a second per run) where a test does not look at them."""
    monkeypatch.setattr("mlipkit.training.run.parity_plots", lambda *a, **k: [])
    monkeypatch.setattr("mlipkit.training.run.learning_curves", lambda *a, **k: None)


def quick_run(root: Path, data_dir: Path, name: str, overrides: tuple[str, ...] = (),
              **training) -> tuple[Path, dict]:
    """Train on 8 of the Cu structures (6 held out for validation); (run folder, metrics)."""
    cfg = write_config(root / f"{name}.yaml", data_dir / "cu_train.xyz", root / name, **training)
    config = load_config(cfg, ("data.max_train=8", *overrides))
    return root / name, train(config, progress=False)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def checkpoint_info(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["mlipkit_checkpoint"])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def assert_metric_keys(metrics: dict, n_structures: int) -> None:
    assert METRIC_KEYS <= set(metrics), sorted(METRIC_KEYS - set(metrics))
    assert metrics["n_structures"] == n_structures
    assert metrics["forces_mae_per_species"] == pytest.approx({"Cu": metrics["forces_mae"]})
    for key in METRIC_KEYS - {"n_structures", "forces_mae_per_species"}:
        assert math.isfinite(metrics[key]) and metrics[key] > 0, key
    assert metrics["energy_mae"] <= metrics["energy_rmse"]
    assert metrics["forces_mae"] <= metrics["forces_rmse"]
    assert metrics["energy_mae_per_atom"] == pytest.approx(metrics["energy_mae"] / 32)


# -- one full run ------------------------------------------------------------------
def test_training_reduces_the_validation_force_error(trained_run):
    run, config, _ = trained_run
    rows = read_log(run / "log.csv")
    assert [r["epoch"] for r in rows] == list(range(1, 16))
    assert all(b["time"] > a["time"] for a, b in zip(rows, rows[1:]))
    first, last = rows[0]["valid_forces_mae"], rows[-1]["valid_forces_mae"]
    assert last < 0.4 * first, (first, last)
    assert rows[-1]["valid_loss"] < 0.1 * rows[0]["valid_loss"]
    assert rows[-1]["train_loss"] < 0.1 * rows[0]["train_loss"]


def test_metrics_json_holds_valid_and_test_metrics(trained_run):
    run, _, returned = trained_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == returned
    assert set(metrics) == {"valid", "test"}
    assert_metric_keys(metrics["valid"], 6)
    assert_metric_keys(metrics["test"], 6)


def test_model_file_holds_the_best_epoch_and_reproduces_its_metrics(trained_run, data_dir):
    run, _, _ = trained_run
    model = mlipkit.load(run / "model.safetensors")
    assert model.dtype == torch.float64
    metrics = json.loads((run / "metrics.json").read_text())
    for name in ("valid", "test"):
        recomputed, _ = evaluate(model, read(data_dir / f"cu_{name}.xyz"))
        for key in METRIC_KEYS - {"forces_mae_per_species"}:
            assert recomputed[key] == pytest.approx(metrics[name][key], rel=1e-9, abs=1e-12), \
                (name, key)
    # the file holds the EMA weights of the epoch with the lowest validation loss
    rows = read_log(run / "log.csv")
    best = min(rows, key=lambda r: r["valid_loss"])
    extra = read_metadata(run / "model.safetensors")["extra"]
    assert extra["epoch"] == best["epoch"]
    for key in ("valid_forces_mae", "valid_energy_mae", "valid_stress_mae"):
        assert metrics["valid"][key.removeprefix("valid_")] == pytest.approx(best[key], rel=1e-9)


def test_config_yaml_round_trips(trained_run):
    run, config, _ = trained_run
    assert load_config(run / "config.yaml") == config


def test_plots_are_written(trained_run):
    run, _, _ = trained_run
    names = ["energy_parity.png", "forces_parity.png", "stress_parity.png"]
    paths = [run / "plots" / s / n for s in ("valid", "test") for n in names]
    paths.append(run / "plots" / "learning_curves.png")
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_a_second_train_into_the_same_output_is_refused(trained_run, tmp_path):
    run, config, _ = trained_run
    target = copy_run(run, tmp_path / "run")
    before = snapshot(target)
    with pytest.raises(InvalidConfig, match="--resume"):
        train(dataclasses.replace(config, output=str(target)), progress=False)
    assert snapshot(target) == before  # not a byte changed, nothing added


# -- stopping rules ------------------------------------------------------------------
def test_max_time_stops_cleanly(tmp_path, data_dir, no_plots):
    limit = 0.5
    start = time.perf_counter()
    run, metrics = quick_run(tmp_path, data_dir, "timed", max_epochs=1000, max_time=limit,
                             early_stopping_patience=None)
    assert time.perf_counter() - start < 60
    rows = read_log(run / "log.csv")
    assert 2 <= len(rows) < 1000
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    # it stops at the first epoch boundary after the limit, not before
    assert rows[-1]["time"] >= limit - 1e-3
    assert rows[-2]["time"] < limit + 1e-3
    info = checkpoint_info(run / "checkpoint.safetensors")
    assert info["progress"]["epoch"] == len(rows)
    mlipkit.load(run / "model.safetensors")
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert_metric_keys(metrics["valid"], 6)


def test_a_time_limit_spent_in_the_setup_still_trains_one_epoch(tmp_path, data_dir, no_plots):
    run, _ = quick_run(tmp_path, data_dir, "instant", max_epochs=10, max_time=1e-6)
    assert [r["epoch"] for r in read_log(run / "log.csv")] == [1]
    mlipkit.load(run / "model.safetensors")


def test_early_stopping_with_a_small_patience(tmp_path, data_dir, no_plots):
    # a learning rate of 1e-300 leaves every weight as it is: the validation loss never improves
    patience = 2
    run, _ = quick_run(tmp_path, data_dir, "stalled", max_epochs=10, lr=1e-300, ema=None,
                       scheduler="none", early_stopping_patience=patience)
    rows = read_log(run / "log.csv")
    best = min(rows, key=lambda r: r["valid_loss"])["epoch"]
    assert len(rows) == best + patience + 1 < 10
    assert read_metadata(run / "model.safetensors")["extra"]["epoch"] == best


# -- reproducibility ------------------------------------------------------------------
def test_same_seed_same_weights_other_seed_other_weights(tmp_path, data_dir, no_plots):
    runs = {name: quick_run(tmp_path, data_dir, name, max_epochs=2, seed=seed)[0]
            for name, seed in (("a", 0), ("b", 0), ("c", 1))}
    a, b, c = (tensors(runs[k] / "model.safetensors") for k in "abc")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    log_a, log_b = read_log(runs["a"] / "log.csv"), read_log(runs["b"] / "log.csv")
    strip = [{k: v for k, v in r.items() if k != "time"} for r in log_a]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in log_b]


# -- ensembles -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory, data_dir, one_thread):
    root = tmp_path_factory.mktemp("ensemble")
    run, metrics = quick_run(root, data_dir, "ens3", max_epochs=2, ensemble=3)
    return run, metrics


def test_ensemble_writes_one_file_and_member_folders(ensemble_run):
    run, metrics = ensemble_run
    model = mlipkit.load(run / "model.safetensors")
    assert isinstance(model, EnsemblePotential)
    assert len(model.members) == 3
    for k in range(3):
        member = run / f"member_{k}"
        assert [r["epoch"] for r in read_log(member / "log.csv")] == [1, 2]
        assert (member / "checkpoint.safetensors").is_file()
        # the ensemble file holds each member's own best weights
        own = tensors(member / "model.safetensors")
        packed = {k2: v for k2, v in model.members[k].state_dict().items()}
        assert own.keys() == packed.keys()
        assert all(torch.equal(own[n], packed[n]) for n in own)
    m0, m1 = (tensors(run / f"member_{k}" / "model.safetensors") for k in (0, 1))
    assert not all(torch.equal(m0[n], m1[n]) for n in m0)  # different seeds
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert_metric_keys(metrics["valid"], 6)


def test_ensemble_calculator_reports_a_spread(ensemble_run, data_dir):
    run, _ = ensemble_run
    model = mlipkit.load(run / "model.safetensors")
    atoms = ase.io.read(data_dir / "cu_valid.xyz", index=0)
    atoms.calc = mlipkit.Calculator(model)
    energy = atoms.get_potential_energy()
    std = atoms.calc.get_property("energy_std", atoms)
    assert std > 0
    singles = [float(m(from_atoms(atoms))["energy"][0]) for m in model.members]
    assert energy == pytest.approx(np.mean(singles), rel=1e-12)
    assert std == pytest.approx(np.std(singles), rel=1e-9)
    assert atoms.calc.get_property("forces_std", atoms).shape == (32, 3)


def test_warm_start_from_an_ensemble_file(tmp_path, data_dir, ensemble_run, no_plots):
    """Each member starts from the same member of the given file: with a
    vanishing learning rate the weights stay where they started."""
    source = ensemble_run[0] / "model.safetensors"
    run, _ = quick_run(tmp_path, data_dir, "warm", max_epochs=1, ensemble=3, lr=1e-12,
                       init_from=str(source))
    start, warm = mlipkit.load(source), mlipkit.load(run / "model.safetensors")
    for a, b in zip(start.members, warm.members):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(y, x, atol=1e-9, rtol=0, msg=name)
    with pytest.raises(InvalidConfig, match="does not match the configured model"):
        quick_run(tmp_path, data_dir, "mismatch", overrides=("model.hidden=[16]",),
                  max_epochs=1, init_from=str(source))


def test_bootstrap_ensemble(tmp_path, data_dir, ensemble_run, no_plots):
    run, metrics = quick_run(tmp_path, data_dir, "boot", max_epochs=2, ensemble=2,
                             bootstrap=True)
    model = mlipkit.load(run / "model.safetensors")
    assert isinstance(model, EnsemblePotential) and len(model.members) == 2
    assert_metric_keys(metrics["valid"], 6)
    # same seeds as the plain ensemble, but each member saw a resampled training set
    plain = tensors(ensemble_run[0] / "member_0" / "model.safetensors")
    boot = tensors(run / "member_0" / "model.safetensors")
    assert not all(torch.equal(plain[n], boot[n]) for n in plain)


# -- losses and schedules ----------------------------------------------------------------
def test_huber_loss_terms():
    atoms = molecule("H2O")
    rng = np.random.default_rng(0)
    ref_f = rng.normal(0, 0.1, (3, 3))
    batch = from_atoms(atoms, labels={"energy": 1.0, "forces": ref_f})
    pred_f = torch.tensor(ref_f + rng.normal(0, 0.05, (3, 3)))
    out = {"energy": torch.tensor([1.3], dtype=torch.float64), "forces": pred_f}
    weights = {"energy": 1.0, "forces": 1.0}
    delta = 0.02
    terms = loss_terms(out, batch, weights, kind="huber", huber_delta=delta)
    err = (pred_f - torch.tensor(ref_f)).abs()
    manual = torch.where(err < delta, 0.5 * err**2, delta * (err - 0.5 * delta)).mean()
    assert float(terms["forces"]) == pytest.approx(float(manual), rel=1e-12)
    de = 0.3 / 3  # per-atom energy error
    assert float(terms["energy"]) == pytest.approx(delta * (de - 0.5 * delta), rel=1e-12)
    mse = loss_terms(out, batch, weights)
    assert float(mse["forces"]) == pytest.approx(float((err**2).mean()), rel=1e-12)
    assert float(mse["energy"]) == pytest.approx(de**2, rel=1e-12)


def test_training_with_the_huber_loss(tmp_path, data_dir, no_plots):
    delta = 0.05
    run, metrics = quick_run(tmp_path, data_dir, "huber", max_epochs=4,
                             overrides=("training.loss.kind=huber",
                                        f"training.loss.huber_delta={delta}"))
    rows = read_log(run / "log.csv")
    assert len(rows) == 4
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["valid_loss"]) for r in rows)
    assert rows[-1]["valid_forces_mae"] < rows[0]["valid_forces_mae"]
    # huber(x) <= delta |x|: the loss is bounded by delta times the weighted MAEs (an MSE
    # of these residuals, about 100 * 0.5, is not); the stress term may be scaled to the
    # virial per atom (volume per atom below 13 Å^3 here)
    for r in rows:
        bound = delta * (r["valid_energy_mae_per_atom"] + 100 * r["valid_forces_mae"]
                         + 13 * r["valid_stress_mae"])
        assert r["valid_loss"] <= bound * (1 + 1e-9)
    assert_metric_keys(metrics["valid"], 6)


@pytest.mark.parametrize(("scheduler", "warmup"), [("cosine", 0), ("none", 2)])
def test_learning_rate_schedules(tmp_path, data_dir, no_plots, scheduler, warmup):
    lr, min_lr, epochs = 2.0e-3, 1.0e-5, 4
    run, _ = quick_run(tmp_path, data_dir, scheduler, max_epochs=epochs, lr=lr, min_lr=min_lr,
                       scheduler=scheduler, warmup_epochs=warmup)
    logged = [r["lr"] for r in read_log(run / "log.csv")]
    if scheduler == "cosine":  # the lr each epoch trained with, T_max = max_epochs - warmup
        expected = [min_lr + (lr - min_lr) * (1 + math.cos(math.pi * k / epochs)) / 2
                    for k in range(epochs)]
    else:  # linear warm-up over 2 epochs (the log shows the lr of an epoch's last step)
        expected = [lr / 2, lr, lr, lr]
    assert logged == pytest.approx(expected, rel=1e-9)


def test_cosine_decay_follows_the_time_budget(tmp_path, data_dir, no_plots):
    """With a time budget that ends the run long before max_epochs, the cosine
    schedule anneals over the budget instead of over max_epochs."""
    lr = 2.0e-3
    run, _ = quick_run(tmp_path, data_dir, "cosine_time", max_epochs=100000, lr=lr,
                       min_lr=1.0e-6, scheduler="cosine", warmup_epochs=0, max_time=3.0)
    logged = [r["lr"] for r in read_log(run / "log.csv")]
    assert len(logged) >= 3
    assert all(b <= a for a, b in zip(logged, logged[1:]))
    # by max_epochs alone the lr would still be within 1e-6 of its start
    assert logged[-1] < 0.25 * lr


def test_labels_on_some_structures_enter_their_own_terms(tmp_path):
    """Bulk cells with stress, a slab and a cluster without: one mini-batch's
    loss equals the weighted mean errors computed structure by structure, with
    the stress term averaged over the labelled cells only."""
    from ase.build import fcc111

    from mlipkit.training.config import TrainingConfig
    from mlipkit.training.data import cache_fixed_terms, label_groups, prepare
    from mlipkit.training.trainer import Trainer
    from tests.conftest import build_potential, triclinic_cu
    from tests.training.conftest import cu_structures, emt_labelled

    slab = fcc111("Cu", (2, 2, 3), a=3.6, vacuum=4.0)
    slab.rattle(0.05, seed=1)
    cluster = bulk("Cu", "fcc", a=3.6, cubic=True)
    cluster.pbc = False
    cluster.rattle(0.05, seed=2)
    chunk = [*cu_structures(2, seed=5), emt_labelled(slab), emt_labelled(cluster)]
    assert ["stress" in b for b in chunk] == [True, True, False, False]
    chunk = prepare(chunk, 4.0, torch.float64)
    assert [len(g) for g in label_groups(chunk)] == [2, 2]
    model = build_potential(["Cu"], [triclinic_cu(seed=6)], {"Cu": 0.0}, torch.float64)
    tc = TrainingConfig(dtype="float64", ema=0.0)
    tc.loss.energy, tc.loss.forces, tc.loss.stress = 1.0, 10.0, 50.0
    trainer = Trainer(model, chunk, chunk, tc, tmp_path, seed=0, progress_bar=False)
    _, parts, value = trainer._loss(chunk, training=True)
    assert sum("stress" in out for out, _ in parts) == 1

    e_err, f_err, s_err = [], [], []
    for b in chunk:
        out = model(b, forces=True, stress="stress" in b)
        e_err.append(float((out["energy"] - b.energy) / b.n_atoms))
        f_err.append((out["forces"] - b.forces).flatten())
        if "stress" in b:
            per_atom = torch.linalg.det(b.cell).abs() / b.n_atoms
            s_err.append(((out["stress"] - b.stress) * per_atom).flatten())
    terms = {"energy": np.mean(np.square(e_err)), "forces": float(torch.cat(f_err).pow(2).mean()),
             "stress": float(torch.cat(s_err).pow(2).mean())}
    expected = 1.0 * terms["energy"] + 10.0 * terms["forces"] + 50.0 * terms["stress"]
    assert 50.0 * terms["stress"] > 0.01 * expected  # the stress term counts
    assert value == pytest.approx(expected, rel=1e-10)
    cached = cache_fixed_terms(model, chunk, limit_gib=1.0)  # collated across label sets
    assert all("descriptor_jacobian" in b for b in cached)
    assert trainer._loss(cached, training=True)[2] == pytest.approx(expected, rel=1e-10)


def test_equivariant_model_trains_and_its_file_reloads(tmp_path, data_dir, no_plots, one_thread):
    """model.type=equivariant through the whole loop: the validation force error
    falls, and the written model file reproduces the reported metrics."""
    run, metrics = quick_run(tmp_path, data_dir, "equivariant",
                             ("model.type=equivariant", "model.channels=8", "model.l_max=1"),
                             max_epochs=15, lr=1e-2, ema=0.0, batch_size=2)
    rows = read_log(run / "log.csv")
    assert rows[-1]["valid_forces_mae"] < 0.6 * rows[0]["valid_forces_mae"]
    model = mlipkit.load(run / "model.safetensors")
    assert model.config()["terms"][0]["inner"]["type"] == "equivariant"
    reloaded = evaluate(model, read(data_dir / "cu_train.xyz"))[0]
    assert reloaded["forces_mae"] < 0.6 * rows[0]["valid_forces_mae"]
    assert metrics["valid"]["forces_mae"] < 0.6 * rows[0]["valid_forces_mae"]


def test_linear_model_is_fitted_in_closed_form(tmp_path, data_dir, no_plots, one_thread):
    """model.type=linear: one Bayesian fit; validation forces far better than
    the reference-energy baseline (zero forces), a model file whose posterior
    gives the calculator energy_std and forces_std, and no ensemble of it."""
    run, metrics = quick_run(tmp_path, data_dir, "linear",
                             ("model.type=linear", "model.soap_n_radial=3", "model.soap_l_max=2"))
    assert not list(run.glob("**/checkpoint*"))
    frames = read(data_dir / "cu_train.xyz")
    mean_force = float(np.mean([b.forces.abs().mean() for b in frames]))
    assert metrics["valid"]["forces_mae"] < 0.3 * mean_force
    figures = metrics["valid"]["uncertainty"]  # from the posterior, as `mlipkit eval` reports
    assert {"spearman_forces", "coverage_50", "coverage_90", "coverage_95", "nll",
            "ece"} <= set(figures)
    assert 0 < figures["coverage_50"] <= figures["coverage_90"] <= figures["coverage_95"] <= 1
    fit = read_metadata(run / "model.safetensors")["extra"]["fit"]
    assert 0 < fit["effective_parameters"] < fit["parameters"]
    atoms = ase.io.read(data_dir / "cu_train.xyz", index=0)
    atoms.calc = mlipkit.Calculator(mlipkit.load(run / "model.safetensors"))
    assert atoms.get_potential_energy() == pytest.approx(float(frames[0].energy), abs=1.0)
    std = atoms.calc.results
    assert std["energy_std"] > 0 and std["forces_std"].shape == (len(atoms), 3)
    assert (std["forces_std"] > 0).all()
    cfg = write_config(tmp_path / "e.yaml", data_dir / "cu_train.xyz", tmp_path / "e")
    with pytest.raises(InvalidConfig, match="ensemble"):
        load_config(cfg, ("model.type=linear", "training.ensemble=2"))


def test_unknown_preset_is_refused(tmp_path, data_dir):
    cfg = write_config(tmp_path / "c.yaml", data_dir / "cu_train.xyz", tmp_path / "run")
    with pytest.raises(InvalidConfig, match="model.preset"):
        load_config(cfg, ("model.type=equivariant", "model.preset=huge"))
