"""Shared conventions of the traffic-matrix plots: every TM value is drawn in Mbit/s, and a curve
over target times breaks wherever consecutive points are more than one interval apart (evenly
spaced test origins, or forecasts far apart in time, are never joined by a straight line)."""
from __future__ import annotations

import numpy as np

#: The unit every TM plot shows values in.
PLOT_UNIT = "Mbit/s"


def mbps_factor(unit: str | None, interval_s: float | None) -> float | None:
    """Multiplier from ``unit`` (per ``interval_s`` seconds for bytes / 100bytes) to Mbit/s, or
    None when it cannot be known (no unit, or a per-interval unit without an interval)."""
    from trafficgen.data.tmseries import _RATE_BITS, _to_bits_per_second_factor

    if not unit:
        return None
    if unit in _RATE_BITS:
        return _RATE_BITS[unit] / 1e6
    if interval_s is None:
        return None
    try:
        return _to_bits_per_second_factor(unit, float(interval_s)) / 1e6
    except ValueError:
        return None


def value_label(unit: str | None, interval_s: float | None) -> tuple[float, str]:
    """(multiplier, axis unit): Mbit/s when the conversion is known, else the data's own unit."""
    factor = mbps_factor(unit, interval_s)
    if factor is None:
        return 1.0, unit or "input unit"
    return factor, PLOT_UNIT


def contiguous_runs(t) -> list[slice]:
    """Slices of ``t`` (sorted times) over which consecutive points are at most 1 apart."""
    t = np.asarray(t)
    if len(t) == 0:
        return []
    cuts = np.flatnonzero(np.diff(t) > 1) + 1
    bounds = np.r_[0, cuts, len(t)]
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def with_gaps(t, *ys) -> tuple[np.ndarray, ...]:
    """``t`` and each ``y`` with a NaN inserted between points more than 1 apart (matplotlib
    breaks a line at NaN)."""
    t = np.asarray(t, dtype=float)
    cuts = np.flatnonzero(np.diff(t) > 1) + 1
    out = [np.insert(t, cuts, np.nan)]
    out += [np.insert(np.asarray(y, dtype=float), cuts, np.nan) for y in ys]
    return tuple(out)
