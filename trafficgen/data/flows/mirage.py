"""Reader for MIRAGE-2019 / MIRAGE-2022 per-biflow JSON files.

A MIRAGE file maps a biflow id (``"src_ip,src_port,dst_ip,dst_port,proto"``) to a record whose
``packet_data`` holds per-packet series: ``src_port``, ``dst_port``, ``packet_dir`` (0/1),
``L4_payload_bytes``, ``iat``, ``TCP_win_size`` ... and whose ``flow_metadata`` / top level
may hold the app label (``label`` / ``BF_label``). MIRAGE captures one app per capture, so the
file name (``<device>_<app>_<...>.json``) also identifies the app; pass ``label=`` to force one.

Direction: the client is the sender of the first packet, so ``packet_dir == packet_dir[0]``
becomes ``+``. Zero-payload packets are dropped by default (the FlowSet convention); with
``keep_zero_payload=True`` they are kept with their direction in ``FlowSet.directions``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError

_LABEL_KEYS = ("label", "BF_label", "app", "application")


def read_mirage_json(path: str | Path, *, label: str | None = None, max_packets: int = 32,
                     keep_zero_payload: bool = False, min_packets: int = 1) -> FlowSet:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFormatError(f"not a readable MIRAGE JSON file ({exc})", path=str(path)) from exc
    if not isinstance(data, dict):
        raise InputFormatError("expected a JSON object of biflow id -> record", path=str(path))
    rows_len, rows_dir, rows_iat, labels, prov = [], [], [], [], []
    for i, (flow_id, rec) in enumerate(data.items()):
        try:
            pd_ = rec["packet_data"]
            sizes = np.asarray(pd_["L4_payload_bytes"], dtype=np.int64)
            dirs = np.asarray(pd_["packet_dir"], dtype=np.int64)
            iat = np.asarray(pd_.get("iat", np.zeros(len(sizes))), dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputFormatError(f"biflow {flow_id!r} lacks packet_data field {exc}", path=str(path),
                                   offset=i) from exc
        if not (len(sizes) == len(dirs) == len(iat)) or np.any(sizes < 0):
            raise InputFormatError(f"biflow {flow_id!r}: ragged or negative packet series", path=str(path),
                                   offset=i)
        if len(sizes) == 0:
            continue
        sign = np.where(dirs == dirs[0], 1, -1)
        t = np.cumsum(iat)
        keep = np.ones(len(sizes), bool) if keep_zero_payload else sizes > 0
        sizes, sign, t = sizes[keep][:max_packets], sign[keep][:max_packets], t[keep][:max_packets]
        if len(sizes) < min_packets:
            continue
        if len(sizes) and sign[0] < 0:  # first kept packet defines the client
            sign = -sign
        rows_len.append((sizes * sign).tolist())
        rows_dir.append(sign.tolist())
        rows_iat.append(np.diff(t, prepend=t[0]).tolist() if len(t) else [])
        labels.append(label or _record_label(rec) or _label_from_name(path))
        prov.append(_parse_flow_id(flow_id))
    n = len(rows_len)
    lengths = np.zeros((n, max_packets), np.int32)
    directions = np.zeros((n, max_packets), np.int8)
    iats = np.zeros((n, max_packets), np.float64)
    n_packets = np.zeros(n, np.int32)
    for i in range(n):
        k = len(rows_len[i])
        lengths[i, :k], directions[i, :k], iats[i, :k], n_packets[i] = rows_len[i], rows_dir[i], rows_iat[i], k
    return FlowSet(lengths=lengths, n_packets=n_packets, directions=directions, iat=iats, labels=labels,
                   source=[str(path)] * n,
                   protocol=[p[4] for p in prov], client_ip=[p[0] for p in prov], client_port=[p[1] for p in prov],
                   server_ip=[p[2] for p in prov], server_port=[p[3] for p in prov])


def _record_label(rec: dict) -> str | None:
    for holder in (rec, rec.get("flow_metadata", {}) or {}):
        for key in _LABEL_KEYS:
            if isinstance(holder, dict) and holder.get(key):
                return str(holder[key])
    return None


def _label_from_name(path: Path) -> str:
    parts = path.stem.split("_")
    return parts[1] if len(parts) >= 3 else path.stem


def _parse_flow_id(flow_id: str):
    parts = [p.strip() for p in str(flow_id).split(",")]
    if len(parts) != 5:
        return (None, 0, None, 0, 0)
    src, sport, dst, dport, proto = parts
    try:
        return (src, int(sport), dst, int(dport), int(proto))
    except ValueError:
        return (src, 0, dst, 0, 0)
