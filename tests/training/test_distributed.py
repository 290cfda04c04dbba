"""Data-parallel training: 2 CPU processes under torchrun equal one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.training.conftest import read_log, write_config

TORCHRUN = Path(sys.executable).parent / "torchrun"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _world_size(path: Path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["mlipkit_checkpoint"])["world_size"]


def _model_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}


def _run(command: list[str], cwd: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed")
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, data_dir):
    train = data_dir / "cu_train.xyz"
    single_cfg = write_config(tmp_path / "single.yaml", train, tmp_path / "single",
                              max_epochs=4, batch_size=6)
    ddp_cfg = write_config(tmp_path / "ddp.yaml", train, tmp_path / "ddp",
                           max_epochs=4, batch_size=6)
    _run([sys.executable, "-m", "mlipkit.cli", "--quiet", "train", str(single_cfg)], tmp_path)
    _run([str(TORCHRUN), "--nproc_per_node=2", "--master_addr=127.0.0.1",
          f"--master_port={_free_port()}", "-m", "mlipkit.cli", "--quiet", "train",
          str(ddp_cfg)], tmp_path)

    assert _world_size(tmp_path / "ddp" / "checkpoint.safetensors") == 2
    assert _world_size(tmp_path / "single" / "checkpoint.safetensors") == 1
    single = _model_tensors(tmp_path / "single" / "checkpoint.safetensors")
    ddp = _model_tensors(tmp_path / "ddp" / "checkpoint.safetensors")
    assert single.keys() == ddp.keys() and single
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-9, atol=1e-12)
    moved = max(float((single[k] - v).abs().max()) for k, v in _model_tensors(
        tmp_path / "single" / "checkpoint.prev.safetensors").items())
    assert moved > 1e-6  # the weights did change during the compared epoch
    rows_single, rows_ddp = read_log(tmp_path / "single" / "log.csv"), read_log(
        tmp_path / "ddp" / "log.csv")
    assert len(rows_single) == len(rows_ddp) == 4
    for a, b in zip(rows_single, rows_ddp):
        for column in ("train_loss", "valid_loss", "valid_forces_mae"):
            assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-9)
