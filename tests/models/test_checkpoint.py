"""Model files: safetensors + JSON metadata, exact round trips, and refusal of
anything that is not an untampered mlipkit file (pickles above all)."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import struct

import numpy as np
import pytest
import torch
from ase.build import molecule
from safetensors import safe_open
from safetensors.torch import save_file

import mlipkit
from mlipkit.data import from_atoms
from mlipkit.errors import InvalidModelFile
from mlipkit.models import BehlerParrinello, ScaleShift, SumPotential
from mlipkit.models.checkpoint import read_metadata, tensor_digest
from mlipkit.physics import ZBL

SHIFT = {"H": -13.6, "C": -1029.0, "O": -2040.0}


def build_potential() -> SumPotential:
    torch.manual_seed(0)
    bpnn = BehlerParrinello(["H", "C", "O"], cutoff=4.0)
    # non-default standardisation statistics, so that buffers must survive too
    structures = [molecule("CH3CH2OH"), molecule("H2O"), molecule("CH4"), molecule("CO2")]
    bpnn.fit_standardization([from_atoms(a) for a in structures])
    return SumPotential(ScaleShift(bpnn, shift=SHIFT), ZBL())


def ethanol_geometries():
    eq = molecule("CH3CH2OH")
    squeezed = eq.copy()
    # compressed so that ZBL's switching region is reached and it contributes
    squeezed.set_positions(eq.get_positions() * 0.55)
    return [eq, squeezed]


def evaluate(pot, atoms, dtype):
    out = pot(from_atoms(atoms, dtype), forces=True)
    return out["energy"].detach(), out["forces"].detach()


def header(path) -> tuple[int, dict]:
    data = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return n, json.loads(data[8 : 8 + n])


def leftovers(directory, keep) -> list[str]:
    return sorted(p.name for p in pathlib.Path(directory).iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def potential():
    return build_potential()


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any attempt to unpickle during a load fails the test outright."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a model file was unpickled")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)


# -- exact round trips --------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_round_trip_is_exact(potential, tmp_path, dtype, no_unpickling):
    pot = potential.to(dtype)
    path = tmp_path / "model.safetensors"
    assert mlipkit.save(pot, path) == path
    loaded = mlipkit.load(path)
    assert type(loaded) is SumPotential
    assert loaded.config() == pot.config()
    assert loaded.dtype == dtype
    # every floating tensor keeps its dtype; every tensor its exact value
    before, after = pot.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert after[k].dtype == v.dtype, k
        assert torch.equal(after[k], v), k
    for atoms in ethanol_geometries():
        e0, f0 = evaluate(pot, atoms, dtype)
        e1, f1 = evaluate(loaded, atoms, dtype)
        assert torch.isfinite(e0).all() and torch.isfinite(f0).all()
        assert torch.equal(e0, e1)  # zero difference
        assert torch.equal(f0, f1)


def test_zbl_contributes_on_compressed_ethanol(potential):
    # guards the round-trip test above: ZBL's tensors and config are exercised
    zbl = potential.terms[1].double()
    _, squeezed = ethanol_geometries()
    e, _ = evaluate(zbl, squeezed, torch.float64)
    assert float(e[0]) > 1.0


def test_float64_survives_round_trip(potential, tmp_path):
    pot = potential.double()
    path = mlipkit.save(pot, tmp_path / "m.safetensors")
    assert read_metadata(path)["dtype"] == "float64"
    with safe_open(str(path), framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float64}
    loaded = mlipkit.load(path)
    assert loaded.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    assert all(b.dtype == torch.float64 for b in loaded.buffers() if b.is_floating_point())


# -- the file format ------------------------------------------------------------
def test_file_is_safetensors_with_metadata(potential, tmp_path):
    pot = potential.double()
    path = mlipkit.save(pot, tmp_path / "m.safetensors", extra={"note": "test"})
    # the raw layout: u64 little-endian header length, JSON header, data
    n, head = header(path)
    size = path.stat().st_size
    data_len = max(end for k, v in head.items() if k != "__metadata__"
                   for end in [v["data_offsets"][1]])
    assert 8 + n + data_len == size
    meta_raw = head["__metadata__"]
    assert set(meta_raw) == {"mlipkit"}
    meta = json.loads(meta_raw["mlipkit"])
    assert meta == read_metadata(path)
    for key in ("config", "species", "cutoff", "units", "sha256"):
        assert key in meta, key
    assert meta["config"] == pot.config()
    assert meta["config"]["type"] == "sum"
    assert meta["species"] == ["H", "C", "O"]
    assert meta["cutoff"] == pytest.approx(pot.capabilities.cutoff)
    assert meta["cutoff"] >= 4.0
    assert meta["units"]["energy"] == "eV" and meta["units"]["length"] == "Å"
    assert meta["extra"] == {"note": "test"}
    assert meta["versions"]["mlipkit"] == mlipkit.__version__
    # the sha256 covers the tensors actually stored, read with safetensors itself
    with safe_open(str(path), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    assert len(meta["sha256"]) == 64 and int(meta["sha256"], 16) >= 0
    assert meta["sha256"] == tensor_digest(stored)
    assert stored.keys() == pot.state_dict().keys()
    for k, v in pot.state_dict().items():
        assert torch.equal(stored[k], v), k


def test_save_returns_path_and_creates_parent_dirs(potential, tmp_path):
    path = tmp_path / "a" / "b" / "m.safetensors"
    assert mlipkit.save(potential, str(path)) == path
    assert path.is_file()


@pytest.mark.parametrize("low_byte", [0x78, 0x80, 0x88])
def test_any_header_length_loads(tmp_path, low_byte):
    """A valid file must load whatever its header length: a length whose first
    little-endian byte is 0x80 looks like the start of a pickle, but the file
    is still safetensors."""
    zbl = ZBL().double()
    path = tmp_path / "zbl.safetensors"
    for pad in range(0, 400):
        mlipkit.save(zbl, path, extra={"pad": "x" * pad})
        if path.read_bytes()[0] == low_byte:
            break
    else:
        pytest.fail(f"could not produce a header length with low byte {low_byte:#x}")
    loaded = mlipkit.load(path)
    assert loaded.config() == zbl.config()
    assert torch.equal(loaded.radii, zbl.radii)


# -- atomic writes --------------------------------------------------------------
def test_write_leaves_no_temp_files(potential, tmp_path):
    path = tmp_path / "m.safetensors"
    mlipkit.save(potential, path)
    mlipkit.save(potential, path)  # overwriting is atomic too
    assert leftovers(tmp_path, keep=set()) == ["m.safetensors"]


def test_failed_write_keeps_the_old_file(potential, tmp_path, monkeypatch):
    import mlipkit.models.checkpoint as checkpoint

    path = tmp_path / "m.safetensors"
    mlipkit.save(potential, path)
    original = path.read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        pathlib.Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken_save_file)
    with pytest.raises(OSError, match="disk full"):
        mlipkit.save(potential, path)
    assert path.read_bytes() == original
    assert leftovers(tmp_path, keep=set()) == ["m.safetensors"]


# -- refusals -------------------------------------------------------------------
class _Touch:
    """Unpickling this object creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class _EvilModule(torch.nn.Module):
    def __init__(self, marker):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))
        self.payload = _Touch(marker)


