"""Fast, robust pcap / pcapng ingestion into :class:`~trafficgen.data.flowset.FlowSet`.

>>> flows = read_pcap("capture.pcapng", max_packets=32)                      # doctest: +SKIP
>>> flows = read_pcaps(["captures/"], labels="labels.csv", max_packets=10)   # doctest: +SKIP
>>> flows = read_pcaps(["captures/"], jobs=4)  # 4 worker processes         # doctest: +SKIP
>>> flows.meta["ingest_stats"]["skipped"]["fragment"]                         # doctest: +SKIP

Pipeline, one window of the capture at a time: :mod:`~trafficgen.data.flows.pcap_format` (container
walk, windows of about 8 MiB) -> :mod:`~trafficgen.data.flows.packet_decode` (vectorised header
decoding, one outcome per packet) -> :mod:`~trafficgen.data.flows.biflow` (vectorised, incremental
biflow assembly). Memory grows with the flow table, not with the capture; the result does not
depend on the window size. Many captures: :mod:`~trafficgen.data.flows.batch` (worker processes,
results in file order). The modules' docstrings state the exact rules (payload lengths,
fragments, clamping, flow splitting, client choice).
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from trafficgen.data.flows.batch import IngestProgress, TaskFailure, check_jobs, file_size, run_captures
from trafficgen.data.flows.biflow import FlowAssembler
from trafficgen.data.flows.packet_decode import MAX_JUMBO_LENGTH, OK, REASONS, decode
from trafficgen.data.flows.pcap_format import RecordStream
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, PcapError, TrafficgenError

logger = logging.getLogger(__name__)

#: File name endings picked up when a directory is given to :func:`read_pcaps`.
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")


class IngestWarning(UserWarning):
    """Packets or records were skipped, or a capture was empty (see ``IngestStats``)."""


@dataclass
class IngestStats:
    """Counters of one ingestion (summed over files by :func:`read_pcaps`).

    ``skipped`` holds the per-reason packet counts of packets not assigned to a flow
    (``non_ip``, ``unsupported_linktype``, ``truncated``, ``malformed``, ``fragment`` (non-first
    IPv4/IPv6 fragments), ``tunnel``, ``other_protocol``) and ``truncated_records`` (a last record
    cut by the end of the file). ``flagged`` counts used packets whose length was repaired
    (``inconsistent_length``, ``ip_len_from_wire``) or that are first fragments.
    """

    files: int = 0
    packets: int = 0
    decoded: int = 0
    flows: int = 0
    skipped: dict = field(default_factory=lambda: {r: 0 for r in REASONS[1:]} | {"truncated_records": 0})
    flagged: dict = field(default_factory=lambda: {"first_fragment": 0, "inconsistent_length": 0,
                                                   "ip_len_from_wire": 0})
    zero_payload_dropped: int = 0
    packets_beyond_max: int = 0
    flows_below_min_packets: int = 0
    unlabelled_flows: int = 0
    failed_files: list = field(default_factory=list)  # [{"path", "error"}] with on_error="skip"

    def to_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> IngestStats:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def add(self, other: IngestStats) -> None:
        for k, v in other.__dict__.items():
            mine = getattr(self, k)
            if isinstance(v, dict):
                for kk, vv in v.items():
                    mine[kk] = mine.get(kk, 0) + vv
            elif isinstance(v, list):
                mine.extend(v)
            else:
                setattr(self, k, mine + v)

    def message(self) -> str | None:
        """One line naming the non-zero skip counts (None when nothing was skipped)."""
        parts = [f"{k}={v}" for k, v in self.skipped.items() if v]
        parts += [f"{k}={v}" for k, v in self.flagged.items() if v and k != "first_fragment"]
        if self.unlabelled_flows:
            parts.append(f"unlabelled_flows_dropped={self.unlabelled_flows}")
        if self.failed_files:
            parts.append(f"failed_files={len(self.failed_files)}")
        if not parts:
            return None
        return f"{self.decoded} of {self.packets} packets used, {self.flows} flows; skipped/flagged: " + ", ".join(parts)


#: Largest ``max_packets`` accepted: every flow is stored as rows of ``max_packets`` columns (about
#: 22 bytes per column in memory), so 10,000 flows at this width already need ~2 GiB.
MAX_PACKETS = 10_000


def _check_options(max_packets, idle_timeout, min_packets):
    if int(max_packets) < 1:
        raise ConfigError(f"max_packets must be >= 1, got {max_packets}")
    if int(max_packets) > MAX_PACKETS:
        raise ConfigError(f"max_packets must be at most {MAX_PACKETS} (each flow stores that many columns), "
                          f"got {max_packets}")
    if not float(idle_timeout) > 0:
        raise ConfigError(f"idle_timeout must be > 0 seconds, got {idle_timeout}")
    if int(min_packets) < 0:
        raise ConfigError(f"min_packets must be >= 0, got {min_packets}")
    if int(min_packets) > int(max_packets):
        raise ConfigError(f"min_packets ({min_packets}) must not exceed max_packets ({max_packets}): "
                          "a flow keeps at most max_packets packets")


def _read_one(path, *, max_packets, idle_timeout, split_on_fin, keep_zero_payload, min_packets,
              strict, data=None, on_window=None) -> tuple[FlowSet, IngestStats, list[str]]:
    """Stream one capture window by window (:class:`RecordStream`) through decoding into a
    :class:`FlowAssembler`; ``on_window(bytes_done)`` is called after each window."""
    stream = RecordStream(str(path), strict=strict, data=data)
    asm = FlowAssembler(max_packets=max_packets, idle_timeout=idle_timeout, split_on_fin=split_on_fin,
                        keep_zero_payload=keep_zero_payload, min_packets=min_packets)
    dc = dict.fromkeys(REASONS, 0) | {"first_fragment": 0, "inconsistent_length": 0, "ip_len_from_wire": 0}
    rec = None
    try:
        for rec in stream:
            dec = decode(rec)
            _check_decoded(dec, rec, path)
            asm.add(dec, rec.ts)
            for k, v in dec.counts().items():
                dc[k] += v
            if on_window is not None:
                on_window(stream.bytes_done)
        cols, counts = asm.finish()
        k = len(cols["n_packets"])
        fs = FlowSet(**cols, source=np.full(k, str(path), dtype=object))
    except PcapError:
        raise
    except (TrafficgenError, IndexError, ValueError, OverflowError, TypeError) as exc:
        # defensive: a failure in decoding or flow assembly is this capture's error (on_error="skip"
        # skips it), never another type
        first = int(rec.record_offset[0]) if rec is not None and len(rec) else 0
        raise PcapError(f"cannot decode capture ({type(exc).__name__}: {exc})", path=str(path),
                        offset=first) from exc
    stats = IngestStats(files=1, packets=stream.records)
    stats.decoded = dc["ok"]
    for r in REASONS[1:]:
        stats.skipped[r] = dc[r]
    stats.skipped["truncated_records"] = stream.counters.get("truncated_records", 0)
    for k in stats.flagged:
        stats.flagged[k] = dc[k]
    stats.flows = counts["flows"]
    stats.zero_payload_dropped = counts["zero_payload_dropped"]
    stats.packets_beyond_max = counts["packets_beyond_max"]
    stats.flows_below_min_packets = counts["flows_below_min_packets"]
    notes = list(stream.notes)
    if stream.records == 0:
        notes.append(f"{path}: capture contains no packets")
    return fs, stats, notes


def _check_decoded(dec, rec, path) -> None:
    """Every used packet's payload length lies in [0, MAX_JUMBO_LENGTH] (what the decoder's bounds
    guarantee); otherwise a PcapError at the first offending record."""
    bad = np.flatnonzero((dec.reason == OK) & ((dec.payload < 0) | (dec.payload > MAX_JUMBO_LENGTH)))
    if bad.size:
        i = int(bad[0])
        raise PcapError(f"decoded payload length {int(dec.payload[i])} outside [0, {MAX_JUMBO_LENGTH}]",
                        path=str(path), offset=int(rec.record_offset[i]))


def _warn(stats: IngestStats, notes: list[str]) -> None:
    for note in notes:
        warnings.warn(note, IngestWarning, stacklevel=3)
        logger.debug(note)
    msg = stats.message()
    if msg:
        warnings.warn(msg, IngestWarning, stacklevel=3)
        logger.debug(msg)


def read_pcap(path: str | os.PathLike | BinaryIO, *, max_packets: int = 32, idle_timeout: float = 120.0,
              split_on_fin: bool = False, keep_zero_payload: bool = False, min_packets: int = 1,
              strict: bool = False) -> FlowSet:
    """Read one pcap/pcapng capture into a FlowSet of TCP/UDP biflows (unlabelled).

    ``path`` is a regular file (read in windows: memory grows with the capture's biflows, not its
    size), or a binary file object (``io.BytesIO``, an open file; read into memory first) whose
    ``name`` (if any) stands for the file in errors and provenance. ``flows.meta["ingest_stats"]``
    holds the :class:`IngestStats` as a dict; skipped packets are also reported as one
    :class:`IngestWarning`. Raises :class:`~trafficgen.errors.PcapError` (file + byte offset) for
    captures that cannot be read; ``strict=True`` also raises on a truncated last record instead of
    dropping it with a warning. ``max_packets`` is at most :data:`MAX_PACKETS` and at least
    ``min_packets``.
    """
    _check_options(max_packets, idle_timeout, min_packets)
    data = None
    if hasattr(path, "read"):
        data = path.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigError(f"read_pcap needs a binary file object, got {type(data).__name__} from read()")
        path = getattr(path, "name", None) or "<stream>"
    fs, stats, notes = _read_one(path, max_packets=int(max_packets), idle_timeout=float(idle_timeout),
                                 split_on_fin=split_on_fin, keep_zero_payload=keep_zero_payload,
                                 min_packets=int(min_packets), strict=strict, data=data)
    _warn(stats, notes)
    fs.meta["ingest_stats"] = stats.to_dict()
    return fs


def list_captures(paths_or_dirs) -> list[Path]:
    """Expand files and directories (recursively, sorted) into capture paths.

    Folders contribute their regular files ending in :data:`CAPTURE_SUFFIXES`; a named input that
    does not exist or is not a regular file (``/dev/zero``, a FIFO) raises :class:`PcapError`.
    """
    if isinstance(paths_or_dirs, (str, os.PathLike)):
        paths_or_dirs = [paths_or_dirs]
    out: list[Path] = []
    for p in paths_or_dirs:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in CAPTURE_SUFFIXES))
        elif p.is_file():
            out.append(p)
        elif p.exists():
            raise PcapError("not a regular file (a device, FIFO or socket); give pcap/pcapng files or folders",
                            path=str(p))
        else:
            raise PcapError("no such file or directory", path=str(p))
    return out


def read_pcaps(paths_or_dirs: str | os.PathLike | Iterable[str | os.PathLike], *, labels=None,
               label_by: str | None = None, progress: bool = True, on_error: str = "raise",
               max_packets: int = 32, idle_timeout: float = 120.0, split_on_fin: bool = False,
               keep_zero_payload: bool = False, min_packets: int = 1, strict: bool = False,
               label_column: str = "app", jobs: int = 1) -> FlowSet:
    """Read many captures (files and/or directories) into one FlowSet, optionally labelled.

    ``labels``: a labels CSV path or a :class:`~trafficgen.data.flows.labels.LabelTable` (nDPI format,
    matched by file name, L4 protocol and unordered endpoint pair). ``label_by``: ``"file"`` (file
    name stem), ``"folder"`` (parent folder name) or ``"ndpi"`` (classify with nfstream, needs the
    ``[pcap]`` extra). When labels are requested, unmatched flows are dropped and counted
    (``unlabelled_flows``). ``on_error="skip"`` skips unreadable captures (listed in
    ``failed_files``) instead of raising, but when no capture could be read at all (or the inputs
    hold no capture file) a :class:`~trafficgen.errors.PcapError` is raised either way: an empty
    result would hide the failure. A readable capture without packets is only a warning.

    ``jobs``: captures read at once, each in its own worker process (0: one per CPU core; see
    :mod:`~trafficgen.data.flows.batch`). The result, its ``meta`` and the warnings are the same for
    every ``jobs`` (captures are combined in file order). Each capture streams through the reader
    in windows, so memory grows with its flow table, not with its size.
    """
    from trafficgen.data.flows import labels as labelling

    _check_options(max_packets, idle_timeout, min_packets)
    jobs = check_jobs(jobs)
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if label_by not in (None, "file", "folder", "ndpi"):
        raise ConfigError(f"label_by must be None, 'file', 'folder' or 'ndpi', got {label_by!r}")
    if labels is not None and label_by is not None:
        raise ConfigError("give either labels= or label_by=, not both")
    table = None
    if labels is not None:
        table = labels if isinstance(labels, labelling.LabelTable) else labelling.LabelTable.from_csv(
            labels, column=label_column)
    if label_by == "ndpi":
        labelling.require_nfstream()
    if isinstance(paths_or_dirs, (str, os.PathLike)):
        paths_or_dirs = [paths_or_dirs]
    paths_or_dirs = list(paths_or_dirs)
    files = list_captures(paths_or_dirs)
    if not files:
        raise _no_captures(paths_or_dirs)
    total = IngestStats()
    parts: list[FlowSet] = []
    notes: list[str] = []
    opts = dict(max_packets=int(max_packets), idle_timeout=float(idle_timeout), split_on_fin=split_on_fin,
                keep_zero_payload=keep_zero_payload, min_packets=int(min_packets), strict=strict)
    ndpi_raw: list[np.ndarray] = []
    first_error: PcapError | None = None
    task = functools.partial(_read_task, opts=opts, ndpi=label_by == "ndpi")
    with IngestProgress(sum(map(file_size, files)), len(files), enabled=progress) as bar:
        results = run_captures(task, files, jobs=jobs, progress=bar, stop_on_failure=on_error == "raise")
    for path, result in zip(files, results, strict=False):  # results stop at a failure with on_error='raise'
        if not isinstance(result, TaskFailure):
            fs, stats, file_notes, raw = result
            if raw is not None:
                ndpi_raw.append(raw)
        else:
            exc = result.error
            if on_error == "raise":
                raise exc
            total.failed_files.append({"path": str(path), "error": str(exc)})
            notes.append(f"skipped unreadable capture: {exc}")
            if first_error is None:
                first_error = exc
            continue
        total.add(stats)
        notes.extend(file_notes)
        parts.append(fs)
    if not parts:  # every capture failed (on_error="skip")
        if len(files) == 1:
            raise first_error
        err = PcapError(f"none of the {len(files)} captures could be read (first: {first_error})")
        err.path, err.offset = first_error.path, first_error.offset
        raise err
    flows = FlowSet.concat(parts)
    raw = None
    if table is not None:
        raw = table.lookup(flows)
    elif label_by in ("file", "folder"):
        raw = labelling.labels_from_paths(flows.source, by=label_by)
    elif label_by == "ndpi":
        raw = np.concatenate(ndpi_raw) if ndpi_raw else np.zeros(0, dtype=object)
    if raw is not None:
        matched = np.asarray([x is not None for x in raw], dtype=bool)
        total.unlabelled_flows = int((~matched).sum())
        flows = flows[matched].with_labels(list(raw[matched]))
    total.flows = len(flows)
    _warn(total, notes)
    flows.meta["ingest_stats"] = total.to_dict()
    return flows


def _read_task(path, *, opts: dict, ndpi: bool, on_window=None):
    """One capture for :func:`read_pcaps` (top-level: worker processes unpickle it):
    (flows, stats, notes, nDPI labels or None), or a :class:`TaskFailure` holding the PcapError."""
    from trafficgen.data.flows import labels as labelling

    try:
        fs, stats, notes = _read_one(path, on_window=on_window, **opts)
        raw = labelling.ndpi_labels(path, fs, idle_timeout=opts["idle_timeout"]) if ndpi else None
    except PcapError as exc:
        return TaskFailure(exc)  # PcapError pickles with its path and offset
    return fs, stats, notes, raw


def _no_captures(paths_or_dirs: list) -> PcapError:
    names = [str(p) for p in paths_or_dirs]
    where = names[0] if len(names) == 1 else None
    what = "" if len(names) < 2 else f" in {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
    return PcapError(f"no capture files ({', '.join(CAPTURE_SUFFIXES)}) found{what}", path=where)
