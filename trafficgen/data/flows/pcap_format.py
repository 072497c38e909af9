"""Capture *container* parsing: pcap and pcapng record/block walking (no packet decoding).

The whole file is read into memory once; record headers are walked with ``struct.unpack_from``
in a tight loop that only collects offsets, and every other header field is then gathered
vectorised with numpy. The result is a :class:`Records` table (one row per captured packet).

Supported:

* pcap: both byte orders, microsecond (``a1b2c3d4``) and nanosecond (``a1b23c4d``) magic.
* pcapng: SHB (either byte order, several sections), IDB (per-interface link type, ``if_tsresol``,
  ``if_tsoffset``), EPB, SPB and the obsolete PB; other blocks are skipped.

Robustness rules (never a traceback of another type, never unbounded memory):

* Only regular files are opened (a device such as ``/dev/zero`` or a FIFO raises
  :class:`~trafficgen.errors.PcapError` at once instead of reading forever or blocking).

* A bad file header (empty file, wrong magic, truncated header, unsupported pcap link type) or a
  record/block whose declared size is impossible (caplen over :data:`MAX_CAPLEN`, a pcapng block
  length under 12 or not covering its own fields) raises :class:`~trafficgen.errors.PcapError`
  with the file and the byte offset: after such a header the next record cannot be found.
* A last record cut short by the end of the file is dropped and counted (``truncated_records``);
  with ``strict=True`` it raises :class:`PcapError` instead.
"""
from __future__ import annotations

import array
import mmap
import os
import stat
import struct
import sys
from dataclasses import dataclass, field

import numpy as np

from trafficgen.errors import PcapError

#: Largest accepted captured length of one packet (bytes). Larger -> PcapError at that offset.
MAX_CAPLEN = 256 * 1024

#: Link types the decoder understands (DLT numbers).
SUPPORTED_LINKTYPES = {0, 1, 9, 12, 14, 101, 104, 108, 113, 192, 228, 229, 276}

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_SHB = 0x0A0D0D0A
_MMAP_MIN = 4 << 20  # files from 4 MiB on are memory-mapped
_BOM = 0x1A2B3C4D


@dataclass
class Records:
    """One row per captured packet; ``data`` is the whole file as a numpy uint8 array."""

    data: np.ndarray  # (file_size,) uint8
    offset: np.ndarray  # (n,) int64: byte offset of the packet data in the file
    caplen: np.ndarray  # (n,) int64: captured bytes
    wirelen: np.ndarray  # (n,) int64: original length on the wire
    ts: np.ndarray  # (n,) float64 epoch seconds
    linktype: np.ndarray  # (n,) int32 DLT of the interface that captured the packet
    record_offset: np.ndarray  # (n,) int64: byte offset of the record/block header
    counters: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.offset.shape[0])


def read_records(path: str, *, strict: bool = False, data: bytes | mmap.mmap | None = None) -> Records:
    """Parse the container of ``path`` (pcap or pcapng, detected from the magic)."""
    if data is None:
        data = _load(path)
    if len(data) < 4:
        raise PcapError("empty or truncated file: no capture header", path=str(path), offset=0)
    magic = bytes(data[:4])
    if magic in _PCAP_MAGICS:
        return _read_pcap(path, data, strict)
    if struct.unpack("<I", magic)[0] == _PCAPNG_SHB:
        return _read_pcapng(path, data, strict)
    raise PcapError(f"not a pcap/pcapng file (magic {magic.hex()})", path=str(path), offset=0)


