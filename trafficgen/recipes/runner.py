"""Recipe runner: ``trafficgen recipe run NAME`` reruns a paper's tables from a YAML recipe.

A recipe is a YAML file (shipped ones live beside this module) with at least::

    name: lead
    runner: trafficgen.recipes.lead:run     # function(config: dict, out_dir: Path, quick: bool) -> dict
    seed: 0
    ...                                      # anything the runner reads
    quick: {...}                             # overrides merged into the config under --quick

The runner writes its tables, plots and a ``summary.md`` into ``out_dir``; this module writes
``resolved_config.yaml`` (config after overrides, seed included) and ``results.json`` (the
function's return value) beside them.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import yaml

from trafficgen.errors import ConfigError
from trafficgen.registry import import_object

RECIPE_DIR = Path(__file__).parent


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown recipe {str(name_or_path)!r}; available: {', '.join(available_recipes())}")
    config = yaml.safe_load(path.read_text()) or {}
    if "runner" not in config:
        raise ConfigError(f"{path}: recipe has no 'runner' entry")
    return config


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_config(config: dict, *, quick: bool = False, overrides: dict | None = None) -> dict:
    resolved = {k: v for k, v in config.items() if k != "quick"}
    if quick:
        resolved = _merge(resolved, config.get("quick", {}))
    if overrides:
        resolved = _merge(resolved, overrides)
    resolved["quick_mode"] = bool(quick)
    return resolved


def device_params(cls, config: dict) -> dict:
    """``{"device": ...}`` when the recipe config has a ``device`` (``trafficgen recipe run
    --device``) and ``cls`` takes one, else ``{}`` (models without a device run where they run)."""
    device = config.get("device")
    if device is None or "device" not in cls._param_names():
        return {}
    return {"device": device}


def check_config_keys(config: dict, runner) -> None:
    """Reject top-level recipe keys the runner's module does not declare in ``CONFIG_KEYS``."""
    import sys

    known = getattr(sys.modules[runner.__module__], "CONFIG_KEYS", None)
    if known is None:
        return
    unknown = sorted(set(config) - set(known) - {"device"})  # the --device override: every runner reads it
    if unknown:
        raise ConfigError(f"recipe {config.get('name', '?')}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(known)}")


def run_recipe(name_or_path: str | Path, out_dir: str | Path, *, quick: bool = False,
               overrides: dict | None = None) -> dict:
    """Run a recipe; returns the runner's results dict (also written to results.json)."""
    config = resolve_config(load_recipe(name_or_path), quick=quick, overrides=overrides)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "resolved_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    func = import_object(config["runner"])
    check_config_keys(config, func)
    t0 = time.perf_counter()
    results = func(config, out_dir, quick)
    results = dict(results or {})
    results.setdefault("wall_time_s", time.perf_counter() - t0)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
