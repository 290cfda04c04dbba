"""Shared fixtures: BPNN+ZBL potentials with standardisation fitted on data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from mlipkit.data import from_atoms
from mlipkit.models import BehlerParrinello, ScaleShift, SumPotential
from mlipkit.physics import ZBL

ETHANOL_REFS = {"H": -13.6, "C": -1029.5, "O": -2041.0}
CU_REF = {"Cu": -1300.0}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, min_bytes=5_000, max_bytes=1_000_000):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert min_bytes < len(data) < max_bytes, f"{path}: {len(data)} bytes"


def rattled(atoms, n, amplitude, seed=0):
    out = []
    for k in range(n):
        a = atoms.copy()
        a.rattle(amplitude, seed=seed + k)
        out.append(a)
    return out


def ethanol_frames(n=6):
    return rattled(molecule("CH3CH2OH"), n, 0.08)


def molecule_fit_frames():
    """A spread of geometries, as training data would have, for the descriptor statistics."""
    frames = rattled(molecule("CH3CH2OH"), 8, 0.25, seed=100)
    frames += rattled(molecule("H2O"), 4, 0.3, seed=200)
    frames += rattled(molecule("CH3OH"), 4, 0.3, seed=300)
    return frames


def triclinic_cu(repeat=(2, 1, 1), seed=1):
    """A small, skewed Cu cell: shorter than twice the cutoff in every direction."""
    atoms = bulk("Cu", "fcc", a=3.6) * repeat
    skew = np.array([[0.0, 0.2, 0.1], [0.1, 0.0, 0.3], [0.0, 0.2, 0.0]])
    atoms.set_cell(atoms.cell.array + skew, scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    return atoms


def build_potential(species, frames, refs, dtype, cutoff=4.0, seed=0, descriptor=None):
    torch.manual_seed(seed)
    bp = BehlerParrinello(species, cutoff=cutoff, hidden=(32, 32), descriptor=descriptor)
    bp.fit_standardization([from_atoms(a) for a in frames])
    return SumPotential(ScaleShift(bp, scale=0.5, shift=refs), ZBL()).to(dtype)


@pytest.fixture(scope="session", params=[torch.float64, torch.float32], ids=["f64", "f32"])
def dtype(request):
    return request.param


@pytest.fixture(scope="session")
def molecule_potential_factory():
    cache = {}

    def make(dtype):
        if dtype not in cache:
            cache[dtype] = build_potential(["H", "C", "O"], molecule_fit_frames(), ETHANOL_REFS,
                                           dtype)
        return cache[dtype]

    return make


@pytest.fixture(scope="session")
def bulk_potential_factory():
    cache = {}

    def make(dtype):
        if dtype not in cache:
            frames = [triclinic_cu(seed=s) for s in range(4)]
            frames += [triclinic_cu(repeat=(1, 1, 1), seed=s) for s in range(4)]
            for a in frames[::2]:
                a.rattle(0.15, seed=7)
            cache[dtype] = build_potential(["Cu"], frames, CU_REF, dtype)
        return cache[dtype]

    return make


@pytest.fixture
def molecule_potential(molecule_potential_factory, dtype):
    return molecule_potential_factory(dtype)


@pytest.fixture
def bulk_potential(bulk_potential_factory, dtype):
    return bulk_potential_factory(dtype)


@pytest.fixture(scope="session")
def one_thread():
    """Run torch on one thread: on tiny models two threads only add synchronisation."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