def _load(path) -> bytes | mmap.mmap:
    """The file's bytes; large files are memory-mapped read-only (no copy, pages stay shared).

    Only regular files are read: a device (``/dev/zero`` never ends), a FIFO (``open`` would block
    until a writer appears) or a socket raises :class:`PcapError`. The file is opened non-blocking
    so that the check itself cannot hang; for a regular file the flag changes nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError, TypeError) as exc:
        raise PcapError(f"cannot read capture ({getattr(exc, 'strerror', None) or exc})", path=str(path)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PcapError(f"not a regular file ({_file_kind(st.st_mode)}); give a pcap/pcapng file",
                            path=str(path))
        with os.fdopen(fd, "rb") as fh:
            fd = -1  # owned by fh now
            size = st.st_size
            if size < _MMAP_MIN:
                return fh.read()
            populate = getattr(mmap, "MAP_POPULATE", 0)  # Linux: fault all pages in at once
            if populate and hasattr(mmap, "MAP_SHARED"):
                return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        if isinstance(exc, PcapError):
            raise
        raise PcapError(f"cannot read capture ({getattr(exc, 'strerror', None) or exc})", path=str(path)) from exc
    finally:
        if fd >= 0:
            os.close(fd)


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def _empty(buf: np.ndarray) -> Records:
    z = np.zeros(0, dtype=np.int64)
    return Records(buf, z, z.copy(), z.copy(), np.zeros(0), np.zeros(0, np.int32), z.copy())


def _read_pcap(path, data: bytes, strict: bool) -> Records:
    bo, units = _PCAP_MAGICS[bytes(data[:4])]
    if len(data) < 24:
        raise PcapError(f"truncated pcap global header ({len(data)} of 24 bytes)", path=str(path), offset=0)
    (linktype_field,) = struct.unpack_from(bo + "I", data, 20)
    linktype = linktype_field & 0x0FFFFFFF  # upper bits: FCS length flags
    if linktype not in SUPPORTED_LINKTYPES:
        raise PcapError(f"unsupported link type {linktype_field}", path=str(path), offset=20)
    buf = np.frombuffer(data, dtype=np.uint8)
    n = len(data)
    offs = _walk_pcap(data, n, bo)
    rec_off = offs
    hdr = np.lib.stride_tricks.sliding_window_view(buf, 16)[rec_off] if rec_off.size else np.zeros((0, 16), np.uint8)
    fields = hdr.view(np.dtype(bo + "u4")).reshape(-1, 4).astype(np.int64)  # (n, 4): sec, frac, caplen, wire
    big = np.flatnonzero(fields[:, 2] > MAX_CAPLEN)
    if big.size:
        raise PcapError(f"record caplen {fields[big[0], 2]} exceeds the {MAX_CAPLEN}-byte limit",
                        path=str(path), offset=int(rec_off[big[0]]))
    pos = int(rec_off[-1] + 16 + fields[-1, 2]) if offs.size else 24
    if pos + 16 <= n:  # the walk stopped at a record running past the end of the file
        (cap,) = struct.unpack_from(bo + "I", data, pos + 8)
        if cap > MAX_CAPLEN:
            raise PcapError(f"record caplen {cap} exceeds the {MAX_CAPLEN}-byte limit", path=str(path), offset=pos)
    counters = {}
    notes = []
    if pos != n:
        msg = f"last record truncated ({n - pos} trailing bytes)"
        if strict:
            raise PcapError(msg, path=str(path), offset=pos)
        counters["truncated_records"] = 1
        notes.append(f"{path} at offset {pos}: {msg}; record skipped")
    if not offs.size:
        rec = _empty(buf)
        rec.counters, rec.notes = counters, notes
        return rec
    ts = fields[:, 0].astype(np.float64) + fields[:, 1].astype(np.float64) / units
    return Records(buf, rec_off + 16, fields[:, 2], fields[:, 3], ts,
                   np.full(len(offs), linktype, dtype=np.int32), rec_off, counters, notes)


def _walk_pcap(data, n: int, bo: str) -> np.ndarray:
    """Offsets of the complete records (the loop only chains caplen fields; all else is vectorised).

    When the file's byte order is the machine's, caplen is read through four ``uint32``
    memoryviews shifted by 0..3 bytes (an unaligned read without a function call), else with
    ``struct.unpack_from``.
    """
    offs = array.array("q")
    append = offs.append
    if (bo == "<") == (sys.byteorder == "little") and n >= 40:
        mv = memoryview(data)
        views = [mv[k: k + 4 * ((n - k) // 4)].cast("I") for k in range(4)]
        q, end = 32, n - 8  # q = offset of the caplen field of the current record
        try:
            while q <= end:
                append(q)
                q += 16 + views[q & 3][q >> 2]
            if q > n + 8:  # the last record runs past the end of the file
                offs.pop()
        finally:
            for v in views:
                v.release()
            mv.release()
        return np.frombuffer(offs, dtype=np.int64) - 8
    unpack = struct.Struct(bo + "I").unpack_from
    pos, last = 24, n - 16
    while pos <= last:
        (cap,) = unpack(data, pos + 8)
        nxt = pos + 16 + cap
        if nxt > n:
            break
        append(pos)
        pos = nxt
    return np.frombuffer(offs, dtype=np.int64).copy()


def _idb_options(data: bytes, bo: str, start: int, end: int) -> tuple[int, float]:
    """(ticks per second, offset seconds) from the options of an IDB."""
    tps, toff = 1_000_000, 0.0
    pos = start
    while pos + 4 <= end:
        code, length = struct.unpack_from(bo + "HH", data, pos)
        if code == 0:
            break
        val = pos + 4
        if code == 9 and length >= 1 and val < end:
            r = data[val]
            tps = 2 ** (r & 0x7F) if r & 0x80 else 10 ** r
            if tps <= 0 or tps > 10**18:
                tps = 1_000_000
        elif code == 14 and length == 8 and val + 8 <= end:
            (toff,) = struct.unpack_from(bo + "q", data, val)
        pos = val + ((length + 3) & ~3)
    return tps, float(toff)


def _read_pcapng(path, data: bytes, strict: bool) -> Records:
    n = len(data)
    buf = np.frombuffer(data, dtype=np.uint8)
    pos = 0
    bo = "<"
    ifaces: list[tuple[int, int, float]] = []  # (linktype, ticks/s, offset s)
    rows: list[tuple] = []  # (block offset, data offset, caplen, wirelen, ts_ticks, iface index)
    iface_base = 0  # interfaces of all sections share one table; sections start at iface_base
    all_ifaces: list[tuple[int, int, float]] = []
    counters: dict = {}
    notes: list = []
    while pos + 12 <= n:
        (btype,) = struct.unpack_from(bo + "I", data, pos)
        if btype == _PCAPNG_SHB:
            bom = data[pos + 8: pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                bo = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                bo = ">"
            else:
                raise PcapError("bad pcapng byte-order magic", path=str(path), offset=pos + 8)
            iface_base = len(all_ifaces)
            ifaces = []
        (blen,) = struct.unpack_from(bo + "I", data, pos + 4)
        if blen < 12 or blen % 4:
            raise PcapError(f"invalid pcapng block length {blen}", path=str(path), offset=pos + 4)
        if blen > MAX_CAPLEN + 4096 and btype in (2, 3, 6):
            raise PcapError(f"pcapng packet block of {blen} bytes exceeds the limit", path=str(path), offset=pos)
        if pos + blen > n:
            break
        end = pos + blen - 4
        if btype == 1:  # IDB
            if blen < 20:
                raise PcapError("truncated interface description block", path=str(path), offset=pos)
            lt = struct.unpack_from(bo + "H", data, pos + 8)[0]
            tps, toff = _idb_options(data, bo, pos + 16, end)
            ifaces.append((lt, tps, toff))
            all_ifaces.append((lt, tps, toff))
        elif btype in (6, 2):  # EPB, obsolete PB
            if blen < 32:
                raise PcapError("truncated packet block", path=str(path), offset=pos)
            if btype == 6:
                iface, hi, lo, cap, wire = struct.unpack_from(bo + "IIIII", data, pos + 8)
            else:
                iface, _, hi, lo, cap, wire = struct.unpack_from(bo + "HHIIII", data, pos + 8)
            if cap > MAX_CAPLEN or pos + 28 + cap > end:
                raise PcapError(f"packet block caplen {cap} does not fit in its block of {blen} bytes",
                                path=str(path), offset=pos + 20)
            if iface >= len(ifaces):
                raise PcapError(f"packet block names interface {iface}, but only {len(ifaces)} are described",
                                path=str(path), offset=pos + 8)
            rows.append((pos, pos + 28, cap, wire, (hi << 32) | lo, iface_base + iface))
        elif btype == 3:  # SPB
            if blen < 16:
                raise PcapError("truncated simple packet block", path=str(path), offset=pos)
            if not ifaces:
                raise PcapError("simple packet block before any interface description", path=str(path), offset=pos)
            (wire,) = struct.unpack_from(bo + "I", data, pos + 8)
            cap = min(wire, blen - 16)
            rows.append((pos, pos + 12, cap, wire, -1, iface_base))
        pos += blen
    if pos != n:
        msg = f"last block truncated ({n - pos} trailing bytes)"
        if strict:
            raise PcapError(msg, path=str(path), offset=pos)
        counters["truncated_records"] = 1
        notes.append(f"{path} at offset {pos}: {msg}; block skipped")
    if not rows:
        rec = _empty(buf)
        rec.counters, rec.notes = counters, notes
        return rec
    arr = np.asarray([r[:4] + (r[5],) for r in rows], dtype=np.int64)  # (n, 5)
    has_ts = np.asarray([r[4] >= 0 for r in rows], dtype=bool)
    ticks = np.asarray([max(r[4], 0) for r in rows], dtype=np.uint64)
    iface_idx = arr[:, 4]
    lt_tab = np.asarray([f[0] for f in all_ifaces], dtype=np.int32)
    ts = np.zeros(len(rows), dtype=np.float64)
    for k, (_, tps, toff) in enumerate(all_ifaces):
        sel = (iface_idx == k) & has_ts
        if not sel.any():
            continue
        t = ticks[sel]
        ts[sel] = (t // np.uint64(tps)).astype(np.float64) + (t % np.uint64(tps)).astype(np.float64) / tps + toff
    return Records(buf, arr[:, 1], arr[:, 2], arr[:, 3], ts, lt_tab[iface_idx], arr[:, 0], counters, notes)
