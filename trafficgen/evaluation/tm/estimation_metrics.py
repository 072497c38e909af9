"""Traffic-matrix estimation and synthesis metrics (DDPM-TME paper and common practice).

Estimation, on OD vectors ``x`` / ``x_hat`` of shape (T, n_od) in real units:

* :func:`rmse` -- root mean squared error over all entries; :func:`rmse_t` -- per time point
  ``RMSE(t) = sqrt(mean_i (x_i(t) - x_hat_i(t))^2)`` (T,), whose mean/median/std/max the paper tabulates;
* :func:`tre` -- temporal relative error ``TRE(t) = sum_i |x_i(t) - x_hat_i(t)| / sum_i x_i(t)`` (T,);
* :func:`sre` -- spatial relative error ``SRE(i) = sum_t |x_i(t) - x_hat_i(t)| / sum_t x_i(t)``
  (n_od,), over flows with non-zero total (all-zero flows are dropped);
* :func:`summary_stats` -- mean, median, std, max; :func:`error_cdf` -- CDF of absolute errors;
* :func:`link_residual` -- relative link-load misfit ``||x_hat A - y||_1 / ||y||_1`` per time.

Synthesis (real vs synthetic samples, (n, n_od)):

* :func:`mmd_rbf` -- squared maximum mean discrepancy, RBF kernel, median-heuristic bandwidth, on
  ``log1p`` features standardised with the real set's statistics (0 = same distribution);
* :func:`discriminator_score` -- held-out accuracy of a RandomForest telling real from synthetic
  on balanced sets (0.5 = indistinguishable, 1 = fully separable).
"""
from __future__ import annotations

import numpy as np

from trafficgen.errors import ConfigError

__all__ = ["METRIC_INFO", "rmse", "rmse_t", "tre", "sre", "summary_stats", "error_cdf", "link_residual",
           "estimation_report", "mmd_rbf", "discriminator_score"]

#: name -> (direction, range).
METRIC_INFO = {
    "rmse": ("lower", (0.0, np.inf)), "tre": ("lower", (0.0, np.inf)), "sre": ("lower", (0.0, np.inf)),
    "link_residual": ("lower", (0.0, np.inf)), "mmd_rbf": ("lower", (0.0, 2.0)),
    "discriminator_score": ("closer to 0.5", (0.0, 1.0)),
}


def _pair(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    if x.ndim == 3:
        x = x.reshape(len(x), -1)
    if x_hat.ndim == 3:
        x_hat = x_hat.reshape(len(x_hat), -1)
    if x.shape != x_hat.shape or x.ndim != 2:
        raise ConfigError(f"x {x.shape} and x_hat {x_hat.shape} must both be (T, n_od) or (T, N, N)")
    return x, x_hat


def rmse(x, x_hat) -> float:
    x, x_hat = _pair(x, x_hat)
    return float(np.sqrt(np.mean((x - x_hat) ** 2)))


def rmse_t(x, x_hat) -> np.ndarray:
    """(T,) root mean squared error of each time point over the OD flows."""
    x, x_hat = _pair(x, x_hat)
    return np.sqrt(np.mean((x - x_hat) ** 2, axis=1))


def tre(x, x_hat) -> np.ndarray:
    """(T,) temporal relative errors (time points with zero total traffic are NaN)."""
    x, x_hat = _pair(x, x_hat)
    tot = x.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, np.abs(x - x_hat).sum(1) / tot, np.nan)


def sre(x, x_hat) -> np.ndarray:
    """(n_nonzero,) spatial relative errors of the flows with non-zero total, in flow order."""
    x, x_hat = _pair(x, x_hat)
    tot = x.sum(0)
    keep = tot > 0
    return np.abs(x - x_hat).sum(0)[keep] / tot[keep]


def summary_stats(values) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "std": float("nan"), "max": float("nan")}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()), "max": float(v.max())}


