"""Chronological splits and forecasting windows of traffic-matrix series."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
import torch

from trafficgen.data.tmseries import TMSeries
from trafficgen.data.windows import (
    chronological_split,
    make_windows,
    target_index,
    window_index,
    window_origins,
)
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


def test_windows_by_hand():
    z = np.arange(20.0)[:, None, None] * np.ones((1, 2, 2))  # z[t] = t
    assert window_origins(20, 4, [1, 3]).tolist() == list(range(3, 17))
    X, Y = make_windows(z, 4, [1, 3])
    assert X.shape == (14, 4, 2, 2) and Y.shape == (14, 2, 2, 2)
    assert X[0, :, 0, 0].tolist() == [0, 1, 2, 3] and Y[0, :, 0, 0].tolist() == [4, 6]
    assert Y[-1, 1, 0, 0] == 19  # the last origin's farthest target is the last matrix
    assert window_index([5, 9], 3).tolist() == [[3, 4, 5], [7, 8, 9]]
    assert target_index([5, 9], [1, 2]).tolist() == [[6, 7], [10, 11]]
    X2, Y2 = make_windows(z, 4, [1, 3], origins=[3, 10])
    np.testing.assert_array_equal(X2, X[[0, 7]])
    np.testing.assert_array_equal(Y2, Y[[0, 7]])
    Xt, Yt = make_windows(torch.tensor(z), 4, [1, 3])  # torch tensors index the same way
    np.testing.assert_array_equal(Xt.numpy(), X)
    np.testing.assert_array_equal(Yt.numpy(), Y)


def test_windows_empty_when_the_series_is_too_short():
    z = np.zeros((5, 3, 3))
    assert len(window_origins(5, 4, [2])) == 0
    X, Y = make_windows(z, 4, [2])
    assert X.shape == (0, 4, 3, 3) and Y.shape == (0, 1, 3, 3)
    X, Y = make_windows(z, 4, [1])  # exactly one window fits
    assert X.shape == (1, 4, 3, 3) and Y[0, 0].shape == (3, 3)
