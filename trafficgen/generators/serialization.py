"""Model folders on disk, the one save/load path of every torch and numpy model:
``config.json`` + ``model.safetensors`` (+ extra JSON files such as ``tokenizer.json``), written
atomically. Never pickle.

Reading is defensive: a missing, truncated or garbage file, a config that is not a JSON object or
whose fields have the wrong type or an impossible value (checked against a :class:`Field` schema
before any model is built), or tensors that do not fit the configured network, each raise one
:class:`~trafficgen.errors.InputFormatError` naming the file.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.errors import InputFormatError

__all__ = ["write_pretrained", "read_pretrained", "read_config", "read_json", "save_tensors", "load_tensors",
           "Field", "validate_config", "GASF_MAPPER_SCHEMA", "load_module_state", "check_tensors", "CONFIG_FILE", "TENSORS_FILE"]

CONFIG_FILE = "config.json"
TENSORS_FILE = "model.safetensors"


def write_pretrained(path: str | Path, config: dict, tensors: dict, extra: dict) -> Path:
    """Write a model folder atomically: config.json + model.safetensors + extra JSON files."""
    path = Path(path)
    with atomic_path(path, kind="dir") as tmp:
        tmp.mkdir()
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=_json_default))
        save_tensors(tensors, tmp / TENSORS_FILE)
        for fname, obj in extra.items():
            (tmp / fname).write_text(json.dumps(obj, indent=2, default=_json_default))
    return path


def save_tensors(tensors: dict, file: Path) -> None:
    """Save torch tensors or numpy arrays with safetensors (contiguous copies); the file gets the
    permissions of any other file the process writes (safetensors itself creates it 0600)."""
    import torch
    from safetensors.torch import save

    out = {}
    for k, v in tensors.items():
        t = torch.as_tensor(v) if not isinstance(v, torch.Tensor) else v
        out[k] = t.detach().cpu().contiguous()
    Path(file).write_bytes(save(out))


# ---------------------------------------------------------------------------------------- reading
def read_json(file: str | Path, *, object_only: bool = True) -> Any:
    """The parsed JSON of ``file``; :class:`InputFormatError` naming it when it is missing,
    unreadable, not JSON or (``object_only``) not a JSON object."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputFormatError("not found", path=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"cannot be read ({exc})", path=file) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFormatError(f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})",
                               path=file, offset=exc.pos) from None
    if object_only and not isinstance(obj, dict):
        raise InputFormatError(f"expected a JSON object, got {_json_type(obj)}", path=file)
    return obj


def read_config(path: str | Path) -> dict:
    """``config.json`` of the model folder ``path`` (a JSON object)."""
    path = Path(path)
    if not path.exists():
        backups = sorted(path.parent.glob(f".{path.name}.*.old")) if path.name else []
        hint = f" (an interrupted replacement left the previous model at {backups[-1]})" if backups else ""
        raise InputFormatError(f"model directory not found{hint}", path=path)
    if not path.is_dir():
        raise InputFormatError("not a saved model directory (a file, not a folder)", path=path)
    if not (path / CONFIG_FILE).exists():
        raise InputFormatError(f"not a saved model directory (no {CONFIG_FILE})", path=path)
    return read_json(path / CONFIG_FILE)


