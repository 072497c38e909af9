"""Length maps: rescaled signed lengths ``x = L / scale`` <-> GASF inputs ``v`` in [-1, 1].

The GASF of a flow is built from one number per packet in [-1, 1]. How a length becomes that
number decides how much of the image a denoiser's error moves it (used by
:class:`~trafficgen.generators.netdiffus.NetDiffusGenerator`, ``length_transform``):

* ``"linear"`` (the NetDiffus paper): ``v = x``; padding is ``v = 0``, so a 1-byte packet sits
  ``1 / scale`` from padding.
* ``"log"``: ``v = sign(L) (1 + log|L| / log(scale)) / 2``: every packet at ``|v| >= 0.5``,
  padding at 0 (:func:`compand` / :func:`expand`). A fixed error in ``v`` is a fixed *relative*
  error in ``L`` (``dL / L = 2 log(scale) dv``: 0.01 in ``v`` is 21 % of the length at
  ``scale = 37,440``).
* ``"quantile"``: ``v = sign(L) (1 + F(|L|)) / 2`` with ``F`` the mid-rank empirical CDF of the
  training packet lengths (:func:`quantile_encode` / :func:`quantile_decode`): each training
  length owns an interval of ``v`` as wide as its share of the training packets, so frequent
  lengths (1440, 1448, 44 bytes ...) survive errors that move a rare one to its neighbour;
  decoding returns a training length (the interval ``v`` falls in). Exact for lengths seen in
  training (float64), piecewise-linear between them for unseen ones.
* ``"class_quantile"``: the quantile map with one table per class (that class's training
  lengths and their counts; the generator encodes each flow and decodes each sample with its
  class's table). A class uses a few dozen of the 1,063 lengths of the shipped nDPI flows, so
  each of its lengths owns an interval of ``v`` many times wider than in the global table and
  survives a larger error; decoding returns one of the class's training lengths.

Every map keeps padding at ``v = 0`` and a packet at ``|v| >= 0.5`` (except ``"linear"``);
``|v| < 0.25`` decodes as padding.
"""
from __future__ import annotations

import numpy as np

#: Names of the maps (``NetDiffusGenerator(length_transform=...)``).
LENGTH_TRANSFORMS = ("linear", "log", "quantile", "class_quantile")

#: ``|v|`` below this decodes as padding (half-way between padding, 0, and the smallest packet, 0.5).
PADDING_THRESHOLD = 0.25


def compand(x: np.ndarray, scale: float) -> np.ndarray:
    """``x = L / scale`` -> ``sign(L) (1 + log(|L|) / log(scale)) / 2`` for a packet (``|L| >= 1``:
    ``|v|`` in [0.5, 1]), 0 for padding (float64)."""
    x = np.asarray(x, dtype=np.float64)
    mag = np.abs(x) * scale  # (..., N) |L|
    log_s = np.log(max(float(scale), 2.0))
    v = 0.5 * (1.0 + np.log(np.maximum(mag, 1.0)) / log_s)
    return np.where(mag > 0, np.sign(x) * v, 0.0)


def expand(v: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of :func:`compand` (back to ``L / scale``): ``|v| < 0.25`` is padding, anything
    above is a packet of at least 1 byte."""
    v = np.asarray(v, dtype=np.float64)
    log_s = np.log(max(float(scale), 2.0))
    mag = np.exp((2.0 * np.clip(np.abs(v), 0.5, 1.0) - 1.0) * log_s)  # (..., N) |L| >= 1
    return np.where(np.abs(v) >= PADDING_THRESHOLD, np.sign(v) * mag / scale, 0.0)


def _cdf(table: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lengths (K,) float64, upper CDF edges (K,), mid-rank CDF values (K,)) of a length table."""
    table = np.asarray(table, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    if table.ndim != 1 or table.shape != counts.shape or len(table) == 0 or np.any(counts <= 0):
        raise ValueError("a quantile map needs a non-empty length table with positive counts")
    upper = np.cumsum(counts) / counts.sum()  # (K,) F(L_k)
    mid = upper - 0.5 * counts / counts.sum()  # (K,) in (0, 1)
    return table, upper, mid


def quantile_encode(x: np.ndarray, scale: float, table: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``x = L / scale`` -> ``sign(L) (1 + F(|L|)) / 2`` (``F``: mid-rank CDF of ``table`` weighted
    by ``counts``, linear between table lengths, clamped outside), 0 for padding (float64)."""
    x = np.asarray(x, dtype=np.float64)
    lengths, _, mid = _cdf(table, counts)
    mag = np.abs(x) * scale  # (..., N) |L|
    u = np.interp(mag, lengths, mid)  # (..., N) in (0, 1)
    return np.where(mag > 0, np.sign(x) * 0.5 * (1.0 + u), 0.0)


def quantile_decode(v: np.ndarray, scale: float, table: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantile_encode` onto the table (back to ``L / scale``): the table length
    whose CDF interval holds ``2 |v| - 1``; ``|v| < 0.25`` is padding."""
    v = np.asarray(v, dtype=np.float64)
    lengths, upper, _ = _cdf(table, counts)
    u = np.clip(2.0 * np.abs(v) - 1.0, 0.0, 1.0)  # (..., N)
    k = np.minimum(np.searchsorted(upper, u, side="left"), len(lengths) - 1)  # (..., N)
    return np.where(np.abs(v) >= PADDING_THRESHOLD, np.sign(v) * lengths[k] / scale, 0.0)


__all__ = ["LENGTH_TRANSFORMS", "PADDING_THRESHOLD", "compand", "expand", "quantile_encode", "quantile_decode"]
