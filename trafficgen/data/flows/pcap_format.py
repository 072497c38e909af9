"""Capture *container* parsing: pcap and pcapng record/block walking (no packet decoding).

A capture is read in windows of about :data:`CHUNK_BYTES` (:class:`RecordStream`), so memory does
not grow with the file: each window holds whole records only (a record cut by the window's end
starts the next window). Record headers are walked with a tight loop that only collects offsets;
every other header field is then gathered vectorised with numpy. Each window gives a
:class:`Records` table (one row per captured packet). :func:`read_records` returns the whole file as
one table (tools, small captures).

Supported:

* pcap: both byte orders, microsecond (``a1b2c3d4``) and nanosecond (``a1b23c4d``) magic.
* pcapng: SHB (either byte order, several sections), IDB (per-interface link type, ``if_tsresol``,
  ``if_tsoffset``), EPB, SPB and the obsolete PB; other blocks are skipped (seeked over when larger
  than a window).

Robustness rules (never a traceback of another type, never unbounded memory):

* Only regular files are opened (a device such as ``/dev/zero`` or a FIFO raises
  :class:`~trafficgen.errors.PcapError` at once instead of reading forever or blocking; see
  :mod:`~trafficgen.data.flows.capture_source`, which hands out the windows).

* A bad file header (empty file, wrong magic, truncated header, unsupported pcap link type) or a
  record/block whose declared size is impossible (caplen over :data:`MAX_CAPLEN`, a pcapng block
  length under 12 or not covering its own fields) raises :class:`~trafficgen.errors.PcapError`
  with the file and the byte offset: after such a header the next record cannot be found. When
  streaming, the windows before that record have already been handed out.
* A last record cut short by the end of the file is dropped and counted (``truncated_records``);
  with ``strict=True`` it raises :class:`PcapError` instead.
"""
from __future__ import annotations

import array
import mmap
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from trafficgen.data.flows.capture_source import Source, Window, load
from trafficgen.errors import PcapError

#: Largest accepted captured length of one packet (bytes). Larger -> PcapError at that offset.
MAX_CAPLEN = 256 * 1024

#: Bytes read from a capture at a time when streaming (a window also holds the end of the record the
#: previous window cut). Decoding temporaries take a few hundred bytes per packet of a window.
CHUNK_BYTES = 8 << 20

#: Link types the decoder understands (DLT numbers).
SUPPORTED_LINKTYPES = {0, 1, 9, 12, 14, 101, 104, 108, 113, 192, 228, 229, 276}

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_PARSED = (_PCAPNG_SHB, 1, 2, 3, 6)  # SHB, IDB, PB, SPB, EPB; other blocks are skipped
_MIN_CHUNK = 64  # a window holds at least a pcap file header


@dataclass
class Records:
    """One row per captured packet of a window of the capture.

    ``data`` is the window's buffer (for :func:`read_records`, the whole file) as a numpy uint8 array;
    ``offset`` indexes into it, ``record_offset`` is the position in the file.
    """

    data: np.ndarray  # (buffer_size,) uint8
    offset: np.ndarray  # (n,) int64: position of the packet data in ``data``
    caplen: np.ndarray  # (n,) int64: captured bytes
    wirelen: np.ndarray  # (n,) int64: original length on the wire
    ts: np.ndarray  # (n,) float64 epoch seconds
    linktype: np.ndarray  # (n,) int32 DLT of the interface that captured the packet
    record_offset: np.ndarray  # (n,) int64: byte offset of the record/block header in the file
    counters: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.offset.shape[0])


def read_records(path: str, *, strict: bool = False, data: bytes | mmap.mmap | None = None) -> Records:
    """Parse the whole container of ``path`` (pcap or pcapng, detected from the magic) into one table."""
    if data is None:
        data = load(path)
    stream = RecordStream(path, strict=strict, data=data, chunk_bytes=0)
    parts = list(stream)
    rec = parts[0] if parts else _empty(np.frombuffer(data, dtype=np.uint8))
    rec.counters, rec.notes = stream.counters, stream.notes
    return rec


