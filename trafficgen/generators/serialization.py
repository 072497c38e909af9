"""Model folders on disk, the one save/load path of every torch and numpy model:
``config.json`` + ``model.safetensors`` (+ extra JSON files such as ``tokenizer.json``), written
atomically. Never pickle.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.errors import ConfigError

__all__ = ["write_pretrained", "read_pretrained", "save_tensors", "load_tensors"]


def write_pretrained(path: str | Path, config: dict, tensors: dict, extra: dict) -> Path:
    """Write a model folder atomically: config.json + model.safetensors + extra JSON files."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=_json_default))
        save_tensors(tensors, tmp / "model.safetensors")
        for fname, obj in extra.items():
            (tmp / fname).write_text(json.dumps(obj, indent=2, default=_json_default))
    return path


def save_tensors(tensors: dict, file: Path) -> None:
    """Save torch tensors or numpy arrays with safetensors (contiguous copies)."""
    import torch
    from safetensors.torch import save_file

    out = {}
    for k, v in tensors.items():
        t = torch.as_tensor(v) if not isinstance(v, torch.Tensor) else v
        out[k] = t.detach().cpu().contiguous()
    save_file(out, str(file))


def read_pretrained(path: str | Path) -> tuple[dict, dict, dict]:
    """(config, tensors, extra JSON files by name) of a model folder written by :func:`write_pretrained`."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise ConfigError(f"{path}: not a saved model directory (no config.json)")
    config = json.loads(cfg_file.read_text())
    tensors = load_tensors(path / "model.safetensors") if (path / "model.safetensors").exists() else {}
    extra = {p.name: json.loads(p.read_text()) for p in path.glob("*.json") if p.name != "config.json"}
    return config, tensors, extra


def load_tensors(file: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(file))


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
