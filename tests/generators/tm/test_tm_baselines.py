"""TM forecasting baselines: exact naive forecasts, learned models train / save / load / reproduce."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm import TM_BASELINES, get_tm_model, load_tm_model
from trafficgen.generators.tm.naive import (
    HistoricalAverageForecaster,
    PersistenceForecaster,
    SeasonalNaiveForecaster,
)
from trafficgen.generators.tm.stgcn import (
    STGCNForecaster,
    correlation_adjacency,
    links_adjacency,
    scaled_laplacian,
)


def _hourly(rng, t=24 * 9, n=3) -> TMSeries:
    """Hourly series (day = 24 steps, week = 168 steps)."""
    return TMSeries(rng.uniform(0, 100, size=(t, n, n)), [f"n{i}" for i in range(n)], 3600.0, "bytes")


def _toy(rng, t=120, n=4) -> TMSeries:
    """Daily-periodic OD traffic with noise, 1-hour steps."""
    base = rng.uniform(5, 50, size=(n, n))
    phase = rng.uniform(0, 2 * np.pi, size=(n, n))
    tt = np.arange(t)[:, None, None]
    values = base * (1.5 + np.sin(2 * np.pi * tt / 24 + phase)) + rng.uniform(0, 2, size=(t, n, n))
    return TMSeries(values, [f"n{i}" for i in range(n)], 3600.0, "bytes")


def test_persistence_repeats_last_matrix(rng):
    s = _hourly(rng)
    m = PersistenceForecaster().fit(s[:100])
    origins = [0, 5, 150]
    out = m.predict(s.values, origins, [1, 3])
    assert out.shape == (3, 2, 3, 3)
    for b, o in enumerate(origins):
        np.testing.assert_array_equal(out[b, 0], s.values[o])
        np.testing.assert_array_equal(out[b, 1], s.values[o])


def test_seasonal_naive_day_week_auto(rng):
    s = _hourly(rng)
    v = s.values
    day = SeasonalNaiveForecaster(season="day").fit(s)
    assert (day.day_steps_, day.week_steps_) == (24, 168)
    out = day.predict(v, [30, 100], [1, 24, 30])
    np.testing.assert_array_equal(out[0, 0], v[30 + 1 - 24])
    np.testing.assert_array_equal(out[0, 1], v[30 + 24 - 24])  # h = P: one period back = v[o]
    np.testing.assert_array_equal(out[1, 2], v[100 + 30 - 48])  # h > P: two periods back
    week = SeasonalNaiveForecaster(season="week").fit(s)
    np.testing.assert_array_equal(week.predict(v, [180], [5])[0, 0], v[180 + 5 - 168])
    auto = SeasonalNaiveForecaster(season="auto").fit(s)
    got = auto.predict(v, [100, 200], [1])
    np.testing.assert_array_equal(got[0, 0], v[101 - 24])  # a week back is before the series
    np.testing.assert_array_equal(got[1, 0], v[201 - 168])
    with pytest.raises(InputFormatError):
        day.predict(v, [10], [1])  # less than a day of history
    with pytest.raises(ConfigError):
        SeasonalNaiveForecaster(season="month").fit(s)


def test_historical_average_hand_computed(rng):
    s = _hourly(rng)
    m = HistoricalAverageForecaster(t_in=3).fit(s)
    out = m.predict(s.values, [2, 50], [1, 7])
    np.testing.assert_allclose(out[0, 0], (s.values[0] + s.values[1] + s.values[2]) / 3, rtol=1e-15)
    np.testing.assert_array_equal(out[1, 0], out[1, 1])
    with pytest.raises(InputFormatError):
        m.predict(s.values, [1], [1])


@pytest.mark.parametrize("cls", [PersistenceForecaster, SeasonalNaiveForecaster, HistoricalAverageForecaster])
def test_naive_save_load(cls, rng, tmp_path):
    s = _hourly(rng)
    m = cls().fit(s)
    m.save_pretrained(tmp_path / "m")
    back = load_tm_model(tmp_path / "m")
    assert type(back) is cls and back.get_params() == {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in m.get_params().items()}
    np.testing.assert_array_equal(back.predict(s.values, [180, 190], [1, 2]), m.predict(s.values, [180, 190], [1, 2]))


def _tiny(name, **kw):
    extra = {"vit-lstm": {"patch_size": 2, "vit_hidden": 16, "vit_layers": 1, "hidden": 16},
             "stgcn": {"hidden": 8, "kt": 2, "cheb_k": 2}}.get(name, {"hidden": 16})
    return get_tm_model(name)(t_in=5, horizons=(1, 2), epochs=3, batch_size=16, lr=3e-3, patience=None,
                              random_state=3, progress=False, **extra, **kw)


@pytest.mark.parametrize("name", ["lstm", "gru", "vit-lstm", "stgcn"])
def test_learned_models_train_reproduce_save_load(name, rng, tmp_path):
    s = _toy(rng)
    m = _tiny(name).fit(s[:72], val=s[72:])
    hist = m.history_
    assert len(hist["train_loss"]) == 3 and hist["train_loss"][-1] < hist["train_loss"][0]
    origins = np.arange(90, 118)
    out = m.predict(s.values, origins, [1, 2])
    assert out.shape == (28, 2, 4, 4) and np.all(out >= 0) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, ::-1], m.predict(s.values, origins, [2, 1]))
    again = _tiny(name).fit(s[:72], val=s[72:])
    np.testing.assert_array_equal(again.predict(s.values, origins, [1, 2]), out)  # same seed, same bits
    m.save_pretrained(tmp_path / name)
    back = load_tm_model(tmp_path / name)
    assert type(back) is type(m) and back.get_params() == json.loads(json.dumps(m.get_params()))
    if name == "stgcn":
        assert back.adjacency_source_ == m.adjacency_source_ == "correlation"
        np.testing.assert_array_equal(back.adjacency_, m.adjacency_)
    np.testing.assert_array_equal(back.predict(s.values, origins, [1, 2]), out)
    with pytest.raises(ConfigError):
        m.predict(s.values, origins, [5])  # not a trained horizon


def test_stgcn_adjacencies(rng):
    from trafficgen.datasets import load_abilene

    adj = links_adjacency(load_abilene(weeks=(1,)).meta["links"], 12)
    assert adj.shape == (12, 12) and np.array_equal(adj, adj.T) and adj.sum() == 30  # 15 links
    assert np.all(adj.sum(axis=1) >= 1) and np.all(np.diag(adj) == 0)
    corr = correlation_adjacency(rng.uniform(0, 1, size=(40, 5, 5)), 2)
    assert np.array_equal(corr, corr.T) and np.all(corr.sum(axis=1) >= 2) and np.all(np.diag(corr) == 0)
    eig = np.linalg.eigvalsh(scaled_laplacian(adj))
    assert eig.min() >= -1 - 1e-9 and abs(eig.max() - 1) < 1e-9
    s = _toy(rng)
    m = STGCNForecaster(adjacency="auto")
    m._prepare(s)
    assert m.adjacency_source_ == "correlation"
    with pytest.raises(ConfigError):
        STGCNForecaster(adjacency="topology")._prepare(s)
    m = STGCNForecaster(adjacency="auto")
    m._prepare(load_abilene(weeks=(1,))[:50])
    assert m.adjacency_source_ == "topology" and np.array_equal(m.adjacency_, adj)


def test_registry_names():
    assert {"persistence", "seasonal", "historical-average", "lstm", "gru", "vit-lstm", "stgcn",
            "lead", "ddpm-tme"} <= set(TM_BASELINES)
    with pytest.raises(ConfigError):
        get_tm_model("no-such-model")


# ---------------------------------------------------------------------- probabilistic baselines
def test_probabilistic_persistence_error_quantiles_by_hand(rng):
    from trafficgen.generators.tm.probabilistic_naive import ProbabilisticPersistenceForecaster

    s = _hourly(rng, t=60, n=2)
    m = ProbabilisticPersistenceForecaster(horizons=(1, 3), error_space="additive", n_quantiles=4).fit(s)
    v = s.values
    for h in (1, 2, 3):  # every horizon up to the largest is fitted
        err = v[h:] - v[:-h]  # (T - h, N, N): all training origins
        np.testing.assert_allclose(m.error_quantiles_[h - 1], np.quantile(err, [0.125, 0.375, 0.625, 0.875], axis=0))
    origins = np.array([10, 40])
    smp = m.predict_samples(v, origins, [3], 4)  # levels (j + 0.5) / 4 = the stored grid itself
    expected = np.maximum(v[origins][:, None] + m.error_quantiles_[2][None], 0.0)  # (B, S, N, N)
    np.testing.assert_allclose(smp[:, :, 0], expected)
    np.testing.assert_array_equal(m.predict(v, origins, [3]), PersistenceForecaster().fit(s).predict(v, origins, [3]))
    assert np.all(np.diff(smp, axis=1) >= 0)  # a sorted ensemble
    with pytest.raises(ConfigError):
        m.predict_samples(v, origins, [4], 4)  # beyond the fitted horizons


def test_probabilistic_baselines_calibrated_on_stationary_noise(rng):
    """On i.i.d. noise the training errors are the test errors: 90 % intervals cover ~90 %."""
    from trafficgen.evaluation.tm.probabilistic_metrics import interval_coverage
    from trafficgen.generators.tm.probabilistic_naive import (
        ProbabilisticHistoricalAverageForecaster,
        ProbabilisticPersistenceForecaster,
    )

    values = rng.gamma(4.0, 25.0, size=(1200, 3, 3))
    s = TMSeries(values, ["a", "b", "c"], 300.0, "bytes")
    train = s[:800]
    origins = np.arange(820, 1190)
    y = values[origins + 2]
    for cls in (ProbabilisticPersistenceForecaster, ProbabilisticHistoricalAverageForecaster):
        m = cls(horizons=(1, 2)).fit(train)
        cov = interval_coverage(y, m.predict_samples(values, origins, [2], 50)[:, :, 0])
        assert cov["coverage_90"] == pytest.approx(0.9, abs=0.04) and cov["coverage_50"] == pytest.approx(0.5, abs=0.06)
    from trafficgen.evaluation.tm.probabilistic_metrics import crps_ensemble

    pp = ProbabilisticPersistenceForecaster(horizons=(2,)).fit(train).predict_samples(values, origins, [2], 50)[:, :, 0]
    ha = ProbabilisticHistoricalAverageForecaster(horizons=(2,)).fit(train).predict_samples(values, origins, [2], 50)[:, :, 0]
    assert crps_ensemble(y, ha) < crps_ensemble(y, pp)  # on noise the window mean is the better forecast


@pytest.mark.parametrize("name", ["persistence-prob", "historical-average-prob", "linear-anchor"])
def test_probabilistic_and_anchor_save_load(name, rng, tmp_path):
    s = _toy(rng, t=120)
    m = get_tm_model(name)(horizons=(1, 2)).fit(s[:90])
    m.save_pretrained(tmp_path / name)
    back = load_tm_model(tmp_path / name)
    origins = np.arange(95, 110)
    np.testing.assert_array_equal(back.predict(s.values, origins, [1, 2]), m.predict(s.values, origins, [1, 2]))
    np.testing.assert_array_equal(back.predict_samples(s.values, origins, [2], 5),
                                  m.predict_samples(s.values, origins, [2], 5))


def test_linear_anchor_recovers_a_known_blend(rng):
    """x[o + 1] = 0.5 x[o] + 0.2 mean(last 4) + 0.3 mean(last 24) + independent noise: least squares
    recovers the blend (the noise is independent of the history)."""
    from trafficgen.generators.tm.lead.anchor import LinearAnchor, history_features

    values = rng.normal(0.0, 1.0, size=(3000, 3, 3))
    for o in range(23, 2999):
        values[o + 1] += history_features(values, np.array([o]), 24)[0] @ np.array([0.5, 0.2, 0.3])
    a = LinearAnchor(t_in=24, horizons=[1]).fit(values)
    np.testing.assert_allclose(a.coef_[0], [0.5, 0.2, 0.3], atol=0.03)
    pred = a.predict(np.abs(values), np.array([100]), [1])  # clipped at 0, (B, H, N, N)
    assert pred.shape == (1, 1, 3, 3) and np.all(pred >= 0)
