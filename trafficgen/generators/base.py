"""Shared generator API (scikit-learn conventions, HF-style persistence).

A flow generator:

* ``__init__(*, ...)`` keyword-only, stores hyper-parameters only;
* ``fit(flows: FlowSet)`` validates and learns; learned attributes end in ``_``
  (``classes_``, ``max_packets_`` ...);
* ``sample(n, *, cls=None, random_state=None) -> FlowSet`` (labels set to the sampled classes);
  ``cls`` is one class name, a list of names (one per sample, or cycled), or ``None``
  (classes drawn with the training class frequencies);
* ``save_pretrained(dir)`` / ``from_pretrained(dir)``: ``config.json`` + ``model.safetensors``
  (+ extra JSON files such as ``tokenizer.json``). Never pickle.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from trafficgen.errors import (
    ConfigError,
    InputFormatError,
    NotFittedError,
    TrafficgenError,
    UnknownClassError,
)
from trafficgen.generators.serialization import (  # noqa: F401  (re-exported)
    CONFIG_FILE,
    Field,
    load_tensors,
    read_pretrained,
    save_tensors,
    validate_config,
    write_pretrained,
)


class PretrainedMixin:
    """sklearn-style params + ``save_pretrained`` / ``from_pretrained`` for any model.

    Subclasses set ``name`` (registry name) and implement ``_state`` / ``_load_state``;
    ``_kind_key`` is the config.json field that records the registry name.
    """

    #: Registry name (``trafficgen train --model NAME``).
    name: ClassVar[str] = ""
    _kind_key: ClassVar[str] = "generator"

    # ------------------------------------------------------------------ sklearn-style params
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params):
        for k, v in params.items():
            if k not in self._param_names():
                raise ConfigError(f"{type(self).__name__} has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitted state helpers
    _fitted_attr: ClassVar[str] = "classes_"

    def _check_fitted(self):
        if not hasattr(self, self._fitted_attr):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(...) first")


    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict, dict, dict]:
        """(config: JSON dict, tensors: name -> torch.Tensor or np.ndarray, extra: filename -> JSON)."""
        raise NotImplementedError

    @classmethod
    def _load_state(cls, config: dict, tensors: dict, extra: dict):
        raise NotImplementedError

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (+ extra JSON files) atomically; a
        quantized model (``quantization_``, see :mod:`trafficgen.generators.quantization`) writes its
        int8 weights and a ``quantization`` entry, which :meth:`from_pretrained` reads back."""
        self._check_fitted()
        config, tensors, extra = self._state()
        config = {self._kind_key: self.name, "params": self.get_params(), **config}
        info = getattr(self, "quantization_", None)
        if info:
            from trafficgen.generators.quantization import quantized_tensors

            config["quantization"] = info
            tensors = quantized_tensors(tensors, info)
        return write_pretrained(path, config, tensors, extra)

    #: Schema of the fields of ``config.json`` that :meth:`_load_state` reads (checked before it
    #: runs; see :class:`~trafficgen.generators.serialization.Field`).
    _config_schema: ClassVar[dict[str, Field]] = {}
    #: Extra JSON files the model needs, each with the schema of its fields.
    _extra_schemas: ClassVar[dict[str, dict[str, Field]]] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path):
        """Load a folder written by :meth:`save_pretrained`. Whatever is wrong with it (a missing,
        truncated or garbage file, a field of the wrong type or with an impossible value, tensors
        that do not fit the configuration) raises one :class:`InputFormatError` naming the file."""
        path = Path(path)
        config, tensors, extra = read_pretrained(path)
        cfg_file = path / CONFIG_FILE
        saved_by = config.get(cls._kind_key)
        if saved_by != cls.name:
            raise InputFormatError(f"saved by {saved_by!r}, not {cls.name!r}", path=cfg_file)
        validate_config(config, {"params": Field.object(), **cls._config_schema}, cfg_file)
        for fname, schema in cls._extra_schemas.items():
            if fname not in extra:
                raise InputFormatError("not found", path=path / fname)
            validate_config(extra[fname], schema, path / fname)
        try:
            if "quantization" in config:  # an int8 model
                from trafficgen.generators.quantization import load_quantized_state

                validate_config(config, {"quantization": Field.object()}, cfg_file)
                return load_quantized_state(cls, config, tensors, extra)
            return cls._load_state(config, tensors, extra)
        except InputFormatError as exc:
            raise _in_folder(exc, path) from exc
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001  a field or tensor no schema describes: one line naming the folder
            what = " ".join(str(exc).split())
            what = what if isinstance(exc, TrafficgenError) else f"{type(exc).__name__}: {what}"
            raise InputFormatError(f"cannot load this saved {cls.name!r} model ({what})", path=path) from exc

    @classmethod
    def _from_params(cls, config: dict):
        """``cls(**config["params"])``; a parameter ``cls`` does not take is an
        :class:`InputFormatError` naming config.json (never silently dropped)."""
        params = config["params"]
        unknown = sorted(set(params) - set(cls._param_names()))
        if unknown:
            raise InputFormatError(f"'params' has parameters {cls.__name__} does not take: {', '.join(unknown)}",
                                   path=CONFIG_FILE)
        return cls(**params)


