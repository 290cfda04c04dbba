import os
import time
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from mlipkit.data import (
    Batch,
    fit_reference_energies,
    from_atoms,
    label_statistics,
    read,
    read_db,
    read_extxyz,
    read_rmd17,
    species_of,
    write_db,
    write_extxyz,
)
from mlipkit.data.dataset import composition
from mlipkit.errors import InvalidStructure, MissingLabel, UnknownSpecies

RMD17 = Path("/work/shared/data/rmd17/rmd17_ethanol_train_01.npz")
KCAL = 0.0433641  # eV per kcal/mol, as written in the rMD17 README


def _labelled(seed, hessian=False):
    """A small triclinic periodic structure with random labels, as a Batch."""
    rng = np.random.default_rng(seed)
    atoms = bulk("NaCl", "rocksalt", a=5.6) * (1, 1, 2)
    atoms.cell = atoms.cell.array + 0.1 * rng.normal(size=(3, 3))
    atoms.rattle(0.1, seed=seed)
    n = len(atoms)
    labels = dict(
        energy=rng.normal(-10, 1), forces=rng.normal(size=(n, 3)), stress=rng.normal(size=6)
    )
    if hessian:
        h = rng.normal(size=(3 * n, 3 * n))
        labels["hessian"] = h + h.T
    return from_atoms(atoms, labels=labels)


def _molecule_frames():
    """Molecules carrying reference labels under REF_* keys and decoy calculator labels."""
    frames = []
    for k, name in enumerate(["H2O", "CH4", "NH3"]):
        a = molecule(name)
        a.info["REF_energy"] = -1.5 * (k + 1)
        a.arrays["REF_forces"] = np.full((len(a), 3), 0.25 * (k + 1))
        a.calc = SinglePointCalculator(a, energy=99.0, forces=np.zeros((len(a), 3)))
        frames.append(a)
    return frames


def _assert_close(a: Batch, b: Batch, atol):
    assert set(a.keys()) == set(b.keys())
    for k in a.keys():
        assert a[k].dtype == b[k].dtype, k
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


# -- extxyz -------------------------------------------------------------------
def test_extxyz_round_trip_default_keys(tmp_path):
    batches = [_labelled(s, hessian=True) for s in range(3)]
    path = tmp_path / "data.xyz"
    write_extxyz(path, batches)
    back = read_extxyz(path, hessian_key="hessian", require=("energy", "forces", "stress"))
    assert len(back) == 3
    for a, b in zip(batches, back):
        # ASE writes per-atom columns with 8 decimals; everything else is exact
        _assert_close(a, b, atol=5e-9)
        for k in ("energy", "stress", "cell", "hessian", "numbers", "pbc"):
            assert torch.equal(a[k], b[k]), k
    # no temporary files left next to the result
    assert [p.name for p in tmp_path.iterdir()] == ["data.xyz"]


def test_extxyz_one_collated_batch_and_no_hessian_by_default(tmp_path):
    batches = [_labelled(s, hessian=True) for s in range(2)]
    write_extxyz(tmp_path / "c.extxyz", Batch.collate(batches))
    back = read(tmp_path / "c.extxyz")
    assert len(back) == 2
    assert "hessian" not in back[0]  # hessian_key=None: never read
    assert torch.equal(back[1].energy, batches[1].energy)


def test_extxyz_custom_keys(tmp_path):
    path = tmp_path / "ref.xyz"
    ase.io.write(path, _molecule_frames(), format="extxyz")
    back = read_extxyz(path, energy_key="REF_energy", forces_key="REF_forces", stress_key=None)
    assert [b.energy.item() for b in back] == [-1.5, -3.0, -4.5]
    assert torch.all(back[1].forces == 0.5) and back[1].forces.shape == (5, 3)
    # the default keys find the calculator's (decoy) labels instead
    plain = read_extxyz(path)
    assert plain[0].energy.item() == 99.0 and torch.all(plain[0].forces == 0)


