"""The run configuration of ``mlipkit train``: typed dataclasses that round-trip to YAML.

The dataclasses below are the single source of truth: the YAML schema, the
dotted override keys (``training.loss.forces=10``), type checks and defaults
all come from their fields, so a new option is added in exactly one place.
Every problem is reported as :class:`~mlipkit.errors.InvalidConfig` with a
one-line message that names the dotted key.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import tempfile
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlipkit.errors import InvalidConfig

# The allowed names, each defined once. Model types must be keys of
# mlipkit.models.registry.REGISTRY that training knows how to build.
MODEL_TYPES = ("bpnn", "equivariant", "linear")
LINEAR_DESCRIPTORS = ("soap", "acsf")  # of the linear model (models/linear.py)
PRESETS = ("small", "medium", "large")  # of the equivariant model (models/equivariant.py)
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("plateau", "cosine", "none")
LOSS_KINDS = ("mse", "huber")
DTYPES = ("float32", "float64")
DATA_PATH_KEYS = ("train", "valid", "test")  # fields of DataConfig holding file paths


@dataclass
class DataConfig:
    train: str  # extxyz, ase.db or rMD17 .npz
    valid: str | None = None  # None: hold out valid_fraction of train
    valid_fraction: float = 0.05
    test: str | None = None  # evaluated at the end
    energy_key: str = "energy"  # label names for extxyz / ase.db
    forces_key: str | None = "forces"
    stress_key: str | None = "stress"
    max_train: int | None = None  # at most this many training structures (after the split)


@dataclass
class ModelConfig:
    type: str = "bpnn"
    cutoff: float = 5.0  # Å
    zbl: bool = True  # repulsive prior
    # bpnn: element networks on ACSF descriptors
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    n_radial: int = 12
    n_angular_radial: int = 4
    zetas: list[int] = field(default_factory=lambda: [1, 2, 4])
    angular_range: float | None = None  # Å, last angular Gaussian centre; null: cutoff - 1
    four_body: bool = False  # add tr(A A A) of the angular second moments
    # linear: Bayesian ridge on SOAP (power spectrum) or on the ACSF above
    descriptor: str = "soap"
    soap_n_radial: int = 6
    soap_l_max: int = 4
    # equivariant: a named preset, and the settings to change in it (null: the preset's)
    preset: str = "small"
    channels: int | None = None
    l_max: int | None = None
    n_layers: int | None = None
    correlation: int | None = None


@dataclass
class LossConfig:
    energy: float = 1.0
    forces: float = 100.0
    stress: float = 1.0
    hessian: float = 0.0
    kind: str = "mse"
    huber_delta: float = 0.01


@dataclass
class TrainingConfig:
    max_epochs: int = 1000
    max_time: float | None = None  # seconds from the start (data preparation included)
    batch_size: int = 8
    valid_batch_size: int = 32
    lr: float = 1.0e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str = "cosine"  # over max_epochs, or over max_time when that ends the run first
    warmup_epochs: int = 5
    plateau_patience: int = 25
    plateau_factor: float = 0.5
    min_lr: float = 1.0e-5
    clip_grad: float | None = 10.0
    loss: LossConfig = field(default_factory=LossConfig)
    ema: float | None = 0.99
    early_stopping_patience: int | None = 200
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    ensemble: int = 1  # K members
    bootstrap: bool = False
    # warm start: a model file with the same architecture (member k of an
    # ensemble file starts member k; a single model starts every member)
    init_from: str | None = None
    # descriptors and their derivatives computed once per structure and kept
    # in memory up to this size (GiB); 0 recomputes them every step
    descriptor_cache_gib: float = 4.0


@dataclass
class RunConfig:
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: str = "runs/default"  # relative to the current directory

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Build and validate a config from a plain (YAML-loaded) mapping."""
        return build_config(cls, d)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of builtins (nested dicts, lists, str, int, float, bool, None)."""
        return _plain(self)

    def validate(self) -> RunConfig:
        """Check types, ranges and names; raise InvalidConfig naming the dotted key."""
        check_rules(self, _RULES)
        weights = {k: _get(self, f"training.loss.{k}") for k in ("energy", "forces", "stress",
                                                                 "hessian")}
        if not any(w > 0 for w in weights.values()):
            raise InvalidConfig("at least one of 'training.loss.energy', '.forces', '.stress', "
                                "'.hessian' must be positive (all are 0)")
        m = self.model
        if m.angular_range is not None and m.angular_range > m.cutoff:
            raise InvalidConfig(f"'model.angular_range' must not exceed 'model.cutoff' "
                                f"({m.angular_range:g} > {m.cutoff:g} Å)")
        if m.type == "linear" and self.training.ensemble > 1:
            raise InvalidConfig("'training.ensemble' must be 1 for model.type 'linear': its "
                                "uncertainty comes from the Bayesian posterior, not a committee")
        return self


def check_rules(config: Any, rules: list[tuple[str, Any, str]]) -> None:
    """Type-check the dataclass ``config``, then each (dotted key, predicate,
    requirement) rule on its non-null values; InvalidConfig names the key."""
    _check_types(config, "")
    for key, ok, requirement in rules:
        value = _get(config, key)
        if value is not None and not ok(value):
            raise InvalidConfig(f"'{key}' {requirement} (got {_show(value)})")


def _choice(names: tuple[str, ...]) -> tuple[Any, str]:
    return (lambda v: v in names), "must be one of " + ", ".join(repr(n) for n in names)


def _positive_ints(v: list[int]) -> bool:
    return len(v) > 0 and all(x >= 1 for x in v)


# (dotted key, predicate, requirement); a None value (where allowed) is never checked
_RULES: list[tuple[str, Any, str]] = [
    ("data.valid_fraction", lambda v: 0 < v < 1, "must be in (0, 1)"),
    ("data.max_train", lambda v: v >= 1, "must be >= 1 or null"),
    ("data.energy_key", bool, "must not be empty"),
    ("model.type", *_choice(MODEL_TYPES)),
    ("model.cutoff", lambda v: v > 0, "must be > 0"),
    ("model.descriptor", *_choice(LINEAR_DESCRIPTORS)),
    ("model.soap_n_radial", lambda v: v >= 1, "must be >= 1"),
    ("model.soap_l_max", lambda v: 0 <= v <= 8, "must be in [0, 8]"),
    ("model.hidden", _positive_ints, "must be a non-empty list of integers >= 1"),
    ("model.n_radial", lambda v: v >= 1, "must be >= 1"),
    ("model.n_angular_radial", lambda v: v >= 1, "must be >= 1"),
    ("model.zetas", _positive_ints, "must be a non-empty list of integers >= 1"),
    ("model.angular_range", lambda v: v > 0, "must be > 0 Å or null"),
    ("model.preset", *_choice(PRESETS)),
    ("model.channels", lambda v: v >= 1, "must be >= 1 or null"),
    ("model.l_max", lambda v: v >= 0, "must be >= 0 or null"),
    ("model.n_layers", lambda v: v >= 1, "must be >= 1 or null"),
    ("model.correlation", lambda v: v >= 1, "must be >= 1 or null"),
    ("training.max_epochs", lambda v: v >= 1, "must be >= 1"),
    ("training.max_time", lambda v: v > 0, "must be > 0 seconds or null"),
    ("training.batch_size", lambda v: v >= 1, "must be >= 1"),
    ("training.valid_batch_size", lambda v: v >= 1, "must be >= 1"),
    ("training.lr", lambda v: v > 0, "must be > 0"),
    ("training.optimizer", *_choice(OPTIMIZERS)),
    ("training.weight_decay", lambda v: v >= 0, "must be >= 0"),
    ("training.scheduler", *_choice(SCHEDULERS)),
    ("training.warmup_epochs", lambda v: v >= 0, "must be >= 0"),
    ("training.plateau_patience", lambda v: v >= 0, "must be >= 0"),
    ("training.plateau_factor", lambda v: 0 < v < 1, "must be in (0, 1)"),
    ("training.min_lr", lambda v: v >= 0, "must be >= 0"),
    ("training.clip_grad", lambda v: v > 0, "must be > 0 or null"),
    *[(f"training.loss.{k}", lambda v: v >= 0, "must be >= 0")
      for k in ("energy", "forces", "stress", "hessian")],
    ("training.loss.kind", *_choice(LOSS_KINDS)),
    ("training.loss.huber_delta", lambda v: v > 0, "must be > 0"),
    ("training.ema", lambda v: 0 <= v < 1, "must be in [0, 1) or null"),
    ("training.early_stopping_patience", lambda v: v >= 1, "must be >= 1 or null"),
    ("training.seed", lambda v: v >= 0, "must be >= 0"),
    ("training.dtype", *_choice(DTYPES)),
    ("training.device", bool, "must not be empty"),
    ("training.ensemble", lambda v: v >= 1, "must be >= 1"),
    ("training.descriptor_cache_gib", lambda v: v >= 0, "must be >= 0"),
    ("output", bool, "must not be empty"),
]


# -- YAML ----------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # safe: a SafeLoader subclass


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML run config, apply ``dotted.key=value`` overrides, build and validate.

    Relative data paths in the file are taken relative to the file's folder, and
    those given in overrides relative to the current directory; both are stored
    absolute. ``output`` is kept as given (relative to the current directory).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = _yaml_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        reason = getattr(e, "problem", None) or type(e).__name__
        reason += f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidConfig(f"{path} is not valid YAML: {reason}") from None
    if not isinstance(raw, dict):
        found = "it is empty" if raw is None else f"not a {type(raw).__name__}"
        raise InvalidConfig(f"{path} must hold a mapping of sections (data, model, training, "
                            f"output); {found}")
    _absolute_data_paths(raw, path.parent)
    raw = apply_overrides(raw, overrides)
    _absolute_data_paths(raw, Path.cwd())
    return RunConfig.from_dict(raw)


def config_from_overrides(overrides: Iterable[str]) -> RunConfig:
    """A run config from the defaults and ``dotted.key=value`` overrides alone
    (``data.train=...`` is required); data paths relative to the current directory."""
    raw = apply_overrides({}, overrides)
    _absolute_data_paths(raw, Path.cwd())
    return RunConfig.from_dict(raw)


def save_config(config: RunConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` as YAML (atomically) so that ``load_config(path) == config``.

    Relative data paths are written absolute (taken relative to the current directory).
    """
    path = Path(path)
    d = config.to_dict()
    _absolute_data_paths(d, Path.cwd())
    text = yaml.safe_dump(d, sort_keys=False, default_flow_style=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str],
                    root: type | None = None) -> dict[str, Any]:
    """A copy of ``raw`` with ``dotted.key=value`` overrides set, in order.

    Values are read as YAML (``600``, ``[32, 32]``, ``null``); a mapping value
    replaces the whole section it names. Keys are checked against the
    dataclass ``root`` (default :class:`RunConfig`).
    """
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidConfig(f"override {item!r} is not of the form dotted.key=value "
                                f"(e.g. training.max_time=600)")
        parts = key.split(".")
        _check_known(parts, root or RunConfig)
        try:
            value = _yaml_load(text)
        except yaml.YAMLError:
            raise InvalidConfig(f"cannot read the value of override '{key}' as YAML: "
                                f"{text!r}") from None
        node = out
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InvalidConfig(f"'{'.'.join(parts[:i + 1])}' must be a mapping, "
                                    f"got {_show(node)}")
        node[parts[-1]] = value
    return out