def _in_folder(exc: InputFormatError, folder: Path) -> InputFormatError:
    """``exc`` located in the model folder: no path -> the folder; a bare file name (what
    ``_load_state`` knows, e.g. ``model.safetensors``) -> that file in the folder."""
    if exc.path is not None and Path(exc.path).parent != Path("."):
        return exc  # already a full path
    message = str(exc)
    if exc.path is not None:
        prefix = exc.path + (f" at offset {exc.offset}" if exc.offset is not None else "") + ": "
        message = message.removeprefix(prefix)
    return InputFormatError(message, path=folder if exc.path is None else folder / exc.path, offset=exc.offset)


class FlowGenerator(PretrainedMixin):
    """Base class of flow generators. Subclasses implement ``fit``, ``sample``, ``_state`` and
    ``_load_state``."""

    def fit(self, flows):
        raise NotImplementedError

    def sample(self, n: int, *, cls=None, random_state=None):
        raise NotImplementedError

    #: Default cap on the packets per flow a generator models when ``max_packets`` is None.
    MAX_PACKETS_CAP: ClassVar[int] = 32

    def _validated_width(self, flows) -> int:
        """Check a labelled, non-empty FlowSet and a known preset; return the modelled width
        (``max_packets`` or the data's width capped at :attr:`MAX_PACKETS_CAP`)."""
        from trafficgen.errors import InputFormatError

        if flows.labels is None:
            raise InputFormatError("fit needs labelled flows (class-conditioned generator)")
        if len(flows) == 0:
            raise InputFormatError("fit needs at least one flow")
        presets = getattr(self, "presets", None)
        if presets is not None and self.preset not in presets:
            raise ConfigError(f"unknown preset {self.preset!r}; known: {', '.join(presets)}")
        max_packets = getattr(self, "max_packets", None)
        width = int(max_packets) if max_packets is not None else min(flows.max_packets, self.MAX_PACKETS_CAP)
        if width < 1:
            raise ConfigError(f"max_packets must be >= 1, got {width}")
        backwards = np.flatnonzero((flows.n_packets > 0) & (flows.lengths[:, 0] < 0))
        if len(backwards):
            raise InputFormatError(
                f"{len(backwards)} flows start with a server -> client packet (first at row {int(backwards[0])}); "
                "by FlowSet's convention the client sends the first packet (+): flip the signs of those flows",
                offset=int(backwards[0]))
        return width

    def _class_state(self) -> dict:
        """The config.json fields of the fitted classes and width (``classes``, ``class_prior``,
        ``max_packets_``); :meth:`_from_class_state` reads them back."""
        return {"classes": list(self.classes_), "class_prior": np.asarray(self.class_prior_).tolist(),
                "max_packets_": int(self.max_packets_)}

    @classmethod
    def _from_class_state(cls, config: dict):
        """A generator built from ``config["params"]`` with ``classes_``, ``class_prior_`` and
        ``max_packets_`` restored."""
        obj = cls._from_params(config)
        obj.classes_ = list(config["classes"])
        obj.class_prior_ = np.asarray(config["class_prior"], dtype=np.float64)
        obj.max_packets_ = int(config["max_packets_"])
        return obj

    def _resolve_classes(self, n: int, cls, rng: np.random.Generator) -> list[str]:
        """One class name per sample (validated with :func:`match_class`: ``"youtube"`` means
        ``"YouTube"``; the canonical names are returned)."""
        self._check_fitted()
        known = list(self.classes_)
        if cls is None:
            prior = np.asarray(getattr(self, "class_prior_", np.ones(len(known)) / len(known)), dtype=float)
            idx = rng.choice(len(known), size=n, p=prior / prior.sum())
            return [known[i] for i in idx]
        names: Sequence[str] = [cls] if isinstance(cls, str) else list(cls)
        if not names:
            raise ConfigError("cls must name at least one class")
        canonical = match_classes(names, known)
        return [canonical[i % len(canonical)] for i in range(n)]


def match_class(name: str, known: Iterable[str]) -> str:
    """The class of ``known`` that ``name`` means, the one rule of library and CLI: ``name``
    itself if known, else the unique case-insensitive match (``"youtube"`` -> ``"YouTube"``).
    Several case-insensitive matches and no exact one: :class:`ConfigError`; none:
    :class:`UnknownClassError` listing the known classes."""
    return match_classes([name], known)[0]


def match_classes(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """:func:`match_class` of every name (one lookup table for many names)."""
    known = [str(k) for k in known]
    exact = set(known)
    folded: dict[str, list[str]] = {}
    for k in known:
        folded.setdefault(k.casefold(), []).append(k)
    memo: dict[str, str] = {}
    out = []
    for name in names:
        hit = memo.get(name)
        if hit is None:
            if not isinstance(name, str):
                raise ConfigError(f"a class name must be a string, got {name!r}")
            if name in exact:
                hit = name
            else:
                hits = folded.get(name.casefold(), [])
                if len(hits) > 1:
                    raise ConfigError(f"class {name!r} is ambiguous: {', '.join(hits)} (use the exact name)")
                if not hits:
                    raise UnknownClassError(name, known)
                hit = hits[0]
            memo[name] = hit
        out.append(hit)
    return out
