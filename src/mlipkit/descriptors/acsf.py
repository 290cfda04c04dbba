"""Atom-centred symmetry functions (Behler–Parrinello), element resolved.

Radial functions (G2) and angular functions (G5 form)::

    G2_i[e, s]       = Σ_{j∈e} g_s(r_ij)
    G5_i[e1e2, s, ζλ] = 2^{1-ζ} Σ_{j∈e1} Σ_{k∈e2, k≠j} (1 + λ cos θ_jik)^ζ g_s(r_ij) g_s(r_ik)

with g_s(r) = exp(-η_s (r - r_s)²) f_c(r) and the C² polynomial cutoff f_c.

The angular sum is evaluated without enumerating triplets. With integer ζ,
(1 + λ cos θ)^ζ = Σ_n C(ζ,n) λ^n cos^n θ, and cos^n θ = (û_ij·û_ik)^n is a
sum over monomials û^α with multinomial weights. So each term factorises into
per-atom moments M_i[e, s, α] = Σ_{j∈e} g_s(r_ij) û_ij^α, and
Σ_{j,k} ... = Σ_α w_α M[e1,s,α] M[e2,s,α]. The j = k terms (cos θ = 1) are
subtracted. Cost is linear in the number of edges, which is what makes
dense periodic systems cheap.
"""

from __future__ import annotations

import math
from itertools import combinations_with_replacement

import torch
from torch import nn

from mlipkit.descriptors.cutoff import polynomial_cutoff


def default_parameters(cutoff: float, n_radial: int = 12, n_angular_radial: int = 4,
                       zetas: tuple[int, ...] = (1, 2, 4)) -> dict:
    """A parameter set generated from the cutoff: evenly spaced Gaussians whose
    width equals their spacing, and ζ ∈ {1, 2, 4} with λ = ±1."""
    r0 = min(0.8, 0.25 * cutoff)
    radial_centres = torch.linspace(r0, cutoff - 0.5, n_radial).tolist()
    angular_centres = torch.linspace(r0, cutoff - 1.0, n_angular_radial).tolist()
    return dict(
        radial_centres=radial_centres,
        radial_width=_spacing(radial_centres, cutoff),
        angular_centres=angular_centres,
        angular_width=_spacing(angular_centres, cutoff),
        zetas=list(zetas),
    )


def _spacing(centres: list[float], cutoff: float) -> float:
    return centres[1] - centres[0] if len(centres) > 1 else cutoff / 2


