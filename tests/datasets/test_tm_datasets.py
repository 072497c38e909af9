"""Shipped TM datasets: documented shapes/units, byte-identical to the sources, the Abilene routing
matrix's structure, and the persistence reference on LEAD's metric."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from trafficgen.data.routing import link_loads, routing_from_topology
from trafficgen.data.tm import ABILENE_NODES, read_abilene_x, read_hist
from trafficgen.data.windows import chronological_split
from trafficgen.datasets import load_abilene, load_abilene_routing, load_geant, load_geant_topology
from trafficgen.datasets.tm import load_geant_optimal_mlu
from trafficgen.errors import ConfigError
from trafficgen.evaluation.tm.forecast_metrics import lead_metrics, real_unit_metrics
from trafficgen.experiments.tm_forecast import forecast_origins


def test_abilene_shape_units_and_order():
    s = load_abilene()
    assert s.values.shape == (4032, 12, 12) and s.unit == "100bytes" and s.interval_s == 300.0
    assert s.nodes == ABILENE_NODES and s.start == datetime(2004, 3, 1, 0, 0)
    w2 = load_abilene(weeks=(2,))
    assert w2.start == datetime(2004, 3, 8) and len(w2) == 2016
    np.testing.assert_array_equal(s.values[2016:], w2.values)
    np.testing.assert_array_equal(load_abilene(weeks=(2, 1)).values, s.values)  # chronological
    s.values[0, 0, 0] = -1  # callers get their own copy
    assert load_abilene().values[0, 0, 0] >= 0
    with pytest.raises(ConfigError):
        load_abilene(weeks=(3,))


def test_geant_shape_units_and_topology():
    g = load_geant()
    assert g.values.shape == (677, 22, 22) and g.unit == "bit/s" and g.interval_s == 900.0
    topo = load_geant_topology()
    assert g.nodes == [str(i) for i in range(22)] == list(topo.nodes)
    assert topo.number_of_edges() == 72 and all("capacity" in d for _, _, d in topo.edges(data=True))
    assert load_geant_optimal_mlu().shape == (677,)
    A, links = routing_from_topology(topo, g.nodes)
    assert A.shape == (484, 72) and len(links) == 72
    off = np.ones((22, 22), bool)
    np.fill_diagonal(off, False)
    assert np.all(A.sum(axis=1)[off.ravel()] >= 1) and np.all(A.sum(axis=1)[~off.ravel()] == 0)
    y = link_loads(g, A)
    assert y.shape == (677, 72)
    np.testing.assert_allclose(y.sum(axis=1), (g.flat * A.sum(axis=1)).sum(axis=1), rtol=1e-12)


def test_shipped_equals_shared(shared_data):
    np.testing.assert_array_equal(load_abilene(weeks=(1,)).values,
                                  read_abilene_x(shared_data / "abilene" / "X01_realOD.txt").values)
    np.testing.assert_array_equal(load_abilene(weeks=(2,)).values,
                                  read_abilene_x(shared_data / "abilene" / "X02_realOD.txt").values)
    np.testing.assert_array_equal(load_geant().values, read_hist(shared_data / "geant" / "week7.hist").values)


def test_abilene_routing_matrix_structure():
    """Verifies the data README: columns 0-29 are the 30 directed backbone links, 30-53 per-node
    access links (30 + 2i: traffic entering at node i, 31 + 2i: leaving at node i)."""
    A = load_abilene_routing()
    n = 12
    assert A.shape == (144, 54) and set(np.unique(A)) == {0.0, 1.0}
    od = np.arange(144)
    for i in range(n):
        np.testing.assert_array_equal(np.flatnonzero(A[:, 30 + 2 * i]), od[od // n == i])
        np.testing.assert_array_equal(np.flatnonzero(A[:, 31 + 2 * i]), od[od % n == i])
    assert A[od // n == od % n, :30].sum() == 0  # i == i: no backbone link
    # each backbone column is one directed link (u, v): the one-hop OD pair that uses only it
    ends = {}
    for r in od[od // n != od % n]:
        cols = np.flatnonzero(A[r, :30])
        if len(cols) == 1:
            ends[int(cols[0])] = (r // n, r % n)
    assert sorted(ends) == list(range(30)) and len(set(ends.values())) == 30
    assert all((v, u) in ends.values() for u, v in ends.values())  # 15 bidirectional links
    # every OD row's backbone links form a simple path from its origin to its destination
    for r in od[od // n != od % n]:
        step = {ends[c][0]: ends[c][1] for c in np.flatnonzero(A[r, :30])}
        node, seen = r // n, 0
        while node in step:
            node, seen = step[node], seen + 1
        assert node == r % n and seen == len(step)


def test_persistence_reference_on_lead_metric():
    """Persistence ("repeat the last matrix") at horizon 1 on the test part of a 70/15/15 split of
    both Abilene weeks: 605 targets, LEAD's per-matrix metric gives RMSE 0.03965 / MAE 0.01493
    (the reference says about 0.040 / 0.015), each matrix normalised by its own min/max. In real
    units that is 8.43 Mbit/s RMSE, 2.78 Mbit/s MAE, NMAE 0.124."""
    s = load_abilene()
    train, val, test = chronological_split(s, (0.7, 0.15, 0.15))
    start = len(train) + len(val)
    origins = forecast_origins(len(s), start - 1, [1], 1)  # targets = the test part
    assert len(origins) == len(test) == 605
    res = lead_metrics(s.values[origins + 1], s.values[origins])
    assert res["rmse"] == pytest.approx(0.03965, abs=0.005)
    assert res["mae"] == pytest.approx(0.01493, abs=0.005)
    real = real_unit_metrics(s.values[origins + 1], s.values[origins], unit=s.unit, interval_s=s.interval_s)
    assert real["rmse_mbps"] == pytest.approx(8.432, rel=1e-3)
    assert real["nmae"] == pytest.approx(0.1239, rel=1e-3)


def test_shipped_routing_matrices():
    from trafficgen.datasets.tm import shipped_routing
    from trafficgen.estimation.classic import find_access_links

    np.testing.assert_array_equal(shipped_routing("abilene"), load_abilene_routing())
    A = shipped_routing("GEANT")
    assert A.shape == (22 * 22, 72 + 44) and find_access_links(A) is not None
    with pytest.raises(ConfigError, match="no shipped routing"):
        shipped_routing("nowhere")
