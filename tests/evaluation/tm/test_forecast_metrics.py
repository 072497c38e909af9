"""TM metrics on hand-computed cases."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from trafficgen.errors import ConfigError
from trafficgen.evaluation.tm.forecast_metrics import (
    crps_from_samples,
    evaluate_forecast,
    interval_coverage,
    lead_metrics,
    normalize_per_matrix,
    real_unit_metrics,
)


def test_normalize_per_matrix():
    x = np.array([[[2.0, 4.0], [6.0, 10.0]], [[3.0, 3.0], [3.0, 3.0]]])
    np.testing.assert_array_equal(normalize_per_matrix(x), [[[0, 0.25], [0.5, 1]], [[0, 0], [0, 0]]])


def test_lead_metrics_each_matrix_by_its_own_scale():
    t = np.array([[[0.0, 1.0], [2.0, 4.0]]])  # -> [0, .25, .5, 1]
    p = np.array([[[10.0, 10.0], [30.0, 50.0]]])  # -> [0, 0, .5, 1]: a scaled copy would score 0
    res = lead_metrics(t, p)
    assert res["mae"] == pytest.approx(0.25 / 4, abs=1e-15)
    assert res["rmse"] == pytest.approx(np.sqrt(0.25 ** 2 / 4), abs=1e-15)
    assert lead_metrics(t, 7 * t + 3) == {"rmse": 0.0, "mae": 0.0}  # scale-free by design


def test_real_unit_metrics_abilene_units():
    t = np.zeros((1, 2, 2))
    t[0, 0, 1] = 375_000.0  # 375000 x 100 bytes x 8 / 300 s = 1e6 bit/s = 1 Mbit/s
    p = np.zeros((1, 2, 2))
    p[0, 0, 1] = 750_000.0  # 2 Mbit/s
    p[0, 1, 0] = 375_000.0  # 1 Mbit/s where truth is 0
    res = real_unit_metrics(t, p, unit="100bytes", interval_s=300.0)
    assert res["mae_mbps"] == pytest.approx(2 / 4, rel=1e-12)
    assert res["rmse_mbps"] == pytest.approx(np.sqrt(2 / 4), rel=1e-12)
    assert res["nmae"] == pytest.approx(2.0, rel=1e-12)  # |1| + |1| over a true total of 1
    same = real_unit_metrics(t / 375_000 * 1e6, p / 375_000 * 1e6, unit="bit/s", interval_s=900.0)
    assert same == pytest.approx(res, rel=1e-12)
    kbit = real_unit_metrics(t / 375_000 * 1e3, p / 375_000 * 1e3, unit="kbit/s", interval_s=900.0)
    assert kbit == pytest.approx(res, rel=1e-12)


def test_crps_by_hand_and_against_pairwise():
    # samples {0, 2}, y = 1: E|X - y| = 1, E|X - X'| = (0 + 2 + 2 + 0) / 4 = 1 -> CRPS 0.5
    assert crps_from_samples(np.array([1.0]), np.array([[0.0, 2.0]])) == pytest.approx(0.5, abs=1e-15)
    # one sample = absolute error
    assert crps_from_samples(np.array([3.0]), np.array([[1.0]])) == 2.0
    rng = np.random.default_rng(0)
    y = rng.normal(size=(4, 3))
    s = rng.normal(size=(4, 5, 3))
    brute = np.mean([np.abs(s[:, i] - y).mean(0) for i in range(5)], axis=0) - 0.5 * np.mean(
        [np.abs(s[:, i] - s[:, j]) for i, j in itertools.product(range(5), range(5))], axis=0)
    assert crps_from_samples(y, s) == pytest.approx(brute.mean(), abs=1e-14)
    with pytest.raises(ConfigError):
        crps_from_samples(y, s[:, :, :2])


def test_interval_coverage_by_hand():
    samples = np.tile(np.arange(11.0), (4, 1))  # 0..10: 50% interval [2.5, 7.5], 90% [0.5, 9.5]
    y = np.array([5.0, 2.0, 9.0, 10.0])  # inside 50%: 5; inside 90%: 5, 2, 9
    cov = interval_coverage(y, samples)
    assert cov == {"coverage_50": 0.25, "coverage_90": 0.75}
    assert interval_coverage(np.array([7.5]), samples[:1], levels=(0.5,)) == {"coverage_50": 1.0}


def test_evaluate_forecast_per_horizon():
    rng = np.random.default_rng(1)
    y = rng.gamma(1.0, 100.0, size=(6, 2, 3, 3))
    pred = y.copy()
    pred[:, 1] *= 2.0  # horizon 5: twice the truth
    samples = np.repeat(pred[:, None], 3, axis=1)  # (B, S, H, N, N)
    out = evaluate_forecast(y, pred, [1, 5], unit="100bytes", interval_s=300.0, samples=samples)
    assert set(out) == {1, 5}
    assert out[1]["rmse_mbps"] == 0.0 and out[1]["crps_mbps"] == 0.0 and out[1]["coverage_90"] == 1.0
    assert out[5]["rmse"] == pytest.approx(0.0, abs=1e-12)  # doubling is invisible to LEAD's metric
    assert out[5]["nmae"] == pytest.approx(1.0, rel=1e-12)
    mae = np.mean(y[:, 1]) * 800 / 300 / 1e6
    assert out[5]["mae_mbps"] == pytest.approx(mae, rel=1e-12)
    assert out[5]["crps_mbps"] == pytest.approx(mae, rel=1e-12)  # point mass: CRPS = MAE
    with pytest.raises(ConfigError):
        evaluate_forecast(y, pred, [1], unit="bytes", interval_s=1.0)