def _write_torch_zip(obj, path):
    torch.save(obj, path)


def _write_torch_legacy(obj, path):
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def _pickler(protocol):
    def write(obj, path):
        with open(path, "wb") as fh:
            pickle.dump(obj, fh, protocol=protocol)

    return write


@pytest.mark.parametrize(
    "write",
    [_write_torch_zip, _write_torch_legacy, _pickler(0), _pickler(2), _pickler(5)],
    ids=["torch.save", "torch.save-legacy", "pickle-0", "pickle-2", "pickle-5"],
)
def test_pickled_files_are_refused_without_running_them(tmp_path, write, no_unpickling):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.safetensors"
    write(_EvilModule(marker), path)
    assert not marker.exists()  # writing does not trigger the payload
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)
    assert not marker.exists()
    with pytest.raises(InvalidModelFile):
        read_metadata(path)
    assert not marker.exists()


def test_torch_save_message_says_what_to_do(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(_EvilModule(tmp_path / "MARKER"), path)
    with pytest.raises(InvalidModelFile, match="mlipkit.save"):
        mlipkit.load(path)
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_flipped_tensor_byte_is_refused(potential, tmp_path, dtype):
    path = mlipkit.save(potential.to(dtype), tmp_path / "m.safetensors")
    n, head = header(path)
    data = bytearray(path.read_bytes())
    # a byte in the middle of the largest tensor's data
    name, info = max(((k, v) for k, v in head.items() if k != "__metadata__"),
                     key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
    start, end = info["data_offsets"]
    pos = 8 + n + (start + end) // 2
    data[pos] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFile, match="sha256"):
        mlipkit.load(path)


def test_tampered_config_is_refused(potential, tmp_path):
    """The sha256 covers the tensors only; a config edited so that it no longer
    fits them (other layer widths) must still be refused with a named error."""
    path = mlipkit.save(potential.double(), tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["mlipkit"])
    meta["config"]["terms"][0]["inner"]["hidden"] = [8]
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, str(bad), metadata={"mlipkit": json.dumps(meta)})
    with pytest.raises(InvalidModelFile):
        mlipkit.load(bad)


