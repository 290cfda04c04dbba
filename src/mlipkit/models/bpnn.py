"""Behler–Parrinello network: one MLP per element on ACSF descriptors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from ase.data import chemical_symbols
from torch import nn

from mlipkit.data.batch import Batch
from mlipkit.descriptors.acsf import ACSF, default_parameters, neighbor_slots, pad_neighbors
from mlipkit.descriptors.standardize import PerSpeciesStandardizer
from mlipkit.models.base import Capabilities, Potential, local_edges, species_lookup, to_numbers
from mlipkit.models.compiled import CompiledCore
from mlipkit.models.linearized import linearized
from mlipkit.neighbors import edge_vectors


class BehlerParrinello(CompiledCore, Potential):
    """E_i = NN_{Z_i}(Ĝ_i) − NN_{Z_i}(Ĝ_isolated).

    Ĝ is the per-species standardised ACSF vector. Subtracting the network's
    value for an isolated atom makes an isolated atom's energy exactly zero,
    so reference energies (added by :class:`ScaleShift`) are the dissociation
    limit.

    Args:
        species: element symbols or atomic numbers.
        cutoff: descriptor cutoff in Å.
        hidden: hidden layer widths of each element's network.
        descriptor: ACSF parameters; generated from the cutoff if omitted
            (see :func:`mlipkit.descriptors.acsf.default_parameters`).
    """

    type_name = "bpnn"

    def __init__(self, species: Sequence[str | int], cutoff: float = 5.0,
                 hidden: Sequence[int] = (64, 64), descriptor: dict | None = None) -> None:
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        self.species = to_numbers(species)
        self.cutoff = float(cutoff)
        self.hidden = [int(h) for h in hidden]
        self.descriptor_params = dict(descriptor or default_parameters(self.cutoff))
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)
        self.acsf = ACSF(len(self.species), self.cutoff, **self.descriptor_params)
        n_in = self.acsf.n_features
        self.standardizer = PerSpeciesStandardizer(len(self.species), n_in)
        self.networks = nn.ModuleList(_mlp(n_in, self.hidden) for _ in self.species)
        self.to(torch.get_default_dtype())

    def config(self) -> dict:
        return {"type": self.type_name, "species": [chemical_symbols[z] for z in self.species],
                "cutoff": self.cutoff, "hidden": self.hidden,
                "descriptor": self.descriptor_params}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(species=tuple(self.species), cutoff=self.cutoff, dtype=self.dtype)

    def descriptors(self, batch: Batch) -> torch.Tensor:
        """Raw ACSF vectors [N, F] for a batch with a neighbor list.

        A batch holding ``descriptors`` and ``descriptor_jacobian`` (see
        :meth:`cache_descriptors`) gives those values and first derivatives
        without recomputing them.
        """
        if "descriptors" in batch and "descriptor_jacobian" in batch:
            return linearized(edge_vectors(batch), batch.descriptors,
                              batch.descriptor_jacobian, batch.edge_index[0])
        edge_index, vec, _ = local_edges(batch, self.cutoff)
        species = self.lookup[batch.numbers]
        i, j = edge_index
        return self.acsf(i, species[j], vec, batch.n_total_atoms)

    @torch.no_grad()
    def cache_descriptors(self, batch: Batch) -> Batch:
        """``batch`` with its descriptors and their derivatives attached.

        Forces and stress from the cached batch are exact; second derivatives
        of the descriptors are dropped, so it suits training on energies,
        forces and stress at fixed positions, not Hessians or moving atoms.
        """
        batch = self.prepare(batch).without("descriptors", "descriptor_jacobian")
        species = self.lookup[batch.numbers]
        i, j = batch.edge_index
        features, jacobian = self.acsf.with_jacobian(i, species[j], edge_vectors(batch),
                                                     batch.n_total_atoms)
        return batch.replace(descriptors=features, descriptor_jacobian=jacobian.transpose(1, 2))

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        species = self.lookup[batch.numbers]
        # atoms of each element, in the order the networks run
        groups = [torch.nonzero(species == s).squeeze(-1) for s in range(len(self.species))]
        if "descriptors" in batch and "descriptor_jacobian" in batch:
            return self._networks(self.descriptors(batch), species, groups)
        edge_index, vec, _ = local_edges(batch, self.cutoff)
        i, j = edge_index
        k_max, slot = neighbor_slots(i, batch.n_total_atoms)
        return self.inference_core()(vec, i * k_max + slot, species[j], species, groups, k_max)

    def _core(self, vec: torch.Tensor, slot: torch.Tensor, neighbor_species: torch.Tensor,
              species: torch.Tensor, groups: list[torch.Tensor], k_max: int) -> torch.Tensor:
        """Atomic energies from the edge vectors and their slots (see
        :func:`~mlipkit.descriptors.acsf.pad_neighbors`): tensor operations
        only, which :meth:`compile_inference` can compile."""
        vec_pad, onehot = pad_neighbors(slot, neighbor_species, vec, species.shape[0], k_max,
                                        len(self.species), self.cutoff)
        return self._networks(self.acsf.padded(vec_pad, onehot), species, groups)

    def _networks(self, features: torch.Tensor, species: torch.Tensor,
                  groups: list[torch.Tensor]) -> torch.Tensor:
        x = self.standardizer(features, species)
        x0 = self.standardizer.reference(torch.arange(len(self.species), device=x.device))
        out = x.new_zeros(species.shape[0])
        for s, (net, idx) in enumerate(zip(self.networks, groups)):
            # the isolated atom's row rides along in the same pass
            e = net(torch.cat([x.index_select(0, idx), x0[s : s + 1]])).squeeze(-1)
            out = out.index_put((idx,), e[:-1] - e[-1])
        return out

    @torch.no_grad()
    def fit_standardization(self, batches: Iterable[Batch]) -> None:
        """Set descriptor means and standard deviations per species from data."""
        feats, species = [], []
        for b in batches:
            b = self.prepare(b)
            feats.append(self.descriptors(b))
            species.append(self.lookup[b.numbers])
        self.standardizer.fit(torch.cat(feats), torch.cat(species))


def _mlp(n_in: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.SiLU()]
        n_in = h
    layers.append(nn.Linear(n_in, 1))
    return nn.Sequential(*layers)
