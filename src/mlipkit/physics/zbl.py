"""Ziegler–Biersack–Littmark universal screened nuclear repulsion.

E_ij = (Z_i Z_j e² / 4πε₀ r) φ(r/a) s(r),  a = 0.46850 / (Z_i^0.23 + Z_j^0.23) Å,
φ(x) = 0.18175 e^{-3.19980x} + 0.50986 e^{-0.94229x} + 0.28022 e^{-0.40290x}
       + 0.02817 e^{-0.20162x}

It keeps atoms apart where training data never go. The switch s(r) takes it
smoothly (C²) to zero between ``inner · d_ij`` and ``outer · d_ij``, where d_ij
is the sum of the two covalent radii, so it acts only well inside a bond
length and leaves the chemistry to the learned term.
"""

from __future__ import annotations

import torch
from ase.data import covalent_radii
from ase.units import Bohr, Hartree

from mlipkit.data.batch import Batch
from mlipkit.descriptors.cutoff import smooth_switch
from mlipkit.models.base import Capabilities, Potential
from mlipkit.models.linearized import linearized
from mlipkit.neighbors import edge_vectors

COULOMB = Hartree * Bohr  # e²/4πε₀ = 14.3996 eV·Å
_PHI = ((0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162))


class ZBL(Potential):
    """ZBL repulsion for any element, switched off at ``outer`` × covalent bond length."""

    type_name = "zbl"

    def __init__(self, inner: float = 0.5, outer: float = 0.8) -> None:
        super().__init__()
        if not 0 < inner < outer:
            raise ValueError(f"need 0 < inner < outer, got inner={inner}, outer={outer}")
        self.inner, self.outer = float(inner), float(outer)
        self.register_buffer("radii", torch.tensor(covalent_radii, dtype=torch.get_default_dtype()),
                             persistent=False)
        self.cutoff = 2 * float(covalent_radii.max()) * self.outer

    def config(self) -> dict:
        return {"type": self.type_name, "inner": self.inner, "outer": self.outer}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(species=None, cutoff=self.cutoff, dtype=self.dtype)

    def pair_energy(self, r: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
        """Switched ZBL energy of each pair [E] (eV)."""
        zi_f, zj_f = zi.to(r.dtype), zj.to(r.dtype)
        a = 0.46850 / (zi_f**0.23 + zj_f**0.23)
        x = r / a
        phi = sum(c * torch.exp(-k * x) for c, k in _PHI)
        bond = self.radii[zi] + self.radii[zj]
        switch = smooth_switch(r, self.inner * bond, self.outer * bond)
        return COULOMB * zi_f * zj_f / r * phi * switch

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        if "zbl_energies" in batch and "zbl_edge_gradient" in batch:
            return linearized(edge_vectors(batch), batch.zbl_energies.unsqueeze(-1),
                              batch.zbl_edge_gradient.unsqueeze(-1),
                              batch.edge_index[0]).squeeze(-1)
        # only pairs inside their switch-off distance contribute: in a typical
        # structure none or few, so they are found first, outside the graph
        i, j = batch.edge_index
        with torch.no_grad():
            r = torch.linalg.vector_norm(edge_vectors(batch), dim=-1)
            keep = r < self.outer * (self.radii[batch.numbers[i]] + self.radii[batch.numbers[j]])
        if not bool(keep.any()):
            # zeros that stay attached to the positions: their derivatives exist, and are zero
            return batch.positions[:, 0] * 0.0
        close = batch.replace(edge_index=batch.edge_index[:, keep], shifts=batch.shifts[keep])
        r = torch.linalg.vector_norm(edge_vectors(close), dim=-1)
        return self._atomic(batch.numbers, close.edge_index, r)

    def _atomic(self, numbers: torch.Tensor, edge_index: torch.Tensor,
                r: torch.Tensor) -> torch.Tensor:
        """Atomic energies [N] from the pairs' distances."""
        i, j = edge_index
        pair = self.pair_energy(r, numbers[i], numbers[j])
        # full list: each pair appears twice, half to each atom
        return r.new_zeros(numbers.shape[0]).index_add(0, i, 0.5 * pair)

    def cache(self, batch: Batch) -> Batch:
        """``batch`` (with a neighbor list) with its ZBL energies per atom and
        their derivatives with respect to each edge vector attached: training
        at fixed positions then reads them instead of recomputing them (first
        derivatives only, see :mod:`mlipkit.models.linearized`)."""
        batch = batch.without("zbl_energies", "zbl_edge_gradient")
        with torch.enable_grad():
            vec = edge_vectors(batch).detach().requires_grad_(True)
            r = torch.linalg.vector_norm(vec, dim=-1)
            # pairs beyond the cutoff get r = cutoff, where the switch is zero
            r = torch.where(r < self.cutoff, r, torch.full_like(r, self.cutoff))
            energies = self._atomic(batch.numbers, batch.edge_index, r)
            (gradient,) = torch.autograd.grad(energies.sum(), vec)
        return batch.replace(zbl_energies=energies.detach(), zbl_edge_gradient=gradient)
