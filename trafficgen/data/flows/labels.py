"""Flow labels: join an nDPI-style labels CSV, label by file / folder name, or classify with nfstream.

The labels CSV has the columns of ``ndpi/labels.csv``::

    pcap, l4, client_ip, client_port, server_ip, server_port, ndpi_proto, app, category

A flow matches a row by (capture file name, L4 protocol, unordered endpoint pair), so the client
side chosen by the reader does not matter. When several rows share a key (port reuse) the first
row wins; every flow with that key gets its label.
"""
from __future__ import annotations

import csv
import ipaddress
import os
from pathlib import Path

import numpy as np

from trafficgen.errors import InputFormatError, PcapError, TrafficgenError

_L4 = {"TCP": 6, "UDP": 17, "6": 6, "17": 17}
_COLUMNS = ("pcap", "l4", "client_ip", "client_port", "server_ip", "server_port")


def _norm_ip(ip: str) -> str:
    """Canonical text of an address; unparsable text (nDPI prints some IPv6 oddly) is kept as is."""
    text = str(ip).strip().lower()
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def flow_key(pcap: str, proto: int, ip_a: str, port_a: int, ip_b: str, port_b: int) -> tuple:
    """Canonical key: (file name, protocol, sorted endpoint pair)."""
    a, b = (_norm_ip(ip_a), int(port_a)), (_norm_ip(ip_b), int(port_b))
    return (Path(str(pcap)).name, int(proto)) + ((a, b) if a <= b else (b, a))


class LabelTable:
    """Mapping flow key -> label, built from a labels CSV (first row of a key wins)."""

    def __init__(self, *, table: dict | None = None):
        self.table = {} if table is None else table

    @classmethod
    def from_csv(cls, path: str | os.PathLike, *, column: str = "app") -> LabelTable:
        """Read an nDPI-format labels CSV; ``column`` picks the label (app, ndpi_proto, category)."""
        path = Path(path)
        if not path.exists():
            raise InputFormatError("no such labels file", path=str(path))
        table: dict = {}
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in _COLUMNS + (column,) if c not in (reader.fieldnames or [])]
            if missing:
                raise InputFormatError(f"labels CSV lacks columns {missing}", path=str(path), offset=1)
            for rownum, row in enumerate(reader, 2):
                try:
                    proto = _L4[row["l4"].strip().upper()]
                    key = flow_key(row["pcap"], proto, row["client_ip"], row["client_port"],
                                   row["server_ip"], row["server_port"])
                except (KeyError, ValueError, AttributeError) as exc:
                    raise InputFormatError(f"bad labels row ({exc})", path=str(path), offset=rownum) from exc
                label = (row[column] or "").strip()
                if label and key not in table:
                    table[key] = label
        return cls(table=table)

    def __len__(self) -> int:
        return len(self.table)

    def lookup(self, flows) -> np.ndarray:
        """(n_flows,) object array: the label of each flow, or None when no row matches."""
        if len(flows) == 0:
            return np.zeros(0, dtype=object)
        for name in ("source", "protocol", "client_ip", "client_port", "server_ip", "server_port"):
            if getattr(flows, name) is None:
                raise InputFormatError(f"labelling by a table needs the provenance column {name!r}")
        out = np.empty(len(flows), dtype=object)
        names = {s: Path(str(s)).name for s in set(flows.source.tolist())}
        for i in range(len(flows)):
            key = flow_key(names[flows.source[i]], flows.protocol[i], flows.client_ip[i],
                           flows.client_port[i], flows.server_ip[i], flows.server_port[i])
            out[i] = self.table.get(key)
        return out


def labels_from_paths(sources, *, by: str) -> np.ndarray:
    """One label per flow from its capture path: ``by="file"`` (name stem) or ``"folder"``."""
    if by not in ("file", "folder"):
        raise InputFormatError(f"by must be 'file' or 'folder', got {by!r}")
    out = np.empty(len(sources), dtype=object)
    for i, s in enumerate(sources):
        p = Path(str(s))
        out[i] = p.stem if by == "file" else (p.parent.name or None)
    return out


def require_nfstream():
    """Import nfstream or raise a TrafficgenError naming the extra to install."""
    try:
        import nfstream
    except ImportError as exc:
        raise TrafficgenError(
            "label_by='ndpi' needs nfstream: pip install trafficgen[pcap]  (or: pip install nfstream)"
        ) from exc
    return nfstream


def ndpi_labels(path: str | os.PathLike, flows, *, idle_timeout: float = 120.0) -> np.ndarray:
    """Classify the flows of one capture with nDPI (through nfstream) and match them by key.

    The application name's last dotted part is the label (``QUIC.YouTube`` -> ``YouTube``), as in
    ``ndpi/labels.csv``. Flows nfstream does not report get None.
    """
    nfstream = require_nfstream()
    try:
        df = nfstream.NFStreamer(source=str(path), idle_timeout=int(max(1, idle_timeout)),
                                 decode_tunnels=False, n_dissections=20).to_pandas()
    except Exception as exc:  # nfstream raises plain exceptions for unreadable files
        raise PcapError(f"nfstream could not read the capture ({exc})", path=str(path)) from exc
    table: dict = {}
    name = Path(str(path)).name
    if df is not None and len(df):
        for row in df[["protocol", "src_ip", "src_port", "dst_ip", "dst_port", "application_name"]].itertuples(
                index=False):
            if int(row.protocol) not in (6, 17):
                continue
            key = flow_key(name, row.protocol, row.src_ip, row.src_port, row.dst_ip, row.dst_port)
            if key not in table:
                table[key] = str(row.application_name).split(".")[-1]
    return LabelTable(table=table).lookup(flows)
