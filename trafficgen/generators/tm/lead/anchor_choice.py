"""LEAD's anchor with its feature set chosen per horizon on validation data (``anchor_features="auto"``).

:func:`fit_anchor_per_horizon` fits one :class:`~trafficgen.generators.tm.lead.anchor.LinearAnchor`
per candidate feature set (:data:`CANDIDATES`) on the training series, picks each one's per-OD
ridge per horizon on the validation series (:meth:`~trafficgen.generators.tm.lead.anchor.LinearAnchor.select_ridge`),
and keeps, per horizon, the candidate with the lowest validation RMSE: a :class:`PerHorizonAnchor`.
The richer set (``"lags+season"``: two more lags and two exponentially weighted means) has twice
the coefficients per pair; whether that pays is a property of the data and the horizon, so it is
measured, not assumed. Validation RMSE / persistence of the two at their chosen ridges, on the
recipe's 70/15/15 split (the recorded models, benchmarks/results/lead_2026-12-03d/model_choices.json),
``"mean+season"`` -> ``"lags+season"`` at h = 1 / 10 / 20: Abilene 0.779 / 0.828 / 0.841 -> 0.790 /
0.816 / 0.840, GEANT 0.955 / 0.891 / 0.774 -> 0.940 / 0.887 / 0.775. Out of sample (the same protocol
one and two blocks earlier inside train + validation, benchmarks/lead_anchor_rolling.py), choosing per
horizon beat ``"mean+season"`` in 6 of 12 cells (by 0.011-0.016), tied in 4 and lost in 2 (by 0.012, 0.003).
Without a validation series (or one too short), or with a fixed ridge, it is the first candidate.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.errors import ConfigError
from trafficgen.generators.tm.lead.anchor import LinearAnchor, fit_anchor

__all__ = ["CANDIDATES", "PerHorizonAnchor", "anchor_from_state", "fit_anchor_per_horizon", "fit_lead_anchor"]

#: Feature sets compared per horizon (the first is the fallback without validation data).
CANDIDATES = ("mean+season", "lags+season")


class PerHorizonAnchor:
    """One fitted :class:`LinearAnchor` per horizon (each with ``horizons=[h]``), used as one."""

    def __init__(self, parts: Sequence[LinearAnchor]):
        self.parts = list(parts)
        self.horizons = [int(p.horizons[0]) for p in self.parts]
        self.t_in = max(p.t_in for p in self.parts)
        self.selection_ = None

    @property
    def features(self) -> list[str]:
        return [p.features for p in self.parts]

    @property
    def period(self) -> int | None:
        return next((p.period for p in self.parts if p.period is not None), None)

    @property
    def ridge(self) -> list:
        return [None if p.ridge is None else p.ridge[0] for p in self.parts]

    def predict(self, values: np.ndarray, origins: np.ndarray, horizons: Sequence[int]) -> np.ndarray:
        """(B, len(horizons), N, N) forecasts, clipped at 0 (each horizon by its own part)."""
        out = []
        for h in horizons:
            if int(h) not in self.horizons:
                raise ConfigError(f"the anchor was fitted for horizons {self.horizons}, not {list(horizons)}")
            out.append(self.parts[self.horizons.index(int(h))].predict(values, origins, [int(h)])[:, 0])
        return np.stack(out, axis=1)

    def refit(self, values: np.ndarray) -> PerHorizonAnchor:
        """Refit every part's coefficients on ``values`` at its chosen features and ridge."""
        for p in self.parts:
            p.refit(values)
        return self

    def state(self) -> dict:
        return {"per_horizon": [p.state() for p in self.parts]}


def anchor_from_state(state: dict):
    """A :class:`LinearAnchor` or :class:`PerHorizonAnchor` from its ``state()``."""
    if "per_horizon" in state:
        return PerHorizonAnchor([LinearAnchor.from_state(s) for s in state["per_horizon"]])
    return LinearAnchor.from_state(state)


def fit_lead_anchor(values, val_values, *, t_in: int, horizons: Sequence[int], ridge, features: str = "mean",
                    period: int | None = None, history: bool = False):
    """LEAD's anchor: :func:`fit_anchor_per_horizon` for ``features="auto"``, else
    :func:`~trafficgen.generators.tm.lead.anchor.fit_anchor` (same arguments)."""
    if features == "auto":
        return fit_anchor_per_horizon(values, val_values, t_in=t_in, horizons=horizons, ridge=ridge, period=period,
                                      history=history)
    return fit_anchor(values, val_values, t_in=t_in, horizons=horizons, ridge=ridge, features=features, period=period,
                      history=history)


def fit_anchor_per_horizon(values, val_values, *, t_in: int, horizons: Sequence[int], ridge, period: int | None,
                           history: bool = False, candidates: Sequence[str] = CANDIDATES) -> PerHorizonAnchor:
    """Per horizon, the candidate feature set (and its ridge) with the lowest validation RMSE;
    ``selection_`` = ``{"features": [H], "val_rmse": {candidate: [H]}, "val_rmse_persistence": [H],
    "ridge": [H], "by_candidate": {candidate: select_ridge's record}}`` (None without validation)."""
    fitted = {c: fit_anchor(values, val_values, t_in=t_in, horizons=horizons, ridge=ridge, features=c, period=period,
                            history=history) for c in candidates}
    if any(a.selection_ is None for a in fitted.values()):  # no (usable) validation series: the first candidate
        chosen, best = [candidates[0]] * len(horizons), None
    else:
        best = {c: [min(row) for row in a.selection_["val_rmse"]] for c, a in fitted.items()}  # (H,) per candidate
        chosen = [min(candidates, key=lambda c, k=k: best[c][k]) for k in range(len(horizons))]
    parts = []
    for k, c in enumerate(chosen):  # the chosen candidate's blend of horizon k, at its chosen ridge
        ridge_k = fitted[c].ridge
        parts.append(fitted[c].horizon_part(k, None if ridge_k is None else ridge_k[k]))
    anchor = PerHorizonAnchor(parts)
    if best is not None:
        anchor.selection_ = {"features": chosen, "val_rmse": best,
                             "val_rmse_persistence": fitted[candidates[0]].selection_["val_rmse_persistence"],
                             "ridge": anchor.ridge,
                             "by_candidate": {c: a.selection_ for c, a in fitted.items()}}
    return anchor
