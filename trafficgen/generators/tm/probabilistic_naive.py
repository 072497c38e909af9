"""Probabilistic naive forecasters: a naive point forecast plus the empirical distribution of its
own training-set errors, per horizon and per OD pair.

* :class:`ProbabilisticPersistenceForecaster` (``"persistence-prob"``): persistence ``x[o]``.
* :class:`ProbabilisticHistoricalAverageForecaster` (``"historical-average-prob"``): the mean of
  the last ``t_in`` matrices.

``fit`` runs the point forecaster over every training origin for every horizon 1..max(horizons)
and keeps, per horizon and OD pair, ``n_quantiles`` quantiles of its errors at the levels
``(k + 0.5) / n_quantiles``. ``error_space`` says what an error is:

* ``"log"`` (default): ``log1p(x[o+h] / s) - log1p(point / s)`` with ``s`` the training series'
  mean; samples are ``s * expm1(log1p(point / s) + e)``, never negative. Errors then scale with
  the level of a large flow (multiplicative) and stay additive for small ones.
* ``"additive"``: ``x[o+h] - point`` in the series' units; samples are ``point + e`` clipped at 0.

``predict_samples`` returns, for S samples, the error quantiles at the levels ``(j + 0.5) / S``
(interpolated on the stored grid) added to the point forecast: a deterministic, sorted ensemble
that represents the error distribution (``random_state`` is accepted and unused). The point
forecast (:meth:`predict`) is the naive one itself, unchanged. The bar every probabilistic TM
forecaster's CRPS and coverage is read against (issue 21).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.naive import HistoricalAverageForecaster, PersistenceForecaster

_SPACES = ("log", "additive")


class _EmpiricalErrors:
    """Mixin over a naive point forecaster: per-horizon, per-OD error quantiles from training."""

    probabilistic = True

    def fit(self, train, *, val=None):
        if self.error_space not in _SPACES:
            raise ConfigError(f"error_space must be one of {_SPACES}, got {self.error_space!r}")
        if int(self.n_quantiles) < 2:
            raise ConfigError(f"n_quantiles must be >= 2, got {self.n_quantiles}")
        super().fit(train, val=val)
        values = np.asarray(train.values, dtype=np.float64)  # (T, N, N)
        h_max = max(int(h) for h in self.horizons)
        first = int(self.min_history) - 1
        if len(values) - h_max <= first + 1:
            raise InputFormatError(f"training series has {len(values)} matrices; the error distribution "
                                   f"needs more than {first + 1 + h_max}")
        mean = float(values.mean())
        self.error_scale_ = mean if mean > 0 else 1.0
        levels = (np.arange(int(self.n_quantiles)) + 0.5) / int(self.n_quantiles)  # (Q,)
        quantiles = []
        for h in range(1, h_max + 1):
            origins = np.arange(first, len(values) - h)
            point = super().predict(values, origins, [h])[:, 0]  # (B, N, N)
            err = self._to_space(values[origins + h]) - self._to_space(point)  # (B, N, N)
            quantiles.append(np.quantile(err, levels, axis=0))  # (Q, N, N)
        self.error_quantiles_ = np.stack(quantiles)  # (H_max, Q, N, N)
        return self

    def _to_space(self, x: np.ndarray) -> np.ndarray:
        return np.log1p(x / self.error_scale_) if self.error_space == "log" else x

    def _from_space(self, u: np.ndarray) -> np.ndarray:
        x = np.expm1(u) * self.error_scale_ if self.error_space == "log" else u
        return np.maximum(x, 0.0)

    def error_quantiles(self, horizon: int, levels: np.ndarray) -> np.ndarray:
        """(len(levels), N, N) error quantiles of ``horizon`` at ``levels`` in (0, 1), linearly
        interpolated on the stored grid (clamped to its outermost levels)."""
        self._check_fitted()
        q = self.error_quantiles_
        if not 1 <= int(horizon) <= len(q):
            raise ConfigError(f"horizon {horizon} outside the fitted 1..{len(q)}")
        grid = (np.arange(q.shape[1]) + 0.5) / q.shape[1]  # (Q,)
        pos = np.interp(levels, grid, np.arange(q.shape[1]))  # fractional grid index per level
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, q.shape[1] - 1)
        w = (pos - lo)[:, None, None]
        table = q[int(horizon) - 1]  # (Q, N, N)
        return (1 - w) * table[lo] + w * table[hi]  # (L, N, N)

    def predict_samples(self, values, origins, horizons, n_samples: int, *, random_state=None) -> np.ndarray:
        """(B, S, H, N, N): the point forecast plus the error quantiles at levels (j + 0.5) / S."""
        s = int(n_samples)
        if s < 1:
            raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
        point = self.predict(values, origins, horizons)  # (B, H, N, N)
        levels = (np.arange(s) + 0.5) / s  # (S,)
        base = self._to_space(point)  # (B, H, N, N)
        errs = np.stack([self.error_quantiles(int(h), levels) for h in horizons], axis=1)  # (S, H, N, N)
        return self._from_space(base[:, None] + errs[None])  # (B, S, H, N, N)

    def _state(self):
        config, tensors, extra = super()._state()
        config = {**config, "error_scale": self.error_scale_}
        return config, {**tensors, "error_quantiles": self.error_quantiles_}, extra

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = super()._load_state(config, tensors, extra)
        model.error_scale_ = float(config["error_scale"])
        model.error_quantiles_ = np.asarray(tensors["error_quantiles"], dtype=np.float64)
        return model


class ProbabilisticPersistenceForecaster(_EmpiricalErrors, PersistenceForecaster):
    """Persistence plus its per-horizon, per-OD training error quantiles."""

    name = "persistence-prob"

    def __init__(self, *, horizons: Sequence[int] = (1, 10, 20), error_space: str = "log",
                 n_quantiles: int = 100):
        self.horizons = horizons
        self.error_space = error_space
        self.n_quantiles = n_quantiles


class ProbabilisticHistoricalAverageForecaster(_EmpiricalErrors, HistoricalAverageForecaster):
    """Mean of the last ``t_in`` matrices plus its per-horizon, per-OD training error quantiles."""

    name = "historical-average-prob"

    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20), error_space: str = "log",
                 n_quantiles: int = 100):
        self.t_in = t_in
        self.horizons = horizons
        self.error_space = error_space
        self.n_quantiles = n_quantiles
