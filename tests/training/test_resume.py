"""Resume after `kill -9`: a real `mlipkit train` process is killed mid-run and resumed.

Three processes train the same config (float64, CPU, one thread each):

- ``interrupted``: killed with SIGKILL once its log has 3 epochs, then resumed
  with ``mlipkit train --resume``;
- ``damaged``: a copy of the killed run whose newest checkpoint is then cut in
  half, so the resume must fall back to ``checkpoint.prev.safetensors``;
- ``reference``: the same config, never interrupted.

All three must end with bit-identical weights and the same log. Cheaper
in-process cases follow: extending finished runs (single and ensemble) with
more epochs, and the state a kill leaves during the first checkpoint write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from mlipkit.cli import main
from mlipkit.data import write_extxyz
from tests.training.conftest import (
    MLIPKIT,
    TINY_MODEL,
    cu_structures,
    read_log,
    write_config,
)

MAX_EPOCHS = 8
KILL_AFTER = 3  # epochs in log.csv before the kill
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def epochs_logged(path: Path) -> int:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return 0
    return max(0, text.count("\n") - 1)  # complete rows below the header


def checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(path), framework="pt") as f:
        info = json.loads(f.metadata()["mlipkit_checkpoint"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return tensors, info


def start(args: list[str], log_to: Path) -> subprocess.Popen:
    with open(log_to, "w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([str(MLIPKIT), *args], stdout=subprocess.PIPE, stderr=stderr,
                                env=ENV, text=True)


def finish(proc: subprocess.Popen, stderr: Path, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr.read_text()[-3000:]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    # 64 structures of 32 atoms: about 0.4 s per epoch on one thread
    write_extxyz(root / "cu.xyz", cu_structures(64, seed=11))
    config = {
        "data": {"train": "cu.xyz", "valid_fraction": 0.2},
        "model": dict(TINY_MODEL),
        "training": {"max_epochs": MAX_EPOCHS, "batch_size": 4, "lr": 2.0e-3,
                     "warmup_epochs": 2, "plateau_patience": 1, "dtype": "float64",
                     "device": "cpu", "seed": 3},
        "output": str(root / "unused"),
    }
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    out = {name: root / name for name in ("interrupted", "damaged", "reference")}
    logs = {name: root / f"{name}.stderr" for name in out}

    procs = {}
    try:
        procs["reference"] = start(["--quiet", "train", str(cfg), f"output={out['reference']}"],
                                   logs["reference"])
        victim = start(["--quiet", "train", str(cfg), f"output={out['interrupted']}"],
                       root / "victim.stderr")
        procs["victim"] = victim
        deadline = time.monotonic() + 180
        while epochs_logged(out["interrupted"] / "log.csv") < KILL_AFTER:
            assert victim.poll() is None, (root / "victim.stderr").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run to be killed made no progress"
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL
        killed_at = epochs_logged(out["interrupted"] / "log.csv")
        assert KILL_AFTER <= killed_at < MAX_EPOCHS
        assert not (out["interrupted"] / "metrics.json").exists()

        # a copy with its newest checkpoint cut short (a disk that filled up, say)
        shutil.copytree(out["interrupted"], out["damaged"])
        newest = out["damaged"] / "checkpoint.safetensors"
        prev = out["damaged"] / "checkpoint.prev.safetensors"
        newest_epoch = checkpoint(newest)[1]["progress"]["epoch"]
        prev_epoch = checkpoint(prev)[1]["progress"]["epoch"]
        assert 1 <= prev_epoch < newest_epoch  # newest - 2 if killed between the renames
        with open(newest, "r+b") as fh:
            fh.truncate(newest.stat().st_size // 2)

        procs["interrupted"] = start(["--quiet", "train", "--resume", str(out["interrupted"])],
                                     logs["interrupted"])
        # not quiet: the log says from which epoch it resumed
        procs["damaged"] = start(["train", "--resume", str(out["damaged"])], logs["damaged"])
        stdout = {name: finish(procs[name], logs[name])
                  for name in ("reference", "interrupted", "damaged")}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"out": out, "stdout": stdout, "stderr": {k: v.read_text() for k, v in logs.items()},
            "killed_at": killed_at, "newest_epoch": newest_epoch, "prev_epoch": prev_epoch}


def assert_same_run(run: Path, reference: Path, max_epochs: int = MAX_EPOCHS) -> None:
    # the final checkpoint: model, EMA and optimizer tensors, bit for bit
    got, got_info = checkpoint(run / "checkpoint.safetensors")
    want, want_info = checkpoint(reference / "checkpoint.safetensors")
    model_keys = [k for k in want if k.startswith("model.")]
    assert model_keys and got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert got_info["progress"]["epoch"] == want_info["progress"]["epoch"] == max_epochs
    assert got_info["progress"]["best_epoch"] == want_info["progress"]["best_epoch"]
    # the model file (best EMA weights)
    got_model, want_model = (load_file(str(p / "model.safetensors")) for p in (run, reference))
    assert got_model.keys() == want_model.keys()
    for key in want_model:
        assert torch.equal(got_model[key], want_model[key]), key
    # one row per epoch, in order, with the same numbers as the uninterrupted run
    rows, ref_rows = read_log(run / "log.csv"), read_log(reference / "log.csv")
    assert [r["epoch"] for r in rows] == list(range(1, max_epochs + 1))
    drop_time = [{k: v for k, v in r.items() if k != "time"} for r in rows]
    assert drop_time == [{k: v for k, v in r.items() if k != "time"} for r in ref_rows]
    if (reference / "metrics.json").exists():  # not in the member folders of an ensemble
        assert json.loads((run / "metrics.json").read_text()) == \
            json.loads((reference / "metrics.json").read_text())


def test_resume_after_kill_matches_an_uninterrupted_run(runs):
    out = runs["out"]
    assert_same_run(out["interrupted"], out["reference"])
    assert json.loads(runs["stdout"]["interrupted"]) == json.loads(runs["stdout"]["reference"])
    assert "Traceback" not in runs["stderr"]["interrupted"]


def test_resume_falls_back_to_the_previous_checkpoint(runs):
    out = runs["out"]
    expected = f"resumed {out['damaged']} at epoch {runs['prev_epoch']}"
    assert expected in runs["stderr"]["damaged"], runs["stderr"]["damaged"][-3000:]
    assert_same_run(out["damaged"], out["reference"])


# -- in-process: cheaper cases of the same promise ------------------------------------------
@pytest.fixture
def quiet_runs(tmp_path, data_dir, monkeypatch, one_thread):
    """A factory of small in-process runs (8 training structures, no plots): name -> folder."""
    monkeypatch.setattr("mlipkit.training.run.parity_plots", lambda *a, **k: [])
    monkeypatch.setattr("mlipkit.training.run.learning_curves", lambda *a, **k: None)

    def make(name: str, **training) -> Path:
        cfg = write_config(tmp_path / f"{name}.yaml", data_dir / "cu_train.xyz",
                           tmp_path / name, warmup_epochs=1, **training)
        assert main(["--quiet", "train", str(cfg), "data.max_train=8"]) == 0
        return tmp_path / name

    return make


def resume(run: Path, *overrides: str) -> None:
    assert main(["--quiet", "train", "--resume", str(run), *overrides]) == 0


def test_resume_with_more_epochs_extends_a_finished_run(quiet_runs):
    # the plateau schedule does not depend on max_epochs, so 2 + 2 epochs equal 4 epochs
    extended = quiet_runs("extended", max_epochs=2, scheduler="plateau")
    resume(extended, "training.max_epochs=4")
    assert_same_run(extended, quiet_runs("straight", max_epochs=4, scheduler="plateau"),
                    max_epochs=4)


def test_resume_after_a_kill_before_the_first_checkpoint(quiet_runs):
    # kill -9 in epoch 1 after its log row was written but while its checkpoint was being
    # written: log.csv has a row, the checkpoint is only a temporary file
    run = quiet_runs("early_kill", max_epochs=1)
    (run / "checkpoint.safetensors").unlink()
    (run / "metrics.json").unlink()
    (run / "checkpoint.safetensors.x1y2z3.tmp").write_bytes(b"\0" * 100)
    resume(run, "training.max_epochs=3")
    assert_same_run(run, quiet_runs("straight", max_epochs=3), max_epochs=3)


def test_resume_an_ensemble_with_more_epochs(quiet_runs):
    extended = quiet_runs("ens_extended", max_epochs=1, ensemble=2)
    resume(extended, "training.max_epochs=2")
    straight = quiet_runs("ens_straight", max_epochs=2, ensemble=2)
    for k in range(2):
        assert_same_run(extended / f"member_{k}", straight / f"member_{k}", max_epochs=2)
    got, want = (load_file(str(p / "model.safetensors")) for p in (extended, straight))
    assert got.keys() == want.keys()
    assert all(torch.equal(got[key], want[key]) for key in want)
