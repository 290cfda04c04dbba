"""The SOAP-like power spectrum against a brute-force sum over neighbour pairs
(Legendre polynomials, no spherical harmonics), and its invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from scipy.special import eval_legendre

from mlipkit.descriptors.soap import PowerSpectrum

CUTOFF = 4.0


def _cluster(seed=0, n=9):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(-2.2, 2.2, size=(n, 3))
    species = rng.integers(0, 2, size=n)
    return positions, species


def _edges(positions, cutoff=CUTOFF + 1.0):
    """All pairs within ``cutoff`` (beyond the descriptor cutoff, as a list with a skin)."""
    n = len(positions)
    i, j = np.nonzero((np.linalg.norm(positions[:, None] - positions[None], axis=-1) < cutoff)
                      & ~np.eye(n, dtype=bool))
    return i, j


def _features(ps, positions, species):
    i, j = _edges(positions)
    vec = torch.tensor(positions[j] - positions[i])
    return ps(torch.tensor(i), torch.tensor(species[j]), vec, len(positions))


def _brute_force(ps, positions, species):
    """p[(a,n),(b,k),l] = Σ_{j∈a} Σ_{k'∈b} g_n(r_j) g_k(r_k') P_l(cos θ), pair by pair."""
    centres = ps.centres.numpy()
    d = ps.n_species * ps.n_radial

    def g(r):
        x = min(r / CUTOFF, 1.0)
        return np.exp(-ps.eta * (r - centres) ** 2) * (1 - 10 * x**3 + 15 * x**4 - 6 * x**5)

    out = []
    for c in range(len(positions)):
        p = np.zeros((ps.l_max + 1, d, d))
        neighbors = [j for j in range(len(positions)) if j != c
                     and np.linalg.norm(positions[j] - positions[c]) < CUTOFF]
        for j in neighbors:
            for k in neighbors:
                u, v = positions[j] - positions[c], positions[k] - positions[c]
                ru, rv = np.linalg.norm(u), np.linalg.norm(v)
                cos = np.clip(u @ v / (ru * rv), -1, 1)
                radial = np.outer(g(ru), g(rv))
                a, b = species[j], species[k]
                for l in range(ps.l_max + 1):
                    block = p[l, a * ps.n_radial : (a + 1) * ps.n_radial,
                              b * ps.n_radial : (b + 1) * ps.n_radial]
                    block += radial * eval_legendre(l, cos)
        rows, cols = np.triu_indices(d)
        out.append(np.concatenate([p[l][rows, cols] for l in range(ps.l_max + 1)]))
    return np.array(out)


def test_power_spectrum_equals_the_pair_sum():
    positions, species = _cluster()
    ps = PowerSpectrum(2, CUTOFF, n_radial=4, l_max=3)
    features = _features(ps, positions, species)
    assert features.shape == (len(positions), ps.n_features) == (9, 4 * 36)
    expected = _brute_force(ps, positions, species)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(features.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_invariant_under_rotation_reflection_and_permutation():
    positions, species = _cluster(seed=1)
    ps = PowerSpectrum(2, CUTOFF, n_radial=3, l_max=4)
    reference = _features(ps, positions, species)
    rotation = Rotation.random(random_state=3).as_matrix()
    for transform in (rotation, -rotation):  # proper and improper
        moved = positions @ transform.T + np.array([0.3, -1.0, 2.0])
        torch.testing.assert_close(_features(ps, moved, species), reference,
                                   rtol=1e-10, atol=1e-12)
    order = np.random.default_rng(4).permutation(len(positions))
    permuted = _features(ps, positions[order], species[order])
    torch.testing.assert_close(permuted, reference[order], rtol=1e-10, atol=1e-12)


def test_smooth_at_the_cutoff_and_differentiable():
    ps = PowerSpectrum(1, CUTOFF, n_radial=3, l_max=2)
    base = np.array([[0.0, 0.0, 0.0], [1.2, 0.0, 0.0], [0.0, 1.3, 0.2]])
    species = np.zeros(4, dtype=int)
    values = []
    for r in (CUTOFF - 1e-3, CUTOFF + 1e-3):  # a fourth atom crossing the cutoff of atom 0
        positions = np.vstack([base, [[0.0, 0.0, r]]])
        values.append(_features(ps, positions, species)[0])
    torch.testing.assert_close(values[0], values[1], rtol=0, atol=1e-9)

    positions, species = _cluster(seed=2, n=5)
    i, j = _edges(positions)
    vec = torch.tensor(positions[j] - positions[i], requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v: ps(torch.tensor(i), torch.tensor(species[j] * 0), v, len(positions)), (vec,))


def test_edge_jacobian_equals_autograd():
    positions, species = _cluster(seed=5, n=6)
    ps = PowerSpectrum(2, CUTOFF, n_radial=3, l_max=3)
    i, j = _edges(positions)
    vec = torch.tensor(positions[j] - positions[i])
    center, neighbor = torch.tensor(i), torch.tensor(species[j])
    features, jacobian = ps.with_jacobian(center, neighbor, vec, len(positions))
    torch.testing.assert_close(features, ps(center, neighbor, vec, len(positions)))
    full = torch.autograd.functional.jacobian(
        lambda v: ps(center, neighbor, v, len(positions)), vec)  # [N, F, E, 3]
    expected = full[center, :, torch.arange(len(i))]  # d G_center(e) / d vec_e: [E, F, 3]
    assert jacobian.shape == expected.shape and float(expected.abs().max()) > 0.1
    torch.testing.assert_close(jacobian, expected, rtol=1e-10, atol=1e-12)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="l_max"):
        PowerSpectrum(1, CUTOFF, l_max=-1)