class ACSF(nn.Module):
    """Element-resolved G2 + G5 descriptors.

    Takes per-edge data (center index, neighbor species index, distance and
    unit vector) and gives features [N, n_features].
    """

    def __init__(self, n_species: int, cutoff: float, radial_centres, radial_width: float,
                 angular_centres, angular_width: float, zetas) -> None:
        super().__init__()
        self.n_species = n_species
        self.cutoff = float(cutoff)
        self.zetas = [int(z) for z in zetas]
        if any(z < 1 for z in self.zetas):
            raise ValueError(f"zetas must be positive integers, got {zetas}")
        self.register_buffer("radial_centres", torch.tensor(radial_centres, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("angular_centres", torch.tensor(angular_centres, dtype=torch.float64),
                             persistent=False)
        self.radial_eta = 0.5 / radial_width**2
        self.angular_eta = 0.5 / angular_width**2
        self.pairs = list(combinations_with_replacement(range(n_species), 2))
        lmax = max(self.zetas)
        # monomials û_x^a û_y^b û_z^c with a+b+c = n ≤ lmax, and their weights n!/(a!b!c!)
        expo, degree, weight = [], [], []
        for n in range(lmax + 1):
            for a in range(n, -1, -1):
                for b in range(n - a, -1, -1):
                    c = n - a - b
                    expo.append((a, b, c))
                    degree.append(n)
                    weight.append(math.factorial(n) / (math.factorial(a) * math.factorial(b)
                                                       * math.factorial(c)))
        self.register_buffer("exponents", torch.tensor(expo, dtype=torch.long), persistent=False)
        # maps Σ_α w_α M M (per monomial) to the angular functions (per ζ, λ)
        shapes = [(z, lam) for z in self.zetas for lam in (1.0, -1.0)]
        to_degree = torch.zeros(len(expo), lmax + 1, dtype=torch.float64)
        weight_t = torch.tensor(weight, dtype=torch.float64)
        to_degree[torch.arange(len(expo)), torch.tensor(degree)] = weight_t
        to_shape = torch.zeros(lmax + 1, len(shapes), dtype=torch.float64)
        self_term = torch.zeros(len(shapes), dtype=torch.float64)
        for k, (z, lam) in enumerate(shapes):
            for n in range(z + 1):
                to_shape[n, k] = 2.0 ** (1 - z) * math.comb(z, n) * lam**n
            self_term[k] = 2.0 ** (1 - z) * (1 + lam) ** z
        self.register_buffer("projection", to_degree @ to_shape, persistent=False)
        self.register_buffer("self_term", self_term, persistent=False)
        self.n_shapes = len(shapes)
        pair_a = torch.tensor([p[0] for p in self.pairs], dtype=torch.long)
        pair_b = torch.tensor([p[1] for p in self.pairs], dtype=torch.long)
        self.register_buffer("pair_a", pair_a, persistent=False)
        self.register_buffer("pair_b", pair_b, persistent=False)
        self.register_buffer("pair_same", (pair_a == pair_b).to(torch.float64), persistent=False)

    @property
    def n_radial_features(self) -> int:
        return self.n_species * len(self.radial_centres)

    @property
    def n_features(self) -> int:
        return self.n_radial_features + len(self.pairs) * len(self.angular_centres) * self.n_shapes

    def forward(self, center: torch.Tensor, neighbor_species: torch.Tensor, r: torch.Tensor,
                unit: torch.Tensor, n_atoms: int) -> torch.Tensor:
        """center [E], neighbor_species [E] (0..n_species-1), r [E] Å, unit [E,3] -> [N, F]."""
        ns = self.n_species
        fc = polynomial_cutoff(r, self.cutoff).unsqueeze(-1)
        slot = center * ns + neighbor_species  # (atom, neighbor element)

        g2 = torch.exp(-self.radial_eta * (r.unsqueeze(-1) - self.radial_centres) ** 2) * fc
        radial = g2.new_zeros(n_atoms * ns, g2.shape[1]).index_add_(0, slot, g2)
        radial = radial.view(n_atoms, -1)

        ga = torch.exp(-self.angular_eta * (r.unsqueeze(-1) - self.angular_centres) ** 2) * fc
        powers = unit.unsqueeze(-1) ** torch.arange(
            int(self.exponents.max()) + 1, device=unit.device, dtype=unit.dtype)  # [E,3,L+1]
        e = self.exponents
        mono = powers[:, 0, e[:, 0]] * powers[:, 1, e[:, 1]] * powers[:, 2, e[:, 2]]  # [E, M]
        n_s, n_m = ga.shape[1], mono.shape[1]
        moments = (ga.unsqueeze(-1) * mono.unsqueeze(1)).reshape(-1, n_s * n_m)
        moments = moments.new_zeros(n_atoms * ns, n_s * n_m).index_add_(0, slot, moments)
        moments = moments.view(n_atoms, ns, n_s, n_m)
        products = moments[:, self.pair_a] * moments[:, self.pair_b]  # [N, P, S, M]
        angular = products @ self.projection.to(products.dtype)  # [N, P, S, shapes]
        # remove j = k (cos θ = 1), present only for pairs of the same element
        g_sq = (ga * ga).new_zeros(n_atoms * ns, n_s).index_add_(0, slot, ga * ga)
        g_sq = g_sq.view(n_atoms, ns, n_s)[:, self.pair_a]  # [N, P, S]
        same = self.pair_same.to(ga.dtype).view(1, -1, 1, 1)
        angular = angular - same * g_sq.unsqueeze(-1) * self.self_term.to(ga.dtype)
        return torch.cat([radial, angular.reshape(n_atoms, -1)], dim=1)
