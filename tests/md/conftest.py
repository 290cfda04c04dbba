"""Potentials for the MD tests.

Lennard-Jones argon is cheap and anharmonic, so thermostat statistics can be
sampled in seconds; the BPNN+ZBL potentials of tests/conftest.py check the
engine on the models users run.
"""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from mlipkit.data.batch import Batch
from mlipkit.descriptors.cutoff import smooth_switch
from mlipkit.models.base import Capabilities, Potential, local_edges

ARGON_EPSILON = 0.0104  # eV
ARGON_SIGMA = 3.40  # Å


class LennardJones(Potential):
    """4ε[(σ/r)¹² − (σ/r)⁶], switched smoothly to zero between 0.8 and 1.0 × cutoff."""

    type_name = "lj_test"

    def __init__(self, epsilon=ARGON_EPSILON, sigma=ARGON_SIGMA, cutoff=8.0):
        super().__init__()
        self.epsilon, self.sigma, self.cutoff = epsilon, sigma, cutoff
        self.register_buffer("_dtype_marker", torch.zeros(()))

    def config(self):
        return {"type": self.type_name, "epsilon": self.epsilon, "sigma": self.sigma,
                "cutoff": self.cutoff}

    @property
    def capabilities(self):
        return Capabilities(species=None, cutoff=self.cutoff, dtype=self.dtype)

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        (i, _), _, r = local_edges(batch, self.cutoff)
        s6 = (self.sigma / r) ** 6
        pair = 4 * self.epsilon * (s6 * s6 - s6)
        pair = pair * smooth_switch(r, torch.tensor(0.8 * self.cutoff),
                                    torch.tensor(self.cutoff))
        return r.new_zeros(batch.n_total_atoms).index_add(0, i, 0.5 * pair)


class NoInteraction(Potential):
    """Zero energy: an ideal gas."""

    type_name = "none_test"

    def __init__(self):
        super().__init__()
        self.register_buffer("_dtype_marker", torch.zeros(()))

    def config(self):
        return {"type": self.type_name}

    @property
    def capabilities(self):
        return Capabilities(species=None, cutoff=0.5, dtype=self.dtype)

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        return 0.0 * batch.positions.sum(-1)


def argon(repeat=2, a=5.40, seed=0, rattle=0.05):
    """fcc argon, 4·repeat³ atoms."""
    atoms = bulk("Ar", "fcc", a=a, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(rattle, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def lj():
    return LennardJones().double()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small systems: one torch thread is fastest and keeps timings steady."""
