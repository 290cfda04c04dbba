"""The training loop: one potential (an ensemble member) from a RunConfig.

Per epoch: shuffled mini-batches (the order depends only on seed and epoch,
so a resumed run sees the same batches), weighted losses on energy, forces
and stress, gradient clipping, an optimizer step and an EMA update; then a
validation pass with the EMA weights, learning-rate scheduling, the best
EMA weights written as a model file, a log row and an atomic checkpoint.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mlipkit.data.batch import Batch
from mlipkit.models.base import Potential
from mlipkit.models.checkpoint import save as save_model
from mlipkit.training.checkpoint import load_checkpoint, save_checkpoint
from mlipkit.training.data import label_groups
from mlipkit.training.distributed import Context
from mlipkit.training.ema import EMA
from mlipkit.training.losses import loss_sums

log = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "time", "lr", "train_loss", "valid_loss", "valid_energy_mae",
               "valid_energy_mae_per_atom", "valid_forces_mae", "valid_stress_mae"]
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Progress:
    """Counters that a checkpoint restores."""

    epoch: int = 0
    global_step: int = 0
    elapsed: float = 0.0
    best_loss: float = math.inf
    best_epoch: int = -1
    history: list[dict] = field(default_factory=list)


def _chunks(items: list, size: int):
    for k in range(0, len(items), size):
        yield items[k : k + size]


class Trainer:
    """Trains ``model`` on prepared batches (neighbor lists attached).

    ``tc`` is a TrainingConfig; ``directory`` receives ``model.safetensors``
    (best EMA weights), ``log.csv`` and the checkpoints.
    """

    def __init__(self, model: Potential, train: list[Batch], valid: list[Batch], tc,
                 directory: Path, seed: int, progress_bar: bool = True,
                 context: Context | None = None) -> None:
        self.model, self.train, self.valid, self.tc = model, train, valid, tc
        self.ctx = context or Context()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.progress_bar = progress_bar and self.ctx.is_main
        self.weights = {k: float(getattr(tc.loss, k)) for k in ("energy", "forces", "stress",
                                                                 "hessian")}
        # derivatives the loss uses; each batch gets those its labels ask for
        self.need = {k: self.weights[k] > 0 and any(k in b for b in train)
                     for k in ("forces", "stress", "hessian")}
        self.params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW if tc.optimizer == "adamw" else torch.optim.Adam
        try:  # one fused kernel for all parameters (CPU and CUDA)
            self.optimizer = opt(self.params, lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
        except RuntimeError:  # a device without one
            self.optimizer = opt(self.params, lr=tc.lr, weight_decay=tc.weight_decay,
                                 foreach=True)
        self.steps_per_epoch = max(1, math.ceil(len(train) / tc.batch_size))
        self.scheduler = self._scheduler()
        self.ema = EMA(model, tc.ema) if tc.ema else None
        self.state = Progress()

    def _scheduler(self):
        tc = self.tc
        if tc.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=tc.plateau_factor, patience=tc.plateau_patience,
                min_lr=tc.min_lr)
        return None  # "cosine" is computed from progress, see _cosine_lr; "none" is constant

    def _cosine_lr(self, elapsed: float) -> None:
        """Cosine decay from lr to min_lr over the epochs after warm-up or, when a
        time budget is set and would end the run first, over the time budget."""
        tc = self.tc
        progress = (self.state.epoch - tc.warmup_epochs) / max(1, tc.max_epochs - tc.warmup_epochs)
        if tc.max_time is not None:
            progress = max(progress, elapsed / tc.max_time)
        progress = min(max(progress, 0.0), 1.0)
        lr = tc.min_lr + (tc.lr - tc.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- one epoch ----------------------------------------------------------
    def _warmup_lr(self) -> None:
        warm = self.tc.warmup_epochs * self.steps_per_epoch
        if self.state.global_step < warm:
            factor = (self.state.global_step + 1) / warm
            for group in self.optimizer.param_groups:
                group["lr"] = self.tc.lr * factor

    def _forward(self, batch: Batch, training: bool) -> dict[str, torch.Tensor]:
        want = {k: need and k in batch for k, need in self.need.items()}
        want["stress"] = want["stress"] and bool(batch.pbc.all())
        return self.model(batch, **want, training=training)

    def _loss(self, chunk: list[Batch], training: bool
              ) -> tuple[torch.Tensor | None, list[tuple[dict, Batch]], float]:
        """This rank's part of the global loss of ``chunk`` (all ranks' chunks
        together form one global mini-batch), its (outputs, batch) pairs and the
        global loss value."""
        sums, parts = {}, []
        # structures with different labels are evaluated as separate batches
        for group in label_groups(self.ctx.shard(chunk)):
            batch = Batch.collate(group)
            out = self._forward(batch, training=training)
            for k, (s, n) in loss_sums(out, batch, self.weights, self.tc.loss.kind,
                                       self.tc.loss.huber_delta).items():
                s0, n0 = sums.get(k, (0.0, 0))
                sums[k] = (s0 + s, n0 + n)
            parts.append((out, batch))
        names = sorted(k for k, w in self.weights.items() if w > 0)
        counts = dict(zip(names, self.ctx.sum([float(sums[k][1]) if k in sums else 0.0
                                               for k in names])))
        terms = [self.weights[k] * s / counts[k] for k, (s, _) in sums.items()]
        loss = sum(terms) if terms else None
        value = self.ctx.sum([float(loss.detach()) if loss is not None else 0.0])[0]
        return loss, parts, value

    def train_epoch(self) -> float:
        self.model.train()
        epoch = self.state.epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train))
        total, count = 0.0, 0
        for idx in _chunks(order.tolist(), self.tc.batch_size):
            self._warmup_lr()
            loss, _, value = self._loss([self.train[i] for i in idx], training=True)
            self.optimizer.zero_grad(set_to_none=True)
            if loss is not None:  # parameters only: no position gradients
                loss.backward(inputs=self.params)
            self.ctx.sum_gradients(self.model)
            if self.tc.clip_grad:
                torch.nn.utils.clip_grad_norm_(self.params, self.tc.clip_grad, foreach=True)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.state.global_step += 1
            total += value * len(idx)
            count += len(idx)
        return total / max(count, 1)

    def validate(self) -> dict[str, float]:
        """Validation loss and MAEs, with the EMA weights when EMA is on."""
        self.model.eval()
        loss = 0.0
        # |dE|, |dE|/atom, |dF|, |dS|, structures, force and stress components
        local = [0.0] * 7
        ctx = self.ema.applied(self.model) if self.ema else contextlib.nullcontext()
        with ctx:
            for chunk in _chunks(self.valid, self.tc.valid_batch_size):
                _, parts, value = self._loss(chunk, training=False)
                loss += value * len(chunk)
                for out, batch in parts:
                    de = (out["energy"] - batch.energy.to(out["energy"].dtype)).abs()
                    local[0] += float(de.sum())
                    local[1] += float((de / batch.n_atoms).sum())
                    local[4] += batch.n_structures
                    if "forces" in out and "forces" in batch:
                        local[2] += float((out["forces"] - batch.forces).abs().sum())
                        local[5] += batch.forces.numel()
                    if "stress" in out and "stress" in batch:
                        local[3] += float((out["stress"] - batch.stress).abs().sum())
                        local[6] += batch.stress.numel()
        e, e_atom, f, s, n_struct, n_force, n_stress = self.ctx.sum(local)
        result = {"valid_loss": loss / len(self.valid),
                  "valid_energy_mae": e / n_struct,
                  "valid_energy_mae_per_atom": e_atom / n_struct}
        if n_force:
            result["valid_forces_mae"] = f / n_force
        if n_stress:
            result["valid_stress_mae"] = s / n_stress
        return result

    # -- checkpoints -----------------------------------------------------------
    def _save(self, extra_info: dict) -> None:
        info = {"progress": self.state.__dict__, "model_config": self.model.config(),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None,
                "ema_updates": self.ema.updates if self.ema else 0,
                "world_size": self.ctx.world, **extra_info}
        save_checkpoint(self.directory, self.model, self.optimizer,
                        self.ema.shadow if self.ema else None, info)

    def restore(self) -> bool:
        """Continue from the checkpoint in ``directory`` if there is one."""
        try:
            tensors, info = load_checkpoint(self.directory)
        except Exception as exc:
            if any(self.directory.glob("checkpoint*.safetensors")):
                raise
            log.debug("no checkpoint to resume from: %s", exc)
            if self.ctx.is_main:
                self._truncate_log()  # rows of epochs whose checkpoint never landed
            return False
        self.model.load_state_dict(tensors["model"])
        self.optimizer.load_state_dict(info["optimizer_state"])
        if self.scheduler is not None and info.get("scheduler"):
            self.scheduler.load_state_dict(info["scheduler"])
        if self.ema is not None:
            self.ema.shadow = {k: v.to(self.model.dtype) for k, v in tensors["ema"].items()}
            self.ema.updates = info.get("ema_updates", 0)
        self.state = Progress(**info["progress"])
        if self.ctx.is_main:
            self._truncate_log()
        log.info("resumed %s at epoch %d", self.directory, self.state.epoch)
        return True

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint (a run killed mid-epoch)."""
        path = self.directory / "log.csv"
        if not path.exists():
            return
        with open(path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= self.state.epoch]
        self._write_log(rows, mode="w")

    def _write_log(self, rows: list[dict], mode: str = "a") -> None:
        path = self.directory / "log.csv"
        new = mode == "w" or not path.exists()
        with open(path, mode, newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)
            fh.flush()

    # -- the loop ---------------------------------------------------------------
    def _elapsed(self, start: float) -> float:
        """Seconds since the run began, averaged over ranks so that time-based
        decisions (stopping, cosine decay) are the same on every rank."""
        return self.ctx.sum([time.perf_counter() - start])[0] / self.ctx.world

    def fit(self, extra_info: dict | None = None) -> Progress:
        tc, st = self.tc, self.state
        extra_info = extra_info or {}
        start = time.perf_counter() - st.elapsed
        bar = tqdm(total=tc.max_epochs, initial=st.epoch, desc=str(self.directory.name),
                   disable=not self.progress_bar, unit="epoch", dynamic_ncols=True)
        stop_reason = "max_epochs"
        while st.epoch < tc.max_epochs:
            # the time of the last logged epoch decides, so that the log shows the
            # limit was reached (saving that epoch's checkpoint counts in the next);
            # one epoch always runs, so that a model file is written
            if tc.max_time is not None and st.epoch > 0 and st.elapsed >= tc.max_time:
                stop_reason = "max_time"
                break
            patience = tc.early_stopping_patience
            if patience is not None and st.best_epoch >= 0 and \
                    st.epoch - st.best_epoch > patience:
                stop_reason = "early_stopping"
                break
            train_loss = self.train_epoch()
            metrics = self.validate()
            st.epoch += 1
            lr = self.optimizer.param_groups[0]["lr"]
            if st.epoch > tc.warmup_epochs:
                if self.scheduler is not None:
                    self.scheduler.step(metrics["valid_loss"])
                elif tc.scheduler == "cosine":
                    self._cosine_lr(self._elapsed(start))
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training loss became {train_loss} at epoch "
                                         f"{st.epoch}; lower training.lr")
            if metrics["valid_loss"] < st.best_loss:
                st.best_loss, st.best_epoch = metrics["valid_loss"], st.epoch
                ctx = self.ema.applied(self.model) if self.ema else contextlib.nullcontext()
                with ctx:
                    if self.ctx.is_main:
                        save_model(self.model, self.directory / "model.safetensors",
                                   extra={"epoch": st.epoch, **metrics})
            st.elapsed = self._elapsed(start)
            row = {"epoch": st.epoch, "time": round(st.elapsed, 3), "lr": lr,
                   "train_loss": train_loss, **metrics}
            if self.ctx.is_main:
                self._write_log([row])
                self._save(extra_info)
            bar.update(1)
            bar.set_postfix(_postfix(metrics))
        bar.close()
        log.info("%s: stopped (%s) after %d epochs; best epoch %d", self.directory,
                 stop_reason, st.epoch, st.best_epoch)
        return st


def _postfix(metrics: dict) -> dict:
    out = {"E_mae/atom": f"{metrics['valid_energy_mae_per_atom'] * 1000:.2f}meV"}
    if "valid_forces_mae" in metrics:
        out["F_mae"] = f"{metrics['valid_forces_mae'] * 1000:.1f}meV/Å"
    return out