class RecordStream:
    """Iterate the records of a capture window by window: ``for rec in RecordStream(path): ...``.

    ``data``: the capture's bytes already in memory (then ``path`` only names it); else the file is
    read ``chunk_bytes`` at a time (default :data:`CHUNK_BYTES`; 0: all at once). After the iteration, ``counters``
    (``truncated_records``), ``notes`` and ``records`` (number of records) describe the capture;
    ``bytes_done`` grows as windows are handed out (for progress).
    """

    def __init__(self, path, *, strict: bool = False, data=None, chunk_bytes: int | None = None):
        self.path = str(path)
        self.strict = strict
        self._data = data
        chunk_bytes = CHUNK_BYTES if chunk_bytes is None else int(chunk_bytes)
        self.chunk_bytes = None if chunk_bytes == 0 else max(chunk_bytes, _MIN_CHUNK)
        self.counters: dict = {}
        self.notes: list = []
        self.records = 0
        self.bytes_done = 0

    def __iter__(self) -> Iterator[Records]:
        src = Source(self.path, self._data, self.chunk_bytes)
        try:
            win = src.first()
            if win.limit < 4:
                raise PcapError("empty or truncated file: no capture header", path=self.path, offset=0)
            magic = bytes(win.buf[:4])
            if magic in _PCAP_MAGICS:
                yield from self._pcap(src, win)
            elif struct.unpack("<I", magic)[0] == _PCAPNG_SHB:
                yield from self._pcapng(src, win)
            else:
                raise PcapError(f"not a pcap/pcapng file (magic {magic.hex()})", path=self.path, offset=0)
        finally:
            src.close()

    # ------------------------------------------------------------------ pcap
    def _pcap(self, src: Source, win: Window) -> Iterator[Records]:
        path = self.path
        bo, units = _PCAP_MAGICS[bytes(win.buf[:4])]
        if win.limit < 24:
            raise PcapError(f"truncated pcap global header ({win.limit} of 24 bytes)", path=path, offset=0)
        (linktype_field,) = struct.unpack_from(bo + "I", win.buf, 20)
        linktype = linktype_field & 0x0FFFFFFF  # upper bits: FCS length flags
        if linktype not in SUPPORTED_LINKTYPES:
            raise PcapError(f"unsupported link type {linktype_field}", path=path, offset=20)
        pos = 24
        while True:
            buf, limit, base = win.buf, win.limit, win.base
            arr = np.frombuffer(buf, dtype=np.uint8)
            offs = _walk_pcap(buf, pos, limit, bo)
            if offs.size:
                hdr = np.lib.stride_tricks.sliding_window_view(arr, 16)[offs]
                fields = hdr.view(np.dtype(bo + "u4")).reshape(-1, 4).astype(np.int64)  # (n, 4): sec, frac, caplen, wire
                big = np.flatnonzero(fields[:, 2] > MAX_CAPLEN)
                if big.size:
                    raise PcapError(f"record caplen {fields[big[0], 2]} exceeds the {MAX_CAPLEN}-byte limit",
                                    path=path, offset=base + int(offs[big[0]]))
                pos = int(offs[-1] + 16 + fields[-1, 2])
            need = 16  # bytes of the record at pos (its header until that is at hand)
            if pos + 16 <= limit:  # the walk stopped at a record running past the end of the window
                (cap,) = struct.unpack_from(bo + "I", buf, pos + 8)
                if cap > MAX_CAPLEN:
                    raise PcapError(f"record caplen {cap} exceeds the {MAX_CAPLEN}-byte limit", path=path,
                                    offset=base + pos)
                need += cap
            if offs.size:
                ts = fields[:, 0].astype(np.float64) + fields[:, 1].astype(np.float64) / units
                self.records += len(offs)
                self.bytes_done = base + pos
                yield Records(arr, offs + 16, fields[:, 2], fields[:, 3], ts,
                              np.full(len(offs), linktype, dtype=np.int32), offs + base)
            if win.eof:
                break
            win = src.advance(win, pos, need)
            pos = win.start
        self._end(win.base + pos, win.base + win.limit, "record")

    # ------------------------------------------------------------------ pcapng
    def _pcapng(self, src: Source, win: Window) -> Iterator[Records]:
        state = _NgState()
        pos = 0
        while True:
            rows, pos, need, skip_to = _walk_pcapng(self.path, win, pos, state, src.size, self.chunk_bytes)
            if rows:
                self.records += len(rows)
                self.bytes_done = win.base + pos
                yield _ng_records(win, rows, state.all_ifaces)
            if skip_to is not None:  # a large block we do not parse: seek over it
                win = src.seek(skip_to)
                pos = win.start
                continue
            if win.eof or need < 0:  # need < 0: the block at pos runs past the end of the file
                break
            win = src.advance(win, pos, need)
            pos = win.start
        self._end(win.base + pos, src.size if need < 0 else win.base + win.limit, "block")

    def _end(self, pos: int, size: int, what: str) -> None:
        self.bytes_done = size
        if pos != size:
            msg = f"last {what} truncated ({size - pos} trailing bytes)"
            if self.strict:
                raise PcapError(msg, path=self.path, offset=pos)
            self.counters["truncated_records"] = 1
            self.notes.append(f"{self.path} at offset {pos}: {msg}; {what} skipped")


