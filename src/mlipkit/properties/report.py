"""Side-by-side reports of a property from the model and from the reference."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def compare(model: dict, reference: dict, keys) -> dict:
    """``{key: {model, reference, error, relative_error}}`` for scalar figures.

    ``error`` is model − reference; ``relative_error`` is |error| / |reference|
    (None where the reference is 0).
    """
    rows = {}
    for key in keys:
        m, r = float(model[key]), float(reference[key])
        rows[key] = {"model": m, "reference": r, "error": m - r,
                     "relative_error": abs(m - r) / abs(r) if r != 0 else None}
    return rows


def criterion(value: float, limit: float, what: str) -> dict:
    """A pass/fail line: ``value`` must be finite and ≤ ``limit``."""
    return {"what": what, "value": float(value), "limit": float(limit),
            "pass": bool(math.isfinite(value) and value <= limit)}


def jsonable(obj):
    """numpy scalars and arrays to plain Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write atomically, so an interrupted run never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jsonable(obj), indent=2) + "\n")
    os.replace(tmp, path)
    return path
