"""E(3)-equivariant message passing (NequIP/MACE family) on e3nn.

Each atom carries features h with irreps up to ``l_max``. A layer

1. convolves the neighbours' features with the edge spherical harmonics,
   weighted per edge by a radial MLP of a Bessel basis times a smooth cutoff,
   and sums them over neighbours divided by a fixed ``avg_neighbors`` (so an
   atom's energy never depends on what else is in the batch): A_i;
2. forms the body-ordered product basis of A_i (ACE-style, as in MACE):
   A, A⊗A and (A⊗A)⊗A channel by channel, up to ``correlation``, each
   coupling path weighted per element and channel;
3. mixes it linearly per irrep, applies gated nonlinearities and adds a
   linear self-connection of h.

Every layer's scalars give an energy readout; their sum is the atomic energy.
The value the network gives an isolated atom is subtracted, so reference
energies (added by :class:`ScaleShift`) are the dissociation limit, as for
the BPNN. Forces, stress and Hessians come from ``models/derivatives.py``.

Features are held as ``{(l, p): tensor [N, channels, 2l+1]}`` (p = ±1 the
parity), so that a linear map is one matrix product per irrep and every
coupling is a batched contraction with e3nn's Clebsch–Gordan coefficients
(``wigner_3j``) — no loops over atoms, edges or species. :func:`to_flat` and
:func:`from_flat` convert to e3nn's flat layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

import torch
from ase.data import chemical_symbols
from e3nn import o3
from torch import nn

from mlipkit.data.batch import Batch
from mlipkit.descriptors.cutoff import polynomial_cutoff
from mlipkit.models.base import Capabilities, Potential, local_edges, species_lookup, to_numbers
from mlipkit.models.compiled import CompiledCore

# named hyper-parameter sets; benchmarks/evaluate.py and rmd17.py measure them
PRESETS: dict[str, dict] = {
    "small": dict(channels=32, l_max=1, sh_lmax=2, n_layers=2, correlation=3,
                  n_bessel=8, radial_hidden=[32, 32]),
    "medium": dict(channels=64, l_max=1, sh_lmax=3, n_layers=2, correlation=3,
                   n_bessel=8, radial_hidden=[64, 64]),
    "large": dict(channels=128, l_max=2, sh_lmax=3, n_layers=2, correlation=3,
                  n_bessel=8, radial_hidden=[64, 64, 64]),
}

Key = tuple[int, int]  # (l, parity)
Features = dict[Key, torch.Tensor]  # (l, p) -> [N, channels, 2l+1]

# second moments of SiLU and the sigmoid on N(0, 1) inputs, as e3nn normalises them
_SILU_NORM = 1.6791767923989418
_SIGMOID_NORM = 1.8467055342154763


def natural(l_max: int) -> list[Key]:
    """0e, 1o, 2e, ... up to l_max: the parities of tensors built from positions."""
    return [(l, (-1) ** l) for l in range(l_max + 1)]


def couplings(k1: Key, k2: Key, l_cap: int) -> list[Key]:
    """The irreps in k1 ⊗ k2 with l ≤ l_cap."""
    (l1, p1), (l2, p2) = k1, k2
    return [(l, p1 * p2) for l in range(abs(l1 - l2), min(l1 + l2, l_cap) + 1)]


def to_flat(features: Features, channels: dict[Key, int]) -> torch.Tensor:
    """e3nn's layout: one [channels * (2l+1)] block per key, in ``channels``' order."""
    return torch.cat([features[k].reshape(features[k].shape[0], -1) for k in channels], dim=1)


def from_flat(x: torch.Tensor, channels: dict[Key, int]) -> Features:
    out, start = {}, 0
    for (l, p), c in channels.items():
        out[(l, p)] = x[:, start : start + c * (2 * l + 1)].reshape(x.shape[0], c, 2 * l + 1)
        start += c * (2 * l + 1)
    return out


def irreps(channels: dict[Key, int]) -> o3.Irreps:
    return o3.Irreps([(c, (l, p)) for (l, p), c in channels.items()])


class RadialBasis(nn.Module):
    """sin(nπr/r_c)/r Bessel functions times the C² polynomial cutoff: [E] Å -> [E, n]."""

    def __init__(self, cutoff: float, n: int) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.n = int(n)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        freq = torch.arange(1, self.n + 1, dtype=r.dtype, device=r.device) * (math.pi / self.cutoff)
        bessel = math.sqrt(2.0 / self.cutoff) * torch.sin(freq * r) / r
        return bessel * polynomial_cutoff(r, self.cutoff)


def _mlp(sizes: Sequence[int], bias: bool = True) -> nn.Sequential:
    """SiLU MLP; without biases it maps 0 to 0 (the radial weights then vanish
    with the basis at the cutoff)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b, bias=bias), nn.SiLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
    return nn.Sequential(*layers)