def _empty(buf: np.ndarray) -> Records:
    z = np.zeros(0, dtype=np.int64)
    return Records(buf, z, z.copy(), z.copy(), np.zeros(0), np.zeros(0, np.int32), z.copy())


def _walk_pcap(data, start: int, limit: int, bo: str) -> np.ndarray:
    """Offsets (in ``data``) of the records from ``start`` that end at or before ``limit``.

    The loop only chains caplen fields; all else is vectorised. When the file's byte order is the
    machine's, caplen is read through four ``uint32`` memoryviews shifted by 0..3 bytes (an unaligned
    read without a function call), else with ``struct.unpack_from``.
    """
    offs = array.array("q")
    append = offs.append
    if (bo == "<") == (sys.byteorder == "little") and limit - start >= 16:
        mv = memoryview(data)
        views = [mv[k: k + 4 * ((limit - k) // 4)].cast("I") for k in range(4)]
        q, end = start + 8, limit - 8  # q = offset of the caplen field of the current record
        try:
            while q <= end:
                append(q)
                q += 16 + views[q & 3][q >> 2]
            if q > limit + 8:  # the last record runs past the limit
                offs.pop()
        finally:
            for v in views:
                v.release()
            mv.release()
        return np.frombuffer(offs, dtype=np.int64) - 8
    unpack = struct.Struct(bo + "I").unpack_from
    pos, last = start, limit - 16
    while pos <= last:
        (cap,) = unpack(data, pos + 8)
        nxt = pos + 16 + cap
        if nxt > limit:
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


@dataclass
class _NgState:
    """What a pcapng walk carries from window to window."""

    bo: str = "<"
    ifaces: list = field(default_factory=list)  # interfaces of the current section
    iface_base: int = 0  # interfaces of all sections share one table; a section starts at iface_base
    all_ifaces: list = field(default_factory=list)  # (linktype, ticks/s, offset s)


def _walk_pcapng(path, win: Window, pos: int, st: _NgState, file_size: int, chunk: int | None):
    """Walk the blocks of ``win`` from ``pos``: (packet rows, stop position, bytes needed at the stop
    (-1: the block there runs past the end of the file), file offset to seek to or None)."""
    data, n, base = win.buf, win.limit, win.base
    rows: list[tuple] = []  # (block offset, data offset, caplen, wirelen, ts_ticks, iface index)
    while pos + 12 <= n:
        (btype,) = struct.unpack_from(st.bo + "I", data, pos)
        if btype == _PCAPNG_SHB:
            bom = data[pos + 8: pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                st.bo = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                st.bo = ">"
            else:
                raise PcapError("bad pcapng byte-order magic", path=path, offset=base + pos + 8)
            st.iface_base = len(st.all_ifaces)
            st.ifaces = []
        bo = st.bo
        (blen,) = struct.unpack_from(bo + "I", data, pos + 4)
        if blen < 12 or blen % 4:
            raise PcapError(f"invalid pcapng block length {blen}", path=path, offset=base + pos + 4)
        if blen > MAX_CAPLEN + 4096 and btype in (2, 3, 6):
            raise PcapError(f"pcapng packet block of {blen} bytes exceeds the limit", path=path, offset=base + pos)
        if pos + blen > n:
            if base + pos + blen > file_size:
                return rows, pos, -1, None
            if chunk is not None and btype not in _PCAPNG_PARSED and blen > chunk:
                return rows, pos, 0, base + pos + blen
            return rows, pos, blen, None
        end = pos + blen - 4
        if btype == 1:  # IDB
            if blen < 20:
                raise PcapError("truncated interface description block", path=path, offset=base + pos)
            lt = struct.unpack_from(bo + "H", data, pos + 8)[0]
            tps, toff = _idb_options(data, bo, pos + 16, end)
            st.ifaces.append((lt, tps, toff))
            st.all_ifaces.append((lt, tps, toff))
        elif btype in (6, 2):  # EPB, obsolete PB
            if blen < 32:
                raise PcapError("truncated packet block", path=path, offset=base + pos)
            if btype == 6:
                iface, hi, lo, cap, wire = struct.unpack_from(bo + "IIIII", data, pos + 8)
            else:
                iface, _, hi, lo, cap, wire = struct.unpack_from(bo + "HHIIII", data, pos + 8)
            if cap > MAX_CAPLEN or pos + 28 + cap > end:
                raise PcapError(f"packet block caplen {cap} does not fit in its block of {blen} bytes",
                                path=path, offset=base + pos + 20)
            if iface >= len(st.ifaces):
                raise PcapError(f"packet block names interface {iface}, but only {len(st.ifaces)} are described",
                                path=path, offset=base + pos + 8)
            rows.append((pos, pos + 28, cap, wire, (hi << 32) | lo, st.iface_base + iface))
        elif btype == 3:  # SPB
            if blen < 16:
                raise PcapError("truncated simple packet block", path=path, offset=base + pos)
            if not st.ifaces:
                raise PcapError("simple packet block before any interface description", path=path, offset=base + pos)
            (wire,) = struct.unpack_from(bo + "I", data, pos + 8)
            cap = min(wire, blen - 16)
            rows.append((pos, pos + 12, cap, wire, -1, st.iface_base))
        pos += blen
    return rows, pos, 12, None


def _ng_records(win: Window, rows: list[tuple], all_ifaces: list) -> Records:
    arr = np.asarray([r[:4] + (r[5],) for r in rows], dtype=np.int64)  # (n, 5)
    has_ts = np.asarray([r[4] >= 0 for r in rows], dtype=bool)
    ticks = np.asarray([max(r[4], 0) for r in rows], dtype=np.uint64)
    iface_idx = arr[:, 4]
    lt_tab = np.asarray([f[0] for f in all_ifaces], dtype=np.int32)
    ts = np.zeros(len(rows), dtype=np.float64)
    for k in np.unique(iface_idx[has_ts]).tolist():
        _, tps, toff = all_ifaces[k]
        sel = (iface_idx == k) & has_ts
        t = ticks[sel]
        ts[sel] = (t // np.uint64(tps)).astype(np.float64) + (t % np.uint64(tps)).astype(np.float64) / tps + toff
    return Records(np.frombuffer(win.buf, dtype=np.uint8), arr[:, 1], arr[:, 2], arr[:, 3], ts,
                   lt_tab[iface_idx], arr[:, 0] + win.base)
