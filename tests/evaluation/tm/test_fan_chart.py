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
