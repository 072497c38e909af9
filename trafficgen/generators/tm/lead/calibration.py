"""Post-hoc calibration of LEAD's samples on validation origins (our addition, not the paper's).

The diffusion samples live in *target units* ``t = (z[o+h] - anchor_z) / scale`` (see
:class:`~trafficgen.generators.tm.lead.forecaster.LeadForecaster`). Per horizon up to three
numbers are fitted on validation samples, nothing on the test part:

* ``shrink`` (lambda in a grid over [0, 1]): how much of the samples' median correction of the
  anchor to keep, picked by the validation RMSE in real units. 1 keeps LEAD's median as is, 0
  falls back to the anchor; recorded, so a table shows what the diffusion median adds.
* ``spread`` (c > 0) and ``power`` (p > 0): each sample's deviation ``d`` from its entry's median
  becomes ``c * m * sign(d) * (|d| / m) ** p`` with ``m`` the entry's median |d| (so the map is
  scale-free per entry and monotone). ``c`` is set by bisection so that the central 90 % interval
  of the samples covers 90 % of the validation truths; with ``levels=(0.5, 0.9)`` (the default)
  ``p`` is then picked on a grid so that the 50 % interval covers closest to 50 %: p > 1 gives
  heavier tails than the raw samples (near-Gaussian when the diffusion has learnt little), which
  is what heavy-tailed traffic residuals need; ``levels=(0.9,)`` keeps p = 1 (one spread factor,
  LEAD's default: with 8 samples per forecast the fitted p ~ 2.2 put the outermost samples so far
  out that CRPS doubled on Abilene although both coverages were right).
  Coverage is computed on the mapped samples with the reported metric's linear sample quantiles
  (up to the monotone, per-entry map back to real units, which moves interpolated quantiles
  slightly).

Calibrated samples: ``t' = shrink * median + c * m * sign(d) * (|d| / m) ** p``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["POWER_GRID", "SHRINK_GRID", "apply_calibration", "fit_calibration"]

SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
POWER_GRID = tuple(np.round(np.arange(0.5, 3.01, 0.1), 2))


def _deviate(dev: np.ndarray, scale: np.ndarray, spread: float, power: float) -> np.ndarray:
    """``spread * scale * sign(dev) * (|dev| / scale) ** power`` (``dev`` itself where scale is 0)."""
    if power == 1.0:
        return spread * dev
    safe = np.where(scale > 0, scale, 1.0)
    shaped = safe * np.sign(dev) * (np.abs(dev) / safe) ** power
    return spread * np.where(scale > 0, shaped, dev)


def _per_horizon(v, h: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.float64), (h,))


def apply_calibration(x: np.ndarray, shrink, spread, power=1.0) -> np.ndarray:
    """``x`` (B, S, H, N, N) samples in target units; ``shrink``, ``spread``, ``power`` (H,) or
    scalars -> same shape."""
    h = x.shape[2]
    med = np.median(x, axis=1, keepdims=True)  # (B, 1, H, N, N)
    dev = x - med
    scale = np.median(np.abs(dev), axis=1, keepdims=True)  # (B, 1, H, N, N)
    out = np.empty_like(x)
    params = zip(_per_horizon(shrink, h), _per_horizon(spread, h), _per_horizon(power, h), strict=True)
    for k, (lam, c, p) in enumerate(params):
        out[:, :, k] = lam * med[:, :, k] + _deviate(dev[:, :, k], scale[:, :, k], float(c), float(p))
    return out


def _order_stats(xs_sorted: np.ndarray, level: float):
    """The two order statistics and weights numpy's linear quantile uses for the central ``level``
    interval: [(lower, upper, weight) for the low and the high bound], each (B, N, N)."""
    n = xs_sorted.shape[1]
    out = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        pos = q * (n - 1)
        j = int(np.floor(pos))
        out.append((xs_sorted[:, j], xs_sorted[:, min(j + 1, n - 1)], pos - j))
    return out


def _coverage(stats, med: np.ndarray, m: np.ndarray, truth: np.ndarray, shrink: float, spread: float,
              power: float) -> float:
    """Coverage of one horizon's central interval of the calibrated samples, with the reported
    metric's linear sample quantiles: the map is monotone, so a quantile of the mapped samples
    interpolates the mapped order statistics ``stats`` (:func:`_order_stats`); ``med``, ``m``,
    ``truth`` (B, N, N)."""
    bounds = []
    for a, b, w in stats:
        fa = shrink * med + _deviate(a - med, m, spread, power)
        fb = shrink * med + _deviate(b - med, m, spread, power)
        bounds.append((1 - w) * fa + w * fb)
    return float(np.mean((truth >= bounds[0]) & (truth <= bounds[1])))


def _spread_for(cov: Callable[[float], float], level: float, iters: int) -> float:
    """Smallest spread c whose ``cov(c)`` reaches ``level`` (coverage grows with c)."""
    lo, hi = 1e-3, 1.0
    while cov(hi) < level and hi < 1e4:
        hi *= 2.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if cov(mid) >= level else (mid, hi)
    return float(hi)


def fit_calibration(x: np.ndarray, truth: np.ndarray, rmse_of: Callable[[np.ndarray, int], float], *,
                    levels: Sequence[float] = (0.5, 0.9), shrink_grid=SHRINK_GRID, power_grid=POWER_GRID,
                    iters: int = 30) -> dict:
    """Per-horizon ``shrink``, ``spread`` and ``power`` from validation samples.

    ``x`` (B, S, H, N, N) and ``truth`` (B, H, N, N) in target units; ``rmse_of(point_t, k)``
    returns the real-unit RMSE of a point forecast (B, N, N) in target units at horizon index k.
    ``levels``: ``(0.9,)`` fits the spread only (p = 1); ``(inner, outer)`` also the power.
    Returns ``{"shrink", "spread", "power", "val_rmse", "val_coverage": {level: [H]}}``.
    """
    levels = sorted(float(v) for v in levels)
    outer, inner = levels[-1], (levels[0] if len(levels) > 1 else None)
    med = np.median(x, axis=1)  # (B, H, N, N)
    out = {"shrink": [], "spread": [], "power": [], "val_rmse": [],
           "val_coverage": {str(v): [] for v in levels}}
    for k in range(x.shape[2]):
        xs = x[:, :, k]  # (B, S, N, N)
        m = np.median(np.abs(xs - med[:, None, k]), axis=1)  # (B, N, N)
        rmses = [float(rmse_of(lam * med[:, k], k)) for lam in shrink_grid]
        lam = float(shrink_grid[int(np.argmin(rmses))])
        t = truth[:, k]
        xs_sorted = np.sort(xs, axis=1)
        stats = {v: _order_stats(xs_sorted, v) for v in levels}

        def cov(c, p, level, stats=stats, m=m, t=t, lam=lam, k=k):
            return _coverage(stats[level], med[:, k], m, t, lam, c, p)

        best = (np.inf, 1.0, _spread_for(lambda c: cov(c, 1.0, outer), outer, iters))
        if inner is not None:
            for p in power_grid:
                c = _spread_for(lambda c, p=p: cov(c, float(p), outer), outer, iters)
                gap = abs(cov(c, float(p), inner) - inner)
                if gap < best[0]:
                    best = (gap, float(p), c)
        _, p, c = best
        out["shrink"].append(lam)
        out["spread"].append(c)
        out["power"].append(p)
        out["val_rmse"].append(rmses)
        for v in levels:
            out["val_coverage"][str(v)].append(cov(c, p, v))
    return out
