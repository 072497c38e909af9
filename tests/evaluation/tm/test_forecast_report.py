"""The TM forecasting protocol: origins, metrics identical to tm_metrics, table, PNGs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError
from trafficgen.evaluation.tm.forecast_metrics import lead_metrics, real_unit_metrics
from trafficgen.evaluation.tm.forecast_report import (
    results_table_markdown,
    write_results,
)
from trafficgen.experiments.tm_forecast import evaluate_forecaster, forecast_origins
from trafficgen.generators.tm.naive import HistoricalAverageForecaster, PersistenceForecaster


def _series(rng, t=100, n=3):
    return TMSeries(rng.uniform(0, 1e4, size=(t, n, n)), [f"n{i}" for i in range(n)], 300.0, "100bytes",
                    meta={"dataset": "toy"})


def test_forecast_origins():
    assert forecast_origins(100, 85, [1, 5], 24).tolist() == list(range(85, 95))
    assert forecast_origins(100, 0, [1], 24)[0] == 23  # never less history than min_history
    assert len(forecast_origins(10, 8, [5], 1)) == 0


def test_evaluate_persistence_matches_metrics_by_hand(rng):
    s = _series(rng)
    res = evaluate_forecaster(PersistenceForecaster(), s, horizons=(1, 3), t_in=4)
    assert (res["n_train"], res["n_val"], res["n_test"]) == (70, 15, 15)
    origins = np.arange(85, 97)
    np.testing.assert_array_equal(res["forecast"]["origins"], origins)
    for _k, h in enumerate((1, 3)):
        y_true, y_pred = s.values[origins + h], s.values[origins]
        expect = lead_metrics(y_true, y_pred)
        expect.update(real_unit_metrics(y_true, y_pred, unit="100bytes", interval_s=300.0))
        assert res["metrics"][str(h)] == expect
    mbps = s.values * 800 / 300 / 1e6
    err = mbps[origins + 1] - mbps[origins]
    assert res["metrics"]["1"]["rmse_mbps"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-12)
    with pytest.raises(ConfigError):
        evaluate_forecaster(PersistenceForecaster(), s[:20], horizons=(20,))


def test_historical_average_ranks_better_on_noise_around_constant(rng):
    """On i.i.d. noise around a constant the window mean beats repeating one noisy matrix."""
    s = TMSeries(100 + rng.normal(0, 10, size=(300, 3, 3)), ["a", "b", "c"], 300.0, "bytes")
    per = evaluate_forecaster(PersistenceForecaster(), s, horizons=(1,), t_in=24)
    avg = evaluate_forecaster(HistoricalAverageForecaster(t_in=24), s, horizons=(1,), t_in=24)
    assert avg["metrics"]["1"]["rmse_mbps"] < 0.8 * per["metrics"]["1"]["rmse_mbps"]
    table = results_table_markdown([per, avg])
    rows = [line for line in table.splitlines() if line.startswith("| persistence") or line.startswith("| historical")]
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    col = header.index("RMSE / persistence")
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert len(rows) == 2 and cells[0][col] == "1.000"
    ratio = float(cells[1][col])
    assert ratio == pytest.approx(avg["metrics"]["1"]["rmse_mbps"] / per["metrics"]["1"]["rmse_mbps"], abs=1e-3)
    assert cells[1][header.index("CRPS (Mbit/s)")] == ""  # deterministic: no probabilistic scores


def test_write_results_and_samples(rng, tmp_path):
    s = _series(rng)
    res = evaluate_forecaster(PersistenceForecaster(), s, horizons=(1, 2), n_samples=3)
    assert res["forecast"]["samples"].shape == (res["n_origins"], 3, 2, 3, 3)
    assert res["metrics"]["1"]["crps_mbps"] == pytest.approx(res["metrics"]["1"]["mae_mbps"], rel=1e-12)
    paths = write_results(res, tmp_path / "out")
    saved = json.loads(paths["metrics"].read_text())
    assert saved["metrics"] == json.loads(json.dumps(res["metrics"])) and "forecast" not in saved
    for key in ("od_pairs", "error_heatmap"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| persistence | toy | 2 |" in paths["table"].read_text()


def test_persistence_on_abilene_reference():
    """LEAD's metric on the shipped Abilene weeks: persistence ~0.040 / 0.015 at horizon 1."""
    from trafficgen.datasets import load_abilene

    res = evaluate_forecaster(PersistenceForecaster(), load_abilene(), horizons=(1, 10, 20))
    assert (res["n_train"], res["n_val"], res["n_test"]) == (2822, 605, 605)
    assert res["n_origins"] == 4032 - 3427 - 20
    assert res["metrics"]["1"]["rmse"] == pytest.approx(0.0397, abs=5e-4)
    assert res["metrics"]["1"]["mae"] == pytest.approx(0.0149, abs=5e-4)
    assert res["metrics"]["1"]["rmse"] < res["metrics"]["10"]["rmse"] < res["metrics"]["20"]["rmse"]