# -- the generic walk over the dataclasses --------------------------------------
def _known_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        keys.append(prefix + name)
        if dataclasses.is_dataclass(hint):
            keys.extend(_known_keys(hint, f"{prefix}{name}."))
    return keys


def _unknown(key: str, root: type) -> InvalidConfig:
    """The error for an unknown dotted key, suggesting the closest known one: a
    similar name in the same section, else the same name in another section."""
    known = _known_keys(root)
    section, _, leaf = key.rpartition(".")
    siblings = {k.rpartition(".")[2]: k for k in known if k.rpartition(".")[0] == section}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    elsewhere = [k for k in known if k.rpartition(".")[2] == leaf]
    suggestion = siblings[close[0]] if close else elsewhere[0] if elsewhere else None
    if suggestion:
        return InvalidConfig(f"unknown key '{key}'; did you mean '{suggestion}'?")
    where = f" in '{section}'" if section else ""
    return InvalidConfig(f"unknown key '{key}'; known keys{where}: {', '.join(siblings)}")


def _check_known(parts: list[str], root: type) -> None:
    cls: Any = root
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls) if dataclasses.is_dataclass(cls) else {}
        if not hints and i > 0 and typing.get_origin(cls) is dict:
            return  # free-form keywords (e.g. an oracle's)
        if part not in hints:
            raise _unknown(".".join(parts[: i + 1]) if hints else ".".join(parts), root)
        cls = hints[part]


