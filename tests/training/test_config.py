"""The run config: defaults, YAML round trip, overrides, validation, path resolution."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import yaml

from mlipkit.errors import InvalidConfig
from mlipkit.training.config import (
    MODEL_TYPES,
    DataConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    apply_overrides,
    load_config,
    save_config,
)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(d: dict | None = None, overrides: tuple[str, ...] = ()) -> str:
    d = {"data": {"train": "/abs/train.xyz"}} if d is None else d
    with pytest.raises(InvalidConfig) as info:
        RunConfig.from_dict(apply_overrides(d, overrides))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_match_the_issue():
    c = RunConfig.from_dict({"data": {"train": "train.xyz"}})
    assert c == RunConfig(data=DataConfig(train="train.xyz"))
    assert c.data.valid is None and c.data.valid_fraction == 0.05
    assert c.model == ModelConfig() and c.model.type == "bpnn" and c.model.zbl is True
    assert c.model.hidden == [64, 64] and c.model.zetas == [1, 2, 4]
    assert c.training.loss == LossConfig(energy=1.0, forces=100.0, stress=1.0, hessian=0.0)
    t = c.training
    assert (t.max_epochs, t.max_time, t.batch_size, t.lr, t.ema, t.seed, t.dtype, t.ensemble) == (
        1000, None, 8, 1.0e-3, 0.99, 0, "float32", 1)
    assert c.output == "runs/default"
    # default lists are not shared between instances
    assert ModelConfig().hidden is not ModelConfig().hidden


def test_to_dict_is_plain_and_complete():
    d = RunConfig(data=DataConfig(train="t.xyz")).to_dict()
    assert set(d) == {"data", "model", "training", "output"}
    assert d["training"]["loss"] == {"energy": 1.0, "forces": 100.0, "stress": 1.0,
                                     "hessian": 0.0, "kind": "mse", "huber_delta": 0.01}
    assert set(d["training"]) == {f.name for f in dataclasses.fields(TrainingConfig)}
    assert yaml.safe_load(yaml.safe_dump(d)) == d  # only YAML-able builtins
    assert RunConfig.from_dict(d) == RunConfig(data=DataConfig(train="t.xyz"))


def test_yaml_round_trip(tmp_path):
    config = RunConfig(
        data=DataConfig(train=str(tmp_path / "train.xyz"), valid=str(tmp_path / "v.db"),
                        forces_key=None, max_train=100),
        model=ModelConfig(cutoff=4.5, zbl=False, hidden=[32, 16, 8], zetas=[1]),
        training=TrainingConfig(max_time=1.5e-7, lr=3.0e-4, min_lr=1e-7, ema=None,
                                clip_grad=None, loss=LossConfig(forces=10.0, kind="huber"),
                                dtype="float64", ensemble=3, bootstrap=True),
        output="runs/x",
    )
    path = save_config(config, tmp_path / "out" / "config.yaml")
    assert path.is_file()
    assert load_config(path) == config
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]  # no temp file left
    text = path.read_text()
    assert "max_time: 1.5e-07" in text and "ema: null" in text and "hidden: [32, 16, 8]" in text


def test_issue_example_and_float_notation(tmp_path):
    path = write(tmp_path, """
data:
  train: data/train.xyz
  valid_fraction: 0.1
model: {type: bpnn, cutoff: 6, zbl: true}
training:
  max_time: null
  lr: 1e-3            # YAML 1.1 would read this as a string
  loss: {energy: 1.0, forces: 100.0, stress: 1.0, hessian: 0.0}
  ema: 0.99
