"""Chronological splits, forecasting windows and scalers with exact inverses."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from trafficgen.data.tmseries import TMSeries
from trafficgen.data.windows import (
    LogScaler,
    MinMaxScaler,
    chronological_split,
    scaler_from_dict,
    sliding_windows,
    window_origins,
)
from trafficgen.errors import ConfigError, NotFittedError


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


def test_window_origins():
    np.testing.assert_array_equal(window_origins(10, t_in=3, horizons=(1, 2)), [2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(window_origins(10, t_in=3, horizons=(1,), start=5), [7, 8])
    assert window_origins(3, t_in=3, horizons=(1,)).size == 0
    with pytest.raises(ConfigError):
        window_origins(10, t_in=0)


def test_sliding_windows_by_hand():
    v = _series(8).values  # v[t] = 4t + [[0, 1], [2, 3]]
    X, y = sliding_windows(v, t_in=3, horizon=2)
    assert X.shape == (4, 3, 2, 2) and y.shape == (4, 2, 2)  # B = 8 - 3 - 2 + 1
    for b in range(4):
        o = b + 2
        np.testing.assert_array_equal(X[b], v[o - 2:o + 1])
        np.testing.assert_array_equal(y[b], v[o + 2])
    with pytest.raises(ConfigError, match="too few"):
        sliding_windows(v, t_in=8, horizon=1)


@pytest.mark.parametrize("make", [MinMaxScaler, lambda: LogScaler(per_od=True),
                                  lambda: LogScaler(per_od=False, normalize=True)])
def test_scalers_invert_and_serialise(rng, make):
    train = rng.gamma(0.3, 1e7, size=(30, 4, 4))
    train[:, 1, 2] = 0.0  # an OD pair that is always zero
    test = rng.gamma(0.3, 1e7, size=(5, 4, 4))
    sc = make().fit(train)
    z = sc.transform(test)
    np.testing.assert_allclose(sc.inverse_transform(z), test, rtol=1e-12, atol=1e-6)
    again = scaler_from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_array_equal(again.transform(test), z)
    assert type(again) is type(sc)


def test_scaler_values_by_hand():
    x = np.array([[[1.0, 3.0], [5.0, 9.0]]])
    mm = MinMaxScaler().fit(x)
    np.testing.assert_array_equal(mm.transform(x), [[[0, 0.25], [0.5, 1.0]]])
    lg = LogScaler(per_od=False).fit(x)  # scale = mean = 4.5
    np.testing.assert_allclose(lg.transform(x), np.log1p(x / 4.5), rtol=0, atol=0)
    const = MinMaxScaler().fit(np.full((2, 2, 2), 7.0))
    np.testing.assert_array_equal(const.transform(np.full((1, 2, 2), 7.0)), 0.0)
    with pytest.raises(NotFittedError):
        LogScaler().transform(x)
