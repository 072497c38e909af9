"""`FlowSet`: columnar per-biflow sequences of the first N packets.

Conventions (decided once, here, for every reader, tokenizer, mapper, metric and writer):

* ``lengths[i, j]`` is the signed L4 payload length of packet ``j`` of flow ``i``:
  ``+`` = client -> server, ``-`` = server -> client; the client is the sender of the first packet,
  so the first packet of every flow is ``+``.
* Zero-payload packets (bare TCP ACK/SYN/FIN) are **dropped by default at ingestion**, as in the
  traffic-classification literature: they carry no application data and a signed 0 has no
  direction. When a reader keeps them (``keep_zero_payload=True``) the direction is still known,
  because it is always stored apart from the length in ``directions`` (+1 / -1).
* Rows are right-padded: ``lengths`` and ``directions`` are 0 past ``n_packets[i]``.
* ``iat`` (optional) holds inter-arrival times in seconds (first packet 0), NaN-free, 0-padded.
* Provenance columns (optional, may be ``None``): ``source`` (file), ``protocol`` (6 / 17),
  ``client_ip``, ``client_port``, ``server_ip``, ``server_port``, ``first_ts`` (epoch seconds).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.errors import InputFormatError, UnknownClassError

_PROVENANCE = {
    "source": object,
    "protocol": np.int16,
    "client_ip": object,
    "client_port": np.int32,
    "server_ip": object,
    "server_port": np.int32,
    "first_ts": np.float64,
}


@dataclass(eq=False)
class FlowSet:
    """Per-biflow sequences of signed payload lengths, with labels and provenance.

    Build one with :meth:`from_sequences` (lists of signed lengths) or a reader
    (:func:`trafficgen.data.flows.pcap.read_pcaps`, :meth:`read`).
    """

    lengths: np.ndarray  # (n_flows, max_packets) int32, signed, 0-padded
    n_packets: np.ndarray  # (n_flows,) int32
    directions: np.ndarray | None = None  # (n_flows, max_packets) int8 in {-1, +1}, 0-padded
    iat: np.ndarray | None = None  # (n_flows, max_packets) float64 seconds
    labels: np.ndarray | None = None  # (n_flows,) object (str)
    source: np.ndarray | None = None
    protocol: np.ndarray | None = None
    client_ip: np.ndarray | None = None
    client_port: np.ndarray | None = None
    server_ip: np.ndarray | None = None
    server_port: np.ndarray | None = None
    first_ts: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.lengths = np.asarray(self.lengths, dtype=np.int32)
        if self.lengths.ndim != 2:
            raise InputFormatError(f"lengths must be 2-D (n_flows, max_packets), got shape {self.lengths.shape}")
        n, width = self.lengths.shape
        self.n_packets = np.asarray(self.n_packets, dtype=np.int32).reshape(-1)
        if self.n_packets.shape != (n,):
            raise InputFormatError(f"n_packets must have shape ({n},), got {self.n_packets.shape}")
        if n and (self.n_packets.min() < 0 or self.n_packets.max() > width):
            raise InputFormatError(f"n_packets must lie in [0, {width}]")
        valid = self.valid_mask
        if self.directions is None:
            self.directions = np.sign(self.lengths).astype(np.int8)
            if np.any(self.directions[valid] == 0):
                row = int(np.argwhere((self.directions == 0) & valid)[0, 0])
                raise InputFormatError(
                    "a zero-length packet inside a flow needs an explicit `directions` array", offset=row
                )
        else:
            self.directions = np.asarray(self.directions, dtype=np.int8)
            if self.directions.shape != self.lengths.shape:
                raise InputFormatError("directions must have the shape of lengths")
            nz = valid & (self.lengths != 0)
            if np.any(np.sign(self.lengths[nz]) != self.directions[nz]):
                raise InputFormatError("directions disagree with the sign of lengths")
        if np.any(self.lengths[~valid] != 0) or np.any(self.directions[~valid] != 0):
            raise InputFormatError("lengths/directions must be 0 past n_packets (right padding)")
        if self.iat is not None:
            self.iat = np.asarray(self.iat, dtype=np.float64)
            if self.iat.shape != self.lengths.shape:
                raise InputFormatError("iat must have the shape of lengths")
        if self.labels is not None:
            self.labels = np.asarray([str(x) for x in self.labels], dtype=object)
            if self.labels.shape != (n,):
                raise InputFormatError(f"labels must have shape ({n},)")
        for name, dtype in _PROVENANCE.items():
            value = getattr(self, name)
            if value is not None:
                arr = np.asarray(value, dtype=dtype) if dtype is not object else np.asarray(
                    [None if v is None else str(v) for v in value], dtype=object)
                if arr.shape != (n,):
                    raise InputFormatError(f"{name} must have shape ({n},), got {arr.shape}")
                setattr(self, name, arr)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sequences(
        cls,
        sequences: Iterable[Sequence[int]],
        labels: Sequence[str] | None = None,
        *,
        max_packets: int | None = None,
        iat: Iterable[Sequence[float]] | None = None,
        **provenance,
    ) -> FlowSet:
        """Build from ragged lists of signed lengths, truncated to ``max_packets`` if given."""
        seqs = [list(map(int, s)) for s in sequences]
        width = max((len(s) for s in seqs), default=0)
        if max_packets is not None:
            width = int(max_packets)
        lengths = np.zeros((len(seqs), width), dtype=np.int32)
        n_packets = np.zeros(len(seqs), dtype=np.int32)
        for i, s in enumerate(seqs):
            s = s[:width]
            lengths[i, : len(s)] = s
            n_packets[i] = len(s)
        iat_arr = None
        if iat is not None:
            iat_arr = np.zeros(lengths.shape, dtype=np.float64)
            for i, t in enumerate(iat):
                t = list(t)[: n_packets[i]]
                iat_arr[i, : len(t)] = t
        return cls(lengths=lengths, n_packets=n_packets, iat=iat_arr,
                   labels=None if labels is None else list(labels), **provenance)

    # ------------------------------------------------------------------ basic properties
    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def max_packets(self) -> int:
        return int(self.lengths.shape[1])

    @property
    def valid_mask(self) -> np.ndarray:
        """(n_flows, max_packets) bool: True where a packet exists."""
        return np.arange(self.lengths.shape[1])[None, :] < self.n_packets[:, None]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels (empty when unlabelled)."""
        return [] if self.labels is None else sorted(set(self.labels.tolist()))

    def sequences(self) -> list[list[int]]:
        """Ragged list of signed-length lists (a copy)."""
        return [self.lengths[i, : self.n_packets[i]].tolist() for i in range(len(self))]

    def class_counts(self) -> dict[str, int]:
        if self.labels is None:
            return {}
        values, counts = np.unique(self.labels.astype(str), return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}

    def _columns(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}

    def __eq__(self, other) -> bool:
        if not isinstance(other, FlowSet):
            return NotImplemented
        a, b = self._columns(), other._columns()
        for k in a:
            x, y = a[k], b[k]
            if (x is None) != (y is None):
                return False
            if x is not None and (x.shape != y.shape or not np.array_equal(x, y)):
                return False
        return True

    def __repr__(self) -> str:
        cls = f", classes={len(self.classes)}" if self.labels is not None else ""
        return f"FlowSet(n_flows={len(self)}, max_packets={self.max_packets}{cls})"

    # ------------------------------------------------------------------ selection
    def __getitem__(self, index) -> FlowSet:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        cols = {}
        for k, v in self._columns().items():
            cols[k] = None if v is None else v[index]
        return FlowSet(**cols, meta=dict(self.meta))

    def select(self, classes: str | Iterable[str]) -> FlowSet:
        """Flows whose label is in ``classes``. Unknown names raise :class:`UnknownClassError`."""
        if self.labels is None:
            raise InputFormatError("this FlowSet has no labels")
        wanted = [classes] if isinstance(classes, str) else list(classes)
        known = set(self.classes)
        for c in wanted:
            if c not in known:
                raise UnknownClassError(c, known)
        return self[np.isin(self.labels, wanted)]

    def min_class_count(self, min_count: int) -> FlowSet:
        """Keep only classes with at least ``min_count`` flows."""
        counts = self.class_counts()
        return self.select([c for c, n in counts.items() if n >= min_count])

    def truncate(self, max_packets: int) -> FlowSet:
        """Keep the first ``max_packets`` packets of each flow."""
        k = int(max_packets)
        cols = self._columns()
        for name in ("lengths", "directions", "iat"):
            if cols[name] is not None:
                arr = cols[name][:, :k]
                if arr.shape[1] < k:
                    arr = np.pad(arr, ((0, 0), (0, k - arr.shape[1])))
                cols[name] = arr
        cols["n_packets"] = np.minimum(self.n_packets, k)
        return FlowSet(**cols, meta=dict(self.meta))

    def train_test_split(self, test_size: float = 0.3, *, random_state: int | None = 0,
                         stratify: bool = True) -> tuple[FlowSet, FlowSet]:
        """Split flows, stratified by label when labelled (every class keeps >= 1 flow per side
        when it has >= 2)."""
        rng = np.random.default_rng(random_state)
        n = len(self)
        test_idx: list[int] = []
        if stratify and self.labels is not None:
            for c in self.classes:
                idx = np.flatnonzero(self.labels == c)
                rng.shuffle(idx)
                k = int(round(len(idx) * test_size))
                if len(idx) >= 2:
                    k = min(max(k, 1), len(idx) - 1)
                test_idx.extend(idx[:k].tolist())
        else:
            idx = rng.permutation(n)
            test_idx = idx[: int(round(n * test_size))].tolist()
        test_mask = np.zeros(n, dtype=bool)
        test_mask[test_idx] = True
        return self[~test_mask], self[test_mask]

    @staticmethod
    def concat(parts: Sequence[FlowSet]) -> FlowSet:
        """Stack several FlowSets (widths are padded to the widest), rows in the order given.

        ``meta`` is the first part's, except ``ingest_stats``: when every part has one (per-capture
        results of :func:`~trafficgen.data.flows.pcap.read_pcap`), they are summed (counts added,
        lists joined), so concatenating per-capture results in file order gives the FlowSet and
        counters :func:`~trafficgen.data.flows.pcap.read_pcaps` gives for those captures unlabelled.
        Biflows are never merged across parts.
        """
        parts = list(parts)
        if not parts:
            raise InputFormatError("concat needs at least one FlowSet")
        width = max(p.max_packets for p in parts)
        parts = [p.truncate(width) if p.max_packets != width else p for p in parts]
        cols = {}
        for k in parts[0]._columns():
            vals = [getattr(p, k) for p in parts]
            if any(v is None for v in vals):
                cols[k] = None
            else:
                cols[k] = np.concatenate(vals, axis=0)

        def add(a, b):  # counters: numbers added, dicts by key, lists joined
            if isinstance(a, dict) and isinstance(b, dict):
                return {k: add(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in {**a, **b}}
            if isinstance(a, list) and isinstance(b, list):
                return a + b
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
                return a + b
            return a

        meta = dict(parts[0].meta)
        if len(parts) > 1 and all(isinstance(p.meta.get("ingest_stats"), dict) for p in parts):
            total = parts[0].meta["ingest_stats"]
            for p in parts[1:]:
                total = add(total, p.meta["ingest_stats"])
            meta["ingest_stats"] = total
        return FlowSet(**cols, meta=meta)

    def with_labels(self, labels) -> FlowSet:
        cols = self._columns()
        cols["labels"] = labels
        return FlowSet(**cols, meta=dict(self.meta))

    # ------------------------------------------------------------------ features
    def to_features(self, n_packets: int | None = None) -> np.ndarray:
        """Fixed-length feature matrix (n_flows, n_packets) of signed lengths, float32.

        Flows shorter than ``n_packets`` are right-padded with 0 (no packet); longer ones are
        truncated. 0 never occurs inside a flow under the default ingestion (zero-payload packets
        dropped), so a 0 unambiguously means "no packet here".
        """
        k = self.max_packets if n_packets is None else int(n_packets)
        out = np.zeros((len(self), k), dtype=np.float32)
        w = min(k, self.max_packets)
        out[:, :w] = self.lengths[:, :w]
        return out

    @classmethod
    def from_features(cls, X, labels=None, **kw) -> FlowSet:
        """Inverse of :meth:`to_features`: a row ends at its first 0 (values rounded to int)."""
        X = np.rint(np.asarray(X, dtype=np.float64)).astype(np.int64)
        seqs = []
        for row in X:
            zeros = np.flatnonzero(row == 0)
            end = int(zeros[0]) if zeros.size else len(row)
            seqs.append(row[:end].tolist())
        return cls.from_sequences(seqs, labels=labels, max_packets=X.shape[1], **kw)

    def summary(self) -> dict:
        """Counts, classes, packet-count and length statistics (JSON-serialisable)."""
        valid = self.valid_mask
        lens = self.lengths[valid]
        return {
            "n_flows": len(self),
            "max_packets": self.max_packets,
            "n_classes": len(self.classes),
            "class_counts": self.class_counts(),
            "packets_per_flow": {
                "mean": float(self.n_packets.mean()) if len(self) else 0.0,
                "histogram": np.bincount(self.n_packets, minlength=self.max_packets + 1).tolist(),
            },
            "payload_length": {
                "min": int(lens.min()) if lens.size else 0,
                "max": int(lens.max()) if lens.size else 0,
                "mean_abs": float(np.abs(lens).mean()) if lens.size else 0.0,
                "client_to_server_fraction": float((self.directions[valid] > 0).mean()) if lens.size else 0.0,
            },
        }

    # ------------------------------------------------------------------ I/O
    def _records_columns(self):
        """Column name -> python list per flow (ragged where per-packet)."""
        seq = {"lengths": self.sequences()}
        if not np.array_equal(self.directions, np.sign(self.lengths)):
            seq["directions"] = [self.directions[i, : self.n_packets[i]].tolist() for i in range(len(self))]
        if self.iat is not None:
            seq["iat"] = [self.iat[i, : self.n_packets[i]].tolist() for i in range(len(self))]
        if self.labels is not None:
            seq["label"] = self.labels.tolist()
        for name in _PROVENANCE:
            v = getattr(self, name)
            if v is not None:
                seq[name] = v.tolist()
        return seq

    def to_parquet(self, path: str | os.PathLike) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols = self._records_columns()
        table = pa.table({
            k: pa.array(v, type=_arrow_type(k)) for k, v in cols.items()
        })
        meta = {"trafficgen.max_packets": str(self.max_packets),
                "trafficgen.meta": json.dumps(self.meta)}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    @classmethod
    def from_parquet(cls, path: str | os.PathLike) -> FlowSet:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types
            raise InputFormatError(f"not a readable Parquet file ({exc})", path=str(path)) from exc
        md = table.schema.metadata or {}
        width = int(md.get(b"trafficgen.max_packets", b"0")) or None
        meta = json.loads(md.get(b"trafficgen.meta", b"{}"))
        cols = {name: table.column(name).to_pylist() for name in table.column_names}
        return cls._from_columns(cols, width=width, meta=meta, path=str(path))

    def to_jsonl(self, path: str | os.PathLike) -> None:
        cols = self._records_columns()
        keys = list(cols)
        with atomic_path(path) as tmp, open(tmp, "w") as fh:
            fh.write(json.dumps({"trafficgen": {"max_packets": self.max_packets, "meta": self.meta}}) + "\n")
            for i in range(len(self)):
                fh.write(json.dumps({k: cols[k][i] for k in keys}) + "\n")

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike) -> FlowSet:
        rows, width, meta = [], None, {}
        with open(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputFormatError(f"invalid JSON ({exc.msg})", path=str(path), offset=lineno) from exc
                if not isinstance(obj, dict):
                    raise InputFormatError("each line must be a JSON object", path=str(path), offset=lineno)
                if "trafficgen" in obj and lineno == 1:
                    width = obj["trafficgen"].get("max_packets")
                    meta = obj["trafficgen"].get("meta", {})
                    continue
                if "lengths" not in obj:
                    raise InputFormatError("missing field 'lengths'", path=str(path), offset=lineno)
                rows.append((lineno, obj))
        keys = sorted({k for _, o in rows for k in o})
        cols = {k: [o.get(k) for _, o in rows] for k in keys}
        return cls._from_columns(cols, width=width, meta=meta, path=str(path),
                                 rownums=[r for r, _ in rows])

    def to_csv(self, path: str | os.PathLike) -> None:
        """One row per flow: label, n_packets, p1..pN (signed lengths, empty past the end)."""
        import csv

        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["label", "n_packets"] + [f"p{j + 1}" for j in range(self.max_packets)])
            for i in range(len(self)):
                n = int(self.n_packets[i])
                lab = "" if self.labels is None else self.labels[i]
                w.writerow([lab, n] + self.lengths[i, :n].tolist() + [""] * (self.max_packets - n))

    @classmethod
    def from_csv(cls, path: str | os.PathLike) -> FlowSet:
        import csv

        seqs, labels = [], []
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header or header[:2] != ["label", "n_packets"]:
                raise InputFormatError("expected header 'label,n_packets,p1,...'", path=str(path), offset=1)
            width = len(header) - 2
            for rownum, row in enumerate(reader, 2):
                try:
                    n = int(row[1])
                    seqs.append([int(x) for x in row[2: 2 + n]])
                except (ValueError, IndexError) as exc:
                    raise InputFormatError(f"bad row ({exc})", path=str(path), offset=rownum) from exc
                labels.append(row[0])
        has_labels = any(labels)
        return cls.from_sequences(seqs, labels if has_labels else None, max_packets=width)

    def save(self, path: str | os.PathLike) -> None:
        """Write by extension: .parquet, .jsonl, .csv."""
        suffix = Path(path).suffix.lower()
        writer = {".parquet": self.to_parquet, ".jsonl": self.to_jsonl, ".csv": self.to_csv}.get(suffix)
        if writer is None:
            raise InputFormatError(f"unknown output format {suffix!r} (use .parquet, .jsonl or .csv)", path=str(path))
        writer(path)

    def to_pcap(self, path: str | os.PathLike, **options):
        """Write the flows as a pcap capture of protocol-valid conversations between synthetic
        endpoints (TCP handshake, data, ACKs, FIN close; UDP datagrams) that
        :func:`~trafficgen.data.flows.pcap.read_pcaps` reads back into these flows. Options
        (``linktype``, ``client_pool``/``server_pool``, ``ipv6``, ``protocol``, ``server_ports``,
        ``ports_from``, ``timing_from``, ``payload``, ``starts``/``rate``, ``labels_path``,
        ``random_state``, ...) and the rules: :func:`trafficgen.data.flows.pcap_writer.write_pcap`.
        Returns its :class:`~trafficgen.data.flows.pcap_writer.PcapExport`."""
        from trafficgen.data.flows.pcap_writer import write_pcap

        return write_pcap(self, path, **options)

    @classmethod
    def read(cls, path: str | os.PathLike) -> FlowSet:
        """Read by extension: .parquet, .jsonl, .csv."""
        suffix = Path(path).suffix.lower()
        if not Path(path).exists():
            raise InputFormatError("no such file", path=str(path))
        reader = {".parquet": cls.from_parquet, ".jsonl": cls.from_jsonl, ".csv": cls.from_csv}.get(suffix)
        if reader is None:
            raise InputFormatError(f"unknown flow format {suffix!r} (use .parquet, .jsonl or .csv)", path=str(path))
        return reader(path)

    @classmethod
    def _from_columns(cls, cols: dict, *, width=None, meta=None, path=None, rownums=None) -> FlowSet:
        seqs = cols["lengths"]
        n = len(seqs)
        for i, s in enumerate(seqs):
            if not isinstance(s, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in s):
                raise InputFormatError("'lengths' must be a list of integers", path=path,
                                       offset=rownums[i] if rownums else i)
        if width is None:
            width = max((len(s) for s in seqs), default=0)
        lengths = np.zeros((n, width), dtype=np.int32)
        n_packets = np.array([len(s) for s in seqs], dtype=np.int32)
        if n and n_packets.max() > width:
            raise InputFormatError(f"a flow has more than max_packets={width} packets", path=path)
        for i, s in enumerate(seqs):
            lengths[i, : len(s)] = s
        kw: dict = {}
        for name, dtype in (("directions", np.int8), ("iat", np.float64)):
            if name in cols:
                arr = np.zeros((n, width), dtype=dtype)
                for i, s in enumerate(cols[name]):
                    arr[i, : len(s)] = s
                kw[name] = arr
        if "label" in cols:
            kw["labels"] = [str(x) for x in cols["label"]]
        for name in _PROVENANCE:
            if name in cols:
                kw[name] = cols[name]
        try:
            return cls(lengths=lengths, n_packets=n_packets, meta=meta or {}, **kw)
        except InputFormatError as exc:
            raise InputFormatError(str(exc), path=path) from exc


def _arrow_type(name: str):
    import pyarrow as pa

    return {
        "lengths": pa.list_(pa.int32()),
        "directions": pa.list_(pa.int8()),
        "iat": pa.list_(pa.float64()),
        "label": pa.string(),
        "source": pa.string(),
        "protocol": pa.int16(),
        "client_ip": pa.string(),
        "client_port": pa.int32(),
        "server_ip": pa.string(),
        "server_port": pa.int32(),
        "first_ts": pa.float64(),
    }[name]
