"""Training ``model.type: linear``: one closed-form Bayesian fit, no epochs."""

from __future__ import annotations

import torch

from mlipkit.data.batch import Batch
from mlipkit.models.base import Potential
from mlipkit.models.linear import BayesianLinear


def fit_linear(model: Potential, train: list[Batch], progress: bool = True) -> dict:
    """Fit the (single) BayesianLinear term of ``model`` to what the rest of
    the model (reference energies, ZBL) leaves of the training labels.

    The loss weights of the training config do not enter: the evidence sets
    the relative weight of energies and forces through their noise levels.
    """
    linear = [m for m in model.modules() if isinstance(m, BayesianLinear)]
    if len(linear) != 1:
        raise ValueError(f"expected one linear term in the model, found {len(linear)}")
    linear[0].weights.zero_()  # the model is now the baseline the term adds to
    energies, forces = [], []
    for b in train:
        with_forces = "forces" in b
        base = model(b, forces=with_forces)
        energies.append(b.energy.to(torch.float64) - base["energy"].to(torch.float64))
        forces.append(b.forces - base["forces"] if with_forces else None)
    return linear[0].fit(train, energies, forces, progress=progress)
