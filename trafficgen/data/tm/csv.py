"""CSV traffic matrices + a ``<file>.json`` sidecar (nodes, interval, unit, start).

Layout (decided once): **wide** = one row per matrix, N*N values origin-major, with an optional
header of ``src->dst`` names (the writer always writes it; node names come from it); **long** =
header ``t,src,dst,value`` with one row per non-zero entry (missing entries are 0). Rows are
counted from 1, header included, in error messages.
"""
from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.data.tm._sidecar import resolve_meta, write_sidecar
from trafficgen.data.tm._text import is_float, open_text, parse_rows, square_side
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError

__all__ = ["read_tm_csv", "write_tm_csv"]


def write_tm_csv(series: TMSeries, path, *, layout: str = "wide") -> Path:
    """Write a CSV (``layout`` "wide" or "long", see the module doc) + a ``<path>.json`` sidecar.

    Values are written with 17 significant digits, so reading back is exact.
    """
    path = Path(path)
    if layout not in ("wide", "long"):
        raise InputFormatError(f"unknown CSV layout {layout!r}; use 'wide' or 'long'", path=path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        if layout == "wide":
            fh.write(",".join(f"{a}->{b}" for a in series.nodes for b in series.nodes) + "\n")
            np.savetxt(fh, series.flat, fmt="%.17g", delimiter=",")
        else:
            fh.write("t,src,dst,value\n")
            for t, i, j in np.argwhere(series.values != 0):
                fh.write(f"{t},{series.nodes[i]},{series.nodes[j]},{series.values[t, i, j]:.17g}\n")
    write_sidecar(series, path)
    return path


def read_tm_csv(path, *, nodes=None, interval_s: float | None = None, unit: str | None = None,
                start: datetime | None = None) -> TMSeries:
    """Read a wide or long CSV (layout detected from the header; see the module doc)."""
    path = Path(path)
    with open_text(path) as fh:
        first = next((line.strip() for line in fh if line.strip()), "")
    header = [h.strip() for h in first.split(",")]
    has_header = bool(first) and not all(is_float(h) for h in header)
    if has_header and [h.lower() for h in header] == ["t", "src", "dst", "value"]:
        return _read_long_csv(path, nodes, interval_s, unit, start)
    data, _ = parse_rows(path, sep=",", header=has_header)  # (T, N*N)
    n = square_side(data.shape[1], path)
    if nodes is None and has_header:
        if len(header) != data.shape[1] or not all("->" in h for h in header):
            raise InputFormatError("header must name every column as src->dst", path=path, offset=1)
        nodes = [h.split("->", 1)[0] for h in header[::n]]
    meta = resolve_meta(path, n, nodes, interval_s, unit, start)
    return TMSeries(data.reshape(-1, n, n), meta["nodes"], meta["interval_s"], meta["unit"],
                    meta["start"], meta={"source": str(path)})


def _read_long_csv(path: Path, nodes, interval_s, unit, start) -> TMSeries:
    entries = []
    order: dict[str, int] = {}
    with open_text(path) as fh:
        lines = [(no, line.strip()) for no, line in enumerate(fh, start=1) if line.strip()][1:]
    for no, text in lines:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise InputFormatError(f"row {no}: expected 4 fields t,src,dst,value, got {len(parts)}",
                                   path=path, offset=no)
        try:
            t, value = int(parts[0]), float(parts[3])
        except ValueError:
            raise InputFormatError(f"row {no}: t must be an integer and value a number",
                                   path=path, offset=no) from None
        if t < 0 or not math.isfinite(value) or value < 0:
            raise InputFormatError(f"row {no}: negative t or NaN/inf/negative value", path=path, offset=no)
        for name in parts[1:3]:
            order.setdefault(name, len(order))
        entries.append((t, parts[1], parts[2], value))
    if not entries:
        raise InputFormatError("no data rows", path=path)
    meta = resolve_meta(path, None, nodes, interval_s, unit, start, default_nodes=list(order))
    index = {name: k for k, name in enumerate(meta["nodes"])}
    n = len(index)
    values = np.zeros((max(e[0] for e in entries) + 1, n, n))  # (T, N, N)
    for t, a, b, value in entries:
        if a not in index or b not in index:
            raise InputFormatError(f"node {a if a not in index else b!r} is not in the node list",
                                   path=meta["nodes_from"])
        values[t, index[a], index[b]] += value
    return TMSeries(values, meta["nodes"], meta["interval_s"], meta["unit"], meta["start"],
                    meta={"source": str(path)})