class Constants:
    """Float64 coupling coefficients, kept out of the module's buffers so that
    casting a model to float32 and back never rounds them; the copy for each
    (dtype, device) is made once."""

    def __init__(self) -> None:
        self.masters: list[torch.Tensor] = []
        self._copies: dict[tuple, list[torch.Tensor]] = {}

    def add(self, master: torch.Tensor) -> int:
        self.masters.append(master.to(torch.float64))
        self._copies.clear()
        return len(self.masters) - 1

    def get(self, index: int, like: torch.Tensor) -> torch.Tensor:
        return self.copies(like)[index]

    def copies(self, like: torch.Tensor) -> list[torch.Tensor]:
        key = (like.dtype, like.device)
        if key not in self._copies:
            self._copies[key] = [m.to(device=like.device, dtype=like.dtype) for m in self.masters]
        return self._copies[key]


def _cg(l1: int, l2: int, l_out: int) -> torch.Tensor:
    """Clebsch–Gordan coefficients [2l1+1, 2l2+1, 2l_out+1], scaled so that
    unit-variance inputs give unit-variance outputs (component normalisation)."""
    return o3.wigner_3j(l1, l2, l_out, dtype=torch.float64) * math.sqrt(2 * l_out + 1)


class IrrepsLinear(nn.Module):
    """A linear map of the channels of each irrep present in both ``irreps_in``
    and ``irreps_out`` ({key: channels}); other output irreps are zero."""

    def __init__(self, irreps_in: dict[Key, int], irreps_out: dict[Key, int]) -> None:
        super().__init__()
        self.irreps_in, self.irreps_out = dict(irreps_in), dict(irreps_out)
        self.weights = nn.ParameterDict()
        for key, c_out in self.irreps_out.items():
            if key in self.irreps_in:
                c_in = self.irreps_in[key]
                self.weights[_name(key)] = nn.Parameter(torch.randn(c_in, c_out) / math.sqrt(c_in))

    def forward(self, x: Features) -> Features:
        out = {}
        for key, c_out in self.irreps_out.items():
            name = _name(key)
            if name in self.weights:
                out[key] = torch.einsum("ncm,cd->ndm", x[key], self.weights[name])
            else:
                ref = next(iter(x.values()))
                out[key] = ref.new_zeros(ref.shape[0], c_out, 2 * key[0] + 1)
        return out


def _name(key: Key) -> str:
    return f"{key[0]}{'e' if key[1] == 1 else 'o'}"


