"""The cheap point forecast LEAD's diffusion model is anchored on (our addition, not the paper's).

:class:`LinearAnchor` forecasts ``x[o + h]`` per horizon as one pooled linear blend of three
summaries of the history, fitted by least squares over every training origin and OD pair (in
the series' units, so the fit weighs the large flows that dominate RMSE, no intercept)::

    x_hat[o + h] = a_h x[o] + b_h mean(x[o-3 .. o]) + c_h mean(x[o-t_in+1 .. o])

``a_h = 1, b_h = c_h = 0`` is persistence; a large ``c_h`` is mean reversion to the window
mean. Three coefficients per horizon, fitted in milliseconds, so it cannot overfit a training
set of thousands of matrices. On the shipped data its validation RMSE is 0.89 / 0.87 / 0.90 x
persistence at h = 1 / 10 / 20 on Abilene and 0.97 / 0.98 / 0.98 on GEANT: it is the point the
diffusion residual starts from, and its own row in the tables shows what the diffusion adds.

:class:`LinearAnchorForecaster` (``"linear-anchor"``) is the same blend as a stand-alone
:class:`~trafficgen.generators.tm.base.TMForecaster`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.data.windows import window_index
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.base import TMForecaster

__all__ = ["LinearAnchor", "LinearAnchorForecaster"]

#: Matrices averaged by the short-mean feature.
SHORT_WINDOW = 4


def history_features(values: np.ndarray, origins: np.ndarray, t_in: int) -> np.ndarray:
    """(B, N, N, 3): last matrix, mean of the last 4, mean of the last ``t_in`` (``values`` (T, N, N))."""
    window = values[window_index(origins, t_in)]  # (B, T_in, N, N)
    k = min(SHORT_WINDOW, t_in)
    return np.stack([window[:, -1], window[:, -k:].mean(axis=1), window.mean(axis=1)], axis=-1)


class LinearAnchor:
    """Per-horizon pooled least-squares blend of last value, short mean and window mean."""

    def __init__(self, *, t_in: int, horizons: Sequence[int]):
        self.t_in = int(t_in)
        self.horizons = [int(h) for h in horizons]

    def fit(self, values: np.ndarray, *, max_rows: int = 2_000_000) -> LinearAnchor:
        """Least squares over the training origins of ``values`` (T, N, N) (every OD entry a row;
        at most ``max_rows`` rows, evenly strided, per horizon)."""
        values = np.asarray(values, dtype=np.float64)
        coefs = []
        for h in self.horizons:
            origins = np.arange(self.t_in - 1, len(values) - h)
            if len(origins) < 2:
                raise InputFormatError(f"{len(values)} training matrices are too few for t_in={self.t_in}, h={h}")
            x = history_features(values, origins, self.t_in).reshape(-1, 3)  # (B*N*N, 3)
            y = values[origins + h].reshape(-1)  # (B*N*N,)
            step = max(1, len(y) // int(max_rows))
            coef, *_ = np.linalg.lstsq(x[::step], y[::step], rcond=None)
            coefs.append(coef)
        self.coef_ = np.asarray(coefs)  # (H, 3)
        return self

    def predict(self, values: np.ndarray, origins: np.ndarray, horizons: Sequence[int]) -> np.ndarray:
        """(B, len(horizons), N, N) forecasts, clipped at 0."""
        idx = [self.horizons.index(int(h)) if int(h) in self.horizons else None for h in horizons]
        if None in idx:
            raise ConfigError(f"the anchor was fitted for horizons {self.horizons}, not {list(horizons)}")
        x = history_features(np.asarray(values, dtype=np.float64), np.asarray(origins), self.t_in)  # (B, N, N, 3)
        out = np.einsum("bijf,hf->bhij", x, self.coef_[idx])  # (B, H, N, N)
        return np.maximum(out, 0.0)

    def state(self) -> dict:
        return {"t_in": self.t_in, "horizons": self.horizons, "coef": self.coef_.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> LinearAnchor:
        self = cls(t_in=state["t_in"], horizons=state["horizons"])
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        return self


class LinearAnchorForecaster(TMForecaster):
    """:class:`LinearAnchor` as a forecaster (deterministic: samples repeat the point)."""

    name = "linear-anchor"

    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20)):
        self.t_in = t_in
        self.horizons = horizons

    @property
    def min_history(self) -> int:  # noqa: D401 - instance value
        return int(self.t_in)

    def fit(self, train, *, val=None):
        from trafficgen.data.tmseries import TMSeries

        if not isinstance(train, TMSeries):
            raise InputFormatError(f"fit expects a TMSeries, got {type(train).__name__}")
        if int(self.t_in) < 1:
            raise ConfigError(f"t_in must be >= 1, got {self.t_in}")
        anchor = LinearAnchor(t_in=int(self.t_in), horizons=self.horizons).fit(train.values)
        self._record_series(train)
        self.anchor_ = anchor
        return self

    def predict(self, values, origins, horizons):
        from trafficgen.generators.tm.naive import check_forecast_request

        self._check_fitted()
        values, origins, horizons = check_forecast_request(values, origins, horizons, n_nodes=self.n_nodes_,
                                                           min_history=self.min_history)
        return self.anchor_.predict(values, origins, horizons)

    def _state(self):
        return {**self._series_config(), "anchor": self.anchor_.state()}, {}, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        params = dict(config["params"])
        params["horizons"] = tuple(params["horizons"])
        model = cls(**params)
        model._load_series(config)
        model.anchor_ = LinearAnchor.from_state(config["anchor"])
        return model
