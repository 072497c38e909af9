"""Traffic-matrix forecasting baselines (every one a
:class:`~trafficgen.generators.tm.base.TMForecaster`).

Naive: ``persistence``, ``seasonal`` (one day / one week back), ``historical-average``.
Learned (log-scaled, direct multi-horizon head): ``lstm``, ``gru``, ``vit-lstm``, ``stgcn``.
``TM_BASELINES`` also names the paper models built elsewhere (``lead``, ``ddpm-tme``) so the CLI
resolves them lazily once they exist. Importing this package does not import torch.
"""
from __future__ import annotations

from trafficgen.errors import ConfigError
from trafficgen.registry import TM_MODELS

#: Registry name -> "module:Class": the one table lives in ``trafficgen.registry.TM_MODELS``.
TM_BASELINES: dict[str, str] = TM_MODELS

#: Baselines that learn nothing: fitted on the fly (no `tm train` step needed).
UNTRAINED = ("persistence", "seasonal", "historical-average")


def tm_model_names() -> list[str]:
    """Registered TM model names."""
    return sorted(TM_MODELS)


def get_tm_model(name: str):
    """The forecaster class registered under ``name`` (imported on demand)."""
    from trafficgen.registry import import_object

    spec = TM_MODELS.get(name)
    if spec is None:
        raise ConfigError(f"unknown TM model {name!r}; known: {', '.join(tm_model_names())}")
    try:
        return import_object(spec)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ConfigError(f"TM model {name!r} ({spec}) is not available in this build: {exc}") from None


def load_tm_model(path):
    """Load a saved forecaster directory (``config.json``'s ``tm_model`` field names its class)."""
    import json
    from pathlib import Path

    cfg = Path(path) / "config.json"
    if not cfg.exists():
        raise ConfigError(f"{path}: not a saved model directory (no config.json)")
    name = json.loads(cfg.read_text()).get("tm_model")
    if name is None:
        raise ConfigError(f"{cfg}: missing 'tm_model' field")
    return get_tm_model(name).from_pretrained(path)


__all__ = ["TM_BASELINES", "UNTRAINED", "get_tm_model", "load_tm_model", "tm_model_names"]
