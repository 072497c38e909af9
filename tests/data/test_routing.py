"""Routing matrices: hand-checked shortest paths with an ECMP split, link loads, CSV reading."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from trafficgen.data.routing import link_loads, read_routing_csv, routing_from_topology
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError, InputFormatError


def _square():
    """a - b - d and a - c - d (a 4-cycle, both directions): a->d has two 2-hop paths."""
    g = nx.Graph()
    g.add_edges_from([("a", "b"), ("b", "d"), ("a", "c"), ("c", "d")])
    return g


def test_square_ecmp_by_hand():
    nodes = ["a", "b", "c", "d"]
    A, links = routing_from_topology(_square(), nodes)
    # 8 directed links, ordered by (source position, target position)
    assert links == [("a", "b"), ("a", "c"), ("b", "a"), ("b", "d"), ("c", "a"), ("c", "d"),
                     ("d", "b"), ("d", "c")]
    col = {e: k for k, e in enumerate(links)}
    row = {(u, v): i * 4 + j for i, u in enumerate(nodes) for j, v in enumerate(nodes)}
    expected = np.zeros((16, 8))
    expected[row["a", "b"], col["a", "b"]] = 1  # neighbours: the direct link only
    expected[row["c", "d"], col["c", "d"]] = 1
    # a -> d: half via b, half via c
    for e in [("a", "b"), ("b", "d"), ("a", "c"), ("c", "d")]:
        expected[row["a", "d"], col[e]] = 0.5
    # b -> c: half via a, half via d
    for e in [("b", "a"), ("a", "c"), ("b", "d"), ("d", "c")]:
        expected[row["b", "c"], col[e]] = 0.5
    for r in [row["a", "b"], row["a", "d"], row["b", "c"], row["c", "d"]]:
        np.testing.assert_array_equal(A[r], expected[r])
    # no links for i == j; every other OD has exactly its hop count of traffic on links
    assert np.all(A[[0, 5, 10, 15]] == 0)
    hops = np.array([0 if u == v else (2 if {u, v} in ({"a", "d"}, {"b", "c"}) else 1)
                     for u in nodes for v in nodes])
    np.testing.assert_array_equal(A.sum(axis=1), hops)


def test_single_path_and_weights():
    nodes = ["a", "b", "c", "d"]
    A, links = routing_from_topology(_square(), nodes, ecmp=False)
    assert set(np.unique(A)) <= {0.0, 1.0}
    assert A[3].sum() == 2  # a -> d: one 2-hop path
    g = _square()
    nx.set_edge_attributes(g, 1.0, "w")
    g["a"]["b"]["w"] = 5.0  # a-b now costs 5: a->b goes a-c-d-b (3)
    A, links = routing_from_topology(g, nodes, weight="w")
    col = {e: k for k, e in enumerate(links)}
    assert sorted(links[k] for k in np.flatnonzero(A[1])) == [("a", "c"), ("c", "d"), ("d", "b")]
    assert A[3, col["a", "c"]] == 1.0 and A[3, col["c", "d"]] == 1.0  # a->d no longer split


def test_link_loads_and_errors():
    nodes = ["a", "b", "c", "d"]
    A, links = routing_from_topology(_square(), nodes)
    x = np.zeros((2, 4, 4))
    x[0, 0, 3] = 10.0  # a -> d: 5 on each of a-b, b-d, a-c, c-d
    x[1, 0, 1] = 4.0
    y = link_loads(x, A)
    assert y.shape == (2, 8)
    col = {e: k for k, e in enumerate(links)}
    assert y[0, col["a", "b"]] == 5.0 and y[0, col["c", "d"]] == 5.0 and y[0].sum() == 20.0
    assert y[1, col["a", "b"]] == 4.0 and y[1].sum() == 4.0
    np.testing.assert_array_equal(link_loads(x.reshape(2, 16), A), y)
    np.testing.assert_array_equal(link_loads(TMSeries(x, nodes, 60.0, "bytes"), A), y)
    with pytest.raises(ConfigError, match="does not match"):
        link_loads(np.zeros((2, 3, 3)), A)
    g = _square()
    g.add_node("e")
    with pytest.raises(ConfigError, match="no path"):
        routing_from_topology(g, nodes + ["e"])
    with pytest.raises(ConfigError, match="not in the graph"):
        routing_from_topology(_square(), ["a", "z"])


def test_read_routing_csv(tmp_path):
    (tmp_path / "r.csv").write_text("0,1,0,\n1,0,0.5,\n")
    np.testing.assert_array_equal(read_routing_csv(tmp_path / "r.csv"), [[0, 1, 0], [1, 0, 0.5]])
    (tmp_path / "bad.csv").write_text("0,1\n1\n")
    with pytest.raises(InputFormatError, match="row 2"):
        read_routing_csv(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("0,2\n")
    with pytest.raises(InputFormatError, match="\\[0, 1\\]"):
        read_routing_csv(tmp_path / "bad2.csv")
