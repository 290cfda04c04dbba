"""Training data: read, split reproducibly, and attach neighbor lists once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from mlipkit.data.batch import Batch
from mlipkit.data.io import read, read_rmd17
from mlipkit.data.keys import LABEL_KEYS
from mlipkit.errors import InvalidConfig, MissingLabel
from mlipkit.neighbors import attach_neighbors

log = logging.getLogger(__name__)


def read_labelled(path: str, energy_key: str, forces_key: str | None,
                  stress_key: str | None) -> list[Batch]:
    """All frames of a data file with the labels the config names."""
    if Path(path).suffix.lower() == ".npz":  # rMD17: fixed keys
        return read_rmd17(path)
    return read(path, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                require=("energy",))


def split_indices(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A reproducible (train, valid) split of range(n)."""
    if n < 2:
        raise InvalidConfig(f"data.train has {n} structure(s); at least 2 are needed to hold out "
                            "a validation set (or give data.valid)")
    order = np.random.default_rng(seed).permutation(n)
    n_valid = min(max(1, int(round(valid_fraction * n))), n - 1)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def common_labels(batches: list[Batch], where: str) -> list[Batch]:
    """Keep the labels every structure has; say which ones are dropped."""
    present = {k: sum(k in b for b in batches) for k in LABEL_KEYS}
    if present["energy"] < len(batches):
        raise MissingLabel(f"{where}: {len(batches) - present['energy']} structures lack an energy")
    drop = [k for k, c in present.items() if 0 < c < len(batches)]
    for k in drop:
        log.warning("%s: '%s' labels exist for %d of %d structures; they are not used",
                    where, k, present[k], len(batches))
    return [b.without(*drop) for b in batches] if drop else batches


def prepare(batches: list[Batch], cutoff: float, dtype: torch.dtype) -> list[Batch]:
    """Cast and attach neighbor lists, once, before any epoch."""
    return [attach_neighbors(b.to(dtype=dtype), cutoff) for b in batches]
