"""Fan charts of sampled TM forecasts: OD-pair parsing, default pairs, the PNG."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.errors import ConfigError
from trafficgen.evaluation.tm.fan_chart import fan_chart, largest_od_pairs, parse_od_pairs


def test_parse_od_pairs_names_and_indices():
    nodes = ["ATLA", "CHIN", "HSTN"]
    assert parse_od_pairs("ATLA-HSTN, 1-0", nodes) == [(0, 2), (1, 0)]
    assert parse_od_pairs("CHIN:ATLA", nodes) == [(1, 0)]
    with pytest.raises(ConfigError, match="ATLA, CHIN, HSTN"):
        parse_od_pairs("ATLA-NYCM", nodes)
    with pytest.raises(ConfigError, match="0..2"):
        parse_od_pairs("0-3", nodes)
    with pytest.raises(ConfigError, match="ORIGIN-DEST"):
        parse_od_pairs("ATLA", nodes)


def test_largest_od_pairs_ranks_mean_volume():
    values = np.zeros((4, 3, 3))
    values[:, 2, 1] = 10.0
    values[:, 0, 0] = 5.0
    values[:, 1, 2] = 1.0
    assert largest_od_pairs(values, k=2) == [(2, 1), (0, 0)]


def test_fan_chart_writes_png(tmp_path, rng):
    values = rng.uniform(1, 2, size=(30, 2, 2))  # (T, N, N)
    origins = np.arange(20, 28)
    samples = rng.uniform(1, 2, size=(len(origins), 5, 1, 2, 2))  # (B, S, H, N, N)
    path = fan_chart(values, origins, samples, [(0, 1), (1, 1)], horizon_index=0, horizon=1,
                     title="t", path=tmp_path / "fan.png", unit="bytes", nodes=["a", "b"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def saved_figures(monkeypatch):
    """Every matplotlib figure saved during the test, to read its axes back."""
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig

    def record(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return figures


def test_fan_chart_breaks_at_gaps_and_plots_mbps(tmp_path, rng, saved_figures):
    """Issue 16 item 24: forecasts far apart in time are not joined by straight lines, and values
    are in Mbit/s like the other TM plots."""
    values = rng.uniform(1e4, 2e4, size=(60, 2, 2))  # 100 bytes per 300 s
    origins = np.r_[np.arange(10, 15), np.arange(40, 45)]  # two runs, a gap of 25 intervals
    samples = rng.uniform(1e4, 2e4, size=(len(origins), 5, 1, 2, 2))  # (B, S, H, N, N)
    fan_chart(values, origins, samples, [(0, 1)], horizon_index=0, horizon=1, title="t",
              path=tmp_path / "fan.png", unit="100bytes", interval_s=300.0, nodes=["a", "b"])
    (ax,) = saved_figures[-1].axes
    assert "Mbit/s" in ax.get_ylabel()
    mbit = 800 / 300 / 1e6
    medians = [line for line in ax.get_lines() if line.get_label() in ("median", "_median")]
    xs = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in medians])
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in medians])
    keep = np.isfinite(ys)
    np.testing.assert_allclose(ys[keep], np.median(samples[:, :, 0, 0, 1], axis=1) * mbit)
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        y = np.asarray(line.get_ydata(), dtype=float)
        for a, b, ya, yb in zip(x[:-1], x[1:], y[:-1], y[1:], strict=True):
            if np.isfinite(ya) and np.isfinite(yb) and line.get_label() != "truth":
                assert b - a <= 1, f"{line.get_label()} joins t={a} and t={b}"
    for coll in ax.collections:  # the 50 / 90 % bands: no polygon spans the gap
        for path in coll.get_paths():
            px = path.vertices[:, 0]
            assert not (px.min() < 20 and px.max() > 35), "an interval band spans the gap"
    assert sorted(set(xs[keep])) == (origins + 1).tolist()


def test_error_heatmap_ticks_are_node_names(rng, tmp_path, saved_figures):
    from trafficgen.data.tmseries import TMSeries
    from trafficgen.evaluation.tm.forecast_report import plot_error_heatmap, plot_od_pairs
    from trafficgen.experiments.tm_forecast import evaluate_forecaster
    from trafficgen.generators.tm.naive import PersistenceForecaster

    nodes = ["ATLA", "CHIN", "HSTN"]
    s = TMSeries(rng.uniform(0, 1e4, size=(300, 3, 3)), nodes, 300.0, "100bytes")
    res = evaluate_forecaster(PersistenceForecaster(), s, horizons=(1, 2), max_origins=6)
    plot_error_heatmap(res, tmp_path / "h.png")
    first, second = saved_figures[-1].axes[:2]
    assert [t.get_text() for t in first.get_yticklabels()] == nodes  # rows named once, on the left
    for ax in (first, second):
        assert [t.get_text() for t in ax.get_xticklabels()] == nodes
    plot_od_pairs(res, tmp_path / "od.png")  # evenly spaced origins: the lines break between them
    for ax in saved_figures[-1].axes:
        assert "Mbit/s" in ax.get_ylabel()
        for line in ax.get_lines():
            x = np.asarray(line.get_xdata(), dtype=float)
            y = np.asarray(line.get_ydata(), dtype=float)
            finite = np.isfinite(y[:-1]) & np.isfinite(y[1:])
            assert np.all(np.diff(x)[finite] <= 1)
            assert line.get_marker() not in ("None", None, ""), "isolated points need a marker to show"


def test_error_cdf_in_mbps(rng, tmp_path, saved_figures):
    from trafficgen.evaluation.tm.estimation_plots import plot_error_cdf

    x = rng.uniform(0, 1e4, size=(20, 4))
    plot_error_cdf(x, {"m": x * 1.1}, tmp_path / "cdf.png", unit="100bytes", interval_s=300.0)
    (ax,) = saved_figures[-1].axes
    assert "Mbit/s" in ax.get_xlabel()
    (line,) = ax.get_lines()
    assert np.max(line.get_xdata()) == pytest.approx(np.max(np.abs(0.1 * x)) * 800 / 300 / 1e6)


def test_fan_chart_isolated_targets_show_their_intervals(tmp_path, rng, saved_figures):
    """Evenly spaced origins give isolated targets: their 50 / 90 % intervals are drawn as
    vertical bars (a band over one point would be invisible)."""
    values = rng.uniform(1, 2, size=(100, 2, 2))
    origins = np.arange(10, 90, 20)  # every target alone
    samples = rng.uniform(1, 2, size=(len(origins), 7, 1, 2, 2))
    fan_chart(values, origins, samples, [(1, 0)], horizon_index=0, horizon=1, title="t",
              path=tmp_path / "fan.png", unit="Mbit/s")
    (ax,) = saved_figures[-1].axes
    bars = [c for c in ax.collections if c.get_label() in ("90 %", "50 %")]
    assert len(bars) == 2
    q = np.quantile(samples[:, :, 0, 1, 0], [0.05, 0.95], axis=1)
    segments = next(c for c in bars if c.get_label() == "90 %").get_segments()
    np.testing.assert_allclose([seg[:, 1] for seg in segments], q.T)
