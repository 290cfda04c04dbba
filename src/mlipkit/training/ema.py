"""Exponential moving average of model parameters."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class EMA:
    """shadow <- decay · shadow + (1 - decay) · param after every optimizer step.

    The effective decay ramps up as min(decay, (1 + n) / (10 + n)) so that the
    average is not dominated by the random initialisation early on.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        names, params = zip(*model.named_parameters())
        shadows = [self.shadow[k] for k in names]
        torch._foreach_mul_(shadows, d)
        torch._foreach_add_(shadows, [p.detach() for p in params], alpha=1 - d)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Temporarily put the averaged weights into ``model``."""
        saved = {k: p.detach().clone() for k, p in model.named_parameters()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for k, p in model.named_parameters():
                    p.copy_(saved[k])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            p.copy_(self.shadow[k])
