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

Per-OD blend (``ridge`` not None): 3 coefficients per horizon *and OD pair*, ridge-shrunk
towards the pooled ones::

    c_ij = argmin_c ||X_ij c - y_ij||^2 + alpha_ij ||c - c_pooled||^2,  alpha_ij = ridge * tr(X_ij' X_ij) / 3

(``ridge`` is scale-free: the penalty is that fraction of the pair's own mean squared feature
times its number of rows). ``ridge = inf`` is the pooled blend, ``0`` plain per-pair least
squares. :meth:`LinearAnchor.select_ridge` picks it per horizon from :data:`RIDGE_GRID` by the RMSE
on a validation series (the per-pair Gram matrices are kept after :meth:`~LinearAnchor.fit`, so
every grid value costs one 3x3 solve per pair). Validation RMSE / persistence of the per-pair
blend at the chosen strength (ridge 0 or 0.001): Abilene 0.85 / 0.85 / 0.89, GEANT 0.92 / 0.91 / 0.86;
on the test part 0.89 / 0.86 / 0.88 and 0.99 / 0.96 / 0.96 (benchmarks/results/lead_2026-12-02b).

Seasonal feature (``features="mean+season"``, LEAD's default since 2026-12-03): a 4th column
``x[o+h-P] - x[o-P]``, the change over the same h steps one period P (a day) earlier, 0 where the
series does not reach back that far (the fit uses only origins that do). :meth:`LinearAnchor.refit`
refits the coefficients on a longer series at the chosen ridge; :meth:`LinearAnchor.select_ridge`
with ``history`` scores every origin whose target lies in the validation series. Rolling origin
inside train + validation (benchmarks/lead_anchor_rolling.py; test never read), RMSE / persistence
at h = 1 / 10 / 20, 2026-12-02b anchor -> seasonal, validation history, refit: Abilene fold 1
0.875 / 0.877 / 0.898 -> 0.779 / 0.828 / 0.842, fold 2 0.894 / 0.889 / 0.892 -> 0.892 / 0.870 / 0.891;
GEANT fold 1 0.969 / 0.984 / 0.983 -> 0.971 / 0.891 / 0.779, fold 2 0.999 / 0.993 / 0.982 ->
0.995 / 0.991 / 0.948.

:class:`LinearAnchorForecaster` (``"linear-anchor"``) is the same blend as a stand-alone
:class:`~trafficgen.generators.tm.base.TMForecaster`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.data.windows import window_index
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.base import TMForecaster

__all__ = ["FEATURE_SETS", "RIDGE_GRID", "LinearAnchor", "LinearAnchorForecaster", "default_period", "fit_anchor",
           "shrunk_coefficients"]

#: Matrices averaged by the short-mean feature.
SHORT_WINDOW = 4

#: Ridge strengths tried by :meth:`LinearAnchor.select_ridge` (inf: the pooled blend).
RIDGE_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, float("inf"))


#: Feature sets of :class:`LinearAnchor` (``features=``).
FEATURE_SETS = ("mean", "mean+season", "lags+season")
#: Smoothing factors of the exponentially weighted means of ``"lags+season"``.
EWMA_ALPHAS = (0.5, 0.2)
#: Columns per feature set.
N_FEATURES = {"mean": 3, "mean+season": 4, "lags+season": 8}


def history_features(values: np.ndarray, origins: np.ndarray, t_in: int, *, features: str = "mean",
                     horizon: int | None = None, period: int | None = None) -> np.ndarray:
    """(B, N, N, F): last matrix, mean of the last 4, mean of the last ``t_in`` (``values`` (T, N, N));
    ``features="mean+season"`` adds ``x[o+h-P] - x[o-P]``, the change over the same ``h`` steps one
    period ``P`` earlier (0 where the series does not reach back that far); ``"lags+season"`` puts
    before it ``x[o-1]``, ``x[o-2]`` and two exponentially weighted means of the window
    (:data:`EWMA_ALPHAS`, weights ``a (1-a)^k`` normalised over the window)."""
    if features not in FEATURE_SETS:
        raise ConfigError(f"anchor features must be one of {FEATURE_SETS}, got {features!r}")
    window = values[window_index(origins, t_in)]  # (B, T_in, N, N)
    k = min(SHORT_WINDOW, t_in)
    cols = [window[:, -1], window[:, -k:].mean(axis=1), window.mean(axis=1)]
    if features == "lags+season":
        if t_in < 3:
            raise ConfigError(f"the 'lags+season' features need t_in >= 3, got {t_in}")
        cols += [window[:, -2], window[:, -3]]
        age = np.arange(t_in)[::-1]  # (T_in,) 0 = the last matrix
        for a in EWMA_ALPHAS:
            w = a * (1.0 - a) ** age
            cols.append(np.einsum("t,btij->bij", w / w.sum(), window))
    if features != "mean":
        if horizon is None or period is None:
            raise ConfigError(f"the {features!r} features need the horizon and the period")
        p, h = int(period), int(horizon)
        ok = origins - p >= 0  # (B,)
        o = np.where(ok, origins, p)  # any valid index where the history is too short
        diff = values[o + h - p] - values[o - p]  # (B, N, N)
        cols.append(np.where(ok[:, None, None], diff, 0.0))
    return np.stack(cols, axis=-1)


def default_period(interval_s) -> int:
    """Matrices per day at ``interval_s`` seconds per matrix (the period of ``"mean+season"``)."""
    if interval_s is None or not np.isfinite(float(interval_s)) or float(interval_s) <= 0:
        raise ConfigError("anchor features 'mean+season' need the series' interval_s (or anchor_period)")
    return max(1, int(round(86400.0 / float(interval_s))))


class LinearAnchor:
    """Per-horizon least-squares blend of last value, short mean and window mean (and, with
    ``features="mean+season"``, the change one period earlier): pooled over the OD pairs
    (``ridge=None``) or per pair with ridge shrinkage towards the pooled blend."""

    def __init__(self, *, t_in: int, horizons: Sequence[int], ridge=None, features: str = "mean",
                 period: int | None = None):
        self.t_in = int(t_in)
        self.horizons = [int(h) for h in horizons]
        self.ridge = ridge
        if features not in FEATURE_SETS:
            raise ConfigError(f"anchor features must be one of {FEATURE_SETS}, got {features!r}")
        if features != "mean" and (period is None or int(period) < 1):
            raise ConfigError(f"anchor features {features!r} need a period >= 1, got {period!r}")
        self.features = features
        self.period = None if period is None else int(period)

    @property
    def n_features(self) -> int:
        return N_FEATURES[self.features]

    def _features(self, values: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        return history_features(values, origins, self.t_in, features=self.features, horizon=h, period=self.period)

    def _first_origin(self) -> int:
        """The first training origin: a full window (and, with the seasonal feature, a full period)."""
        return max(self.t_in - 1, self.period if self.features != "mean" else 0)

    def fit(self, values: np.ndarray, *, max_rows: int = 2_000_000) -> LinearAnchor:
        """Least squares over the training origins of ``values`` (T, N, N) (pooled: every OD entry a
        row, at most ``max_rows`` rows, evenly strided, per horizon; per pair: every origin). The
        seasonal feature's blend is fitted on the origins that reach back a full period."""
        values = np.asarray(values, dtype=np.float64)
        coefs, grams, rhs = [], [], []
        first = self._first_origin()
        for h in self.horizons:
            origins = np.arange(first, len(values) - h)
            if len(origins) < 2:
                raise InputFormatError(f"{len(values)} training matrices are too few for t_in={self.t_in}, h={h}"
                                       + (f", period={self.period}" if self.features != "mean" else ""))
            feats = self._features(values, origins, h)  # (B, N, N, F)
            target = values[origins + h]  # (B, N, N)
            x, y = feats.reshape(-1, feats.shape[-1]), target.reshape(-1)  # (B*N*N, F), (B*N*N,)
            step = max(1, len(y) // int(max_rows))
            coef, *_ = np.linalg.lstsq(x[::step], y[::step], rcond=None)
            coefs.append(coef)
            grams.append(np.einsum("bijf,bijg->ijfg", feats, feats))  # (N, N, F, F)
            rhs.append(np.einsum("bijf,bij->ijf", feats, target))  # (N, N, F)
        self.coef_ = np.asarray(coefs)  # (H, F)
        self._gram, self._rhs = np.asarray(grams), np.asarray(rhs)  # (H, N, N, F, F), (H, N, N, F)
        self.coef_od_ = None
        self.set_ridge(self.ridge)
        return self

    def refit(self, values: np.ndarray) -> LinearAnchor:
        """Refit the coefficients on ``values`` (e.g. train + validation) at the ridge strengths
        already chosen (:meth:`select_ridge`): the hyper-parameters stay, the data grows."""
        return self.fit(values)

    def _od_coef(self, k: int, ridge: float) -> np.ndarray:
        """(N, N, F) per-pair coefficients of horizon index ``k`` at ridge strength ``ridge``."""
        return shrunk_coefficients(self._gram[k], self._rhs[k], self.coef_[k], ridge)

    def horizon_part(self, k: int, ridge=None) -> LinearAnchor:
        """The fitted blend of horizon index ``k`` alone (``horizons=[h]``, its training statistics
        shared, not copied), at ``ridge`` (None: pooled)."""
        part = LinearAnchor(t_in=self.t_in, horizons=[self.horizons[k]], features=self.features, period=self.period)
        part.coef_ = self.coef_[k:k + 1]
        part._gram, part._rhs = self._gram[k:k + 1], self._rhs[k:k + 1]
        part.coef_od_ = None
        return part.set_ridge(ridge)

    def set_ridge(self, ridge) -> LinearAnchor:
        """Per-pair coefficients at ``ridge`` (a number, or one per horizon; None: pooled only)."""
        if ridge is None:
            self.ridge, self.coef_od_ = None, None
            return self
        if getattr(self, "_gram", None) is None:
            raise ConfigError("set_ridge needs the training statistics of fit() (not kept in a saved state)")
        r = np.broadcast_to(np.asarray(ridge, dtype=np.float64), (len(self.horizons),))
        if np.any(r < 0):
            raise ConfigError(f"ridge must be >= 0 (inf: pooled), got {ridge}")
        self.ridge = [float(v) for v in r]
        self.coef_od_ = np.stack([self._od_coef(k, v) for k, v in enumerate(r)])  # (H, N, N, F)
        return self

    def select_ridge(self, val_values: np.ndarray, grid: Sequence[float] = RIDGE_GRID, *,
                     history: np.ndarray | None = None) -> dict:
        """Per horizon, the ridge of ``grid`` with the lowest RMSE (series units) over the validation
        series ``val_values`` (T, N, N); sets it and returns ``{"grid", "ridge", "val_rmse": [H][len(grid)],
        "val_rmse_persistence": [H], "n_origins"}``. Without ``history``: every origin whose history
        and target lie inside ``val_values``; with ``history`` (the series just before it, e.g. the
        training part): every origin whose target lies inside ``val_values``, the history reaching
        back into ``history`` (as test origins do)."""
        val_values = np.asarray(val_values, dtype=np.float64)
        if history is not None:
            history = np.asarray(history, dtype=np.float64)
            series, start = np.concatenate([history, val_values]), len(history) - 1
        else:
            series, start = val_values, 0
        chosen, table, pers = [], [], []
        n_origins = 0
        for k, h in enumerate(self.horizons):
            origins = np.arange(max(start, self.t_in - 1), len(series) - h)
            if len(origins) < 1:
                raise InputFormatError(f"{len(val_values)} validation matrices are too few for t_in={self.t_in}, h={h}")
            n_origins = max(n_origins, len(origins))
            feats = self._features(series, origins, h)  # (B, N, N, F)
            truth = series[origins + h]
            rmses = []
            for ridge in grid:
                pred = np.maximum(np.einsum("bijf,ijf->bij", feats, self._od_coef(k, float(ridge))), 0.0)
                rmses.append(float(np.sqrt(np.mean((pred - truth) ** 2))))
            table.append(rmses)
            pers.append(float(np.sqrt(np.mean((series[origins] - truth) ** 2))))
            chosen.append(float(grid[int(np.argmin(rmses))]))
        self.set_ridge(chosen)
        return {"grid": [float(g) for g in grid], "ridge": chosen, "val_rmse": table, "val_rmse_persistence": pers,
                "n_origins": int(n_origins)}

    def predict(self, values: np.ndarray, origins: np.ndarray, horizons: Sequence[int]) -> np.ndarray:
        """(B, len(horizons), N, N) forecasts, clipped at 0."""
        idx = [self.horizons.index(int(h)) if int(h) in self.horizons else None for h in horizons]
        if None in idx:
            raise ConfigError(f"the anchor was fitted for horizons {self.horizons}, not {list(horizons)}")
        values, origins = np.asarray(values, dtype=np.float64), np.asarray(origins)
        out = []
        for k in idx:
            x = self._features(values, origins, self.horizons[k])  # (B, N, N, F)
            if self.coef_od_ is not None:
                out.append(np.einsum("bijf,ijf->bij", x, self.coef_od_[k]))
            else:
                out.append(np.einsum("bijf,f->bij", x, self.coef_[k]))
        return np.maximum(np.stack(out, axis=1), 0.0)  # (B, H, N, N)

    def state(self) -> dict:
        state = {"t_in": self.t_in, "horizons": self.horizons, "coef": self.coef_.tolist()}
        if self.features != "mean":
            state.update(features=self.features, period=self.period)
        if self.coef_od_ is not None:
            state.update(ridge=self.ridge, coef_od=self.coef_od_.tolist())
        return state

    @classmethod
    def from_state(cls, state: dict) -> LinearAnchor:
        self = cls(t_in=state["t_in"], horizons=state["horizons"], ridge=state.get("ridge"),
                   features=state.get("features", "mean"), period=state.get("period"))
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self._gram = self._rhs = None
        self.coef_od_ = None if state.get("coef_od") is None else np.asarray(state["coef_od"], dtype=np.float64)
        return self


def fit_anchor(values, val_values, *, t_in: int, horizons: Sequence[int], ridge, features: str = "mean",
               period: int | None = None, history: bool = False) -> LinearAnchor:
    """:class:`LinearAnchor` fitted on ``values``; ``ridge`` None | number | ``"auto"`` (chosen on
    ``val_values``, pooled when that is None or too short; the choice in ``selection_``).
    ``history=True``: the choice scores every origin whose target lies in ``val_values``, the
    history reaching back into ``values`` (:meth:`LinearAnchor.select_ridge`). The per-horizon choice of
    the feature set (``"auto"``) is :func:`~trafficgen.generators.tm.lead.anchor_choice.fit_lead_anchor`."""
    anchor = LinearAnchor(t_in=t_in, horizons=horizons, features=features, period=period).fit(values)
    anchor.selection_ = None
    if ridge == "auto":
        need = 1 + max(int(h) for h in horizons) + (0 if history else t_in)
        if val_values is not None and len(val_values) >= need:
            anchor.selection_ = anchor.select_ridge(val_values, history=values if history else None)
    elif ridge is not None:
        if isinstance(ridge, str):
            raise ConfigError(f"anchor ridge must be None, a number >= 0 or 'auto', got {ridge!r}")
        anchor.set_ridge(float(ridge))
    return anchor


class LinearAnchorForecaster(TMForecaster):
    """:class:`LinearAnchor` as a forecaster (deterministic: samples repeat the point).

    ``ridge``: None (default, the pooled blend), a number (per-pair blend at that strength) or
    ``"auto"`` (per pair, chosen per horizon on ``val`` by :meth:`LinearAnchor.select_ridge`;
    pooled without ``val``)."""

    name = "linear-anchor"

    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20), ridge=None):
        self.t_in = t_in
        self.horizons = horizons
        self.ridge = ridge

    @property
    def min_history(self) -> int:  # noqa: D401 - instance value
        return int(self.t_in)

    def fit(self, train, *, val=None):
        from trafficgen.data.tmseries import TMSeries

        if not isinstance(train, TMSeries):
            raise InputFormatError(f"fit expects a TMSeries, got {type(train).__name__}")
        if int(self.t_in) < 1:
            raise ConfigError(f"t_in must be >= 1, got {self.t_in}")
        anchor = fit_anchor(train.values, None if val is None else getattr(val, "values", val),
                            t_in=int(self.t_in), horizons=self.horizons, ridge=self.ridge)
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
        return {**self._series_config(), "anchor": self.anchor_.state(),
                "anchor_selection": getattr(self.anchor_, "selection_", None)}, {}, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        params = dict(config["params"])
        params["horizons"] = tuple(params["horizons"])
        model = cls(**params)
        model._load_series(config)
        model.anchor_ = LinearAnchor.from_state(config["anchor"])
        return model


def shrunk_coefficients(gram: np.ndarray, rhs: np.ndarray, pooled: np.ndarray, ridge: float) -> np.ndarray:
    """(N, N, F) per-pair least-squares coefficients from their normal equations ``gram`` (N, N, F, F)
    and ``rhs`` (N, N, F), ridge-shrunk towards the pooled blend ``pooled`` (F,) with penalty
    ``ridge * tr(gram) / F * ||c - pooled||^2`` (``inf``: the pooled blend itself)."""
    nf = len(pooled)
    if not np.isfinite(ridge):
        return np.broadcast_to(pooled, rhs.shape).copy()
    alpha = float(ridge) * np.trace(gram, axis1=-2, axis2=-1) / nf  # (N, N)
    a = gram + alpha[..., None, None] * np.eye(nf)
    b = rhs + alpha[..., None] * pooled
    # pairs that are all zero (or, unpenalised, singular) keep the pooled blend; with ridge > 0 every
    # other pair's system is positive definite (its smallest eigenvalue >= alpha), however collinear
    # the features (the determinant test alone sent collinear "lags+season" pairs to the pooled blend)
    if float(ridge) > 0:
        ok = alpha > 1e-300
    else:
        ok = np.abs(np.linalg.det(a)) > 1e-12 * np.maximum(np.trace(a, axis1=-2, axis2=-1), 1e-300) ** nf
    out = np.broadcast_to(pooled, rhs.shape).copy()
    out[ok] = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]
    return out
