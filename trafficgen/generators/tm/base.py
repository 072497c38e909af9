"""Traffic-matrix forecaster API shared by the baselines and LEAD.

A forecaster is fitted on a training :class:`~trafficgen.data.tmseries.TMSeries` (optionally a
validation one for early stopping) and forecasts from *origins*: for an origin index ``o`` into a
value array ``values`` (T, N, N) and a horizon ``h`` it predicts ``values[o + h]`` using only
``values[: o + 1]`` (models that need a fixed history, like LEAD with T_in = 24, take the last
T_in matrices; seasonal naive looks one day or one week back). Values are in the units of the
series the model was fitted on.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from trafficgen.generators.base import PretrainedMixin


class SeriesMetadata:
    """The fitted series' shape, node names, unit and step: recorded by ``fit``, saved in
    ``config.json`` and loaded as is (every TM model keeps them)."""

    def _record_series(self, train) -> None:
        self.n_nodes_ = train.n_nodes
        self.nodes_ = list(train.nodes)
        self.unit_ = train.unit
        self.interval_s_ = float(train.interval_s)

    def _series_config(self) -> dict:
        return {"n_nodes": self.n_nodes_, "nodes": self.nodes_, "unit": self.unit_, "interval_s": self.interval_s_}

    def _load_series(self, config: dict) -> None:
        self.n_nodes_ = int(config["n_nodes"])
        self.nodes_ = list(config["nodes"])
        self.unit_ = str(config["unit"])
        self.interval_s_ = float(config["interval_s"])


class TMForecaster(SeriesMetadata, PretrainedMixin):
    _kind_key: ClassVar[str] = "tm_model"
    _fitted_attr: ClassVar[str] = "n_nodes_"
    #: True when :meth:`predict_samples` draws from a predictive distribution.
    probabilistic: ClassVar[bool] = False
    #: Matrices of history the model needs before an origin (origin >= min_history - 1).
    min_history: ClassVar[int] = 1
    #: Test origins `tm forecast` / `tm evaluate` score by default (evenly spaced; None = all).
    #: Sampling models that cost seconds per origin set a number (LEAD: 200, the fewest that rank
    #: models reliably on Abilene); the cheap ones score every origin.
    default_max_origins: ClassVar[int | None] = None

    def fit(self, train, *, val=None):
        raise NotImplementedError

    def predict(self, values: np.ndarray, origins: Sequence[int], horizons: Sequence[int]) -> np.ndarray:
        """Point forecasts, shape (len(origins), len(horizons), N, N)."""
        raise NotImplementedError

    def predict_samples(self, values: np.ndarray, origins: Sequence[int], horizons: Sequence[int],
                        n_samples: int, *, random_state=None) -> np.ndarray:
        """Samples, shape (len(origins), n_samples, len(horizons), N, N). Deterministic models
        repeat their point forecast."""
        point = self.predict(values, origins, horizons)
        return np.repeat(point[:, None], n_samples, axis=1)

    def point_from_samples(self, samples: np.ndarray) -> np.ndarray | None:
        """The point forecast as a statistic of ``samples`` (B, S, H, N, N), or None when the
        model's point forecast is not one (then callers use :meth:`predict`)."""
        return None
