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

:class:`LinearAnchorForecaster` (``"linear-anchor"``) is the same blend as a stand-alone
:class:`~trafficgen.generators.tm.base.TMForecaster`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.data.windows import window_index
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.base import TMForecaster

__all__ = ["RIDGE_GRID", "LinearAnchor", "LinearAnchorForecaster", "fit_anchor"]

#: Matrices averaged by the short-mean feature.
SHORT_WINDOW = 4

#: Ridge strengths tried by :meth:`LinearAnchor.select_ridge` (inf: the pooled blend).
RIDGE_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, float("inf"))


def history_features(values: np.ndarray, origins: np.ndarray, t_in: int) -> np.ndarray:
    """(B, N, N, 3): last matrix, mean of the last 4, mean of the last ``t_in`` (``values`` (T, N, N))."""
    window = values[window_index(origins, t_in)]  # (B, T_in, N, N)
    k = min(SHORT_WINDOW, t_in)
    return np.stack([window[:, -1], window[:, -k:].mean(axis=1), window.mean(axis=1)], axis=-1)


class LinearAnchor:
    """Per-horizon least-squares blend of last value, short mean and window mean: pooled over
    the OD pairs (``ridge=None``) or per pair with ridge shrinkage towards the pooled blend."""

    def __init__(self, *, t_in: int, horizons: Sequence[int], ridge=None):
        self.t_in = int(t_in)
        self.horizons = [int(h) for h in horizons]
        self.ridge = ridge

    def fit(self, values: np.ndarray, *, max_rows: int = 2_000_000) -> LinearAnchor:
        """Least squares over the training origins of ``values`` (T, N, N) (pooled: every OD entry a
        row, at most ``max_rows`` rows, evenly strided, per horizon; per pair: every origin)."""
        values = np.asarray(values, dtype=np.float64)
        coefs, grams, rhs = [], [], []
        for h in self.horizons:
            origins = np.arange(self.t_in - 1, len(values) - h)
            if len(origins) < 2:
                raise InputFormatError(f"{len(values)} training matrices are too few for t_in={self.t_in}, h={h}")
            feats = history_features(values, origins, self.t_in)  # (B, N, N, 3)
            target = values[origins + h]  # (B, N, N)
            x, y = feats.reshape(-1, 3), target.reshape(-1)  # (B*N*N, 3), (B*N*N,)
            step = max(1, len(y) // int(max_rows))
            coef, *_ = np.linalg.lstsq(x[::step], y[::step], rcond=None)
            coefs.append(coef)
            grams.append(np.einsum("bijf,bijg->ijfg", feats, feats))  # (N, N, 3, 3)
            rhs.append(np.einsum("bijf,bij->ijf", feats, target))  # (N, N, 3)
        self.coef_ = np.asarray(coefs)  # (H, 3)
        self._gram, self._rhs = np.asarray(grams), np.asarray(rhs)  # (H, N, N, 3, 3), (H, N, N, 3)
        self.coef_od_ = None
        self.set_ridge(self.ridge)
        return self

    def _od_coef(self, k: int, ridge: float) -> np.ndarray:
        """(N, N, 3) per-pair coefficients of horizon index ``k`` at ridge strength ``ridge``."""
        gram, rhs, pooled = self._gram[k], self._rhs[k], self.coef_[k]
        if not np.isfinite(ridge):
            return np.broadcast_to(pooled, rhs.shape).copy()
        alpha = float(ridge) * np.trace(gram, axis1=-2, axis2=-1) / 3.0  # (N, N)
        a = gram + alpha[..., None, None] * np.eye(3)
        b = rhs + alpha[..., None] * pooled
        # pairs that are all zero (or a singular unpenalised system) keep the pooled blend
        ok = np.abs(np.linalg.det(a)) > 1e-12 * np.maximum(np.trace(a, axis1=-2, axis2=-1), 1e-300) ** 3
        out = np.broadcast_to(pooled, rhs.shape).copy()
        out[ok] = np.linalg.solve(a[ok], b[ok][..., None])[..., 0]
        return out

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
        self.coef_od_ = np.stack([self._od_coef(k, v) for k, v in enumerate(r)])  # (H, N, N, 3)
        return self

    def select_ridge(self, val_values: np.ndarray, grid: Sequence[float] = RIDGE_GRID) -> dict:
        """Per horizon, the ridge of ``grid`` with the lowest RMSE (series units) over every origin
        of the validation series ``val_values`` (T, N, N) with a full history and target inside it;
        sets it and returns ``{"grid", "ridge", "val_rmse": [H][len(grid)], "val_rmse_persistence": [H],
        "n_origins"}``."""
        val_values = np.asarray(val_values, dtype=np.float64)
        chosen, table, pers = [], [], []
        n_origins = 0
        for k, h in enumerate(self.horizons):
            origins = np.arange(self.t_in - 1, len(val_values) - h)
            if len(origins) < 1:
                raise InputFormatError(f"{len(val_values)} validation matrices are too few for t_in={self.t_in}, h={h}")
            n_origins = max(n_origins, len(origins))
            feats = history_features(val_values, origins, self.t_in)  # (B, N, N, 3)
            truth = val_values[origins + h]
            rmses = []
            for ridge in grid:
                pred = np.maximum(np.einsum("bijf,ijf->bij", feats, self._od_coef(k, float(ridge))), 0.0)
                rmses.append(float(np.sqrt(np.mean((pred - truth) ** 2))))
            table.append(rmses)
            pers.append(float(np.sqrt(np.mean((val_values[origins] - truth) ** 2))))
            chosen.append(float(grid[int(np.argmin(rmses))]))
        self.set_ridge(chosen)
        return {"grid": [float(g) for g in grid], "ridge": chosen, "val_rmse": table, "val_rmse_persistence": pers,
                "n_origins": int(n_origins)}

    def predict(self, values: np.ndarray, origins: np.ndarray, horizons: Sequence[int]) -> np.ndarray:
        """(B, len(horizons), N, N) forecasts, clipped at 0."""
        idx = [self.horizons.index(int(h)) if int(h) in self.horizons else None for h in horizons]
        if None in idx:
            raise ConfigError(f"the anchor was fitted for horizons {self.horizons}, not {list(horizons)}")
        x = history_features(np.asarray(values, dtype=np.float64), np.asarray(origins), self.t_in)  # (B, N, N, 3)
        if self.coef_od_ is not None:
            out = np.einsum("bijf,hijf->bhij", x, self.coef_od_[idx])  # (B, H, N, N)
        else:
            out = np.einsum("bijf,hf->bhij", x, self.coef_[idx])  # (B, H, N, N)
        return np.maximum(out, 0.0)

    def state(self) -> dict:
        state = {"t_in": self.t_in, "horizons": self.horizons, "coef": self.coef_.tolist()}
        if self.coef_od_ is not None:
            state.update(ridge=self.ridge, coef_od=self.coef_od_.tolist())
        return state

    @classmethod
    def from_state(cls, state: dict) -> LinearAnchor:
        self = cls(t_in=state["t_in"], horizons=state["horizons"], ridge=state.get("ridge"))
        self.coef_ = np.asarray(state["coef"], dtype=np.float64)
        self._gram = self._rhs = None
        self.coef_od_ = None if state.get("coef_od") is None else np.asarray(state["coef_od"], dtype=np.float64)
        return self


def fit_anchor(values, val_values, *, t_in: int, horizons: Sequence[int], ridge) -> LinearAnchor:
    """:class:`LinearAnchor` fitted on ``values``; ``ridge`` None | number | ``"auto"`` (chosen on
    ``val_values``, pooled when that is None or too short; the choice in ``selection_``)."""
    anchor = LinearAnchor(t_in=t_in, horizons=horizons).fit(values)
    anchor.selection_ = None
    if ridge == "auto":
        if val_values is not None and len(val_values) > t_in + max(int(h) for h in horizons):
            anchor.selection_ = anchor.select_ridge(val_values)
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