def read_pretrained(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, tensors, extra JSON files by name) of a model folder written by :func:`write_pretrained`."""
    path = Path(path)
    config = read_config(path)
    tensors = load_tensors(path / TENSORS_FILE)
    extra = {p.name: read_json(p, object_only=False) for p in sorted(path.glob("*.json")) if p.name != CONFIG_FILE}
    return config, tensors, extra


def load_tensors(file: str | Path) -> dict:
    """The tensors of a safetensors file; :class:`InputFormatError` naming it when it is missing,
    truncated or not a safetensors file."""
    from safetensors.torch import load_file

    file = Path(file)
    if not file.is_file():
        raise InputFormatError("not found" if not file.exists() else "not a file", path=file)
    try:
        return load_file(str(file))
    except Exception as exc:  # SafetensorError, or OSError while reading
        raise InputFormatError(f"not a readable safetensors file ({_one_line(exc)})", path=file) from None


# ---------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Field:
    """One entry of a saved JSON config: the JSON types it may have (``int`` excludes ``bool``;
    ``float`` accepts integers), whether it must be present, and a further check
    ``check(value, config) -> error text or None`` run after the type check."""

    types: tuple[type, ...]
    required: bool = True
    check: Callable[[Any, Mapping], str | None] | None = None

    @classmethod
    def object(cls, required: bool = True) -> Field:
        return cls((dict,), required)

    @classmethod
    def string(cls, required: bool = True, *, equals: str | None = None) -> Field:
        check = None if equals is None else (lambda v, c: None if v == equals else f"must be {equals!r}, got {v!r}")
        return cls((str,), required, check)

    @classmethod
    def integer(cls, required: bool = True, *, minimum: int | None = None) -> Field:
        def check(v, c):
            return None if minimum is None or v >= minimum else f"must be >= {minimum}, got {v}"

        return cls((int,), required, check)

    @classmethod
    def number(cls, required: bool = True, *, positive: bool = False) -> Field:
        def check(v, c):
            if not math.isfinite(v):
                return f"must be a finite number, got {v}"
            return f"must be > 0, got {v}" if positive and not v > 0 else None

        return cls((float,), required, check)

    @classmethod
    def class_names(cls, required: bool = True) -> Field:
        """A non-empty list of distinct strings."""
        def check(v, c):
            if not v:
                return "must name at least one class, got []"
            bad = [x for x in v if not isinstance(x, str)]
            if bad:
                return f"must hold class names (strings), got {bad[0]!r}"
            if len(set(v)) != len(v):
                return f"holds a class twice: {sorted({x for x in v if v.count(x) > 1})}"
            return None

        return cls((list,), required, check)

    @classmethod
    def class_prior(cls, classes_key: str, required: bool = True) -> Field:
        """One finite, non-negative number per class of ``config[classes_key]``, summing to > 0."""
        def check(v, c):
            classes = c.get(classes_key)
            if isinstance(classes, list) and len(v) != len(classes):
                return f"has {len(v)} entries for {len(classes)} classes ({classes_key!r})"
            if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v):
                return "must hold numbers"
            if not all(math.isfinite(x) and x >= 0 for x in v) or not sum(v) > 0:
                return "must hold finite non-negative numbers with a positive sum"
            return None

        return cls((list,), required, check)

    @classmethod
    def class_counts(cls, required: bool = True) -> Field:
        """Class name -> non-negative integer count."""
        def check(v, c):
            bad = [k for k, x in v.items() if isinstance(x, bool) or not isinstance(x, int) or x < 0]
            return f"must map class names to counts >= 0; bad entry {bad[0]!r}" if bad else None

        return cls((dict,), required, check)


def validate_config(config: Mapping, schema: Mapping[str, Field], file: str | Path) -> None:
    """Check ``config`` against ``schema`` (field name -> :class:`Field`); the first violation
    raises :class:`InputFormatError` naming ``file`` and the field. Fields the schema does not
    name are not checked."""
    if not isinstance(config, Mapping):
        raise InputFormatError(f"expected a JSON object, got {_json_type(config)}", path=file)
    for key, field in schema.items():
        if key not in config:
            if field.required:
                raise InputFormatError(f"missing field {key!r}", path=file)
            continue
        value = config[key]
        if not _has_type(value, field.types):
            expected = " or ".join(_TYPE_NAMES[t] for t in field.types)
            raise InputFormatError(f"field {key!r} must be {expected}, got {_json_type(value)} {_short(value)}",
                                   path=file)
        message = field.check(value, config) if field.check is not None else None
        if message:
            raise InputFormatError(f"field {key!r} {message}", path=file)


def load_module_state(module, tensors: Mapping, file: str | Path, *,
                      optional: Callable[[str], bool] = lambda key: False) -> None:
    """``module.load_state_dict(tensors)`` or :class:`InputFormatError` naming ``file`` with the
    missing, unexpected and mis-shaped tensors. ``optional(key)``: a missing key that is fine
    (a buffer the module rebuilds, such as rotary ``inv_freq``)."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors and not optional(k)]
    unexpected = [k for k in tensors if k not in own]
    shapes = [f"{k} {tuple(tensors[k].shape)} (expected {tuple(own[k].shape)})"
              for k in own if k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{name} {_listing(keys)}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
        raise InputFormatError("does not match config.json: " + "; ".join(parts), path=file)
    try:
        module.load_state_dict(dict(tensors), strict=False)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputFormatError(f"does not match config.json ({_one_line(exc)})", path=file) from None


def check_tensors(tensors: Mapping, ndims: Mapping[str, int], file: str | Path, *, rows: Iterable[str] = ()) -> None:
    """Each named tensor present with the given number of dimensions; the ``rows`` tensors share
    their first dimension. :class:`InputFormatError` naming ``file`` otherwise."""
    missing = [k for k in ndims if k not in tensors]
    if missing:
        raise InputFormatError(f"missing tensors {_listing(missing)}", path=file)
    for k, nd in ndims.items():
        if tensors[k].ndim != nd:
            raise InputFormatError(f"tensor {k!r} has {tensors[k].ndim} dimensions, expected {nd}", path=file)
    lengths = {k: int(tensors[k].shape[0]) for k in rows}
    if len(set(lengths.values())) > 1:
        raise InputFormatError(f"tensors disagree on the number of rows: {lengths}", path=file)


#: ``gasf.json`` (:meth:`GasfImageMapper.to_dict`) of the NetDiffus generator.
GASF_MAPPER_SCHEMA: dict[str, Field] = {
    "type": Field.string(equals="GasfImageMapper"), "image_size": Field.integer(minimum=1),
    "scale": Field((float, type(None))), "snap": Field.string(), "scale_": Field.number(positive=True),
    "min_length_": Field.integer(minimum=0), "valid_lengths_": Field((list, type(None))),
}


# ---------------------------------------------------------------------------------------- helpers
_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number",
               bool: "true/false", type(None): "null"}


def _has_type(value, types: tuple[type, ...]) -> bool:
    for t in types:
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if t is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if t not in (int, float) and isinstance(value, t):
            return True
    return False


def _json_type(value) -> str:
    for t in (bool, dict, list, str, int, float, type(None)):
        if isinstance(value, t):
            return _TYPE_NAMES[t]
    return type(value).__name__


def _short(value, limit: int = 40) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _listing(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}]"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
