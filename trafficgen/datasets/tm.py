"""Shipped real traffic-matrix datasets (Abilene and GEANT, both MIT; see their folders).

* :func:`load_abilene`: Abilene weeks 1 and 2 (2004-03-01 00:00 .. 2004-03-14 23:55), (4032, 12, 12)
  in "100bytes" per 300 s, from the realOD files of Y. Zhang's X01/X02 (via CFR-RL).
* :func:`load_geant`: GEANT week 7 from FIGRET, (677, 22, 22) in bit/s per 900 s (start time
  not recorded in the source, so ``start`` is None).
* :func:`load_abilene_routing`: the 144 x 54 0/1 routing matrix of DDPM-TME, ``Y = X_flat @ A``
  (columns 0-29 directed backbone links, 30-53 per-node access links).
* :func:`load_geant_topology`: 22-node directed graph with link capacities (bit/s).
* :func:`load_geant_routing`: a routing matrix derived from that topology (hop-count shortest
  paths, ECMP) plus 44 access links (node egress / ingress), as the DDPM-TME recipe uses it.
* :func:`shipped_routing`: the routing matrix of a shipped TM dataset by name.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np

from trafficgen.data.routing import read_routing_csv
from trafficgen.data.tm import ABILENE_NODES, read_abilene_x, read_hist
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError

__all__ = ["load_abilene", "load_geant", "load_abilene_routing", "load_geant_topology",
           "load_geant_routing", "shipped_routing", "load_geant_optimal_mlu", "ABILENE_START"]

_HERE = Path(__file__).parent
#: First interval of Abilene week 1.
ABILENE_START = datetime(2004, 3, 1, 0, 0)


@lru_cache(maxsize=4)
def _abilene_week(week: int) -> np.ndarray:
    values = read_abilene_x(_HERE / "abilene" / f"X{week:02d}_realOD.txt.gz").values
    values.flags.writeable = False
    return values


def load_abilene(weeks=(1, 2)) -> TMSeries:
    """Abilene realOD traffic matrices, the given weeks (1 and/or 2) in chronological order.

    Shape (2016 * len(weeks), 12, 12), unit "100bytes" per 5 min (x 800 / 300 / 1e6 = Mbit/s),
    nodes :data:`~trafficgen.data.tm.ABILENE_NODES`, start 2004-03-01 00:00 for week 1
    (2004-03-08 00:00 when only week 2 is asked for).
    """
    weeks = sorted({int(w) for w in weeks})
    if not weeks or any(w not in (1, 2) for w in weeks):
        raise ConfigError(f"Abilene weeks must be a non-empty subset of (1, 2), got {weeks}")
    values = np.concatenate([_abilene_week(w) for w in weeks])  # (T, 12, 12), a fresh copy
    start = ABILENE_START + timedelta(weeks=weeks[0] - 1)
    return TMSeries(values, list(ABILENE_NODES), 300.0, "100bytes", start,
                    meta={"dataset": "abilene", "weeks": weeks, "links": abilene_backbone_links()})


@lru_cache(maxsize=1)
def _geant_week7() -> np.ndarray:
    values = read_hist(_HERE / "geant" / "week7.hist.gz").values
    values.flags.writeable = False
    return values


def load_geant() -> TMSeries:
    """GEANT week 7 (FIGRET): (677, 22, 22) in bit/s, 15-minute intervals, nodes "0".."21"
    (the ids of :func:`load_geant_topology`, in topology.json order)."""
    nodes = [str(n["id"]) for n in _topology_json()["nodes"]]
    return TMSeries(_geant_week7().copy(), nodes, 900.0, "bit/s", None,
                    meta={"dataset": "geant", "week": 7, "links": geant_links(nodes)})


def load_geant_optimal_mlu() -> np.ndarray:
    """FIGRET's optimal maximum link utilisation for each of the 677 GEANT week-7 matrices."""
    return np.loadtxt(_HERE / "geant" / "week7_opt.txt", dtype=np.float64)


def load_abilene_routing() -> np.ndarray:
    """The Abilene routing matrix (144 OD pairs x 54 links, 0/1): ``Y = X_flat @ A``."""
    return read_routing_csv(_HERE / "abilene" / "routing_matrix.csv")


def load_geant_routing(*, access_links: bool = True) -> np.ndarray:
    """GEANT routing matrix (484 OD pairs x links) from :func:`load_geant_topology`: hop-count
    shortest paths with an equal split over all of them (ECMP), in :func:`load_geant`'s node
    order; ``access_links=True`` appends the 44 node egress / ingress columns
    (:func:`~trafficgen.estimation.classic.add_access_links`) that gravity and tomogravity read the
    node totals from. The source data has no routing matrix: this one is derived, not measured."""
    from trafficgen.data.routing import routing_from_topology
    from trafficgen.estimation.classic import add_access_links

    nodes = [str(n["id"]) for n in _topology_json()["nodes"]]
    A, _ = routing_from_topology(load_geant_topology(), nodes)  # (484, 72)
    return add_access_links(A) if access_links else A


def shipped_routing(name: str) -> np.ndarray:
    """The routing matrix of the shipped dataset ``name`` ("abilene": the measured 144 x 54 matrix;
    "geant": :func:`load_geant_routing`)."""
    key = name.lower()
    if key == "abilene":
        return load_abilene_routing()
    if key == "geant":
        return load_geant_routing()
    raise ConfigError(f"no shipped routing matrix for {name!r}; shipped: abilene, geant")


@lru_cache(maxsize=1)
def _topology_json() -> dict:
    return json.loads((_HERE / "geant" / "topology.json").read_text())


def load_geant_topology():
    """The GEANT topology as a ``networkx.DiGraph``: nodes "0".."21" (strings, matching
    :func:`load_geant`), 72 directed links with a ``capacity`` attribute in bit/s."""
    import networkx as nx

    data = _topology_json()
    g = nx.DiGraph()
    g.add_nodes_from(str(n["id"]) for n in data["nodes"])
    for link in data["links"]:
        attrs = {k: v for k, v in link.items() if k not in ("source", "target")}
        g.add_edge(str(link["source"]), str(link["target"]), **attrs)
    return g


def abilene_backbone_links() -> list[list[int]]:
    """The 15 undirected Abilene backbone links as node-index pairs ``[i, j]`` (i < j), from the
    routing matrix's one-hop OD routes: an OD pair ``(i, j)`` whose route uses exactly one of the
    30 backbone-link columns (0-29) is a link ``i - j``."""
    routing = load_abilene_routing()  # (144, 54)
    links = set()
    for od in range(routing.shape[0]):
        if len(np.flatnonzero(routing[od, :30])) == 1:
            i, j = divmod(od, 12)
            links.add((min(i, j), max(i, j)))
    return [list(link) for link in sorted(links)]


def geant_links(nodes) -> list[list[int]]:
    """The undirected GEANT links of topology.json as index pairs ``[i, j]`` (i < j) into ``nodes``."""
    index = {n: k for k, n in enumerate(nodes)}
    links = {(min(index[u], index[v]), max(index[u], index[v])) for u, v in load_geant_topology().edges()}
    return [list(link) for link in sorted(links)]
