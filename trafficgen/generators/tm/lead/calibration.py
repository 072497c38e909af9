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

Quantile maps (``mode`` ``"qmap_rank"`` / ``"qmap_cdf"``, :func:`apply_quantile_map`): the shape
of the spread comes from the anchor's own residual distribution instead, per horizon and OD pair:
``q_resid`` (L, H, N, N), its quantiles at :data:`QMAP_LEVELS` measured on held-out residuals
(LEAD: the training-set residuals of the anchor in target units, i.e. LEAD's per-pair-scaled
log1p(x / s) space; :func:`residual_quantiles`: pairs without training spread take the pooled
shape). Each sample gets a level u in (0, 1) and becomes
``t' = shrink * median + c * (Q(u) - Q(0.5))``, so the point forecast is the same as with the
spread factor and the ranks of the K samples of every entry are kept (the diffusion still decides
which sample is high where: the dependence between OD pairs and horizons):

* ``"qmap_rank"``: u = (rank + 0.5) / K. Every forecast of a pair gets the same K quantiles: the
  diffusion contributes none of the marginal spread, only the joint ordering.
* ``"qmap_cdf"``: u = F(d), F the pooled empirical distribution of the diffusion's deviations d
  from their forecast's median for that pair and horizon over the calibration origins
  (``q_dev`` (L, H, N, N)): a forecast whose samples spread wider than usual gets wider quantiles,
  so the diffusion keeps its say on how the spread varies between origins.
* ``"qmap_levels"``: ``qmap_rank`` with its levels recalibrated on the validation truths (Kuleshov
  et al. 2018, "Accurate uncertainties for deep learning using calibrated regression"): each
  truth's level v = Q^-1(y - centre + Q(0.5)) under its own pair's map (its PIT value) is pooled
  per horizon, and u becomes G^-1(u), G the empirical distribution of those v (``level_map``
  (H, L): G^-1 at :data:`QMAP_LEVELS`). c = 1. One factor moves every level alike, so when the
  validation errors are heavier-tailed than the training residuals, fixing the 90 % level widens
  the centre (GEANT: 50 % intervals covering 0.60); the level map gets every level right at once.
  It calibrates the predictive distribution itself, not the K samples' interval: the linear
  sample quantiles of K = 8 quantile-level samples reach only about the 10th / 90th percentile
  of it, so its K-sample 90 % intervals cover about 0.8 at K = 8 and 0.87-0.89 at K = 32.

``c`` per horizon (except ``qmap_levels``) is set by bisection so that the 90 % intervals cover
90 % of the validation truths (as the spread factor); :func:`fit_quantile_map` returns it for
every mode and the caller picks between the factor and the maps by validation CRPS.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["COVERAGE_BAND", "POWER_GRID", "QMAP_LEVELS", "QMAP_MODES", "SHRINK_GRID", "apply_calibration",
           "apply_quantile_map", "choose_modes", "fit_calibration", "fit_level_map", "fit_quantile_map",
           "pit_values", "quantile_table", "residual_quantiles", "width_variation"]

SHRINK_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
POWER_GRID = tuple(np.round(np.arange(0.5, 3.01, 0.1), 2))
#: Levels of the stored quantile tables of the quantile maps (0 and 1: the observed extremes).
QMAP_LEVELS = np.linspace(0.0, 1.0, 101)
QMAP_MODES = ("qmap_rank", "qmap_cdf", "qmap_levels")


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


# ---------------------------------------------------------------------------------- quantile maps
def quantile_table(x: np.ndarray, axis=0) -> np.ndarray:
    """Quantiles at :data:`QMAP_LEVELS` over ``axis`` (an int or a tuple): (L, ...rest)."""
    return np.quantile(np.asarray(x, dtype=np.float64), QMAP_LEVELS, axis=axis)


#: A pair whose training residuals span (5-95 %) less than this fraction of the horizon's median
#: pair's span takes the pooled shape of the horizon (see :func:`residual_quantiles`).
DEGENERATE_WIDTH = 0.05


def residual_quantiles(resid: np.ndarray) -> np.ndarray:
    """Per-pair quantile tables (L, H, N, N) of held-out residuals ``resid`` (B, H, N, N) in target
    units. Pairs with (almost) no spread there (a pair that is 0 all through the training part:
    GEANT has 12-15 % of them) would get a zero-width map, which no spread factor can widen, while
    the pair may carry traffic later: those take the quantiles of all pairs' residuals of the
    horizon pooled (the target units are per-pair scaled, so the pooled shape is commensurate)."""
    resid = np.asarray(resid, dtype=np.float64)
    q = quantile_table(resid, axis=0)  # (L, H, N, N)
    lo, hi = int(round(0.05 * (len(QMAP_LEVELS) - 1))), int(round(0.95 * (len(QMAP_LEVELS) - 1)))
    for k in range(resid.shape[1]):
        width = q[hi, k] - q[lo, k]  # (N, N)
        bad = width <= DEGENERATE_WIDTH * np.median(width)
        if np.any(bad):
            pooled = quantile_table(resid[:, k].reshape(-1), axis=0)  # (L,)
            q[:, k][:, bad] = pooled[:, None]
    return q


