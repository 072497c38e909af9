"""Traffic-matrix forecast metrics: LEAD's per-matrix-normalised RMSE/MAE, real-unit errors,
CRPS and prediction-interval coverage.

LEAD's metric (:func:`lead_metrics`) min-max normalises **each matrix by its own min and max**,
the true matrix and the predicted one separately, and then takes RMSE / MAE over all entries.
This reproduces the reference numbers: on the two shipped Abilene weeks with a 70/15/15
chronological split (2822 / 605 / 605 matrices), persistence ("repeat the last matrix") at
horizon 1 over the 605 test targets scores RMSE 0.0396 / MAE 0.0149 (LEAD's paper: 0.1098 RMSE
for LEAD itself). Normalising the prediction with the *true* matrix's min/max instead gives
0.0369 / 0.0121, and one global min/max 0.024 / 0.008 -- so the choice matters, and the metric
throws the scale away: always report :func:`real_unit_metrics` beside it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.data.tmseries import _to_bits_per_second_factor
from trafficgen.errors import ConfigError
from trafficgen.evaluation.tm.probabilistic_metrics import crps_ensemble, interval_coverage, interval_width

__all__ = ["METRIC_INFO", "normalize_per_matrix", "lead_metrics", "real_unit_metrics",
           "crps_from_samples", "interval_coverage", "interval_width", "evaluate_forecast"]

#: name -> (direction, range) of every number these functions return.
METRIC_INFO = {
    "rmse": ("lower", (0.0, 1.0)), "mae": ("lower", (0.0, 1.0)),
    "rmse_mbps": ("lower", (0.0, np.inf)), "mae_mbps": ("lower", (0.0, np.inf)),
    "nmae": ("lower", (0.0, np.inf)), "crps_mbps": ("lower", (0.0, np.inf)),
    "coverage_50": ("closer to 0.5", (0.0, 1.0)), "coverage_90": ("closer to 0.9", (0.0, 1.0)),
    "width_50_mbps": ("lower at equal coverage", (0.0, np.inf)), "width_90_mbps": ("lower at equal coverage", (0.0, np.inf)),
}


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim < 2:
        raise ConfigError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal (..., N, N)")
    return y_true, y_pred


def normalize_per_matrix(values) -> np.ndarray:
    """Scale every matrix (last two axes) to [0, 1] by its own min and max (LEAD's metric; the
    Traffic-to-Image value channel before inversion). A constant matrix maps to all zeros."""
    values = np.asarray(values, dtype=np.float64)
    mins = values.min(axis=(-2, -1), keepdims=True)
    span = values.max(axis=(-2, -1), keepdims=True) - mins
    return (values - mins) / np.where(span > 0, span, 1.0)


def lead_metrics(y_true, y_pred) -> dict:
    """RMSE and MAE on per-matrix-normalised values, true and predicted each normalised by their
    own min/max (see the module doc for why, and the reference numbers)."""
    y_true, y_pred = _pair(y_true, y_pred)
    err = normalize_per_matrix(y_true) - normalize_per_matrix(y_pred)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}


def _to_mbps(values: np.ndarray, unit: str, interval_s: float) -> np.ndarray:
    return values * (_to_bits_per_second_factor(unit, float(interval_s)) / 1e6)


def real_unit_metrics(y_true, y_pred, *, unit: str, interval_s: float) -> dict:
    """RMSE and MAE in Mbit/s, and NMAE = sum |error| / sum |true| (unit-free).

    ``unit`` / ``interval_s`` are those of the series (e.g. "100bytes" and 300 for Abilene, whose
    factor to Mbit/s is 800 / 300 / 1e6).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    t, p = _to_mbps(y_true, unit, interval_s), _to_mbps(y_pred, unit, interval_s)
    err = p - t
    denom = np.abs(t).sum()
    return {"rmse_mbps": float(np.sqrt(np.mean(err ** 2))), "mae_mbps": float(np.mean(np.abs(err))),
            "nmae": float(np.abs(err).sum() / denom) if denom > 0 else float("nan")}


def crps_from_samples(y_true, samples) -> float:
    """Mean CRPS of the empirical sample distribution, ``E|X - y| - 0.5 E|X - X'|`` (all S^2
    ordered pairs), through scoringrules (:func:`~trafficgen.evaluation.tm.probabilistic_metrics.crps_ensemble`).
    ``y_true`` (B, ...), ``samples`` (B, S, ...); units are those of the inputs."""
    return crps_ensemble(y_true, samples)


def evaluate_forecast(y_true, y_pred, horizons: Sequence[int], *, unit: str, interval_s: float,
                      samples=None) -> dict:
    """All metrics per horizon: ``{h: {rmse, mae, rmse_mbps, mae_mbps, nmae[, crps_mbps,
    coverage_50, coverage_90, width_50_mbps, width_90_mbps]}}``.

    ``y_true``, ``y_pred``: (B, H, N, N) with H = len(horizons); ``samples``: (B, S, H, N, N) in the
    same units (CRPS reported in Mbit/s).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    horizons = [int(h) for h in horizons]
    if y_true.ndim != 4 or y_true.shape[1] != len(horizons):
        raise ConfigError(f"y_true {y_true.shape} must be (B, H, N, N) with H = {len(horizons)}")
    if samples is not None:
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 5 or samples.shape[:1] + samples.shape[2:] != y_true.shape:
            raise ConfigError(f"samples {samples.shape} must be (B, S, H, N, N) for {y_true.shape}")
    out = {}
    for k, h in enumerate(horizons):
        res = lead_metrics(y_true[:, k], y_pred[:, k])
        res.update(real_unit_metrics(y_true[:, k], y_pred[:, k], unit=unit, interval_s=interval_s))
        if samples is not None:
            t = _to_mbps(y_true[:, k], unit, interval_s)  # (B, N, N)
            smp = _to_mbps(samples[:, :, k], unit, interval_s)  # (B, S, N, N)
            res["crps_mbps"] = crps_ensemble(t, smp)
            res.update(interval_coverage(t, smp))
            res.update({f"{k}_mbps": v for k, v in interval_width(smp).items()})
        out[h] = res
    return out
