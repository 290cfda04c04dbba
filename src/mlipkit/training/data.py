"""Training data: read, split reproducibly, and attach neighbor lists once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from mlipkit.data.batch import Batch
from mlipkit.data.io import read, read_rmd17
from mlipkit.data.keys import LABEL_KEYS
from mlipkit.errors import InvalidConfig, MissingLabel
from mlipkit.models import BehlerParrinello
from mlipkit.models.base import Potential
from mlipkit.neighbors import attach_neighbors
from mlipkit.physics import ZBL

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


def check_labels(batches: list[Batch], where: str) -> list[Batch]:
    """Require an energy for every structure; say which other labels only
    some structures have (each loss term uses the structures that have it)."""
    present = {k: sum(k in b for b in batches) for k in LABEL_KEYS}
    if present["energy"] < len(batches):
        raise MissingLabel(f"{where}: {len(batches) - present['energy']} structures lack an energy")
    for k, c in present.items():
        if 0 < c < len(batches):
            log.info("%s: '%s' labels exist for %d of %d structures; the %s term uses those",
                     where, k, c, len(batches), k)
    return batches


def label_groups(batches: list[Batch]) -> list[list[Batch]]:
    """Structures grouped by the labels they carry and by whether they are
    periodic (stress is asked only of periodic ones), in order of appearance:
    each group collates into one batch."""
    groups: dict[tuple, list[Batch]] = {}
    for b in batches:
        key = (tuple(k for k in LABEL_KEYS if k in b), bool(b.pbc.all()))
        groups.setdefault(key, []).append(b)
    return list(groups.values())


def prepare(batches: list[Batch], cutoff: float, dtype: torch.dtype) -> list[Batch]:
    """Cast and attach neighbor lists, once, before any epoch."""
    return [attach_neighbors(b.to(dtype=dtype), cutoff) for b in batches]


def cache_fixed_terms(model: Potential, batches: list[Batch], limit_gib: float,
                      chunk: int = 32) -> list[Batch]:
    """Attach, once, what training at fixed positions would otherwise
    recompute every step: a ZBL prior's energies and edge derivatives, and, if
    the model is descriptor-based and they fit in ``limit_gib``, its
    descriptors and their derivatives (else recomputed per step)."""
    if not batches:
        return batches
    nets = [m for m in model.modules() if isinstance(m, BehlerParrinello)]
    zbls = [m for m in model.modules() if isinstance(m, ZBL)]
    net = nets[0] if len(nets) == 1 and limit_gib > 0 else None
    zbl = zbls[0] if len(zbls) == 1 else None
    if net is not None:
        itemsize = torch.finfo(net.dtype).bits // 8
        size = sum(b.n_edges * 3 + b.n_total_atoms for b in batches) * net.acsf.n_features
        if size * itemsize > limit_gib * 2**30:
            log.info("descriptor cache would take %.1f GiB (> training.descriptor_cache_gib = "
                     "%g); descriptors are recomputed every step", size * itemsize / 2**30,
                     limit_gib)
            net = None
    if net is None and zbl is None:
        return batches
    t0 = time.perf_counter()
    out = []
    for k in range(0, len(batches), chunk):
        part = batches[k : k + chunk]
        group = model.prepare(Batch.collate([b.without(*LABEL_KEYS) for b in part]))
        if net is not None:
            group = net.cache_descriptors(group)
        if zbl is not None:
            group = zbl.cache(group)
        cached = group.to(part[0].device).split()
        out += [c.replace(**{key: b[key] for key in LABEL_KEYS if key in b})
                for c, b in zip(cached, part)]
    log.info("cached for training: %s of %d structures, in %.1f s",
             " and ".join(n for n, m in (("descriptors", net), ("ZBL terms", zbl)) if m),
             len(batches), time.perf_counter() - t0)
    return out
