"""SOAP-like power spectrum, element resolved and differentiable.

Each atom's neighbour density of element a is expanded in radial Gaussians
times real spherical harmonics::

    c_i[a, n, lm] = Σ_{j∈a} g_n(r_ij) Y_lm(r̂_ij),
    g_n(r) = exp(-η (r - r_n)²) f_c(r),

and contracted over m into rotation invariants::

    p_i[(a, n), (b, k), l] = 4π/(2l+1) Σ_m c_i[a, n, lm] c_i[b, k, lm]
                           = Σ_{j∈a} Σ_{k'∈b} g_n(r_ij) g_k(r_ik') P_l(cos θ_jik')

(the second line is the addition theorem; the tests check it by brute force
over neighbour pairs). For every l the features are the upper triangle of
the symmetric (S·n)×(S·n) matrix over (element, radial) pairs, so
``n_features = (l_max + 1) · D(D + 1)/2`` with D = n_species · n_radial.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from torch import nn

from mlipkit.descriptors.cutoff import polynomial_cutoff


class PowerSpectrum(nn.Module):
    """Element-resolved SOAP-like power spectrum from per-edge data.

    Args:
        n_species: number of elements (neighbour species are 0..n_species-1).
        cutoff: cutoff radius in Å.
        n_radial: radial Gaussians, evenly spaced up to ``cutoff − 0.5`` Å
            with a width equal to their spacing.
        l_max: largest angular momentum.
    """

    def __init__(self, n_species: int, cutoff: float, n_radial: int = 6, l_max: int = 4) -> None:
        super().__init__()
        if n_species < 1 or n_radial < 1 or l_max < 0 or cutoff <= 0:
            raise ValueError(f"need n_species, n_radial >= 1, l_max >= 0 and a positive cutoff; "
                             f"got {n_species}, {n_radial}, {l_max}, {cutoff}")
        self.n_species, self.cutoff = int(n_species), float(cutoff)
        self.n_radial, self.l_max = int(n_radial), int(l_max)
        r0 = min(0.8, 0.25 * cutoff)
        centres = torch.linspace(r0, cutoff - 0.5, n_radial, dtype=torch.float64)
        width = float(centres[1] - centres[0]) if n_radial > 1 else cutoff / 2
        self.eta = 0.5 / width**2
        self.register_buffer("centres", centres, persistent=False)
        d = self.n_species * self.n_radial
        rows, cols = torch.triu_indices(d, d)
        self.register_buffer("triu", rows * d + cols, persistent=False)
        self.irreps = o3.Irreps.spherical_harmonics(self.l_max)

    @property
    def n_features(self) -> int:
        d = self.n_species * self.n_radial
        return (self.l_max + 1) * d * (d + 1) // 2

    def _per_edge(self, vec: torch.Tensor) -> torch.Tensor:
        """g_n(r) Y_lm(r̂) of each edge [E, n_radial, (l_max + 1)²]."""
        r = torch.linalg.vector_norm(vec, dim=-1)
        radial = torch.exp(-self.eta * (r.unsqueeze(-1) - self.centres.to(r.dtype)) ** 2)
        radial = radial * polynomial_cutoff(r, self.cutoff).unsqueeze(-1)
        harmonics = o3.spherical_harmonics(self.irreps, vec, normalize=True,
                                           normalization="integral")
        return radial.unsqueeze(-1) * harmonics.unsqueeze(1)

    def _density(self, per_edge, center, neighbor_species, n_atoms: int) -> torch.Tensor:
        """Expansion coefficients c [N, n_species · n_radial, (l_max + 1)²]."""
        slot = center * self.n_species + neighbor_species
        c = per_edge.new_zeros(n_atoms * self.n_species, *per_edge.shape[1:])
        return c.index_add(0, slot, per_edge).view(n_atoms, self.n_species * self.n_radial, -1)

    def _contract(self, blocks_of_l) -> torch.Tensor:
        """[..., D, D] matrices per l -> their upper triangles, normalised, concatenated."""
        return torch.cat([m.flatten(-2).index_select(-1, self.triu) * (4 * math.pi / (2 * l + 1))
                          for l, m in enumerate(blocks_of_l)], dim=-1)

    def _blocks(self, c: torch.Tensor):
        return [c[..., l * l : (l + 1) ** 2] for l in range(self.l_max + 1)]

    def forward(self, center: torch.Tensor, neighbor_species: torch.Tensor, vec: torch.Tensor,
                n_atoms: int) -> torch.Tensor:
        """center [E], neighbor_species [E], vec [E, 3] Å -> features [N, n_features]."""
        c = self._density(self._per_edge(vec), center, neighbor_species, n_atoms)
        return self._contract([torch.bmm(part, part.transpose(1, 2)) for part in self._blocks(c)])

    @torch.no_grad()
    def with_jacobian(self, center: torch.Tensor, neighbor_species: torch.Tensor,
                      vec: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [N, F] and their derivatives with respect to every edge
        vector, ∂G_center(e) / ∂vec_e as [E, F, 3].

        Each edge's density term depends on its own vector only (three
        forward-mode passes give all their derivatives); the power spectrum
        is bilinear in the density, so ∂p = ∂c·cᵀ + c·∂cᵀ with ∂c nonzero in
        the neighbour's element block only.
        """
        per_edge = self._per_edge(vec)
        eye = torch.eye(3, dtype=vec.dtype, device=vec.device)
        d_edge = torch.stack([torch.func.jvp(self._per_edge, (vec,), (eye[a].expand_as(vec),))[1]
                              for a in range(3)], dim=1)  # [E, 3, n, LM]
        c = self._density(per_edge, center, neighbor_species, n_atoms)
        features = self._contract([torch.bmm(p, p.transpose(1, 2)) for p in self._blocks(c)])
        onehot = torch.nn.functional.one_hot(neighbor_species, self.n_species).to(vec.dtype)
        c_center = c.index_select(0, center)  # [E, D, LM]
        derivative = []
        for d_part, part in zip(self._blocks(d_edge), self._blocks(c_center)):
            # rows of the edge's own element block: ∂c_(s_j, n) · c_(b, k)
            rows = torch.einsum("eanm,ekm->eank", d_part, part)  # [E, 3, n, D]
            full = torch.einsum("es,eank->easnk", onehot, rows).flatten(2, 3)  # [E, 3, D, D]
            derivative.append(full + full.transpose(-1, -2))
        return features, self._contract(derivative).transpose(1, 2)
