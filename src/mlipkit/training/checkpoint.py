"""Training checkpoints for resume: safetensors + JSON, written atomically.

A checkpoint holds the model's state, the EMA weights, the optimizer state
and, as JSON, the scheduler state, counters and configs. The newest is
``checkpoint.safetensors``; the one before it is kept as
``checkpoint.prev.safetensors`` in case the newest is damaged.
Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mlipkit.errors import InvalidModelFile

NAME = "checkpoint.safetensors"
PREVIOUS = "checkpoint.prev.safetensors"


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    ema_shadow: dict[str, torch.Tensor] | None, info: dict) -> Path:
    """Write the checkpoint atomically, keeping the previous one as PREVIOUS.

    At every moment NAME holds a complete checkpoint (the old or the new one),
    and PREVIOUS, when present, an older one: the old file gets a second name
    by a hard link before NAME is replaced, and becomes PREVIOUS after.
    """
    directory = Path(directory)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if ema_shadow is not None:
        tensors.update({f"ema.{k}": v for k, v in ema_shadow.items()})
    optim_tensors, optim_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    meta = dict(info, optimizer=optim_meta)
    fd, tmp = tempfile.mkstemp(prefix=NAME + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"mlipkit_checkpoint": json.dumps(meta)})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        target = directory / NAME
        link = directory / (PREVIOUS + ".tmp")
        if target.exists():  # a second name for the old file before NAME moves on
            link.unlink(missing_ok=True)
            os.link(target, link)
        os.replace(tmp, target)
        if link.exists():
            os.replace(link, directory / PREVIOUS)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return directory / NAME


def load_checkpoint(directory: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """The newest readable checkpoint: ({"model", "ema", "optim"} tensors, info).

    Falls back to the previous checkpoint if the newest cannot be read.
    """
    directory = Path(directory)
    errors = []
    for name in (NAME, PREVIOUS):
        path = directory / name
        if not path.exists():
            continue
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["mlipkit_checkpoint"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # a damaged file: try the previous one
            errors.append(f"{path}: {exc}")
            continue
        groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "ema": {}, "optim": {}}
        for key, value in tensors.items():
            head, rest = key.split(".", 1)
            groups[head][rest if head != "optim" else key] = value
        meta["optimizer_state"] = _unflatten_optimizer(groups.pop("optim"), meta.pop("optimizer"))
        return groups, meta
    detail = "; ".join(errors) if errors else "no checkpoint files"
    raise InvalidModelFile(f"cannot resume from {directory}: {detail}")