@pytest.mark.parametrize("keep", ["empty", "4 bytes", "8 bytes", "in header", "half", "all but 1"])
def test_truncated_file_is_refused(potential, tmp_path, keep):
    path = mlipkit.save(potential.double(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    n, _ = header(path)
    length = {"empty": 0, "4 bytes": 4, "8 bytes": 8, "in header": 8 + n // 2,
              "half": len(data) // 2, "all but 1": len(data) - 1}[keep]
    path.write_bytes(data[:length])
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_bytes_are_refused(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "noise.safetensors"
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)


def test_random_bytes_after_valid_length_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "noise.safetensors"
    path.write_bytes(struct.pack("<Q", 100) + rng.integers(0, 256, 200, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        mlipkit.load(tmp_path / "nope.safetensors")


def _raw_file(path, meta, tensors=None):
    tensors = tensors if tensors is not None else {"w": torch.ones(3, dtype=torch.float64)}
    meta = {"sha256": tensor_digest(tensors), **meta}
    save_file(tensors, str(path), metadata={"mlipkit": json.dumps(meta)})
    return path


def test_unknown_model_type_is_refused(tmp_path):
    path = _raw_file(tmp_path / "m.safetensors", {
        "format": "mlipkit-model", "format_version": 1, "config": {"type": "no-such-model"},
        "species": ["H"], "cutoff": 3.0, "dtype": "float64", "units": {"energy": "eV"},
    })
    with pytest.raises(InvalidModelFile, match="no-such-model"):
        mlipkit.load(path)


_ZBL_CONFIG = {"type": "zbl", "inner": 0.5, "outer": 0.8}


@pytest.mark.parametrize("meta", [
    {"config": _ZBL_CONFIG, "dtype": "not_a_dtype"},
    {"config": _ZBL_CONFIG, "dtype": "load"},  # a torch attribute that is not a dtype
    {"config": {"type": "zbl", "bogus": 1}, "dtype": "float64"},
    {"config": {"type": "zbl", "inner": 0.9, "outer": 0.5}, "dtype": "float64"},
    {"dtype": "float64"},
    {"config": [1, 2], "dtype": "float64"},
    {"config": {"type": "sum"}, "dtype": "float64"},
], ids=["unknown-dtype", "non-dtype-attribute", "unknown-argument", "invalid-values",
        "no-config", "config-not-a-dict", "sum-without-terms"])
def test_metadata_that_cannot_build_a_model_is_refused(tmp_path, meta):
    """Valid safetensors, matching sha256, but a config or dtype from which no
    model can be built: a named InvalidModelFile, not a raw TypeError/KeyError."""
    tensors = ZBL().double().state_dict()
    path = _raw_file(tmp_path / "m.safetensors", {"format": "mlipkit-model",
                                                  "format_version": 1, **meta}, tensors)
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)


def test_safetensors_without_mlipkit_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(3)}, str(path), metadata={"other": "x"})
    with pytest.raises(InvalidModelFile, match="mlipkit"):
        mlipkit.load(path)
    save_file({"w": torch.ones(3)}, str(path))
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)


def test_newer_format_version_is_refused(tmp_path):
    path = _raw_file(tmp_path / "m.safetensors", {
        "format": "mlipkit-model", "format_version": 999, "config": ZBL().config(),
    }, tensors=ZBL().double().state_dict())
    with pytest.raises(InvalidModelFile, match="version"):
        mlipkit.load(path)


def test_corrupt_metadata_json_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(3)}, str(path), metadata={"mlipkit": "{not json"})
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)
    # valid JSON, but not an object
    save_file({"w": torch.ones(3)}, str(path), metadata={"mlipkit": "[1, 2]"})
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)


def test_refusal_does_not_touch_the_file(tmp_path):
    path = tmp_path / "noise.safetensors"
    content = os.urandom(256)
    path.write_bytes(content)
    with pytest.raises(InvalidModelFile):
        mlipkit.load(path)
    assert path.read_bytes() == content
