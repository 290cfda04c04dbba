"""Atom-centred symmetry functions (Behler–Parrinello), element resolved.

Radial functions (G2) and angular functions (G5 form)::

    G2_i[e, s]       = Σ_{j∈e} g_s(r_ij)
    G5_i[e1e2, s, ζλ] = 2^{1-ζ} Σ_{j∈e1} Σ_{k∈e2, k≠j} (1 + λ cos θ_jik)^ζ g_s(r_ij) g_s(r_ik)

with g_s(r) = exp(-η_s (r - r_s)²) f_c(r) and the C² polynomial cutoff f_c.
Optionally, four-body terms couple three neighbours through the second
moments A_i[e, s] = Σ_{j∈e} g_s(r_ij) û_ij û_ijᵀ (Gaussian-moment style)::

    G4b_i[e1e2e3, s] = tr(A[e1, s] A[e2, s] A[e3, s])
                     = Σ_{j∈e1, k∈e2, l∈e3} g g g (û_j·û_k)(û_k·û_l)(û_l·û_j)

(symmetric in e1, e2, e3; sums include repeated neighbours).

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
                       zetas: tuple[int, ...] = (1, 2, 4),
                       angular_range: float | None = None, four_body: bool = False) -> dict:
    """A parameter set generated from the cutoff: evenly spaced Gaussians whose
    width equals their spacing, and ζ ∈ {1, 2, 4} with λ = ±1. The angular
    Gaussians are centred up to ``angular_range`` Å (default: cutoff − 1);
    a shorter range resolves the bonded geometry more finely. ``four_body``
    adds the three-neighbour terms on the angular Gaussians."""
    r0 = min(0.8, 0.25 * cutoff)
    last = cutoff - 1.0 if angular_range is None else float(angular_range)
    if angular_range is not None and not r0 < last <= cutoff:
        raise ValueError(f"angular_range must be in ({r0:g}, {cutoff:g}] Å, got {last:g}")
    radial_centres = torch.linspace(r0, cutoff - 0.5, n_radial).tolist()
    angular_centres = torch.linspace(r0, last, n_angular_radial).tolist()
    return dict(
        radial_centres=radial_centres,
        radial_width=_spacing(radial_centres, cutoff),
        angular_centres=angular_centres,
        angular_width=_spacing(angular_centres, cutoff),
        zetas=list(zetas),
        four_body=bool(four_body),
    )


def _spacing(centres: list[float], cutoff: float) -> float:
    return centres[1] - centres[0] if len(centres) > 1 else cutoff / 2


class ACSF(nn.Module):
    """Element-resolved G2 + G5 descriptors.

    Takes per-edge data (center index, neighbor species index, distance and
    unit vector) and gives features [N, n_features].
    """

    def __init__(self, n_species: int, cutoff: float, radial_centres, radial_width: float,
                 angular_centres, angular_width: float, zetas, four_body: bool = False) -> None:
        super().__init__()
        self.n_species = n_species
        self.cutoff = float(cutoff)
        self.zetas = [int(z) for z in zetas]
        if any(z < 1 for z in self.zetas):
            raise ValueError(f"zetas must be positive integers, got {zetas}")
        self.four_body = bool(four_body)
        self.register_buffer("radial_centres", torch.tensor(radial_centres, dtype=torch.float64),
                             persistent=False)
        self.register_buffer("angular_centres", torch.tensor(angular_centres, dtype=torch.float64),
                             persistent=False)
        self.radial_eta = 0.5 / radial_width**2
        self.angular_eta = 0.5 / angular_width**2
        # radial (G2) then angular Gaussians, evaluated in one pass
        self.register_buffer("gauss_centres", torch.cat([self.radial_centres,
                                                         self.angular_centres]), persistent=False)
        self.register_buffer("gauss_eta", torch.cat([
            torch.full((len(radial_centres),), self.radial_eta, dtype=torch.float64),
            torch.full((len(angular_centres),), self.angular_eta, dtype=torch.float64)]),
            persistent=False)
        self.pairs = list(combinations_with_replacement(range(n_species), 2))
        lmax = max(*self.zetas, 2 if self.four_body else 1)
        # monomials û_x^a û_y^b û_z^c of degree n ≤ lmax in the order _monomials builds
        # them, with their multinomial weights n!/(a!b!c!)
        expo = _monomial_exponents(lmax)
        degree = [sum(e) for e in expo]
        weight = [math.factorial(sum(e)) / math.prod(math.factorial(k) for k in e) for e in expo]
        self.lmax = lmax
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
        # four-body: species triples, and the degree-2 monomials as a 3x3 matrix
        self.triples = (list(combinations_with_replacement(range(n_species), 3))
                        if self.four_body else [])
        if self.four_body:
            self.register_buffer("triple_index", torch.tensor(self.triples).T, persistent=False)
            xx, xy, xz, yy, yz, zz = (expo.index(e) for e in ((2, 0, 0), (1, 1, 0), (1, 0, 1),
                                                               (0, 2, 0), (0, 1, 1), (0, 0, 2)))
            self.register_buffer("matrix_index",
                                 torch.tensor([xx, xy, xz, xy, yy, yz, xz, yz, zz]),
                                 persistent=False)

    @property
    def n_radial_features(self) -> int:
        return self.n_species * len(self.radial_centres)

    @property
    def n_features(self) -> int:
        n_s = len(self.angular_centres)
        return (self.n_radial_features + len(self.pairs) * n_s * self.n_shapes
                + len(self.triples) * n_s)

    def _second_moments(self, moments: torch.Tensor) -> torch.Tensor:
        """[..., M] monomial moments -> [..., 3, 3] second-moment matrices."""
        return moments.index_select(-1, self.matrix_index).unflatten(-1, (3, 3))

    def _triple_factors(self, second: torch.Tensor) -> list[torch.Tensor]:
        """The three matrices of every species triple: [N, T, n_s, 3, 3] each."""
        return [second.index_select(1, idx) for idx in self.triple_index]

    def forward(self, center: torch.Tensor, neighbor_species: torch.Tensor, vec: torch.Tensor,
                n_atoms: int) -> torch.Tensor:
        """center [E], neighbor_species [E] (0..n_species-1), vec [E,3] Å -> [N, F].

        Edges are first laid out densely as [N, K] (K = most neighbors of any
        atom; padding sits at the cutoff, where the cutoff function is zero),
        so every per-neighbor sum is a batched matrix product.
        """
        k_max, slot = neighbor_slots(center, n_atoms)
        vec_pad, onehot = pad_neighbors(center * k_max + slot, neighbor_species, vec, n_atoms,
                                        k_max, self.n_species, self.cutoff)
        return self.padded(vec_pad, onehot)

    def with_jacobian(self, center: torch.Tensor, neighbor_species: torch.Tensor,
                      vec: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Features [N, F] and their derivatives with respect to every edge
        vector, ∂G_center(e) / ∂vec_e as [E, F, 3].

        Per-neighbor terms are differentiated in forward mode (they depend on
        one edge each); the angular products by the product rule,
        ∂(M_a·M_b) = ∂M_a·M_b + M_a·∂M_b, with ∂M_e nonzero only for the
        neighbor's own element.
        """
        k_max, slot = neighbor_slots(center, n_atoms)
        vec_pad, onehot = pad_neighbors(center * k_max + slot, neighbor_species, vec, n_atoms,
                                        k_max, self.n_species, self.cutoff)
        n = n_atoms
        n_r = self.radial_centres.shape[0]
        features = self.padded(vec_pad, onehot)

        def per_neighbor(v):
            gauss = self._gaussians(torch.linalg.vector_norm(v, dim=-1))
            ga = gauss[..., n_r:]
            unit = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)
            terms = ga.unsqueeze(-1) * _monomials(unit, self.lmax).unsqueeze(-2)
            return gauss[..., :n_r], terms, ga * ga

        derivs = []
        for c in range(3):
            direction = torch.zeros_like(vec_pad)
            direction[..., c] = 1.0
            values, d = torch.func.jvp(per_neighbor, (vec_pad,), (direction,))
            derivs.append(d)
        d_radial, d_terms, d_sq = (torch.stack(x, dim=2) for x in zip(*derivs))  # [N, K, 3, ...]
        # radial: ∂G2[e, s] / ∂v_kc = onehot[k, e] ∂g_s(r_k) / ∂v_kc
        radial = onehot.view(n, k_max, 1, -1, 1) * d_radial.unsqueeze(3)  # [N, K, 3, ns, n_r]
        # angular: T[s, (k, c), e', h] = Σ_α ∂(g_s û^α)_kc M[e', s, α] projection[α, h]
        moments = torch.einsum("nke,nksa->nesa", onehot, values[1])
        q = torch.einsum("nesa,ah->nsaeh", moments, self.projection.to(vec.dtype))
        q = q.reshape(n, moments.shape[2], moments.shape[3], -1)  # [N, n_s, M, ns * shapes]
        d_t = d_terms.permute(0, 3, 1, 2, 4).reshape(n, d_terms.shape[3], 3 * k_max, -1)
        t = (d_t @ q).view(n, -1, k_max, 3, self.n_species, self.n_shapes)  # [N, n_s, K, 3, ...]
        t = t.permute(0, 2, 3, 4, 1, 5)  # [N, K, 3, ns, n_s, shapes]
        on_a = onehot.index_select(2, self.pair_a).view(n, k_max, 1, -1, 1, 1)  # [N, K, 1, P, ..]
        on_b = onehot.index_select(2, self.pair_b).view(n, k_max, 1, -1, 1, 1)
        angular = on_a * t.index_select(3, self.pair_b) + on_b * t.index_select(3, self.pair_a)
        same = on_a * self.pair_same.to(vec.dtype).view(1, 1, 1, -1, 1, 1)
        angular = angular - same * d_sq.view(n, k_max, 3, 1, -1, 1) * self.self_term.to(vec.dtype)
        parts = [radial.reshape(n, k_max, 3, -1), angular.reshape(n, k_max, 3, -1)]
        if self.four_body:
            # ∂tr(ABC) = <∂A, (BC)ᵀ> + <∂B, (CA)ᵀ> + <∂C, (AB)ᵀ>, ∂ of a neighbour's own element
            a, b, c = self._triple_factors(self._second_moments(moments))
            d_second = self._second_moments(d_terms)  # [N, K, 3, n_s, 3, 3]
            four = 0.0
            for idx, (x, y) in zip(self.triple_index, ((b, c), (c, a), (a, b))):
                partner = (x @ y).transpose(-2, -1)  # [N, T, n_s, 3, 3]
                on = onehot.index_select(2, idx).view(n, k_max, 1, -1, 1)  # [N, K, 1, T, 1]
                four = four + on * torch.einsum("nkcsij,ntsij->nkcts", d_second, partner)
            parts.append(four.reshape(n, k_max, 3, -1))
        jac = torch.cat(parts, -1)
        return features, jac[center, slot].transpose(1, 2)

    def _gaussians(self, r: torch.Tensor) -> torch.Tensor:
        """Radial then angular Gaussians times the cutoff function: [..., n_r + n_s]."""
        fc = polynomial_cutoff(r, self.cutoff).unsqueeze(-1)
        return torch.exp(-self.gauss_eta * (r.unsqueeze(-1) - self.gauss_centres) ** 2) * fc

    def padded(self, vec_pad: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Features [N, F] from neighbor slots [N, K, 3] and their species [N, K, ns]."""
        n_atoms, ns = vec_pad.shape[0], self.n_species
        r = torch.linalg.vector_norm(vec_pad, dim=-1)  # [N, K]
        unit = vec_pad * (1.0 / r).unsqueeze(-1)
        weights = onehot.transpose(1, 2)  # [N, ns, K]
        gauss = self._gaussians(r)  # radial (G2) and angular Gaussians: [N, K, n_r + n_s]
        n_r = self.radial_centres.shape[0]
        radial = torch.bmm(weights, gauss[..., :n_r]).reshape(n_atoms, -1)  # [N, ns * n_r]
        ga = gauss[..., n_r:]
        n_s = ga.shape[-1]
        # per (element, radial) weights for every neighbor: [N, ns * n_s, K]
        wg = (weights.unsqueeze(2) * ga.transpose(1, 2).unsqueeze(1)).reshape(n_atoms, ns * n_s, -1)
        moments = torch.bmm(wg, _monomials(unit, self.lmax))  # [N, ns*n_s, M]
        moments = moments.view(n_atoms, ns, n_s, -1)
        # index_select: its backward (index_add) is much cheaper than advanced indexing's
        products = moments.index_select(1, self.pair_a) * moments.index_select(1, self.pair_b)
        angular = wide_matmul(products, self.projection.to(products.dtype))  # [N, P, n_s, shapes]
        # remove j = k (cos θ = 1), present only for pairs of the same element
        g_sq = torch.bmm(weights, ga * ga).index_select(1, self.pair_a)  # [N, P, n_s]
        same = self.pair_same.to(ga.dtype).view(1, -1, 1, 1)
        angular = angular - same * g_sq.unsqueeze(-1) * self.self_term.to(ga.dtype)
        parts = [radial, angular.reshape(n_atoms, -1)]
        if self.four_body:
            a, b, c = self._triple_factors(self._second_moments(moments))
            parts.append(((a @ b) * c).sum((-2, -1)).reshape(n_atoms, -1))  # C symmetric
        return torch.cat(parts, dim=1)


class _WideMatmul(torch.autograd.Function):
    """x [..., A] @ w [A, H] computed as (wᵀ xᵀ)ᵀ, forward and backward.

    For many rows and few columns, BLAS's row-major kernel (and the layout
    autograd picks for the backward of a transposed product) can be several
    times slower than the same product with the long axis last.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # x is needed only for w's gradient (a fixed projection has none)
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, w)
        rows = x.reshape(-1, x.shape[-1])
        return torch.mm(w.t(), rows.t()).t().reshape(*x.shape[:-1], w.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        # through apply again, so second derivatives (force training, Hessians) work
        grad_x = wide_matmul(grad, w.t()) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = x.reshape(-1, x.shape[-1]).t() @ grad.reshape(-1, grad.shape[-1])
        return grad_x, grad_w


def wide_matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w`` for a tall ``x`` [..., A] and a small ``w`` [A, H]; see
    :class:`_WideMatmul`. Under ``torch.compile`` it is the plain product:
    inductor (torch 2.13, CPU) fused the transposed backward into a kernel
    that wrote out of bounds."""
    if torch.compiler.is_compiling():
        return x @ w
    return _WideMatmul.apply(x, w)


def _monomial_exponents(lmax: int) -> list[tuple[int, int, int]]:
    """Exponents (a, b, c) in the order :func:`_monomials` produces them."""
    out = [(0, 0, 0)]
    prev = [(0, 0, 0)]
    for n in range(1, lmax + 1):
        cur = [(a + 1, b, c) for a, b, c in prev]
        cur += [(a, b + 1, c) for a, b, c in prev[-n:]]
        cur += [(0, 0, n)]
        out += cur
        prev = cur
    return out


def _monomials(u: torch.Tensor, lmax: int) -> torch.Tensor:
    """All monomials of the components of u [..., 3] up to degree lmax: [..., M].

    Degree n is x·(degree n-1), then y·(the n monomials without x), then zⁿ,
    built by products of slices so the backward pass stays cheap.
    """
    x, y, z = u[..., 0:1], u[..., 1:2], u[..., 2:3]
    prev = torch.ones_like(x)
    parts = [prev]
    for n in range(1, lmax + 1):
        prev = torch.cat([x * prev, y * prev[..., -n:], z * prev[..., -1:]], dim=-1)
        parts.append(prev)
    return torch.cat(parts, dim=-1)


def pad_neighbors(flat_slot: torch.Tensor, neighbor_species: torch.Tensor, vec: torch.Tensor,
                  n_atoms: int, k_max: int, n_species: int, cutoff: float):
    """Scatter edge vectors into [N, K] neighbor slots (``flat_slot`` =
    center · K + slot, from :func:`neighbor_slots`) with their species one-hot
    [N, K, n_species]; empty slots hold (cutoff, 0, 0), where every term is zero."""
    vec_pad = torch.cat([vec.new_full((n_atoms * k_max, 1), cutoff),
                         vec.new_zeros(n_atoms * k_max, 2)], dim=1)
    vec_pad = vec_pad.index_copy(0, flat_slot, vec)
    onehot = vec.new_zeros(n_atoms * k_max, n_species)
    onehot = onehot.index_put((flat_slot, neighbor_species), vec.new_ones(()))
    return vec_pad.view(n_atoms, k_max, 3), onehot.view(n_atoms, k_max, n_species)


def neighbor_slots(center: torch.Tensor, n_atoms: int) -> tuple[int, torch.Tensor]:
    """K (the most neighbors of any atom, at least 1) and each edge's slot
    among its center's neighbors."""
    n_edges = center.shape[0]
    counts = torch.bincount(center, minlength=n_atoms)
    k_max = max(int(counts.max()) if n_edges else 0, 1)
    start = torch.cumsum(counts, 0) - counts
    position = torch.arange(n_edges, device=center.device)
    if n_edges > 1 and not bool((center[1:] >= center[:-1]).all()):
        order = torch.argsort(center, stable=True)
        slot = torch.empty_like(position)
        slot[order] = position - start[center[order]]
    else:  # neighbor lists come sorted by center
        slot = position - start[center]
    return k_max, slot
