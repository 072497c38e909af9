"""`IATBins`: inter-arrival times <-> log-spaced bins, and back to seconds by the training data's
quantiles inside each bin (the timing vocabulary of the generators that model time).

Bins (fixed, not learned): bin 0 holds IATs below ``min_iat`` (0 included: gaps under the
capture's resolution); bins ``1 .. G`` cover [``min_iat``, ``max_iat``) on a log10 grid of
``bins_per_decade`` bins per decade; bin ``G + 1`` everything from ``max_iat`` on. The defaults
(10 bins per decade from 1 us to 1000 s: 92 bins) are twice as fine as
:class:`~trafficgen.evaluation.fidelity.IATJSD`'s grid and share its edges, so the metric sees
no binning error of its own.

Back to seconds: :meth:`fit` stores ``n_quantiles`` quantiles of the training IATs that fell in
each bin; :meth:`decode` draws a uniform position in that quantile function (linear
interpolation), so a bin's IATs come back with the training data's distribution inside the bin
(exact zeros included). A bin without training IATs decodes log-uniformly between its edges
(bin 0: 0, the top bin: ``max_iat``).
"""
from __future__ import annotations

import numpy as np

from trafficgen.errors import ConfigError

__all__ = ["IATBins"]


class IATBins:
    """Log-spaced IAT bins (see the module docstring)."""

    def __init__(self, *, bins_per_decade: int = 10, min_iat: float = 1e-6, max_iat: float = 1e3,
                 n_quantiles: int = 33):
        if bins_per_decade < 1 or not 0 < min_iat < max_iat or n_quantiles < 2:
            raise ConfigError("need bins_per_decade >= 1, 0 < min_iat < max_iat, n_quantiles >= 2")
        self.bins_per_decade = int(bins_per_decade)
        self.min_iat = float(min_iat)
        self.max_iat = float(max_iat)
        self.n_quantiles = int(n_quantiles)
        self.n_grid = int(round(np.log10(self.max_iat / self.min_iat) * self.bins_per_decade))
        self.quantiles_: np.ndarray | None = None  # (n_bins, n_quantiles) seconds, NaN rows: no data

    @property
    def n_bins(self) -> int:
        return self.n_grid + 2

    def edges(self) -> np.ndarray:
        """(G + 1,) the grid's edges in seconds, ``min_iat`` .. ``max_iat``."""
        return self.min_iat * 10.0 ** (np.arange(self.n_grid + 1) / self.bins_per_decade)

    def encode(self, iat: np.ndarray) -> np.ndarray:
        """Bin of each IAT (any shape, seconds >= 0) as int64."""
        iat = np.asarray(iat, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (np.log10(np.maximum(iat, self.min_iat)) - np.log10(self.min_iat)) * self.bins_per_decade
        grid = 1 + np.floor(x).astype(np.int64).clip(0, self.n_grid)
        return np.where(iat < self.min_iat, 0, grid)

    def fit(self, iat: np.ndarray) -> IATBins:
        """Store the per-bin quantiles of training IATs ``iat`` (k,) seconds."""
        iat = np.asarray(iat, dtype=np.float64).ravel()
        bins = self.encode(iat)
        q = np.full((self.n_bins, self.n_quantiles), np.nan)
        levels = np.linspace(0.0, 1.0, self.n_quantiles)
        order = np.argsort(bins, kind="stable")
        starts = np.searchsorted(bins[order], np.arange(self.n_bins + 1))
        for b in range(self.n_bins):
            vals = iat[order[starts[b]:starts[b + 1]]]
            if len(vals):
                q[b] = np.quantile(vals, levels)
        self.quantiles_ = q
        return self

    def decode(self, bins: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """IATs in seconds for bins (any shape): a draw from the bin's training quantile function."""
        bins = np.asarray(bins, dtype=np.int64)
        if bins.size and (bins.min() < 0 or bins.max() >= self.n_bins):
            raise ConfigError(f"IAT bins must lie in [0, {self.n_bins})")
        u = rng.random(bins.shape)
        edges = self.edges()
        lo = np.log10(np.where(bins >= 1, edges[np.clip(bins - 1, 0, self.n_grid)], self.min_iat))
        hi = np.log10(np.where(bins <= self.n_grid, edges[np.clip(bins, 0, self.n_grid)], self.max_iat))
        out = np.where(bins == 0, 0.0, np.where(bins > self.n_grid, self.max_iat, 10.0 ** (lo + u * (hi - lo))))
        if self.quantiles_ is not None:
            q = self.quantiles_[bins]  # (..., Q)
            pos = u * (self.n_quantiles - 1)
            i = np.minimum(np.floor(pos).astype(np.int64), self.n_quantiles - 2)
            frac = pos - i
            lo_q = np.take_along_axis(q, i[..., None], -1)[..., 0]
            hi_q = np.take_along_axis(q, (i + 1)[..., None], -1)[..., 0]
            empirical = lo_q + frac * (hi_q - lo_q)
            out = np.where(np.isnan(empirical), out, empirical)
        return out

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"bins_per_decade": self.bins_per_decade, "min_iat": self.min_iat, "max_iat": self.max_iat,
                "n_quantiles": self.n_quantiles}

    @classmethod
    def from_dict(cls, d: dict, quantiles: np.ndarray | None = None) -> IATBins:
        obj = cls(bins_per_decade=int(d["bins_per_decade"]), min_iat=float(d["min_iat"]),
                  max_iat=float(d["max_iat"]), n_quantiles=int(d["n_quantiles"]))
        if quantiles is not None:
            quantiles = np.asarray(quantiles, dtype=np.float64)
            if quantiles.shape != (obj.n_bins, obj.n_quantiles):
                raise ConfigError(f"IAT quantiles must have shape {(obj.n_bins, obj.n_quantiles)}, "
                                  f"got {quantiles.shape}")
            obj.quantiles_ = quantiles
        return obj
