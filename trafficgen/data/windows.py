"""Chronological splits and forecasting windows of traffic-matrix series.

Window convention (shared with :class:`~trafficgen.generators.tm.base.TMForecaster`): an
*origin* ``o`` is the index of the last observed matrix; the input window is
``values[o - t_in + 1 : o + 1]`` and the target at horizon ``h`` is ``values[o + h]``.

* :func:`chronological_split` - consecutive (train, val, test) parts.
* :func:`window_origins` - every origin with a full window and all targets inside the series.
* :func:`window_index` / :func:`target_index` - the (B, T_in) and (B, H) indices of those
  matrices (LEAD indexes its cached frames with them).
* :func:`make_windows` - the gathered windows X (B, T_in, ...) and targets Y (B, H, ...); works
  on numpy arrays and torch tensors alike (plain integer indexing).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError

__all__ = ["chronological_split", "make_windows", "target_index", "window_index", "window_origins"]


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


def window_origins(n_steps: int, t_in: int, horizons: Sequence[int]) -> np.ndarray:
    """Origins ``t_in - 1 .. n_steps - max(horizons) - 1`` (int64): each has ``t_in`` matrices of
    history and every target inside a series of ``n_steps`` matrices; empty when none fits."""
    return np.arange(int(t_in) - 1, int(n_steps) - max(int(h) for h in horizons), dtype=np.int64)


def window_index(origins, t_in: int) -> np.ndarray:
    """(B, T_in) indices ``o - t_in + 1 .. o`` of each origin's input window."""
    origins = np.asarray(origins, dtype=np.int64).reshape(-1)
    return origins[:, None] + np.arange(1 - int(t_in), 1)[None, :]  # (B, T_in)


def target_index(origins, horizons: Sequence[int]) -> np.ndarray:
    """(B, H) indices ``o + h`` of each origin's targets."""
    origins = np.asarray(origins, dtype=np.int64).reshape(-1)
    return origins[:, None] + np.asarray(horizons, dtype=np.int64)[None, :]  # (B, H)


def make_windows(values, t_in: int, horizons: Sequence[int], origins=None):
    """Input windows X (B, T_in, ...) and targets Y (B, H, ...) of ``values`` (T, ...) at
    ``origins`` (default: every :func:`window_origins`)."""
    if origins is None:
        origins = window_origins(len(values), t_in, horizons)
    return values[window_index(origins, t_in)], values[target_index(origins, horizons)]
