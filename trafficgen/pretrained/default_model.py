"""The default generator of ``trafficgen sample``: a LLaMA "small" trained on the shipped nDPI
flows with :data:`DEFAULT_CONFIG`.

Its weights ship inside the package (``trafficgen/pretrained/default_llama/``, ~7 MB of
safetensors), so a fresh install samples in seconds; ``TRAINING.json`` beside them records the
hash of the flows and configuration they were trained from, and a test checks it against the
current ones. Retrain them with ``python -m trafficgen.pretrained.default_model`` (one torch
thread, about two minutes on 2 cores).

Any other set-up (other flows or configuration) is trained once and cached:
``$TRAFFICGEN_CACHE`` or ``platformdirs.user_cache_dir("trafficgen")``, then
``models/default-llama-<hash>``, where the hash covers the training flows (lengths, packet
counts, labels) and the training configuration, so new data or settings train a new model and an
unchanged setup is trained exactly once. The directory is written atomically (a crashed or
concurrent run never leaves a half-written model).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from trafficgen.errors import ConfigError

#: Bumped whenever the training code changes in a way that should retrain the cached model.
CACHE_FORMAT = 4  # 3: classifier-free guidance (cfg_dropout) in the token models; 4: chain_mix

#: The shipped weights of the default set-up.
SHIPPED_DIR = Path(__file__).with_name("default_llama")

#: Training configuration of the default model (LlamaGenerator parameters); about a minute for
#: the ~4k shipped flows on 2 CPU cores. Chosen with ``benchmarks/default_model_novelty.py`` (mean
#: over 4 training seeds; README "Default model: does it copy"):
#:
#: * ``epochs=5``: the cosine schedule anneals to zero by the end. The earlier 12 epochs with early
#:   stopping ended at epoch 3-8, mid-schedule, and the small classes' behaviour then depended on
#:   the seed (YouTube one-packet share 0.33-0.84 over 4 seeds; 0.46-0.50 with 5 epochs).
#: * ``class_balance=1.0``: every class is drawn equally often, so the small apps (YouTube: 46
#:   flows) are learned from their own flows rather than from the big classes'.
#: * ``repeat_weight=0.8``: a flow repeated ``m`` times in its class counts ``m ** 0.8`` times.
#:   21 of YouTube's 46 flows are the same single 1350-byte packet; a faithful model reproduces
#:   that share and then copies a training flow in ~52 % of its YouTube samples (real flows'
#:   own leave-one-out ceiling: 54 % new). Down-weighting repeats is the deduplication remedy
#:   for verbatim regurgitation (Lee et al., ACL 2022); it costs a little fidelity on the
#:   repeated flows (YouTube one-packet share 0.30-0.38 instead of 0.46-0.50; novelty 0.57-0.62).
#: * ``chain_mix=True`` (the token models' default since 2026-12-03, named here so that the
#:   shipped weights' record says it): interpolated with the per-class Markov chain.
DEFAULT_CONFIG: dict = {"preset": "small", "epochs": 5, "batch_size": 64, "learning_rate": 3e-3,
                        "val_fraction": 0.1, "patience": 3, "class_balance": 1.0, "repeat_weight": 0.8,
                        "random_state": 0, "max_packets": 32, "chain_mix": True}


def cache_root() -> Path:
    """``$TRAFFICGEN_CACHE`` if set, else the user cache directory of trafficgen."""
    env = os.environ.get("TRAFFICGEN_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("trafficgen"))


def data_config_hash(flows, config: dict) -> str:
    """Hex digest (16 chars) of the flows' content and the training configuration."""
    import numpy as np

    h = hashlib.sha256()
    h.update(f"trafficgen-default-llama-v{CACHE_FORMAT}".encode())
    h.update(json.dumps(config, sort_keys=True).encode())
    h.update(np.ascontiguousarray(flows.lengths, dtype=np.int32).tobytes())
    h.update(np.ascontiguousarray(flows.n_packets, dtype=np.int32).tobytes())
    h.update("\x00".join(map(str, flows.labels if flows.labels is not None else [])).encode())
    return h.hexdigest()[:16]


def default_model_dir(flows, config: dict | None = None) -> Path:
    config = dict(DEFAULT_CONFIG if config is None else config)
    return cache_root() / "models" / f"default-llama-{data_config_hash(flows, config)}"


def get_default_model(progress: bool = True, *, flows=None, config: dict | None = None,
                      refresh: bool = False):
    """The cached default :class:`~trafficgen.generators.llama.LlamaGenerator`, trained on first use.

    ``flows`` (default: :func:`trafficgen.datasets.load_ndpi_apps`) and ``config`` (default:
    :data:`DEFAULT_CONFIG`) override the training set-up (a different cache entry);
    ``refresh=True`` retrains even when a cached model exists.
    """
    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.registry import load_generator

    if flows is None and config is None and not refresh and _shipped_matches(DEFAULT_CONFIG):
        return load_generator(SHIPPED_DIR)  # the default set-up: the shipped weights
    config = dict(DEFAULT_CONFIG if config is None else config)
    if flows is None:
        from trafficgen.datasets import load_ndpi_apps

        flows = load_ndpi_apps(progress=progress)
    if not refresh and _shipped_matches(config, flows):
        return load_generator(SHIPPED_DIR)  # the caller's flows and config are the shipped ones
    if flows.labels is None or len(flows) == 0:
        raise ConfigError("the default model needs a non-empty labelled FlowSet")
    path = default_model_dir(flows, config)
    if (path / "config.json").exists() and not refresh:
        return load_generator(path)
    gen = LlamaGenerator(**config, progress=progress).fit(flows)
    gen.save_pretrained(path)
    return gen


def _shipped_matches(config: dict, flows=None) -> bool:
    """Whether the shipped weights were trained with ``config`` (and, when given, ``flows``), as
    their TRAINING.json says."""
    try:
        training = json.loads((SHIPPED_DIR / "TRAINING.json").read_text())
    except (OSError, ValueError):
        return False
    if not (SHIPPED_DIR / "config.json").exists() or training.get("config") != config:
        return False
    return flows is None or training.get("data_config_hash") == data_config_hash(flows, config)


def write_shipped_model(out: Path = SHIPPED_DIR, *, progress: bool = True) -> Path:
    """Retrain the default model on the shipped flows with one torch thread (deterministic for the
    seed) and write it to ``out`` with ``TRAINING.json`` (flows + configuration hash)."""
    import torch

    from trafficgen._io import atomic_path
    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.generators.llama import LlamaGenerator

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        flows = load_ndpi_apps(progress=progress)
        gen = LlamaGenerator(**DEFAULT_CONFIG, progress=progress).fit(flows)
    finally:
        torch.set_num_threads(old)
    gen.save_pretrained(out)
    with atomic_path(out / "TRAINING.json") as tmp:
        tmp.write_text(json.dumps({"data_config_hash": data_config_hash(flows, DEFAULT_CONFIG),
                                   "config": DEFAULT_CONFIG, "cache_format": CACHE_FORMAT,
                                   "torch_threads": 1, "torch": torch.__version__}, indent=2) + "\n")
    return out


if __name__ == "__main__":  # python -m trafficgen.pretrained.default_model
    print(f"wrote {write_shipped_model()}")
