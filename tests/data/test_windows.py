"""Chronological splits of traffic-matrix series."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from trafficgen.data.tmseries import TMSeries
from trafficgen.data.windows import chronological_split
from trafficgen.errors import ConfigError


def _series(t=20, n=2):
    values = np.arange(t * n * n, dtype=float).reshape(t, n, n)
    return TMSeries(values, ["a", "b"][:n], 300.0, "bytes", datetime(2004, 3, 1))


def test_chronological_split():
    s = _series(20)
    tr, va, te = chronological_split(s)
    assert (len(tr), len(va), len(te)) == (14, 3, 3)
    np.testing.assert_array_equal(np.concatenate([tr.values, va.values, te.values]), s.values)
    assert va.start == datetime(2004, 3, 1) + timedelta(seconds=14 * 300)
    assert te.values[0, 0, 0] == 17 * 4
    assert [len(p) for p in chronological_split(_series(4032), (0.7, 0.15, 0.15))] == [2822, 605, 605]
    with pytest.raises(ConfigError):
        chronological_split(s, (0.5, 0.6, 0.1))