def _q_at(q: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Linear interpolation of tables ``q`` (L, E) at levels ``u`` (M, E) on the uniform grid."""
    n = q.shape[0] - 1
    pos = np.clip(u, 0.0, 1.0) * n
    j = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    w = pos - j
    lo = np.take_along_axis(q, j, axis=0)
    hi = np.take_along_axis(q, j + 1, axis=0)
    return (1 - w) * lo + w * hi


def _cdf_at(q: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Levels of values ``d`` (M, E) under the piecewise-linear distributions with quantile tables
    ``q`` (L, E) (the inverse of :func:`_q_at`; flat stretches of a table take their middle level)."""
    out = np.empty_like(d)
    for e in range(q.shape[1]):
        lo = np.interp(d[:, e], q[:, e], QMAP_LEVELS, left=0.0, right=1.0)
        hi = -np.interp(-d[:, e], -q[::-1, e], -QMAP_LEVELS[::-1], left=-1.0, right=0.0)
        out[:, e] = 0.5 * (lo + hi)
    return out


def _levels_of(xs: np.ndarray, med: np.ndarray, mode: str, q_dev: np.ndarray | None,
               level_map: np.ndarray | None = None) -> np.ndarray:
    """Levels u (B, S, N, N) of one horizon's samples ``xs`` (B, S, N, N) (``med`` (B, N, N);
    ``level_map`` (L,) of that horizon for ``qmap_levels``)."""
    b, s = xs.shape[:2]
    if mode in ("qmap_rank", "qmap_levels"):
        ranks = np.argsort(np.argsort(xs, axis=1, kind="stable"), axis=1, kind="stable")
        u = (ranks + 0.5) / s
        if mode == "qmap_rank":
            return u
        if level_map is None:
            raise ValueError("qmap_levels needs the fitted level map")
        return np.interp(u, QMAP_LEVELS, level_map)
    if mode == "qmap_cdf":
        if q_dev is None:
            raise ValueError("qmap_cdf needs the deviation quantiles q_dev")
        d = (xs - med[:, None]).reshape(b * s, -1)  # (B*S, N*N)
        return _cdf_at(q_dev.reshape(q_dev.shape[0], -1), d).reshape(xs.shape)
    raise ValueError(f"unknown quantile-map mode {mode!r}")


def _centre(q_resid_k: np.ndarray) -> np.ndarray:
    """Q(0.5) (N, N) of one horizon's tables (L, N, N)."""
    q = q_resid_k.reshape(q_resid_k.shape[0], -1)
    return _q_at(q, np.full((1, q.shape[1]), 0.5)).reshape(q_resid_k.shape[1:])


def _qmap_dev(xs, med, q_resid_k, mode, q_dev_k, level_map_k=None) -> np.ndarray:
    """``Q(u) - Q(0.5)`` (B, S, N, N) for one horizon (tables (L, N, N))."""
    u = _levels_of(xs, med, mode, q_dev_k, level_map_k)
    b, s = xs.shape[:2]
    q = q_resid_k.reshape(q_resid_k.shape[0], -1)  # (L, N*N)
    mapped = _q_at(q, u.reshape(b * s, -1)).reshape(xs.shape)
    return mapped - _centre(q_resid_k)


def pit_values(truth: np.ndarray, centre: np.ndarray, q_resid_k: np.ndarray) -> np.ndarray:
    """(B * N * N,) the truths' levels under their own pair's quantile map around ``centre`` (their
    PIT values; ``truth``, ``centre`` (B, N, N) in target units, ``q_resid_k`` (L, N, N))."""
    d = truth - centre + _centre(q_resid_k)  # (B, N, N)
    q = q_resid_k.reshape(q_resid_k.shape[0], -1)  # (L, N*N)
    return _cdf_at(q, d.reshape(len(d), -1)).ravel()


def fit_level_map(truth: np.ndarray, centre: np.ndarray, q_resid_k: np.ndarray) -> np.ndarray:
    """``qmap_levels``' map G^-1 at :data:`QMAP_LEVELS` (L,) for one horizon: the quantiles of the
    validation truths' :func:`pit_values` (``centre``: the calibrated point forecast)."""
    return np.quantile(pit_values(truth, centre, q_resid_k), QMAP_LEVELS)


def apply_quantile_map(x: np.ndarray, shrink, spread, mode, q_resid: np.ndarray,
                       q_dev: np.ndarray | None = None, power=1.0, level_map: np.ndarray | None = None) -> np.ndarray:
    """``x`` (B, S, H, N, N) samples in target units -> ``shrink * median + spread * (Q(u) - Q(0.5))``
    per horizon; ``mode`` one of :data:`QMAP_MODES` or ``"factor"`` (that horizon gets
    :func:`apply_calibration` at ``power``), scalars or one per horizon; ``q_resid`` / ``q_dev``
    (L, H, N, N) and ``level_map`` (H, L) (``qmap_levels``) for the same horizons as ``x``."""
    h = x.shape[2]
    modes = [mode] * h if isinstance(mode, str) else list(mode)
    shrink, spread, power = _per_horizon(shrink, h), _per_horizon(spread, h), _per_horizon(power, h)
    out = np.empty_like(x)
    med = np.median(x, axis=1)  # (B, H, N, N)
    for k in range(h):
        if modes[k] == "factor":
            out[:, :, k] = apply_calibration(x[:, :, k:k + 1], shrink[k], spread[k], power[k])[:, :, 0]
            continue
        dev = _qmap_dev(x[:, :, k], med[:, k], q_resid[:, k], modes[k], None if q_dev is None else q_dev[:, k],
                        None if level_map is None else level_map[k])
        out[:, :, k] = shrink[k] * med[:, None, k] + float(spread[k]) * dev
    return out


def fit_quantile_map(x: np.ndarray, truth: np.ndarray, shrink, q_resid: np.ndarray, *, level: float = 0.9,
                     modes: Sequence[str] = QMAP_MODES, iters: int = 30) -> dict:
    """For every mode, the per-horizon spread ``c`` whose central ``level`` intervals cover ``level``
    of the validation truths (``qmap_levels``: c = 1 and its level map instead). ``x`` (B, S, H, N,
    N), ``truth`` (B, H, N, N) in target units, ``shrink`` (H,) (from :func:`fit_calibration`),
    ``q_resid`` (L, H, N, N). Returns ``{"q_dev": (L, H, N, N), "level_map": (H, L) or None,
    mode: {"spread": [H], "val_coverage": [H]}}`` (the coverage of the K samples' intervals)."""
    shrink = _per_horizon(shrink, x.shape[2])
    med = np.median(x, axis=1)  # (B, H, N, N)
    q_dev = quantile_table(x - med[:, None], axis=(0, 1))  # (L, H, N, N)
    out: dict = {"q_dev": q_dev, "level_map": None}
    if "qmap_levels" in modes:
        out["level_map"] = np.stack([fit_level_map(truth[:, k], shrink[k] * med[:, k], q_resid[:, k])
                                     for k in range(x.shape[2])])  # (H, L)
    for mode in modes:
        res = {"spread": [], "val_coverage": []}
        for k in range(x.shape[2]):
            g = None if out["level_map"] is None else out["level_map"][k]
            dev = _qmap_dev(x[:, :, k], med[:, k], q_resid[:, k], mode, q_dev[:, k], g)  # (B, S, N, N)
            lo, hi = np.quantile(dev, [(1 - level) / 2, (1 + level) / 2], axis=1)  # (B, N, N)
            centre = shrink[k] * med[:, k]
            t = truth[:, k]

            def cov(c, lo=lo, hi=hi, centre=centre, t=t):
                return float(np.mean((t >= centre + c * lo) & (t <= centre + c * hi)))

            c = 1.0 if mode == "qmap_levels" else _spread_for(cov, level, iters)
            res["spread"].append(c)
            res["val_coverage"].append(cov(c))
        out[mode] = res
    return out


#: A calibration mode whose K-sample 90 % intervals cover outside this band on the calibration
#: origins is not chosen by :func:`choose_modes` (unless none is inside).
COVERAGE_BAND = (0.85, 0.95)


def choose_modes(crps: dict[str, Sequence[float]], coverage: dict[str, Sequence[float]],
                 allowed: Sequence[str]) -> list[str]:
    """Per horizon, the mode of ``allowed`` with the lowest validation CRPS (``crps[mode][k]``)
    among those whose validation 90 % coverage (``coverage[mode][k]``) lies in
    :data:`COVERAGE_BAND`; among all of ``allowed`` when none does."""
    n_h = len(next(iter(crps.values())))
    out = []
    for k in range(n_h):
        inside = [m for m in allowed if COVERAGE_BAND[0] <= coverage[m][k] <= COVERAGE_BAND[1]]
        out.append(min(inside or list(allowed), key=lambda m, k=k: crps[m][k]))
    return out


def width_variation(x: np.ndarray) -> list[float]:
    """Per horizon, how much the samples' spread varies between forecasts of the same entry: the
    coefficient of variation over the origins of each entry's sample std, averaged over the entries
    (``x`` (B, S, H, N, N)). 0 when every forecast of a pair has the same spread (``qmap_rank``)."""
    sd = x.std(axis=1)  # (B, H, N, N)
    mean = sd.mean(axis=0)
    cv = np.where(mean > 0, sd.std(axis=0) / np.where(mean > 0, mean, 1.0), 0.0)  # (H, N, N)
    return [float(v) for v in cv.reshape(cv.shape[0], -1).mean(axis=1)]
