"""torch.compile of the inference cores (of the BPNN and the equivariant
model, each summed with ZBL): compiled and eager energies, forces and stress
agree; training stays eager."""

from __future__ import annotations

import shutil
from copy import deepcopy

import pytest
import torch
from ase.build import bulk, molecule

from mlipkit.data import from_atoms
from mlipkit.models import ScaleShift, SumPotential
from mlipkit.models.checkpoint import load, save
from mlipkit.models.equivariant import Equivariant
from mlipkit.physics import ZBL
from tests.conftest import (
    CU_REF,
    ETHANOL_REFS,
    build_potential,
    molecule_fit_frames,
    rattled,
    triclinic_cu,
)

pytestmark = pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                                reason="torch.compile on CPU needs a C++ compiler")


def boxed(name):
    atoms = molecule(name)
    atoms.rattle(0.05, seed=2)
    atoms.set_cell([9.0, 9.5, 10.0])
    atoms.center()
    atoms.pbc = True
    return atoms


def bpnn_case():
    pot = build_potential(["H", "C", "O"], molecule_fit_frames(), ETHANOL_REFS, torch.float64)
    return pot, [boxed("CH3CH2OH"), boxed("CH3OH")]


def bpnn_copper_case():
    # one element and over 16 atoms: the shapes where inductor once fused a transposed
    # product's backward into a kernel that wrote out of bounds (see wide_matmul)
    cell = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    pot = build_potential(["Cu"], rattled(cell, 4, 0.1), CU_REF, torch.float64)
    return pot, [triclinic_cu(), rattled(cell, 1, 0.1, seed=9)[0]]


def equivariant_case():
    torch.manual_seed(4)
    # one layer keeps the compile time of the test short
    net = Equivariant(["Cu"], cutoff=4.0, channels=8, l_max=1, sh_lmax=2, n_layers=1,
                      correlation=2, n_bessel=6, radial_hidden=[16])
    pot = SumPotential(ScaleShift(net, scale=0.5, shift=CU_REF), ZBL()).double()
    rattled = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1)
    rattled.rattle(0.1, seed=1)
    return pot, [triclinic_cu(), rattled]


@pytest.mark.parametrize("case", [bpnn_case, bpnn_copper_case, equivariant_case],
                         ids=["bpnn", "bpnn-copper", "equivariant"])
def test_compiled_inference_agrees_with_eager(case, tmp_path):
    from torch._dynamo.utils import counters

    pot, structures = case()
    save(pot, tmp_path / "model.safetensors")
    eager = load(tmp_path / "model.safetensors")
    compiled = load(tmp_path / "model.safetensors", compile=True)
    counters.clear()
    for atoms in structures:  # two sizes: shapes are dynamic
        batch = from_atoms(atoms)
        a, b = eager(batch, stress=True), compiled(batch, stress=True)
        for key in ("energy", "forces", "stress"):
            torch.testing.assert_close(b[key], a[key], rtol=1e-10, atol=1e-10)
    assert counters["stats"]["calls_captured"] > 0  # the compiled code ran
    # training differentiates twice, which compiled code cannot: it stays eager
    batch = from_atoms(structures[-1])
    for pot in (eager, compiled):
        pot.zero_grad()
        pot(batch, training=True)["forces"].square().sum().backward()
    for p, q in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-10, atol=1e-12)
    # a copy compiles its own code, with its own weights
    copy = deepcopy(compiled)
    with torch.no_grad():
        for p in copy.parameters():
            p.mul_(1.5)
    reference = compiled(batch)["energy"]
    torch.testing.assert_close(compiled(batch)["energy"], reference, rtol=0, atol=0)
    assert (copy(batch)["energy"] - reference).abs().max() > 1e-3
