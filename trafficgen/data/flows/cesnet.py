"""Adapter for `cesnet-datazoo <https://github.com/CESNET/cesnet-datazoo>`_ data frames.

cesnet-datazoo (optional extra ``[cesnet]``) returns pandas frames whose ``PPI`` column holds,
per flow, a (3, 30) array of per-packet information: row 0 inter-packet times (ms), row 1
directions (+1 client->server, -1 server->client), row 2 payload sizes; unused slots are 0.
Zero-payload packets are not in the PPI of the CESNET datasets. The app label is in ``APP``.
Only pandas and numpy are needed here, so a frame built any other way works the same.
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError

PPI_IPT, PPI_DIR, PPI_SIZE = 0, 1, 2


def from_cesnet_dataframe(df, *, ppi_column: str = "PPI", label_column: str | None = "APP",
                          class_names: list[str] | None = None, max_packets: int = 30) -> FlowSet:
    """FlowSet from a cesnet-datazoo frame. ``class_names`` maps integer-encoded labels to names."""
    if ppi_column not in df.columns:
        raise InputFormatError(f"data frame has no {ppi_column!r} column (columns: {list(df.columns)})")
    n = len(df)
    lengths = np.zeros((n, max_packets), np.int32)
    iat = np.zeros((n, max_packets), np.float64)
    n_packets = np.zeros(n, np.int32)
    for i, ppi in enumerate(df[ppi_column].to_numpy()):
        arr = np.asarray(ppi, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] < 3:
            raise InputFormatError(f"PPI of row {i} must have shape (3, k), got {arr.shape}", offset=i)
        sizes, dirs, ipt = arr[PPI_SIZE], arr[PPI_DIR], arr[PPI_IPT]
        valid = (sizes > 0) & (dirs != 0)
        sizes, dirs, ipt = sizes[valid][:max_packets], dirs[valid][:max_packets], ipt[valid][:max_packets]
        if len(dirs) and dirs[0] < 0:  # client = sender of the first packet
            dirs = -dirs
        k = len(sizes)
        lengths[i, :k] = (np.sign(dirs) * sizes).astype(np.int32)
        iat[i, :k] = ipt / 1000.0
        if k:
            iat[i, 0] = 0.0
        n_packets[i] = k
    labels = None
    if label_column is not None and label_column in df.columns:
        raw = df[label_column].to_numpy()
        labels = [class_names[int(v)] if class_names is not None else str(v) for v in raw]
    prov = {}
    for col, name in (("SRC_IP", "client_ip"), ("DST_IP", "server_ip"), ("SRC_PORT", "client_port"),
                      ("DST_PORT", "server_port"), ("PROTOCOL", "protocol")):
        if col in df.columns:
            prov[name] = df[col].to_numpy()
    keep = n_packets > 0
    flows = FlowSet(lengths=lengths, n_packets=n_packets, iat=iat, labels=labels, **prov)
    return flows[keep] if not keep.all() else flows