output: runs/NAME
""")
    c = load_config(path)
    assert c.training.lr == 1.0e-3 and isinstance(c.training.lr, float)
    assert c.model.cutoff == 6.0 and isinstance(c.model.cutoff, float)  # int accepted as float
    assert c.data.valid_fraction == 0.1 and c.output == "runs/NAME"


def test_overrides_nested_lists_and_null(tmp_path):
    path = write(tmp_path, "data: {train: /d/t.xyz, valid: /d/v.xyz}\ntraining: {lr: 0.01}\n")
    c = load_config(path, ["training.max_time=600", "model.hidden=[32,32]", "data.valid=null",
                           "training.loss.forces=10", "training.lr=2e-3", "output=runs/a b",
                           "training.loss.kind=huber", "model.zbl=false"])
    assert c.training.max_time == 600.0 and isinstance(c.training.max_time, float)
    assert c.model.hidden == [32, 32]
    assert c.data.valid is None and c.data.train == "/d/t.xyz"
    assert c.training.loss.forces == 10.0 and c.training.loss.energy == 1.0  # siblings kept
    assert c.training.lr == 2e-3 and c.output == "runs/a b"
    assert c.training.loss.kind == "huber" and c.model.zbl is False
    # the last of repeated overrides wins; the input mapping is not modified
    raw = {"data": {"train": "x"}}
    assert apply_overrides(raw, ["training.seed=1", "training.seed=2"])["training"]["seed"] == 2
    assert raw == {"data": {"train": "x"}}


@pytest.mark.parametrize("d, key, text", [
    ({"data": {"train": "x"}, "training": {"max_epoch": 3}}, "training.max_epoch",
     "did you mean 'training.max_epochs'?"),
    ({"data": {"train": "x"}, "trainig": {}}, "trainig", "did you mean 'training'?"),
    ({"data": {"train": "x"}, "training": {"cutoff": 4.0}}, "training.cutoff",
     "did you mean 'model.cutoff'?"),
    ({"data": {"train": "x"}, "training": {"loss": {"force": 1.0}}}, "training.loss.force",
     "did you mean 'training.loss.forces'?"),
    ({"data": {"train": "x"}, "model": {"qqq": 1}}, "model.qqq", "known keys in 'model': type"),
])
def test_unknown_keys_suggest_the_closest(d, key, text):
    message = config_error(d)
    assert message.startswith(f"unknown key '{key}'") and text in message


@pytest.mark.parametrize("section, value, key, expected", [
    ("training", {"lr": "abc"}, "training.lr", "must be a number"),
    ("training", {"lr": "1e-3x"}, "training.lr", "got string '1e-3x'"),
    ("training", {"batch_size": 8.0}, "training.batch_size", "must be an integer"),
    ("training", {"batch_size": True}, "training.batch_size", "must be an integer, got bool"),
    ("training", {"lr": False}, "training.lr", "must be a number, got bool"),
    ("training", {"seed": None}, "training.seed", "must be an integer, got None"),
    ("training", {"max_time": "10 min"}, "training.max_time", "must be a number or null"),
    ("training", {"loss": [1, 2]}, "training.loss", "must be a mapping"),
    ("training", {"dtype": 64}, "training.dtype", "must be a string"),
    ("model", {"zbl": "yes"}, "model.zbl", "must be true or false"),
    ("model", {"hidden": 64}, "model.hidden", "must be a list"),
    ("model", {"hidden": [64, "a"]}, "model.hidden[1]", "must be an integer"),
    ("model", {"type": None}, "model.type", "must be a string"),
    ("data", {"train": "x", "valid": 3}, "data.valid", "must be a string or null"),
    ("data", {"train": None}, "data.train", "must be a string"),
])
def test_wrong_types_name_the_key(section, value, key, expected):
    d = {"data": {"train": "x"}, section: value} if section != "data" else {section: value}
    message = config_error(d)
    assert message.startswith(f"'{key}' ") and expected in message


def test_whole_sections_and_config_must_be_mappings():
    assert config_error({"data": {"train": "x"}, "training": 5}).startswith("'training' must be")
    with pytest.raises(InvalidConfig, match="the config must be a mapping"):
        RunConfig.from_dict([1, 2])


def test_missing_train_is_reported():
    assert config_error({}) == "missing required key 'data.train'"
    assert config_error({"data": {"valid": "v.xyz"}}) == "missing required key 'data.train'"


@pytest.mark.parametrize("override, key, expected", [
    ("training.batch_size=0", "training.batch_size", ">= 1"),
    ("training.valid_batch_size=0", "training.valid_batch_size", ">= 1"),
    ("training.lr=0", "training.lr", "> 0"),
    ("training.lr=-1e-3", "training.lr", "> 0"),
    ("data.valid_fraction=0", "data.valid_fraction", "(0, 1)"),
    ("data.valid_fraction=1", "data.valid_fraction", "(0, 1)"),
    ("data.max_train=0", "data.max_train", ">= 1"),
    ("training.ema=1", "training.ema", "[0, 1)"),
    ("training.ema=-0.1", "training.ema", "[0, 1)"),
    ("training.dtype=float16", "training.dtype", "'float32', 'float64'"),
    ("training.loss.kind=l1", "training.loss.kind", "'mse', 'huber'"),
    ("training.loss.huber_delta=0", "training.loss.huber_delta", "> 0"),
    ("training.optimizer=sgd", "training.optimizer", "'adam', 'adamw'"),
    ("training.scheduler=step", "training.scheduler", "'plateau', 'cosine', 'none'"),
    ("training.ensemble=0", "training.ensemble", ">= 1"),
    ("training.descriptor_cache_gib=-1", "training.descriptor_cache_gib", ">= 0"),
    ("training.loss.forces=-1", "training.loss.forces", ">= 0"),
    ("model.cutoff=0", "model.cutoff", "> 0"),
    ("model.type=transformer", "model.type", "'bpnn', 'equivariant'"),
    ("model.hidden=[]", "model.hidden", "non-empty"),
    ("model.hidden=[64, 0]", "model.hidden", ">= 1"),
    ("training.max_time=0", "training.max_time", "> 0"),
    ("training.clip_grad=0", "training.clip_grad", "> 0"),
    ("training.plateau_factor=1", "training.plateau_factor", "(0, 1)"),
    ("training.seed=-1", "training.seed", ">= 0"),
    ("output=''", "output", "not be empty"),
])
def test_out_of_range_values_name_the_key(override, key, expected):
    message = config_error(overrides=(override,))
    assert message.startswith(f"'{key}' must") and expected in message


def test_nullable_values_accept_null():
    c = RunConfig.from_dict(apply_overrides({"data": {"train": "x"}}, [
        "training.ema=null", "training.clip_grad=null", "training.early_stopping_patience=null",
        "data.forces_key=null", "data.stress_key=null", "data.max_train=null"]))
    assert c.training.ema is None and c.training.clip_grad is None and c.data.forces_key is None


def test_loss_weights_need_one_positive():
    message = config_error(overrides=("training.loss={energy: 0, forces: 0, stress: 0}",))
    assert "training.loss.energy" in message and "positive" in message
    # one positive weight is enough, e.g. energy-only training
    RunConfig.from_dict(apply_overrides({"data": {"train": "x"}},
                                        ["training.loss.forces=0", "training.loss.stress=0"]))


def test_model_types_are_registered_potentials():
    from mlipkit.models.registry import REGISTRY

    assert set(MODEL_TYPES) <= set(REGISTRY)


def test_direct_construction_is_validated_too():
    with pytest.raises(InvalidConfig, match="'training.batch_size' must be >= 1"):
        RunConfig(data=DataConfig("x"), training=TrainingConfig(batch_size=0))
    with pytest.raises(InvalidConfig, match="'training.lr' must be a number"):
        RunConfig(data=DataConfig("x"), training=TrainingConfig(lr="fast"))
    c = RunConfig(data=DataConfig("x"), model=ModelConfig(cutoff=4))
    assert isinstance(c.model.cutoff, float)


@pytest.mark.parametrize("override, expected", [
    ("training.lr", "not of the form dotted.key=value"),
    ("=3", "not of the form dotted.key=value"),
    ("training.max_epoch=3", "unknown key 'training.max_epoch'; did you mean "
                             "'training.max_epochs'?"),
    ("training.lr.value=3", "unknown key 'training.lr.value'"),
    ("nothing=3", "unknown key 'nothing'"),
    ("model.hidden=[32,", "cannot read the value of override 'model.hidden'"),
])
def test_bad_overrides(tmp_path, override, expected):
    path = write(tmp_path, "data: {train: t.xyz}\n")
    with pytest.raises(InvalidConfig) as info:
        load_config(path, [override])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_bad_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(missing)
    for text in ("- a\n- b\n", "just a string\n", ""):
        with pytest.raises(InvalidConfig, match="must hold a mapping"):
            load_config(write(tmp_path, text))
    with pytest.raises(InvalidConfig, match="not valid YAML"):
        load_config(write(tmp_path, "data: {train: [\n"))
    with pytest.raises(InvalidConfig, match="'training' must be a mapping"):
        load_config(write(tmp_path, "data: {train: t.xyz}\ntraining: 3\n"),
                    ["training.lr=1"])


def test_relative_data_paths_follow_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = write(folder, "data:\n  train: ../data/train.xyz\n  valid: v.xyz\n"
                         "  test: /abs/test.xyz\noutput: runs/rel\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    c = load_config(os.path.relpath(path))
    assert c.data.train == str(tmp_path / "data" / "train.xyz")
    assert c.data.valid == str(folder / "v.xyz")
    assert c.data.test == "/abs/test.xyz"
    assert c.output == "runs/rel"  # kept relative to the current directory
    # a path given as an override is relative to the current directory
    c = load_config(path, ["data.test=t.xyz"])
    assert c.data.test == str(elsewhere / "t.xyz")
    # a saved config loads back equal from any folder
    saved = save_config(c, tmp_path / "saved" / "config.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_config(saved) == c


def test_an_angular_range_outside_the_cutoff_is_a_config_error():
    import torch
    from ase.build import molecule

    from mlipkit.data import from_atoms
    from mlipkit.training.setup import build_model

    with pytest.raises(InvalidConfig, match="'model.angular_range' must not exceed"):
        RunConfig(data=DataConfig("x"), model=ModelConfig(cutoff=4.0, angular_range=4.5))
    with pytest.raises(InvalidConfig, match="'model.angular_range' must be > 0"):
        RunConfig(data=DataConfig("x"), model=ModelConfig(angular_range=-1.0))
    # below the first shell: found when the descriptor is built
    frames = [from_atoms(molecule("H2O"), labels={"energy": -14.0})]
    with pytest.raises(InvalidConfig, match="angular_range"):
        build_model(ModelConfig(cutoff=4.0, angular_range=0.5), frames, 0, torch.float64)
