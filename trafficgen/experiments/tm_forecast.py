"""The traffic-matrix forecasting protocol: fit a forecaster on the chronological training part
and forecast from every test origin (tables and plots: :mod:`trafficgen.evaluation.tm.forecast_report`).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from trafficgen.errors import ConfigError

__all__ = ["evaluate_forecaster", "forecast_origins", "subsample_origins"]


def forecast_origins(n_steps: int, test_start: int, horizons: Sequence[int], min_history: int) -> np.ndarray:
    """Origins ``o`` in ``[max(test_start, min_history - 1), n_steps - max(horizons))`` (int64)."""
    first = max(int(test_start), int(min_history) - 1)
    return np.arange(first, int(n_steps) - max(int(h) for h in horizons), dtype=np.int64)


def subsample_origins(origins: np.ndarray, max_origins: int | None) -> np.ndarray:
    """At most ``max_origins`` of ``origins``, evenly spaced, the first and the last included
    (all of them when ``max_origins`` is None or not smaller)."""
    if max_origins is None or len(origins) <= int(max_origins):
        return origins
    if int(max_origins) < 1:
        raise ConfigError(f"max_origins must be >= 1, got {max_origins}")
    keep = np.unique(np.linspace(0, len(origins) - 1, int(max_origins)).round().astype(int))
    return origins[keep]


def evaluate_forecaster(model, series, *, horizons: Sequence[int] = (1, 10, 20), t_in: int = 24,
                        split: Sequence[float] = (0.7, 0.15, 0.15), n_samples: int | None = None,
                        fit: bool = True, random_state: int | None = 0, max_origins: int | None = None) -> dict:
    """Fit (unless ``fit=False``: an already fitted model) and evaluate ``model`` on ``series``.

    ``t_in`` is a floor on the history every origin has (the model's own ``min_history`` too).
    ``max_origins`` keeps that many test origins, evenly spaced (:func:`subsample_origins`; None:
    all). With ``n_samples``, a model whose point forecast is a statistic of its samples
    (``point_from_samples`` returns an array, LEAD: the median) is sampled once and its point
    forecast taken from those samples.
    Returns a JSON-friendly dict (``metrics[str(h)]`` per horizon, timings, sizes) with the arrays
    under ``"forecast"``: ``origins`` (B,), ``horizons`` (H,), ``point`` / ``y_true`` (B, H, N, N)
    and, with ``n_samples``, ``samples`` (B, S, H, N, N).
    """
    from trafficgen.data.windows import chronological_split
    from trafficgen.evaluation.tm.forecast_metrics import evaluate_forecast

    horizons = [int(h) for h in horizons]
    if not horizons or min(horizons) < 1:
        raise ConfigError(f"horizons must be >= 1, got {horizons}")
    train, val, test = chronological_split(series, split)
    fit_time = 0.0
    if fit:
        start = time.perf_counter()
        model.fit(train, val=val if len(val) else None)
        fit_time = time.perf_counter() - start
    values = series.values
    if max_origins is not None and int(max_origins) < 1:
        raise ConfigError(f"max_origins must be >= 1, got {max_origins}")
    test_origins = forecast_origins(len(series), len(train) + len(val), horizons,
                                    max(int(t_in), int(model.min_history)))
    if len(test_origins) == 0:
        raise ConfigError(f"no test origins: {len(test)} test matrices are too few for horizons {horizons}")
    origins = subsample_origins(test_origins, max_origins)
    y_true = values[origins[:, None] + np.asarray(horizons)[None, :]]  # (B, H, N, N)
    samples = point = None
    start = time.perf_counter()
    if n_samples:
        samples = model.predict_samples(values, origins, horizons, int(n_samples),
                                        random_state=random_state)  # (B, S, H, N, N)
        from_samples = getattr(model, "point_from_samples", None)
        point = from_samples(samples) if from_samples is not None else None  # (B, H, N, N) or None
    if point is None:
        point = model.predict(values, origins, horizons)  # (B, H, N, N)
    predict_time = time.perf_counter() - start
    metrics = evaluate_forecast(y_true, point, horizons, unit=series.unit, interval_s=series.interval_s,
                                samples=samples)
    forecast = {"origins": origins, "horizons": np.asarray(horizons, dtype=np.int64), "point": point,
                "y_true": y_true}
    if samples is not None:
        forecast["samples"] = samples
    return {
        "model": getattr(model, "name", type(model).__name__),
        "dataset": series.meta.get("dataset"),
        "unit": series.unit, "interval_s": float(series.interval_s), "nodes": list(series.nodes),
        "horizons": horizons, "t_in": int(t_in), "split": [float(f) for f in split],
        "n_train": len(train), "n_val": len(val), "n_test": len(test),
        "n_origins": int(len(origins)), "n_test_origins": int(len(test_origins)),
        "max_origins": None if max_origins is None else int(max_origins), "first_origin": int(origins[0]),
        "n_samples": int(n_samples) if n_samples else None,
        "fit_time_s": fit_time, "predict_time_s": predict_time,
        "metrics": {str(h): metrics[h] for h in horizons},
        "forecast": forecast,
    }
