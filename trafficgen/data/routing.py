"""Routing matrices: read them, derive them from a topology, and turn TMs into link loads.

Convention (everywhere in trafficgen): a routing matrix ``A`` has shape (N*N, L); row
``i * N + j`` is the OD pair ``nodes[i] -> nodes[j]`` (origin-major, as ``TMSeries.flat``), column
``l`` a directed link, and ``A[od, l]`` the fraction of that OD pair's traffic that crosses the
link. Link loads are ``Y = X_flat @ A`` with ``X_flat`` (T, N*N) -> ``Y`` (T, L).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError, InputFormatError

__all__ = ["read_routing_csv", "routing_from_topology", "link_loads"]


def read_routing_csv(path) -> np.ndarray:
    """Read a routing matrix CSV: one row per OD pair, one column per link, no header.

    A trailing comma on each row (as in DDPM-TME's ``routing_matrix.csv``) is tolerated. Returns
    float64 (n_od, n_links); entries must be finite and within [0, 1].
    """
    path = Path(path)
    rows, width = [], None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"cannot read routing matrix: {exc}", path=path) from exc
    for line_no, line in enumerate(lines, start=1):
        text = line.strip().rstrip(",")
        if not text:
            continue
        try:
            row = [float(v) for v in text.split(",")]
        except ValueError:
            raise InputFormatError(f"row {line_no}: non-numeric entry", path=path, offset=line_no) from None
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise InputFormatError(f"row {line_no}: expected {width} links, got {len(row)}",
                                   path=path, offset=line_no)
        if not all(0.0 <= v <= 1.0 for v in row):  # also rejects NaN
            raise InputFormatError(f"row {line_no}: routing fractions must lie in [0, 1]",
                                   path=path, offset=line_no)
        rows.append(row)
    if not rows:
        raise InputFormatError("empty routing matrix", path=path)
    return np.asarray(rows, dtype=np.float64)


def routing_from_topology(graph, nodes, *, weight: str | None = None,
                          ecmp: bool = True) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Shortest-path routing matrix of a directed graph.

    Parameters
    ----------
    graph : networkx graph (an undirected graph counts each edge in both directions).
    nodes : the TM node order (rows are ``i * N + j``); every name must be a graph node
        (compared as strings).
    weight : edge attribute used as path length; ``None`` = hop count.
    ecmp : split each OD pair's traffic equally over **all** its shortest paths (the fraction on a
        link = shortest paths through it / number of shortest paths). ``False``: one path, the
        first ``networkx.all_shortest_paths`` yields for a graph built in the given node order.

    Returns ``(A (N*N, L), links)`` where ``links[l] = (u, v)`` names column ``l`` (edges in
    sorted order of (position of u in ``nodes``, position of v), then any other edges by name).
    OD pairs ``i == j`` have no links (zero rows). Raises ConfigError for an unreachable pair.
    """
    import networkx as nx

    nodes = [str(n) for n in nodes]
    g = nx.DiGraph()
    names = {v: str(v) for v in graph.nodes}
    if len(set(names.values())) != len(names):
        raise ConfigError("graph node names collide when compared as strings")
    g.add_nodes_from(names.values())
    directed = graph.is_directed()
    for u, v, data in graph.edges(data=True):
        w = 1.0 if weight is None else data.get(weight)
        if w is None or not np.isfinite(w) or w < 0:
            raise ConfigError(f"edge {u}->{v} has no usable {weight!r} attribute (got {w!r})")
        pairs = [(names[u], names[v])] if directed else [(names[u], names[v]), (names[v], names[u])]
        for a, b in pairs:
            if a != b:
                g.add_edge(a, b, w=float(w))
    missing = [n for n in nodes if n not in g]
    if missing:
        raise ConfigError(f"nodes not in the graph: {missing[:5]}")
    pos = {n: k for k, n in enumerate(nodes)}
    links = sorted(g.edges, key=lambda e: (pos.get(e[0], len(pos)), pos.get(e[1], len(pos)), e))
    col = {e: k for k, e in enumerate(links)}
    n = len(nodes)
    A = np.zeros((n * n, len(links)))  # (N*N, L)
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            if i == j:
                continue
            try:
                paths = list(nx.all_shortest_paths(g, a, b, weight="w"))
            except nx.NetworkXNoPath:
                raise ConfigError(f"no path from {a} to {b}") from None
            if not ecmp:
                paths = paths[:1]
            share = 1.0 / len(paths)
            for path in paths:
                for u, v in zip(path[:-1], path[1:], strict=True):
                    A[i * n + j, col[u, v]] += share
    return A, [(str(u), str(v)) for u, v in links]


def link_loads(x, A: np.ndarray) -> np.ndarray:
    """Link loads ``Y = X_flat @ A``: x is (T, N, N), (T, N*N) or a TMSeries -> (T, L)."""
    values = x.values if isinstance(x, TMSeries) else np.asarray(x, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if values.ndim == 3:
        values = values.reshape(values.shape[0], -1)  # (T, N*N)
    if values.ndim != 2 or values.shape[1] != A.shape[0]:
        raise ConfigError(f"TM with {values.shape} does not match a routing matrix of {A.shape} "
                          f"(expected (T, N*N) with N*N = {A.shape[0]})")
    return values @ A  # (T, L)