def error_cdf(x, x_hat, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(absolute error thresholds (n_points,), fraction of entries with error <= threshold)."""
    x, x_hat = _pair(x, x_hat)
    err = np.sort(np.abs(x - x_hat).ravel())
    q = np.linspace(0.0, 1.0, n_points)
    thr = np.quantile(err, q)
    return thr, np.searchsorted(err, thr, side="right") / err.size


def link_residual(x_hat, Y, A) -> np.ndarray:
    """(T,) relative link-load misfit ``sum|x_hat A - y| / sum|y|``."""
    x_hat = np.asarray(x_hat, dtype=np.float64).reshape(len(Y), -1)
    Y = np.asarray(Y, dtype=np.float64)
    return np.abs(x_hat @ np.asarray(A, dtype=np.float64) - Y).sum(1) / np.maximum(np.abs(Y).sum(1), 1e-300)


def estimation_report(x, x_hat, Y=None, A=None) -> dict:
    """RMSE + summary stats of RMSE(t), TRE and SRE (+ link residual when Y and A are given)."""
    out = {"rmse": rmse(x, x_hat), "rmse_t": summary_stats(rmse_t(x, x_hat)), "tre": summary_stats(tre(x, x_hat)),
           "sre": summary_stats(sre(x, x_hat))}
    if Y is not None and A is not None:
        out["link_residual"] = summary_stats(link_residual(x_hat, Y, A))
    return out


def _features(real, synth) -> tuple[np.ndarray, np.ndarray]:
    real = np.log1p(np.clip(np.asarray(real, dtype=np.float64).reshape(len(real), -1), 0, None))
    synth = np.log1p(np.clip(np.asarray(synth, dtype=np.float64).reshape(len(synth), -1), 0, None))
    if real.shape[1] != synth.shape[1]:
        raise ConfigError(f"real {real.shape} and synthetic {synth.shape} have different widths")
    mu, sd = real.mean(0), real.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return (real - mu) / sd, (synth - mu) / sd


def mmd_rbf(real, synth, *, bandwidth: float | None = None, max_samples: int = 1000, random_state: int = 0) -> float:
    """Squared MMD (biased V-statistic) with k(a, b) = exp(-||a - b||^2 / (2 h^2)); ``h`` from the
    median pairwise distance of the pooled sample unless given."""
    a, b = _features(real, synth)
    rng = np.random.default_rng(random_state)
    if len(a) > max_samples:
        a = a[rng.choice(len(a), max_samples, replace=False)]
    if len(b) > max_samples:
        b = b[rng.choice(len(b), max_samples, replace=False)]
    z = np.concatenate([a, b])
    sq = np.maximum((z ** 2).sum(1)[:, None] + (z ** 2).sum(1)[None] - 2 * z @ z.T, 0.0)  # (n, n)
    if bandwidth is None:
        med = np.median(sq[np.triu_indices(len(z), 1)])
        bandwidth = float(np.sqrt(0.5 * med)) if med > 0 else 1.0
    k = np.exp(-sq / (2 * bandwidth ** 2))
    na = len(a)
    return float(k[:na, :na].mean() + k[na:, na:].mean() - 2 * k[:na, na:].mean())


def discriminator_score(real, synth, *, random_state: int = 0, test_size: float = 0.3,
                        n_estimators: int = 100) -> float:
    """Held-out accuracy of a RandomForest separating real from synthetic (balanced subsets)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    a, b = _features(real, synth)
    rng = np.random.default_rng(random_state)
    n = min(len(a), len(b))
    if n < 4:
        raise ConfigError("discriminator_score needs at least 4 real and 4 synthetic samples")
    a = a[rng.choice(len(a), n, replace=False)]
    b = b[rng.choice(len(b), n, replace=False)]
    X = np.concatenate([a, b])
    y = np.r_[np.zeros(n), np.ones(n)]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=random_state, stratify=y)
    clf = RandomForestClassifier(n_estimators=n_estimators, random_state=random_state, n_jobs=1).fit(Xtr, ytr)
    return float((clf.predict(Xte) == yte).mean())