def build_config(cls: type, d: Any, prefix: str = "") -> Any:
    """The dataclass ``cls`` from a plain mapping, every value type-checked;
    unknown keys are named with the closest known one."""
    return _build(cls, d, prefix, cls)


def _build(cls: type, d: Any, prefix: str, root: type) -> Any:
    if not isinstance(d, Mapping):
        where = f"'{prefix.rstrip('.')}'" if prefix else "the config"
        raise InvalidConfig(f"{where} must be a mapping, got {_show(d)}")
    hints = typing.get_type_hints(cls)
    for name in d:
        if name not in hints:
            raise _unknown(f"{prefix}{name}", root)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key, hint = prefix + f.name, hints[f.name]
        if f.name in d:
            kwargs[f.name] = _coerce(d[f.name], hint, key, root=root)
        elif dataclasses.is_dataclass(hint) and f.default_factory is dataclasses.MISSING:
            kwargs[f.name] = _build(hint, {}, key + ".", root)  # names the missing leaf key
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InvalidConfig(f"missing required key '{key}'")
    return cls(**kwargs)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _coerce(value: Any, hint: Any, key: str, nullable: bool = False,
            root: type | None = None) -> Any:
    """``value`` checked against the type hint (int accepted for float, bool never a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, nullable=True, root=root)
    expected = "a mapping" if dataclasses.is_dataclass(hint) or origin is dict else (
        "a list" if origin is list else _TYPE_NAMES.get(hint, str(hint)))
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return _build(hint, value, key + ".", root or hint)
    if origin is dict and isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    if origin is list and isinstance(value, (list, tuple)):
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (origin is None and not dataclasses.is_dataclass(hint) and isinstance(value, hint)
            and not (hint is int and isinstance(value, bool))):
        return value
    raise InvalidConfig(f"'{key}' must be {expected}{' or null' if nullable else ''}, "
                        f"got {_show(value)}")


def _check_types(obj: Any, prefix: str) -> None:
    """Type-check (and convert int to float in) a dataclass built directly, not from a dict."""
    for name, hint in typing.get_type_hints(type(obj)).items():
        key, value = prefix + name, getattr(obj, name)
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, hint):
                raise InvalidConfig(f"'{key}' must be a {hint.__name__}, got {_show(value)}")
            _check_types(value, key + ".")
        else:
            setattr(obj, name, _coerce(value, hint, key))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _get(config: Any, key: str) -> Any:
    for part in key.split("."):
        config = getattr(config, part)
    return config


def _show(value: Any) -> str:
    """A short one-line rendering of a value with its YAML type."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    kind = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "mapping",
            type(None): "null"}.get(type(value), type(value).__name__)
    return text if kind == "null" else f"{kind} {text}"


def _absolute_data_paths(raw: dict[str, Any], base: Path) -> None:
    data = raw.get("data")
    if not isinstance(data, dict):
        return
    for name in DATA_PATH_KEYS:
        value = data.get(name)
        if isinstance(value, str) and value:
            value = os.path.expanduser(value)
            data[name] = value if os.path.isabs(value) else os.path.abspath(base / value)