def test_extxyz_stress_layouts(tmp_path):
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    full = np.array([[1.0, 0.6, 0.5], [0.6, 2.0, 0.4], [0.5, 0.4, 3.0]])
    a.info["S9"] = full.reshape(-1)  # nine numbers, as many datasets store it
    a.info["S33"] = full
    a.info["S6"] = np.array([1.0, 2.0, 3.0, 0.4, 0.5, 0.6])
    path = tmp_path / "s.xyz"
    ase.io.write(path, a, format="extxyz")
    for key in ("S9", "S33", "S6"):
        (b,) = read_extxyz(path, stress_key=key, require=("stress",))
        assert torch.equal(b.stress[0], torch.tensor(full)), key


def test_extxyz_missing_label_message(tmp_path):
    frames = _molecule_frames()
    del frames[1].arrays["REF_forces"]
    path = tmp_path / "gap.xyz"
    ase.io.write(path, frames, format="extxyz")
    kw = dict(energy_key="REF_energy", forces_key="REF_forces")
    with pytest.raises(MissingLabel) as info:
        read_extxyz(path, **kw)
    msg = str(info.value)
    assert str(path) in msg and "frame 1" in msg and "'REF_forces'" in msg
    assert "REF_energy" in msg  # names the keys the frame does have
    # with a selection, the frame number is still the file's
    with pytest.raises(MissingLabel, match="frame 1"):
        read_extxyz(path, index="1:", **kw)
    # not required: the label is simply left out of that frame
    got = read_extxyz(path, require=("energy",), **kw)
    assert ["forces" in b for b in got] == [True, False, True]
    # a required label with no key is a configuration error
    with pytest.raises(ValueError, match="stress_key is None"):
        read_extxyz(path, stress_key=None, require=("stress",))


def test_extxyz_index(tmp_path):
    path = tmp_path / "ref.xyz"
    ase.io.write(path, _molecule_frames(), format="extxyz")
    kw = dict(energy_key="REF_energy", forces_key="REF_forces")
    assert [b.energy.item() for b in read_extxyz(path, index=-1, **kw)] == [-4.5]
    assert [b.energy.item() for b in read_extxyz(path, index="::2", **kw)] == [-1.5, -4.5]


def test_extxyz_nan_positions(tmp_path):
    path = tmp_path / "nan.xyz"
    path.write_text(
        "1\nenergy=1.0\nH 0 0 0\n"
        "2\nenergy=2.0\nH 0 0 0\nH nan 0 0\n"
    )
    with pytest.raises(InvalidStructure) as info:
        read_extxyz(path, require=("energy",))
    assert str(path) in str(info.value) and "frame 1" in str(info.value)


def test_missing_file(tmp_path):
    for suffix in (".xyz", ".db", ".npz"):
        path = tmp_path / f"absent{suffix}"
        with pytest.raises(FileNotFoundError, match="absent"):
            read(path)
        assert not path.exists()  # ase.db.connect would have created it


def test_extxyz_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "keep.xyz"
    write_extxyz(path, [_labelled(0)])
    before = path.read_text()

    def broken(fileobj, images, **kwargs):
        fileobj.write("3\npartial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ase.io, "write", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_extxyz(path, [_labelled(1)])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keep.xyz"]


# -- ase.db -------------------------------------------------------------------
def test_db_round_trip_is_exact(tmp_path):
    batches = [_labelled(s, hessian=True) for s in range(3)]
    batches.append(from_atoms(molecule("CH4"), labels={"energy": -3.0, "forces": np.ones((5, 3))}))
    path = tmp_path / "data.db"
    write_db(path, batches)
    back = read_db(path, hessian_key="hessian")
    assert len(back) == 4
    for a, b in zip(batches, back):
        _assert_close(a, b, atol=0)
    assert "stress" not in back[3] and "hessian" not in back[3]
    # selection by ase.db query
    assert [b.n_total_atoms for b in read_db(path, selection="natoms=5")] == [5]


