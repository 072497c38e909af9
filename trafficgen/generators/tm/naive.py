"""Naive traffic-matrix forecasters: persistence, seasonal naive, historical average.

They learn nothing but the series' shape and time step (``fit`` records them, so they save and
load like every other :class:`~trafficgen.generators.tm.base.TMForecaster`). Every accuracy
figure of a learned model should sit beside these on the same split.

* :class:`PersistenceForecaster` (``"persistence"``): ``x[o + h] ~ x[o]``.
* :class:`SeasonalNaiveForecaster` (``"seasonal"``): ``x[o + h] ~ x[o + h - k * P]`` with the
  period ``P`` one day (or one week) of intervals and ``k = ceil(h / P)`` the fewest periods that
  land in the known history.
* :class:`HistoricalAverageForecaster` (``"historical-average"``): the mean of the last ``t_in``
  matrices ``x[o - t_in + 1 .. o]``, for every horizon.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.data.windows import window_index
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.base import TMForecaster

_DAY_S = 86400.0
_WEEK_S = 7 * _DAY_S


def check_forecast_request(values, origins, horizons, *, n_nodes: int, min_history: int):
    """Validated ``(values (T, N, N) float64, origins int64 (B,), horizons int64 (H,))``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[1:] != (n_nodes, n_nodes):
        raise InputFormatError(f"values must have shape (T, {n_nodes}, {n_nodes}), got {values.shape}")
    origins = np.asarray(origins, dtype=np.int64).reshape(-1)
    horizons = np.asarray(horizons, dtype=np.int64).reshape(-1)
    if horizons.size == 0 or np.any(horizons < 1):
        raise ConfigError(f"horizons must be >= 1, got {horizons.tolist()}")
    if origins.size and (origins.min() < min_history - 1 or origins.max() >= len(values)):
        bad = int(origins[(origins < min_history - 1) | (origins >= len(values))][0])
        raise InputFormatError(f"origin {bad} outside [{min_history - 1}, {len(values) - 1}] "
                               f"(needs {min_history} matrices of history)", offset=bad)
    return values, origins, horizons


class _NaiveForecaster(TMForecaster):
    """Shared fit / persistence for the parameter-free forecasters."""

    def fit(self, train, *, val=None):
        from trafficgen.data.tmseries import TMSeries

        if not isinstance(train, TMSeries):
            raise InputFormatError(f"fit expects a TMSeries, got {type(train).__name__}")
        self._record_series(train)
        return self

    def _state(self):
        return self._series_config(), {}, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = cls(**config["params"])
        model._load_series(config)
        return model

    def _request(self, values, origins, horizons):
        self._check_fitted()
        return check_forecast_request(values, origins, horizons, n_nodes=self.n_nodes_,
                                      min_history=self.min_history)


class PersistenceForecaster(_NaiveForecaster):
    """Repeat the last known matrix: ``x[o + h] ~ x[o]``."""

    name = "persistence"

    def __init__(self, *, horizons: Sequence[int] = (1, 10, 20)):
        self.horizons = horizons

    def predict(self, values, origins, horizons):
        values, origins, horizons = self._request(values, origins, horizons)
        point = values[origins]  # (B, N, N)
        return np.repeat(point[:, None], len(horizons), axis=1)  # (B, H, N, N)


class SeasonalNaiveForecaster(_NaiveForecaster):
    """Same time one period earlier: ``x[o + h] ~ x[o + h - k * P]``, ``k = ceil(h / P)``.

    ``season``: ``"day"``, ``"week"``, or ``"auto"`` (one week when the history at that origin
    reaches a week back from the target, else one day). ``P`` is the season in intervals of the
    fitted series (``round(86400 / interval_s)`` for a day).
    """

    name = "seasonal"

    def __init__(self, *, season: str = "auto", horizons: Sequence[int] = (1, 10, 20)):
        self.season = season
        self.horizons = horizons

    def fit(self, train, *, val=None):
        if self.season not in ("day", "week", "auto"):
            raise ConfigError(f"season must be 'day', 'week' or 'auto', got {self.season!r}")
        super().fit(train, val=val)
        self.day_steps_ = int(round(_DAY_S / self.interval_s_))
        self.week_steps_ = int(round(_WEEK_S / self.interval_s_))
        return self

    @property
    def min_history(self) -> int:
        self._check_fitted()
        return self.week_steps_ if self.season == "week" else self.day_steps_

    def _state(self):
        config, tensors, extra = super()._state()
        return {**config, "day_steps": self.day_steps_, "week_steps": self.week_steps_}, tensors, extra

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = super()._load_state(config, tensors, extra)
        model.day_steps_ = int(config["day_steps"])
        model.week_steps_ = int(config["week_steps"])
        return model

    def source_index(self, origin: int, horizon: int) -> int:
        """Index of the matrix that forecasts ``x[origin + horizon]``."""
        target = origin + horizon
        periods = [self.week_steps_] if self.season == "week" else [self.day_steps_]
        if self.season == "auto":
            periods = [self.week_steps_, self.day_steps_]
        for period in periods:
            k = -(-horizon // period)  # ceil: the fewest periods back into the known history
            if target - k * period >= 0:
                return target - k * period
        raise InputFormatError(f"origin {origin}: no matrix one {self.season} before the target "
                               f"{target}", offset=origin)

    def predict(self, values, origins, horizons):
        values, origins, horizons = self._request(values, origins, horizons)
        index = np.array([[self.source_index(int(o), int(h)) for h in horizons] for o in origins],
                         dtype=np.int64).reshape(len(origins), len(horizons))  # (B, H)
        return values[index]  # (B, H, N, N)


class HistoricalAverageForecaster(_NaiveForecaster):
    """Mean of the last ``t_in`` matrices, for every horizon."""

    name = "historical-average"

    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20)):
        self.t_in = t_in
        self.horizons = horizons

    @property
    def min_history(self) -> int:
        return int(self.t_in)

    def fit(self, train, *, val=None):
        if int(self.t_in) < 1:
            raise ConfigError(f"t_in must be >= 1, got {self.t_in}")
        return super().fit(train, val=val)

    def predict(self, values, origins, horizons):
        values, origins, horizons = self._request(values, origins, horizons)
        t_in = int(self.t_in)
        mean = values[window_index(origins, t_in)].mean(axis=1)  # (B, N, N)
        return np.repeat(mean[:, None], len(horizons), axis=1)  # (B, H, N, N)
