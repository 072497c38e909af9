"""``.npy`` traffic matrices: a (T, N, N) or (T, N*N) array + a ``<file>.json`` sidecar (nodes,
interval, unit, start) written by :func:`write_tm_npy`, so that a round trip is exact."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.data.tm._sidecar import resolve_meta, write_sidecar
from trafficgen.data.tm._text import check_values, square_side
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError

__all__ = ["read_tm_npy", "write_tm_npy"]


def write_tm_npy(series: TMSeries, path) -> Path:
    """Write ``series.values`` (T, N, N) float64 to ``path`` (.npy) + a ``<path>.json`` sidecar."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(series.values, dtype=np.float64), allow_pickle=False)
    write_sidecar(series, path)
    return path


def read_tm_npy(path, *, nodes=None, interval_s: float | None = None, unit: str | None = None,
                start: datetime | None = None) -> TMSeries:
    """Read a (T, N, N) or (T, N*N) ``.npy`` array; metadata from the keywords or the sidecar."""
    path = Path(path)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"not a readable .npy array: {exc}", path=path) from exc
    if values.ndim == 2:
        n = square_side(values.shape[1], path)
        values = values.reshape(-1, n, n)
    if values.ndim != 3 or values.shape[1] != values.shape[2]:
        raise InputFormatError(f"expected shape (T, N, N) or (T, N*N), got {values.shape}", path=path)
    if not np.issubdtype(values.dtype, np.number):
        raise InputFormatError(f"expected a numeric array, got dtype {values.dtype}", path=path)
    values = values.astype(np.float64)
    check_values(values, path)
    meta = resolve_meta(path, values.shape[1], nodes, interval_s, unit, start)
    return TMSeries(values, meta["nodes"], meta["interval_s"], meta["unit"], meta["start"],
                    meta={"source": str(path)})
