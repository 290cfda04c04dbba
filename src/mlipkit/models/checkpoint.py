"""Model files: one safetensors file with JSON metadata, never pickle.

The header metadata holds ``mlipkit`` -> JSON with the model config, species,
cutoff, units, package versions and a sha256 over the tensors. Loading
rebuilds the model from the config (explicit registry) and loads tensors;
nothing in the file is executed. Pickled files (``torch.save``) are refused
before anything in them is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from ase.data import chemical_symbols
from safetensors import safe_open
from safetensors.torch import save_file

from mlipkit.errors import InvalidModelFile
from mlipkit.models.base import Potential
from mlipkit.models.compiled import compile_for_inference
from mlipkit.models.registry import build

FORMAT = "mlipkit-model"
FORMAT_VERSION = 1
UNITS = {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å³"}

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# leading bytes of formats that must never be deserialised
_PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(potential: Potential, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write ``potential`` to ``path`` atomically (temp file, fsync, rename)."""
    from mlipkit import __version__

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in potential.state_dict().items()}
    caps = potential.capabilities
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": potential.config(),
        "species": None if caps.species is None else [chemical_symbols[z] for z in caps.species],
        "cutoff": caps.cutoff,
        "dtype": str(caps.dtype).replace("torch.", ""),
        "units": UNITS,
        "versions": {"mlipkit": __version__, "torch": torch.__version__},
        "sha256": tensor_digest(tensors),
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"mlipkit": json.dumps(meta)})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata of a model file, after checking what the file is."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    with open(path, "rb") as fh:
        head = fh.read(9)
    size = path.stat().st_size
    # safetensors: u64 little-endian header length, then a JSON header starting with '{'
    plausible = len(head) == 9 and int.from_bytes(head[:8], "little") <= size - 8 \
        and head[8:9] == b"{"
    if not plausible and head.startswith(_PICKLE_MAGIC):
        raise InvalidModelFile(
            f"{path} is a pickle or torch.save archive. mlipkit never unpickles files because "
            "that can run arbitrary code; export the model with mlipkit.save (safetensors)."
        )
    if not plausible:
        raise InvalidModelFile(f"{path} is not a safetensors file (its header is not valid)")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises several error types for bad headers
        raise InvalidModelFile(f"{path} is not a readable safetensors file ({exc})") from None
    if "mlipkit" not in header:
        raise InvalidModelFile(f"{path} is a safetensors file without mlipkit metadata")
    try:
        meta = json.loads(header["mlipkit"])
    except json.JSONDecodeError as exc:
        raise InvalidModelFile(f"{path} has corrupted mlipkit metadata ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise InvalidModelFile(f"{path}: the mlipkit metadata has no model config")
    if meta.get("format") != FORMAT or meta.get("format_version", 0) > FORMAT_VERSION:
        raise InvalidModelFile(
            f"{path} has format {meta.get('format')!r} version {meta.get('format_version')}; "
            f"this mlipkit reads {FORMAT!r} up to version {FORMAT_VERSION}"
        )
    return meta


def load(path: str | os.PathLike, device: str | torch.device = "cpu",
         compile: bool = False) -> Potential:
    """Rebuild a potential from a model file written by :func:`save`.

    ``compile=True`` runs the parts that support it (the BPNN's descriptors
    and networks, the equivariant message passing) through
    ``torch.compile`` for energies, forces and stress; see
    :mod:`mlipkit.models.compiled`.
    """
    meta = read_metadata(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise InvalidModelFile(f"{path}: tensor data is unreadable ({exc})") from None
    if tensor_digest(tensors) != meta.get("sha256"):
        raise InvalidModelFile(
            f"{path}: the tensors do not match the stored sha256; the file is corrupted or was "
            "modified after it was written"
        )
    dtype = _DTYPES.get(meta.get("dtype", "float32"))
    if dtype is None:
        raise InvalidModelFile(f"{path}: unsupported dtype {meta.get('dtype')!r}; "
                               f"expected one of {sorted(_DTYPES)}")
    try:
        model = build(meta["config"]).to(dtype)
        model.load_state_dict(tensors, strict=True)
    except InvalidModelFile:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, RuntimeError) as exc:
        raise InvalidModelFile(
            f"{path}: the stored config does not describe these tensors or cannot be built "
            f"({type(exc).__name__}: {exc})"
        ) from None
    model = model.to(device)
    return compile_for_inference(model) if compile else model
