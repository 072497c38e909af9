"""FIGRET/DOTE ``.hist`` files: one N*N matrix per line (origin-major), whitespace-separated."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from trafficgen.data.tm._text import nodes_or_default, parse_rows, square_side
from trafficgen.data.tmseries import TMSeries

__all__ = ["read_hist"]


def read_hist(path, *, interval_s: float = 900.0, unit: str = "bit/s", nodes=None,
              start: datetime | None = None) -> TMSeries:
    """Read a FIGRET/DOTE ``.hist`` file: one N*N matrix per line (origin-major)."""
    path = Path(path)
    data, _ = parse_rows(path, sep=None)  # (T, N*N)
    n = square_side(data.shape[1], path)
    return TMSeries(data.reshape(-1, n, n), nodes_or_default(nodes, n, path), float(interval_s), unit,
                    start, meta={"source": str(path)})
