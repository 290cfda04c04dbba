"""Training with cached descriptors and ZBL terms gives the same energies,
forces, stress and parameter gradients as computing them every step."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule

from mlipkit.data import Batch, from_atoms
from mlipkit.descriptors.acsf import default_parameters
from mlipkit.training.data import cache_fixed_terms, prepare
from tests.conftest import CU_REF, ETHANOL_REFS, build_potential, ethanol_frames, triclinic_cu


def _gradients(model, batch, stress):
    out = model(batch, forces=True, stress=stress, training=True)
    loss = out["energy"].pow(2).sum() + out["forces"].pow(2).sum()
    if stress:
        loss = loss + out["stress"].pow(2).sum()
    model.zero_grad()
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return {k: v.detach() for k, v in out.items()}, grads


@pytest.mark.parametrize("system", ["molecules", "molecules-four-body", "periodic"])
def test_cached_descriptors_match_direct(system):
    if system.startswith("molecules"):
        atoms = ethanol_frames(3) + [molecule("CH3OH")]
        descriptor = default_parameters(4.0, four_body=system.endswith("four-body"))
        model = build_potential(["H", "C", "O"], atoms, ETHANOL_REFS, torch.float64,
                                descriptor=descriptor)
    else:
        atoms = [triclinic_cu(seed=s) for s in range(3)]
        model = build_potential(["Cu"], atoms, CU_REF, torch.float64)
    stress = system == "periodic"
    batches = prepare([from_atoms(a) for a in atoms], model.capabilities.cutoff, torch.float64)
    cached = cache_fixed_terms(model, batches, limit_gib=1.0, chunk=2)
    assert all("descriptor_jacobian" in b and "zbl_edge_gradient" in b for b in cached)
    direct_out, direct_grads = _gradients(model, Batch.collate(batches), stress)
    cached_out, cached_grads = _gradients(model, Batch.collate(cached), stress)
    for key in direct_out:
        torch.testing.assert_close(cached_out[key], direct_out[key], rtol=1e-10, atol=1e-10)
    assert len(direct_grads) == len(cached_grads) > 0
    for a, b in zip(direct_grads, cached_grads):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)


def test_cache_skipped_over_its_memory_limit():
    atoms = ethanol_frames(2)
    model = build_potential(["H", "C", "O"], atoms, ETHANOL_REFS, torch.float64)
    batches = prepare([from_atoms(a) for a in atoms], model.capabilities.cutoff, torch.float64)
    for limit in (1e-6, 0):
        cached = cache_fixed_terms(model, batches, limit_gib=limit)
        assert not any("descriptors" in b for b in cached)
        assert all("zbl_energies" in b for b in cached)  # small: always cached


@pytest.mark.parametrize("periodic", [False, True])
def test_cached_zbl_matches_direct(periodic):
    """Atoms squeezed to where ZBL repels: energies, forces and stress from the
    cached terms equal the direct ones, and the potential is not trivial."""
    from ase import Atoms

    from mlipkit.physics import ZBL

    if periodic:
        atoms = [triclinic_cu(seed=s) for s in range(2)]
        for a in atoms:
            a.set_cell(a.cell * 0.55, scale_atoms=True)
    else:
        atoms = [Atoms("CHHO", positions=[[0, 0, 0], [0.5, 0, 0], [0, 0.45, 0.1],
                                          [0.1, 0.2, 0.7]])]
    model = ZBL().to(torch.float64)
    batches = prepare([from_atoms(a) for a in atoms], model.cutoff, torch.float64)
    cached = cache_fixed_terms(model, batches, limit_gib=1.0, chunk=1)
    assert all("zbl_edge_gradient" in b for b in cached)
    direct = model(Batch.collate(batches), stress=periodic)
    from_cache = model(Batch.collate(cached), stress=periodic)
    assert float(direct["forces"].abs().max()) > 1.0
    for key in direct:
        torch.testing.assert_close(from_cache[key], direct[key], rtol=1e-10, atol=1e-10)
