"""`TMSeries`: a time series of traffic matrices with explicit units.

``values[t, i, j]`` is the traffic from origin ``nodes[i]`` to destination ``nodes[j]`` during
interval ``t``. Units are explicit and never changed silently: use :meth:`to_unit`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from trafficgen.errors import InputFormatError

#: Supported units. "bytes" means bytes per interval; "100bytes" is the Abilene X-file unit
#: (100 bytes per interval); rates are per second.
UNITS = ("bytes", "100bytes", "bit/s", "kbit/s", "Mbit/s", "Gbit/s")
_RATE_BITS = {"bit/s": 1.0, "kbit/s": 1e3, "Mbit/s": 1e6, "Gbit/s": 1e9}


@dataclass(eq=False)
class TMSeries:
    values: np.ndarray  # (T, N, N) float64, non-negative
    nodes: list[str]
    interval_s: float  # seconds per matrix
    unit: str
    start: datetime | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 3 or self.values.shape[1] != self.values.shape[2]:
            raise InputFormatError(f"TM values must have shape (T, N, N), got {self.values.shape}")
        if len(self.nodes) != self.values.shape[1]:
            raise InputFormatError(f"{len(self.nodes)} node names for {self.values.shape[1]} nodes")
        self.nodes = [str(n) for n in self.nodes]
        if self.unit not in UNITS:
            raise InputFormatError(f"unknown unit {self.unit!r}; expected one of {UNITS}")
        if not np.all(np.isfinite(self.values)):
            t = int(np.argwhere(~np.isfinite(self.values))[0, 0])
            raise InputFormatError("TM contains NaN or infinite values", offset=t)
        if np.any(self.values < 0):
            t = int(np.argwhere(self.values < 0)[0, 0])
            raise InputFormatError("TM contains negative values", offset=t)
        if not self.interval_s > 0:
            raise InputFormatError("interval_s must be positive")

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.values.shape[1])

    @property
    def flat(self) -> np.ndarray:
        """(T, N*N) OD vectors, origin-major (row-major)."""
        return self.values.reshape(len(self), -1)

    def __getitem__(self, index) -> TMSeries:
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1)
        start = self.start
        if isinstance(index, slice) and start is not None and (index.step in (None, 1)):
            from datetime import timedelta

            first = range(len(self))[index]
            if len(first):
                start = start + timedelta(seconds=self.interval_s * first[0])
        elif not isinstance(index, slice):
            start = None
        return replace(self, values=self.values[index], start=start, meta=dict(self.meta))

    def to_unit(self, unit: str) -> TMSeries:
        """Convert between bytes per interval and bit rates, exactly as the arithmetic says."""
        if unit not in UNITS:
            raise InputFormatError(f"unknown unit {unit!r}; expected one of {UNITS}")
        bits_per_s = self.values * _to_bits_per_second_factor(self.unit, self.interval_s)
        values = bits_per_s / _to_bits_per_second_factor(unit, self.interval_s)
        return replace(self, values=values, unit=unit, meta=dict(self.meta))


def _to_bits_per_second_factor(unit: str, interval_s: float) -> float:
    if unit in _RATE_BITS:
        return _RATE_BITS[unit]
    if unit == "bytes":
        return 8.0 / interval_s
    if unit == "100bytes":
        return 800.0 / interval_s
    raise InputFormatError(f"unknown unit {unit!r}")