def test_db_replace_and_append(tmp_path):
    path = tmp_path / "d.db"
    write_db(path, [_labelled(0), _labelled(1)])
    write_db(path, [_labelled(2)])
    assert len(read(path)) == 1
    write_db(path, Batch.collate([_labelled(3), _labelled(4)]), append=True)
    back = read(path)
    assert [b.energy.item() for b in back] == [
        _labelled(s).energy.item() for s in (2, 3, 4)
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["d.db"]


def test_db_custom_keys_and_missing_label(tmp_path):
    path = tmp_path / "ref.db"
    db = ase.db.connect(path)
    for k, a in enumerate(_molecule_frames()):
        e, f = a.info.pop("REF_energy"), a.arrays.pop("REF_forces")
        data = {"REF_forces": f} if k != 2 else {}
        db.write(a, key_value_pairs={"REF_energy": e}, data=data)
    kw = dict(energy_key="REF_energy", forces_key="REF_forces")
    with pytest.raises(MissingLabel) as info:
        read_db(path, **kw)
    msg = str(info.value)
    assert str(path) in msg and "row id=3" in msg and "'REF_forces'" in msg
    assert "REF_energy" in msg and "energy" in msg
    back = read_db(path, require=("energy",), **kw)
    assert [b.energy.item() for b in back] == [-1.5, -3.0, -4.5]
    assert torch.all(back[0].forces == 0.25) and "forces" not in back[2]


# -- rMD17 --------------------------------------------------------------------
@pytest.mark.skipif(not RMD17.exists(), reason="rMD17 data not present")
def test_rmd17_ethanol_units():
    raw = np.load(RMD17)
    t0 = time.perf_counter()
    frames = read_rmd17(RMD17)
    elapsed = time.perf_counter() - t0
    assert len(frames) == 1000
    assert elapsed < 1.0, f"reading 1000 frames took {elapsed:.2f} s"
    b = frames[0]
    assert b.numbers.tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    assert torch.equal(b.positions, torch.tensor(raw["coords"][0]))
    # frame 0 checked by hand against the README's 1 kcal/mol = 0.0433641 eV
    np.testing.assert_allclose(b.energy.item(), raw["energies"][0] * KCAL, rtol=1e-6)
    np.testing.assert_allclose(b.energy.item(), -97079.92222179 * KCAL, rtol=1e-6)
    np.testing.assert_allclose(b.forces.numpy(), raw["forces"][0] * KCAL, rtol=1e-6)
    assert torch.all(b.cell == 0) and not b.pbc.any()
    # frames own their storage (pickling one frame must not drag the whole file along)
    assert b.positions.untyped_storage().nbytes() == 9 * 3 * 8


@pytest.mark.skipif(not RMD17.exists(), reason="rMD17 data not present")
def test_rmd17_indices_dtype_and_dispatch():
    raw = np.load(RMD17)
    frames = read(RMD17, indices=[5, -1], dtype=torch.float32)
    assert len(frames) == 2 and frames[0].positions.dtype == torch.float32
    assert torch.equal(frames[1].positions, torch.tensor(raw["coords"][-1], dtype=torch.float32))
    assert len(read_rmd17(RMD17, indices=slice(10, 20))) == 10
    (seventh,) = read_rmd17(RMD17, indices=7)
    np.testing.assert_allclose(seventh.energy.item(), raw["energies"][7] * KCAL, rtol=1e-6)
    with pytest.raises(IndexError):
        read_rmd17(RMD17, indices=[1000])


def test_rmd17_bad_files(tmp_path):
    coords = np.zeros((3, 2, 3))
    coords[:, 1, 0] = 1.0
    coords[2, 0, 1] = np.nan
    good = dict(nuclear_charges=np.array([1, 1]), coords=coords, energies=np.zeros(3),
                forces=np.zeros((3, 2, 3)))
    np.savez(tmp_path / "nan.npz", **good)
    with pytest.raises(InvalidStructure, match=r"nan\.npz frame 2"):
        read_rmd17(tmp_path / "nan.npz")
    assert len(read_rmd17(tmp_path / "nan.npz", indices=[0, 1])) == 2
    np.savez(tmp_path / "other.npz", R=coords)
    with pytest.raises(MissingLabel, match="not an rMD17 file.*energies"):
        read_rmd17(tmp_path / "other.npz")


def test_read_dispatch(tmp_path):
    write_extxyz(tmp_path / "a.xyz", [_labelled(0)])
    write_db(tmp_path / "a.db", [_labelled(0)])
    assert torch.equal(read(tmp_path / "a.xyz")[0].energy, read(tmp_path / "a.db")[0].energy)
    (tmp_path / "a.cif").write_text("")
    with pytest.raises(ValueError, match=r"\.xyz.*\.db.*\.npz"):
        read(tmp_path / "a.cif")


# -- dataset statistics ---------------------------------------------------------
E_REF = {1: -13.6, 6: -1029.5, 8: -2041.25}


def _synthetic(n=12, seed=0, noise=None):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        counts = rng.integers(1, 5, 3)
        numbers = np.repeat([1, 6, 8], counts)
        atoms = Atoms(numbers=numbers, positions=rng.uniform(0, 8, (len(numbers), 3)))
        e = sum(E_REF[z] for z in numbers)
        if noise is not None:
            e += len(numbers) * noise[k]
        forces = np.full((len(numbers), 3), 2.0)
        out.append(from_atoms(atoms, labels={"energy": e, "forces": forces}))
    return out


def test_fit_reference_energies_recovers_known_values():
    batches = _synthetic()
    assert species_of(batches) == [1, 6, 8]
    fit = fit_reference_energies(batches)
    assert fit.keys() == E_REF.keys()
    for z in E_REF:
        assert fit[z] == pytest.approx(E_REF[z], abs=1e-9)
    # collated or not, the same answer
    fit2 = fit_reference_energies([Batch.collate(batches[:5]), Batch.collate(batches[5:])])
    assert fit2 == pytest.approx(fit, abs=1e-9)
    stats = label_statistics(batches, fit)
    assert stats["energy_per_atom_std"] < 1e-10
    assert stats["forces_rms"] == pytest.approx(2.0)
    assert stats["n_structures"] == 12


def test_label_statistics_known_residuals():
    noise = np.linspace(-0.3, 0.5, 10)
    batches = _synthetic(10, seed=3, noise=noise)
    stats = label_statistics(batches, E_REF)
    assert stats["energy_per_atom_mean"] == pytest.approx(noise.mean(), abs=1e-9)
    assert stats["energy_per_atom_std"] == pytest.approx(noise.std(), abs=1e-9)
    assert stats["n_atoms"] == sum(b.n_total_atoms for b in batches)
    no_forces = [b.without("forces") for b in batches]
    assert label_statistics(no_forces, E_REF)["forces_rms"] is None


def test_single_composition_gives_minimum_norm_fit():
    # one molecule (as in rMD17): rank deficient; lstsq gives e_z ∝ n_z, fitting the mean
    rng = np.random.default_rng(1)
    base = molecule("CH3CH2OH")
    energies = -4000.0 + rng.normal(0, 0.1, 6)
    batches = [from_atoms(base, labels={"energy": e}) for e in energies]
    fit = fit_reference_energies(batches)
    counts = composition(batches, [1, 6, 8])[0]
    np.testing.assert_allclose(counts, [6, 2, 1])
    expected = counts * energies.mean() / (counts @ counts)
    np.testing.assert_allclose([fit[z] for z in (1, 6, 8)], expected, rtol=1e-12)
    assert label_statistics(batches, fit)["energy_per_atom_mean"] == pytest.approx(0, abs=1e-10)


def test_dataset_errors():
    batches = _synthetic(4)
    with pytest.raises(MissingLabel, match="batch 2 has no energy"):
        fit_reference_energies(batches[:2] + [batches[2].without("energy")])
    with pytest.raises(UnknownSpecies, match=r"\[8\]"):
        fit_reference_energies(batches, species=[1, 6])
    with pytest.raises(UnknownSpecies):
        label_statistics(batches, {1: 0.0, 6: 0.0})
    with pytest.raises(ValueError):
        fit_reference_energies([])


def test_written_files_are_readable_by_others(tmp_path):
    write_extxyz(tmp_path / "p.xyz", [_labelled(0)])
    assert os.stat(tmp_path / "p.xyz").st_mode & 0o044 == 0o044
