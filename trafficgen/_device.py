"""Device and precision names -> torch objects, checked against this machine (ground floor).

* :func:`resolve_device` - ``"auto" | "cpu" | "cuda" | "cuda:N" | "mps"`` (or a ``torch.device``)
  -> ``torch.device``; ``"auto"`` is CUDA if available, else MPS, else the CPU (``cuda`` is
  ``cuda:LOCAL_RANK`` in a process started by ``accelerate launch``). A device this
  machine does not have raises :class:`~trafficgen.errors.ConfigError` with one line saying why
  (e.g. a CPU-only torch build).
* :func:`resolve_precision` - ``"fp32" | "bf16" | "fp16"`` -> the autocast dtype (None for fp32),
  checked for the device: fp16 needs CUDA, bf16 needs CUDA with bf16 support, or a CPU with
  native bf16 (AVX512-BF16 / AMX), or MPS.
* :func:`autocast` - the ``torch.autocast`` context of a (device, precision), a no-op for fp32.

Importing this module does not import torch (``import trafficgen`` must stay light).
"""
from __future__ import annotations

import contextlib
import re

from trafficgen.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def _torch_build() -> str:
    import torch

    kind = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    return f"torch {torch.__version__}, {kind}"


def resolve_device(device="auto", *, option: str = "device"):
    """``device`` (a name or a ``torch.device``) -> ``torch.device``, or :class:`ConfigError`.

    ``option`` names the setting in the message (``"--device"`` for the CLI)."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ConfigError(f"{option} must be one of {', '.join(DEVICES)}, got {device!r}")
    name = device.strip().lower()
    label = f"{option} {device}" if option.startswith("-") else f"{option}={device!r}"
    if name == "auto":
        if torch.cuda.is_available():
            return _launched_cuda()
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise ConfigError(f"{label}: Apple MPS is not available on this machine ({_torch_build()})")
        return torch.device("mps")
    match = _CUDA.match(name)
    if match is None:
        raise ConfigError(f"{label}: unknown device; expected one of {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise ConfigError(f"{label}: CUDA is not available on this machine ({_torch_build()})")
    if match.group(1) is not None:
        index, count = int(match.group(1)), torch.cuda.device_count()
        if index >= count:
            raise ConfigError(f"{label}: this machine has {count} CUDA device(s) (cuda:0 .. cuda:{count - 1})")
        return torch.device("cuda", index)
    return _launched_cuda()


def _launched_cuda():
    """``cuda``; ``cuda:LOCAL_RANK`` in a process a launcher started (one GPU per process)."""
    import os

    import torch

    local = os.environ.get("LOCAL_RANK")
    if local is not None and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return torch.device("cuda", int(local) % max(torch.cuda.device_count(), 1))
    return torch.device("cuda")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_precision(precision: str = "fp32", device=None, *, option: str = "precision"):
    """The autocast dtype of ``precision`` on ``device`` (None for fp32), or :class:`ConfigError`
    when the device cannot compute in it."""
    import torch

    label = f"{option} {precision}" if option.startswith("-") else f"{option}={precision!r}"
    if precision not in PRECISIONS:
        raise ConfigError(f"{label}: expected one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    dev = resolve_device("cpu" if device is None else device)
    if precision == "fp16":
        if dev.type != "cuda":
            raise ConfigError(f"{label}: fp16 mixed precision needs a CUDA device, not {dev.type} "
                              "(use bf16 or fp32)")
        return torch.float16
    if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{label}: this CUDA device has no bf16 support (use fp16 or fp32)")
    if dev.type == "cpu" and not cpu_has_bf16():
        raise ConfigError(f"{label}: this CPU has no native bf16 (AVX512-BF16 or AMX); use fp32")
    return torch.bfloat16


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(p()) for p in probes if p is not None)


def autocast(device, precision: str = "fp32"):
    """``torch.autocast`` on ``device`` in ``precision``; a null context for fp32."""
    import torch

    dtype = resolve_precision(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=resolve_device(device).type, dtype=dtype)




def same_device(a, b) -> bool:
    """Whether torch devices ``a`` and ``b`` are one (``cuda`` is the current ``cuda:N``)."""
    import torch

    a, b = torch.device(a), torch.device(b)
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        if a.type != "cuda":
            return True
        current = torch.cuda.current_device()
        return (current if a.index is None else a.index) == (current if b.index is None else b.index)
    return a.index == b.index


__all__ = ["DEVICES", "PRECISIONS", "resolve_device", "resolve_precision", "cpu_has_bf16", "autocast", "same_device"]
