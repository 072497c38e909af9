"""Chronological splits, forecasting windows and invertible scalers for traffic matrices.

Window convention (shared with :class:`~trafficgen.generators.tm.base.TMForecaster`): an
*origin* ``o`` is the index of the last observed matrix; the input window is
``values[o - t_in + 1 : o + 1]`` and the target at horizon ``h`` is ``values[o + h]``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError, NotFittedError

__all__ = ["chronological_split", "window_origins", "sliding_windows", "MinMaxScaler", "LogScaler",
           "scaler_from_dict"]


def chronological_split(series: TMSeries, fractions=(0.7, 0.15, 0.15)) -> tuple[TMSeries, TMSeries, TMSeries]:
    """Split into consecutive (train, val, test) parts without shuffling.

    Boundaries are ``floor(T * f_train)`` and ``floor(T * (f_train + f_val))``; the test part
    gets the remainder. Fractions must be non-negative and sum to 1 (within 1e-9). On the two
    Abilene weeks (T = 4032) 70/15/15 gives 2822 / 605 / 605 matrices.
    """
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-9:
        raise ConfigError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n = len(series)
    a = int(np.floor(n * fr[0] + 1e-9))
    b = int(np.floor(n * (fr[0] + fr[1]) + 1e-9))
    return series[:a], series[a:b], series[b:]


def window_origins(n_steps: int, t_in: int = 24, horizons: Sequence[int] = (1,), start: int = 0) -> np.ndarray:
    """All origins ``o`` with ``o >= start + t_in - 1`` and ``o + max(horizons) < n_steps``.

    ``start`` is the first index a window may read: no input window reaches before it. E.g. to
    score only targets in the test part of a full series while letting windows read val/train
    history, pass ``start=0`` and keep the origins ``>= len(train) + len(val) - 1``; to forbid
    that history, pass ``start=len(train) + len(val)``. Returns int64, possibly empty.
    """
    horizons = [int(h) for h in horizons]
    if t_in < 1 or not horizons or min(horizons) < 1:
        raise ConfigError(f"need t_in >= 1 and horizons >= 1, got t_in={t_in}, horizons={horizons}")
    first = int(start) + int(t_in) - 1
    last = int(n_steps) - max(horizons) - 1
    return np.arange(first, last + 1, dtype=np.int64) if last >= first else np.zeros(0, dtype=np.int64)


def sliding_windows(values: np.ndarray, t_in: int = 24, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All (input window, target) pairs: X (B, t_in, N, N), y (B, N, N).

    Window ``b`` ends at origin ``o = t_in - 1 + b`` and ``y[b] = values[o + horizon]``;
    B = T - t_in - horizon + 1. X is a read-only strided view (copy it before writing).
    """
    values = np.asarray(values)
    if values.ndim != 3:
        raise ConfigError(f"values must be (T, N, N), got {values.shape}")
    origins = window_origins(values.shape[0], t_in, (horizon,))
    if origins.size == 0:
        raise ConfigError(f"{values.shape[0]} matrices are too few for t_in={t_in}, horizon={horizon}")
    windows = np.lib.stride_tricks.sliding_window_view(values, t_in, axis=0)  # (T-t_in+1, N, N, t_in)
    X = np.moveaxis(windows, -1, 1)[: origins.size]  # (B, t_in, N, N)
    y = values[origins + horizon]  # (B, N, N)
    return X, y


class _Scaler:
    """fit / transform / inverse_transform on arrays whose last two axes are (N, N)."""

    kind = ""

    def _check(self):
        if not hasattr(self, "scale_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def fit_transform(self, values):
        return self.fit(values).transform(values)

    def to_dict(self) -> dict:
        self._check()
        return {"kind": self.kind, **self._params(), **{k: np.asarray(v).tolist() for k, v in
                                                        self._learned().items()}}

    @classmethod
    def from_dict(cls, d: dict):
        if d.get("kind") != cls.kind:
            raise ConfigError(f"{cls.__name__}.from_dict got kind {d.get('kind')!r}")
        params = {k: d[k] for k in cls._param_names}
        obj = cls(**params)
        for k in obj._learned_names:
            setattr(obj, k, np.asarray(d[k], dtype=np.float64))
        return obj

    def _params(self) -> dict:
        return {k: getattr(self, k) for k in self._param_names}

    def _learned(self) -> dict:
        return {k: getattr(self, k) for k in self._learned_names}


class MinMaxScaler(_Scaler):
    """Global min-max scaling to [0, 1] (one min and one max over all training values).

    ``transform(x) = (x - min_) / scale_`` with ``scale_ = max_ - min_`` (1 when the training
    data is constant); ``inverse_transform`` is its exact algebraic inverse (float rounding only).
    """

    kind = "minmax"
    _param_names = ()
    _learned_names = ("min_", "scale_")

    def __init__(self):
        pass

    def fit(self, values):
        values = _values(values)
        self.min_ = np.float64(values.min())
        span = np.float64(values.max()) - self.min_
        self.scale_ = span if span > 0 else np.float64(1.0)
        return self

    def transform(self, values):
        self._check()
        return (_values(values) - self.min_) / self.scale_

    def inverse_transform(self, values):
        self._check()
        return np.asarray(values, dtype=np.float64) * self.scale_ + self.min_


class LogScaler(_Scaler):
    """``log1p(x / scale_)`` with a per-OD (``per_od=True``, scale (N, N)) or global scale.

    The scale is the mean training value (per OD pair or overall); zero means fall back to 1.
    ``inverse_transform(z) = expm1(z) * scale_``. Optionally ``normalize=True`` divides the log by
    its training maximum (``max_``) so outputs lie in [0, ~1].
    """

    kind = "log"
    _param_names = ("per_od", "normalize")
    _learned_names = ("scale_", "max_")

    def __init__(self, *, per_od: bool = True, normalize: bool = False):
        self.per_od = per_od
        self.normalize = normalize

    def fit(self, values):
        values = _values(values)  # (T, N, N)
        flat = values.reshape(-1, *values.shape[-2:])
        scale = flat.mean(axis=0) if self.per_od else np.float64(flat.mean())
        self.scale_ = np.where(np.asarray(scale) > 0, scale, 1.0).astype(np.float64)
        top = np.log1p(flat / self.scale_).max()
        self.max_ = np.float64(top if (self.normalize and top > 0) else 1.0)
        return self

    def transform(self, values):
        self._check()
        return np.log1p(_values(values) / self.scale_) / self.max_

    def inverse_transform(self, values):
        self._check()
        return np.expm1(np.asarray(values, dtype=np.float64) * self.max_) * self.scale_


def scaler_from_dict(d: dict):
    """Rebuild any scaler from its :meth:`to_dict`."""
    for cls in (MinMaxScaler, LogScaler):
        if d.get("kind") == cls.kind:
            return cls.from_dict(d)
    raise ConfigError(f"unknown scaler kind {d.get('kind')!r}")


def _values(values) -> np.ndarray:
    values = values.values if isinstance(values, TMSeries) else np.asarray(values, dtype=np.float64)
    if values.ndim < 2 or values.shape[-1] != values.shape[-2]:
        raise ConfigError(f"expected (..., N, N) traffic matrices, got {values.shape}")
    return values