class Convolution(nn.Module):
    """Neighbour features ⊗ edge spherical harmonics, summed per atom.

    Takes h {key: [N, C, 2l+1]}, sh [E, Σ(2l+1)] (l = 0..sh_lmax), radial
    features [E, n_basis] and edges (receiver i, sender j); gives A with C
    channels of every natural irrep up to sh_lmax.

    Every coupling path (l1 ⊗ l2 -> l) is channel-wise, weighted per edge and
    channel by the radial MLP. The Clebsch–Gordan coefficients are contracted
    with each edge's harmonics first, giving one [Σ(2l+1), 2l1+1] coupling per
    edge for all paths leaving an input irrep; edge tensors keep channels last.
    """

    def __init__(self, irreps_in: dict[Key, int], sh_lmax: int, channels: int,
                 radial_sizes: Sequence[int], avg_neighbors: float) -> None:
        super().__init__()
        self.irreps_in = dict(irreps_in)
        if any(c != channels for c in self.irreps_in.values()):
            raise ValueError(f"every input irrep needs {channels} channels: {self.irreps_in}")
        self.channels = channels
        self.avg_neighbors = float(avg_neighbors)
        self.linear_up = IrrepsLinear(self.irreps_in, self.irreps_in)
        target = natural(sh_lmax)
        sh_keys = natural(sh_lmax)
        sh_start = [l * l for l in range(sh_lmax + 2)]
        dim_sh = (sh_lmax + 1) ** 2
        self.blocks: list[tuple[Key, list[Key]]] = []  # per input irrep: its paths' outputs
        self.cg = Constants()
        n_paths = 0
        for k, key_in in enumerate(self.irreps_in):
            l1 = key_in[0]
            cg_blocks, outs, path_index = [], [], []
            for key_sh in sh_keys:
                l2 = key_sh[0]
                for key_out in couplings(key_in, key_sh, sh_lmax):
                    if key_out not in target:
                        continue
                    full = torch.zeros(2 * l1 + 1, dim_sh, 2 * key_out[0] + 1,
                                       dtype=torch.float64)
                    full[:, sh_start[l2] : sh_start[l2 + 1], :] = _cg(l1, l2, key_out[0])
                    cg_blocks.append(full)
                    outs.append(key_out)
                    path_index += [n_paths] * (2 * key_out[0] + 1)
                    n_paths += 1
            # [dim_sh, Σ dim_out * dim_in]: Y @ cg is the coupling [E, Σ dim_out, dim_in]
            cg = torch.cat(cg_blocks, dim=2).permute(1, 2, 0).reshape(dim_sh, -1)
            self.cg.add(cg)
            self.register_buffer(f"path{k}", torch.tensor(path_index), persistent=False)
            self.blocks.append((key_in, outs))
        self.n_paths = n_paths
        self.radial = _mlp([*radial_sizes, channels * n_paths], bias=False)
        mid: dict[Key, int] = {}
        for _, outs in self.blocks:
            for key in outs:
                mid[key] = mid.get(key, 0) + channels
        self.linear = IrrepsLinear(mid, {key: channels for key in target})
        self.irreps_out = self.linear.irreps_out

    def forward(self, h: Features, sh: torch.Tensor, radial: torch.Tensor,
                receiver: torch.Tensor, sender: torch.Tensor) -> Features:
        u, n_edges = self.channels, sh.shape[0]
        n = next(iter(h.values())).shape[0]
        h = self.linear_up(h)
        # channels last, all irreps side by side, then one gather over the edges
        dims = [2 * key[0] + 1 for key, _ in self.blocks]
        h_t = torch.cat([h[key].transpose(1, 2) for key, _ in self.blocks], dim=1)
        h_t = h_t.index_select(0, sender)  # [E, Σ(2l1+1), u]
        weights = self.radial(radial).view(n_edges, self.n_paths, u)
        mid: dict[Key, list[torch.Tensor]] = {}
        for k, (x, (_, outs)) in enumerate(zip(h_t.split(dims, dim=1), self.blocks)):
            cg = self.cg.get(k, sh)
            coupling = (sh @ cg).view(n_edges, cg.shape[1] // x.shape[1], x.shape[1])
            # [E, Σ(2l+1), u]; scalar inputs need no sum, only a broadcast product
            messages = coupling * x if x.shape[1] == 1 else torch.bmm(coupling, x)
            messages = messages * weights.index_select(1, getattr(self, f"path{k}"))
            summed = messages.new_zeros(n, messages.shape[1], u).index_add(0, receiver, messages)
            for key, block in zip(outs, summed.split([2 * o[0] + 1 for o in outs], dim=1)):
                mid.setdefault(key, []).append(block.transpose(1, 2))
        scale = 1.0 / self.avg_neighbors
        return self.linear({key: torch.cat(blocks, dim=1) * scale for key, blocks in mid.items()})


class ProductBasis(nn.Module):
    """Body-ordered features of A {key: [N, C, 2l+1]} (natural irreps): A, A⊗A,
    (A⊗A)⊗A up to ``correlation``, channel by channel, every coupling path
    weighted per element and channel. Intermediate products keep every irrep
    up to A's l (they feed the next order); the output holds, for the irreps in
    ``target``, the products of every order side by side along the channels.

    Each order multiplies the previous order's features of one irrep k1 with
    all of A at once: A is contracted with the coefficients of every path
    leaving k1 (one matrix product), then with the k1 features (one batched
    product); the weights of an output irrep are applied once per order.
    """

    def __init__(self, irreps_in: dict[Key, int], target: Sequence[Key], n_species: int,
                 correlation: int) -> None:
        super().__init__()
        if correlation < 1:
            raise ValueError(f"correlation must be >= 1, got {correlation}")
        self.irreps_in = dict(irreps_in)
        channels = set(self.irreps_in.values())
        if len(channels) != 1:
            raise ValueError(f"every irrep of A needs the same channels: {self.irreps_in}")
        self.channels = channels.pop()
        self.target = list(target)
        l_cap = max(l for l, _ in self.irreps_in)
        keys_a = list(self.irreps_in)
        start = [0, *accumulate(2 * l + 1 for l, _ in keys_a)]
        # per order > 1 and key k1 of the previous order: (k1, [(output key, paths)],
        # index of the coefficients [dim A, (2l1+1) Σ paths (2l+1)] in self.cg)
        self.orders: list[list[tuple[Key, list[tuple[Key, int]], int]]] = []
        self.weights = nn.ParameterDict()  # per order and output key: [ns, C, groups]
        self.cg = Constants()
        # per order, the groups of C channels of each key
        self.groups: list[dict[Key, int]] = [{key: 1 for key in self.irreps_in}]
        for order in range(2, correlation + 1):
            last = order == correlation
            steps, new_groups = [], {}
            groups = self.groups[-1]
            for k1 in groups:
                blocks: dict[Key, list[torch.Tensor]] = {}  # output key -> [d1, dim A, d_out]
                for j, k2 in enumerate(keys_a):
                    if order == 2 and j < keys_a.index(k1):  # A⊗A is symmetric
                        continue
                    outs = [k for k in couplings(k1, k2, l_cap) if not last or k in self.target]
                    if order == 2 and k1 == k2:  # x⊗x channel by channel: odd l vanish
                        outs = [k for k in outs if k[0] % 2 == 0]
                    for k in outs:
                        block = torch.zeros(2 * k1[0] + 1, start[-1], 2 * k[0] + 1,
                                            dtype=torch.float64)
                        block[:, start[j] : start[j + 1]] = _cg(k1[0], k2[0], k[0])
                        blocks.setdefault(k, []).append(block)
                if not blocks:
                    continue
                cg = torch.cat([b for bs in blocks.values() for b in bs], dim=2)
                outs = [(k, len(bs)) for k, bs in blocks.items()]
                steps.append((k1, outs, self.cg.add(cg.transpose(0, 1).reshape(start[-1], -1))))
                for k, paths in outs:
                    new_groups[k] = new_groups.get(k, 0) + groups[k1] * paths
            for k, g in new_groups.items():
                self.weights[f"{order}_{_name(k)}"] = nn.Parameter(
                    torch.randn(n_species, self.channels, g))
            self.orders.append(steps)
            self.groups.append(new_groups)
        self.irreps_out = {key: self.channels * sum(g.get(key, 0) for g in self.groups)
                           for key in self.target}

    def forward(self, a: Features, species: torch.Tensor) -> Features:
        n, u = next(iter(a.values())).shape[0], self.channels
        a_all = torch.cat([a[key] for key in self.irreps_in], dim=-1).reshape(n * u, -1)
        result = {key: [a[key]] for key in self.target if key in a}
        current = {key: x.unsqueeze(2) for key, x in a.items()}  # [N, C, groups, 2l+1]
        for order, steps in enumerate(self.orders, start=2):
            new: dict[Key, list[torch.Tensor]] = {}
            for k1, outs, index in steps:
                x1 = current[k1]  # [N, C, g, d1]
                right = (a_all @ self.cg.get(index, a_all)).view(n, u, x1.shape[-1], -1)
                coupled = torch.matmul(x1, right)  # [N, C, g, M]
                sizes = [paths * (2 * k[0] + 1) for k, paths in outs]
                for (k, _), block in zip(outs, coupled.split(sizes, dim=-1)):
                    new.setdefault(k, []).append(block.reshape(n, u, -1, 2 * k[0] + 1))
            current = {}
            for k, blocks in new.items():
                w = self.weights[f"{order}_{_name(k)}"].index_select(0, species)
                current[k] = torch.cat(blocks, dim=2) * w.unsqueeze(-1)
                if k in self.target:
                    result.setdefault(k, []).append(current[k].flatten(1, 2))
        return {key: torch.cat(blocks, dim=1) for key, blocks in result.items()}


class Update(nn.Module):
    """New features from the product basis B and the old h:
    gate(linear(B)) + linear(h), with C channels of every irrep in ``target``.

    Scalars pass through SiLU; every higher irrep channel is scaled by the
    sigmoid of a scalar gate of its own.
    """

    def __init__(self, irreps_b: dict[Key, int], irreps_h: dict[Key, int], target: Sequence[Key],
                 channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gated = [key for key in target if key[0] > 0]
        pre = {key: channels for key in target}
        pre[(0, 1)] = channels * (1 + len(self.gated))
        self.linear = IrrepsLinear(irreps_b, pre)
        self.skip = IrrepsLinear(irreps_h, {key: channels for key in target})
        self.irreps_out = {key: channels for key in target}

    def forward(self, b: Features, h: Features) -> Features:
        x = self.linear(b)
        skip = self.skip(h)
        c = self.channels
        scalars = x[(0, 1)]
        out = {(0, 1): _SILU_NORM * torch.nn.functional.silu(scalars[:, :c]) + skip[(0, 1)]}
        gates = _SIGMOID_NORM * torch.sigmoid(scalars[:, c:])
        for k, key in enumerate(self.gated):
            out[key] = x[key] * gates[:, k * c : (k + 1) * c] + skip[key]
        return out


class Equivariant(CompiledCore, Potential):
    """E(3)-equivariant message-passing potential (see the module docstring).

    Args:
        species: element symbols or atomic numbers.
        cutoff: neighbour cutoff in Å.
        channels: features per irrep.
        l_max: highest l of the atom features between layers.
        sh_lmax: highest l of the edge spherical harmonics (and of A).
        n_layers: interaction layers (the last carries scalars only).
        correlation: body order of the product basis (3 as in MACE).
        n_bessel: radial basis functions.
        radial_hidden: hidden widths of the radial MLP.
        avg_neighbors: divisor of the neighbour sums (set from training data).
    """

    type_name = "equivariant"

    def __init__(self, species: Sequence[str | int], cutoff: float = 5.0, channels: int = 32,
                 l_max: int = 1, sh_lmax: int = 2, n_layers: int = 2, correlation: int = 3,
                 n_bessel: int = 8, radial_hidden: Sequence[int] = (32, 32),
                 avg_neighbors: float = 10.0) -> None:
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if avg_neighbors <= 0:
            raise ValueError(f"avg_neighbors must be positive, got {avg_neighbors}")
        if not 0 <= l_max <= sh_lmax:
            raise ValueError(f"need 0 <= l_max <= sh_lmax, got l_max={l_max}, sh_lmax={sh_lmax}")
        self.species = to_numbers(species)
        self.settings = dict(cutoff=float(cutoff), channels=int(channels), l_max=int(l_max),
                             sh_lmax=int(sh_lmax), n_layers=int(n_layers),
                             correlation=int(correlation), n_bessel=int(n_bessel),
                             radial_hidden=[int(x) for x in radial_hidden],
                             avg_neighbors=float(avg_neighbors))
        self.cutoff = float(cutoff)
        ns = len(self.species)
        self.register_buffer("lookup", species_lookup(self.species), persistent=False)
        self.embedding = nn.Embedding(ns, channels)
        self.sh = o3.SphericalHarmonics(o3.Irreps.spherical_harmonics(sh_lmax), normalize=True,
                                        normalization="component")
        self.radial = RadialBasis(cutoff, n_bessel)
        radial_sizes = [n_bessel, *self.settings["radial_hidden"]]
        irreps_h = {(0, 1): channels}
        self.convolutions = nn.ModuleList()
        self.products = nn.ModuleList()
        self.updates = nn.ModuleList()
        self.readouts = nn.ModuleList()
        for layer in range(n_layers):
            last = layer == n_layers - 1
            target = natural(0 if last else l_max)
            conv = Convolution(irreps_h, sh_lmax, channels, radial_sizes, avg_neighbors)
            product = ProductBasis(conv.irreps_out, target, ns, correlation)
            update = Update(product.irreps_out, irreps_h, target, channels)
            self.convolutions.append(conv)
            self.products.append(product)
            self.updates.append(update)
            self.readouts.append(_mlp([channels, 16, 1]) if last else nn.Linear(channels, 1,
                                                                               bias=False))
            irreps_h = update.irreps_out
        # coupling coefficients of every block, filled per dtype/device outside compiled code
        self._constants = [m.cg for m in self.modules() if isinstance(getattr(m, "cg", None),
                                                                        Constants)]
        self.to(torch.get_default_dtype())

    def config(self) -> dict:
        return {"type": self.type_name, "species": [chemical_symbols[z] for z in self.species],
                **self.settings}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(species=tuple(self.species), cutoff=self.cutoff, dtype=self.dtype)

    def _core(self, species: torch.Tensor, edges) -> torch.Tensor:
        """Atomic energies [N]; ``edges`` is (sh, radial, receiver, sender), or
        None for isolated atoms (no neighbours: A = 0)."""
        h = {(0, 1): self.embedding(species).unsqueeze(-1)}
        energy = h[(0, 1)].new_zeros(species.shape[0])
        for conv, product, update, readout in zip(self.convolutions, self.products,
                                                  self.updates, self.readouts):
            if edges is None:
                a = {key: h[(0, 1)].new_zeros(species.shape[0], c, 2 * key[0] + 1)
                     for key, c in conv.irreps_out.items()}
            else:
                a = conv(h, *edges)
            h = update(product(a, species), h)
            energy = energy + readout(h[(0, 1)][..., 0]).squeeze(-1)
        return energy

    def atomic_energies(self, batch: Batch) -> torch.Tensor:
        species = self.lookup[batch.numbers]
        edge_index, vec, r = local_edges(batch, self.cutoff)
        receiver, sender = edge_index
        if self.compiling():
            for constants in self._constants:  # compiled code must not fill them
                constants.copies(vec)
        energy = self.inference_core()(species, (self.sh(vec), self.radial(r), receiver, sender))
        every = torch.arange(len(self.species), device=species.device)
        return energy - self._core(every, None).index_select(0, species)
