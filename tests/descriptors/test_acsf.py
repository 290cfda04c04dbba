"""ACSF descriptors against a brute-force triplet sum, and their smoothness."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from mlipkit.descriptors.acsf import (
    ACSF,
    _monomial_exponents,
    _monomials,
    default_parameters,
    wide_matmul,
)


def brute_force(pos, species, n_species, cutoff, params):
    """Direct G2 and G5 sums over neighbors and (j, k) pairs, in numpy."""

    def fc(r):
        x = min(r / cutoff, 1.0)
        return 1 - 10 * x**3 + 15 * x**4 - 6 * x**5

    rc, wr = np.array(params["radial_centres"]), params["radial_width"]
    ac, wa = np.array(params["angular_centres"]), params["angular_width"]
    eta_r, eta_a = 0.5 / wr**2, 0.5 / wa**2
    pairs = list(itertools.combinations_with_replacement(range(n_species), 2))
    shapes = [(z, lam) for z in params["zetas"] for lam in (1.0, -1.0)]
    out = []
    for i in range(len(pos)):
        nbrs = [j for j in range(len(pos))
                if j != i and np.linalg.norm(pos[j] - pos[i]) < cutoff]
        g2 = np.zeros((n_species, len(rc)))
        for j in nbrs:
            r = np.linalg.norm(pos[j] - pos[i])
            g2[species[j]] += np.exp(-eta_r * (r - rc) ** 2) * fc(r)
        g5 = np.zeros((len(pairs), len(ac), len(shapes)))
        for p, (e1, e2) in enumerate(pairs):
            for j in nbrs:
                for k in nbrs:
                    if j == k or species[j] != e1 or species[k] != e2:
                        continue
                    rij, rik = pos[j] - pos[i], pos[k] - pos[i]
                    a, b = np.linalg.norm(rij), np.linalg.norm(rik)
                    cos = rij @ rik / (a * b)
                    radial = (np.exp(-eta_a * (a - ac) ** 2) * fc(a)
                              * np.exp(-eta_a * (b - ac) ** 2) * fc(b))
                    for s, (z, lam) in enumerate(shapes):
                        g5[p, :, s] += 2.0 ** (1 - z) * (1 + lam * cos) ** z * radial
        parts = [g2.ravel(), g5.ravel()]
        if params.get("four_body"):
            triples = list(itertools.combinations_with_replacement(range(n_species), 3))
            g4 = np.zeros((len(triples), len(ac)))
            unit = {j: (pos[j] - pos[i]) / np.linalg.norm(pos[j] - pos[i]) for j in nbrs}
            gauss = {j: np.exp(-eta_a * (np.linalg.norm(pos[j] - pos[i]) - ac) ** 2)
                     * fc(np.linalg.norm(pos[j] - pos[i])) for j in nbrs}
            for t, species_t in enumerate(triples):
                for j, k, m in itertools.product(nbrs, repeat=3):  # repeats included
                    if (species[j], species[k], species[m]) != species_t:
                        continue
                    cosines = (unit[j] @ unit[k]) * (unit[k] @ unit[m]) * (unit[m] @ unit[j])
                    g4[t] += cosines * gauss[j] * gauss[k] * gauss[m]
            parts.append(g4.ravel())
        out.append(np.concatenate(parts))
    return np.array(out)


def edges(pos, cutoff):
    i, j = np.nonzero((np.linalg.norm(pos[:, None] - pos[None], axis=-1) < cutoff)
                      & ~np.eye(len(pos), dtype=bool))
    return torch.tensor(i), torch.tensor(j)


@pytest.mark.parametrize("seed, four_body", [(0, False), (1, False), (2, False), (0, True),
                                             (3, True)])
def test_moment_expansion_equals_triplet_sum(seed, four_body):
    rng = np.random.default_rng(seed)
    cutoff = 4.0
    pos = rng.random((8, 3)) * 4.5
    species = rng.integers(0, 3, size=8)
    params = default_parameters(cutoff, n_radial=5, n_angular_radial=3, zetas=(1, 2, 4),
                                four_body=four_body)
    acsf = ACSF(3, cutoff, **params).double()
    i, j = edges(pos, cutoff)
    vec = torch.tensor(pos[j.numpy()] - pos[i.numpy()])
    got = acsf(i, torch.tensor(species)[j], vec, len(pos)).numpy()
    want = brute_force(pos, species, 3, cutoff, params)
    assert got.shape == want.shape == (8, acsf.n_features)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert np.abs(want).max() > 0.1  # the comparison is not between zeros
    if four_body:
        assert np.abs(want[:, -10 * 3:]).max() > 0.1  # 10 species triples x 3 shells


def test_monomials_match_their_exponents():
    u = torch.randn(5, 3, dtype=torch.float64)
    mono = _monomials(u, 4)
    expo = _monomial_exponents(4)
    assert mono.shape == (5, len(expo)) == (5, 35)
    assert len(set(expo)) == 35
    for m, (a, b, c) in enumerate(expo):
        torch.testing.assert_close(mono[:, m], u[:, 0] ** a * u[:, 1] ** b * u[:, 2] ** c)


def test_isolated_atom_and_atom_beyond_cutoff_give_zero_descriptor():
    params = default_parameters(3.0)
    acsf = ACSF(1, 3.0, **params).double()
    vec = torch.tensor([[3.0 + 1e-9, 0.0, 0.0], [-3.0 - 1e-9, 0.0, 0.0]], dtype=torch.float64)
    out = acsf(torch.tensor([0, 1]), torch.tensor([0, 0]), vec, 2)
    assert torch.count_nonzero(out) == 0
    empty = acsf(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                 torch.zeros(0, 3, dtype=torch.float64), 3)
    assert empty.shape == (3, acsf.n_features) and torch.count_nonzero(empty) == 0


@pytest.mark.parametrize("four_body", [False, True])
def test_zeta_one_alone_builds(four_body):
    """ζ = 1 needs only first moments; the four-body terms raise the degree to 2."""
    params = default_parameters(3.0, n_radial=3, n_angular_radial=2, zetas=(1,),
                                four_body=four_body)
    acsf = ACSF(2, 3.0, **params).double()
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0.2, 0], [0.1, 1.1, 0.3]], dtype=torch.float64)
    i, j = edges(pos.numpy(), 3.0)
    out = acsf(i, torch.tensor([0, 1, 1])[j], pos[j] - pos[i], 3)
    assert out.shape == (3, acsf.n_features) == (3, 2 * 3 + 3 * 2 * 2 + 4 * 2 * four_body)


def test_invalid_zeta_rejected():
    params = default_parameters(3.0, zetas=(0, 1))
    with pytest.raises(ValueError, match="zetas"):
        ACSF(1, 3.0, **params)


def test_angular_range_places_the_angular_shells():
    params = default_parameters(6.0, n_angular_radial=8, angular_range=3.5)
    assert params["angular_centres"][0] == pytest.approx(0.8)
    assert params["angular_centres"][-1] == pytest.approx(3.5)
    assert params["angular_width"] == pytest.approx(2.7 / 7)
    assert default_parameters(6.0)["angular_centres"][-1] == pytest.approx(5.0)
    for bad in (0.5, 6.5):
        with pytest.raises(ValueError, match="angular_range"):
            default_parameters(6.0, angular_range=bad)


@pytest.mark.parametrize("seed, four_body", [(0, False), (1, False), (0, True)])
def test_jacobian_equals_autograd(seed, four_body):
    """with_jacobian's per-edge derivatives against a full reverse-mode Jacobian."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 4.0, size=(9, 3))
    species = torch.tensor(rng.integers(0, 3, size=9))
    params = default_parameters(3.5, n_radial=5, n_angular_radial=3, zetas=(1, 2, 5),
                                four_body=four_body)
    acsf = ACSF(3, 3.5, **params).double()
    i, j = edges(pos, 3.5)
    vec = torch.tensor(pos[j.numpy()] - pos[i.numpy()])
    features, jac = acsf.with_jacobian(i, species[j], vec, len(pos))
    full = torch.autograd.functional.jacobian(lambda v: acsf(i, species[j], v, len(pos)), vec)
    expected = full[i, :, torch.arange(len(i))]  # [E, F, 3]: ∂G_i / ∂vec_e for e's center i
    torch.testing.assert_close(features, acsf(i, species[j], vec, len(pos)), rtol=0, atol=0)
    torch.testing.assert_close(jac, expected, rtol=1e-10, atol=1e-12)
    assert expected.abs().max() > 0.1


def test_wide_matmul_equals_matmul_with_first_and_second_derivatives():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(wide_matmul(x, w), x @ w, rtol=0, atol=1e-14)
    assert torch.autograd.gradcheck(wide_matmul, (x, w))
    assert torch.autograd.gradgradcheck(wide_matmul, (x, w))
