"""Per-species standardisation of descriptor vectors."""

from __future__ import annotations

import torch
from torch import nn


class PerSpeciesStandardizer(nn.Module):
    """x -> (x - mean[s]) / std[s] for an atom of species index s.

    Starts as the identity; :meth:`fit` sets the statistics from data.
    """

    def __init__(self, n_species: int, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_species, n_features, dtype=torch.float64))
        self.register_buffer("std", torch.ones(n_species, n_features, dtype=torch.float64))

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[species]) / self.std[species]

    def reference(self, species: torch.Tensor) -> torch.Tensor:
        """The standardised image of a zero descriptor (an isolated atom)."""
        return -self.mean[species] / self.std[species]

    @torch.no_grad()
    def fit(self, x: torch.Tensor, species: torch.Tensor) -> None:
        for s in range(self.mean.shape[0]):
            rows = x[species == s].to(self.mean.dtype)
            if rows.shape[0] == 0:
                continue
            self.mean[s] = rows.mean(0)
            std = rows.std(0, unbiased=False) if rows.shape[0] > 1 else torch.zeros_like(rows[0])
            # a feature that barely varies in the data must not amplify round-off or
            # small novelties without bound: floor its std at 1% of its typical magnitude
            # plus 0.01 (features are sums of O(1) terms); a feature always 0 gets std 1
            magnitude = rows.abs().mean(0)
            floor = 0.01 * magnitude + 0.01
            self.std[s] = torch.where(magnitude > 0, torch.maximum(std, floor),
                                      torch.ones_like(std))
