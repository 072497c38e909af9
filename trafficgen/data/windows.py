"""Chronological splits of traffic-matrix series.

Window convention (shared with :class:`~trafficgen.generators.tm.base.TMForecaster`): an
*origin* ``o`` is the index of the last observed matrix; the input window is
``values[o - t_in + 1 : o + 1]`` and the target at horizon ``h`` is ``values[o + h]``.
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError

__all__ = ["chronological_split"]


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