def test_max_origins_evenly_spaced_and_one_sampling_pass(rng):
    """Issue 16 item 22: ``max_origins`` keeps that many test origins, evenly spaced with the first
    and last; a model whose point forecast is the median of its samples is sampled once."""
    s = _series(rng, t=200)
    full = evaluate_forecaster(PersistenceForecaster(), s, horizons=(1, 2))
    few = evaluate_forecaster(PersistenceForecaster(), s, horizons=(1, 2), max_origins=5)
    all_o = full["forecast"]["origins"]
    expect = all_o[np.unique(np.linspace(0, len(all_o) - 1, 5).round().astype(int))]
    np.testing.assert_array_equal(few["forecast"]["origins"], expect)
    assert few["n_origins"] == 5 and few["n_test_origins"] == len(all_o) and few["max_origins"] == 5
    assert evaluate_forecaster(PersistenceForecaster(), s, horizons=(1, 2), max_origins=10**6)["n_origins"] == len(all_o)
    with pytest.raises(ConfigError):
        evaluate_forecaster(PersistenceForecaster(), s, horizons=(1,), max_origins=0)

    class MedianOfSamples(PersistenceForecaster):
        probabilistic = True
        calls = 0

        def predict(self, values, origins, horizons):
            raise AssertionError("the point forecast comes from the samples")

        def predict_samples(self, values, origins, horizons, n_samples, *, random_state=None):
            type(self).calls += 1
            base = super().predict(values, origins, horizons)  # (B, H, N, N)
            return base[:, None] * (1.0 + np.arange(n_samples))[None, :, None, None, None]

        def point_from_samples(self, samples):
            return np.median(samples, axis=1)

    res = evaluate_forecaster(MedianOfSamples(), s, horizons=(1,), n_samples=3, max_origins=4)
    assert MedianOfSamples.calls == 1
    np.testing.assert_array_equal(res["forecast"]["point"], 2.0 * s.values[res["forecast"]["origins"]][:, None])


def test_table_reports_crps_beside_probabilistic_persistence(rng):
    from trafficgen.generators.tm.probabilistic_naive import (
        ProbabilisticHistoricalAverageForecaster,
        ProbabilisticPersistenceForecaster,
    )

    s = TMSeries(100 + rng.normal(0, 10, size=(400, 3, 3)), ["a", "b", "c"], 300.0, "bytes")
    pp = evaluate_forecaster(ProbabilisticPersistenceForecaster(horizons=(1,)), s, horizons=(1,), n_samples=20)
    ha = evaluate_forecaster(ProbabilisticHistoricalAverageForecaster(horizons=(1,)), s, horizons=(1,), n_samples=20)
    m = ha["metrics"]["1"]
    assert m["crps_mbps"] < pp["metrics"]["1"]["crps_mbps"] and 0.8 < m["coverage_90"] <= 1.0
    assert m["width_90_mbps"] > m["width_50_mbps"] > 0
    table = results_table_markdown([pp, ha])
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    row = [c.strip() for c in table.splitlines()[3].strip("|").split("|")]
    assert row[0] == "historical-average-prob"
    assert float(row[header.index("CRPS / persistence-prob")]) == pytest.approx(
        m["crps_mbps"] / pp["metrics"]["1"]["crps_mbps"], abs=1e-3)
