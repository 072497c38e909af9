"""Post-hoc calibration of LEAD's samples on validation origins (our addition, not the paper's).

The diffusion samples live in *target units* ``t = (z[o+h] - anchor_z) / scale`` (see
:class:`~trafficgen.generators.tm.lead.forecaster.LeadForecaster`). Per horizon two numbers are
fitted on validation samples, nothing on the test part:

* ``shrink`` (lambda in a grid over [0, 1]): how much of the samples' median correction of the
  anchor to keep, picked by the validation RMSE in real units. 1 keeps LEAD's median as is, 0
  falls back to the anchor; recorded, so a table shows what the diffusion median adds.
* ``spread`` (c > 0): the samples' deviations from their median are multiplied by c so that the
  central 90 % interval of the samples covers 90 % of the validation truths (bisection; coverage
  is monotone in c). A monotone map per entry leaves the coverage in real units equal to the
  coverage in target units, so this is exact for the metric that is reported.

Calibrated samples: ``t' = shrink * median + spread * (t - median)``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SHRINK_GRID", "apply_calibration", "fit_calibration"]

SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def apply_calibration(x: np.ndarray, shrink: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """``x`` (B, S, H, N, N) samples in target units; ``shrink``, ``spread`` (H,) -> same shape."""
    med = np.median(x, axis=1, keepdims=True)  # (B, 1, H, N, N)
    sh = np.asarray(shrink, dtype=np.float64)[None, None, :, None, None]
    sp = np.asarray(spread, dtype=np.float64)[None, None, :, None, None]
    return sh * med + sp * (x - med)


def _coverage(x: np.ndarray, truth: np.ndarray, shrink: float, spread: float, level: float) -> float:
    """x (B, S, N, N), truth (B, N, N), one horizon."""
    med = np.median(x, axis=1)  # (B, N, N)
    lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2], axis=1)  # (B, N, N) each
    lo, hi = shrink * med + spread * (lo - med), shrink * med + spread * (hi - med)
    return float(np.mean((truth >= lo) & (truth <= hi)))


def fit_calibration(x: np.ndarray, truth: np.ndarray, rmse_of: Callable[[np.ndarray, int], float], *,
                    level: float = 0.9, shrink_grid=SHRINK_GRID, iters: int = 40) -> dict:
    """Per-horizon ``shrink`` and ``spread`` from validation samples.

    ``x`` (B, S, H, N, N) and ``truth`` (B, H, N, N) in target units; ``rmse_of(point_t, k)``
    returns the real-unit RMSE of a point forecast (B, N, N) in target units at horizon index k.
    Returns ``{"shrink": [H], "spread": [H], "val_rmse": [[len(grid)] per H], "val_coverage": [H]}``.
    """
    med = np.median(x, axis=1)  # (B, H, N, N)
    out = {"shrink": [], "spread": [], "val_rmse": [], "val_coverage": []}
    for k in range(x.shape[2]):
        rmses = [float(rmse_of(lam * med[:, k], k)) for lam in shrink_grid]
        lam = float(shrink_grid[int(np.argmin(rmses))])
        lo, hi = 1e-3, 1.0
        while _coverage(x[:, :, k], truth[:, k], lam, hi, level) < level and hi < 1e4:
            hi *= 2.0
        for _ in range(iters):  # smallest spread that reaches the level
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if _coverage(x[:, :, k], truth[:, k], lam, mid, level) >= level else (mid, hi)
        out["shrink"].append(lam)
        out["spread"].append(float(hi))
        out["val_rmse"].append(rmses)
        out["val_coverage"].append(_coverage(x[:, :, k], truth[:, k], lam, hi, level))
    return out
