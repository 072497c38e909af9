"""Mutation fuzzing of the pcap/pcapng reader, in-process (a benchmark, not a CI test).

    python benchmarks/fuzz_pcap.py [--inputs 1000000] [--jobs 1] [--seed 0] [--timeout 5]
                                   [--memory-gib 2] [--seed-bytes 8192] [--corpus DIR ...]

Seeds: every capture shipped with the package (trafficgen/datasets/ndpi/pcap) and, when the
checkout sits beside it, every capture of ../shared/data/ndpi/pcap and ../shared/data/bad. Each
input is one seed (cut after its first ``--seed-bytes`` bytes at a record boundary; 1 in 64 inputs
use the whole seed, up to 256 KiB) with 1-6 mutations: bit flips, random and boundary bytes,
16/32-bit boundary values (either byte order) anywhere or on record/block header fields (caplen,
wire length, block length, interface, timestamps) and on the first 64 bytes of packets (link,
IP and L4 headers), a new link type, inserted / deleted / duplicated chunks, truncation, splices
from another seed. Reader options vary per input (max_packets, keep_zero_payload, split_on_fin,
strict, idle_timeout, min_packets).

Each input is parsed from memory (``read_pcap(io.BytesIO(blob))``) under a per-input alarm
(``signal.setitimer``, ``--timeout`` seconds) and an address-space limit (``RLIMIT_AS``: the
process's size after start-up plus ``--memory-gib``). Outcomes: a FlowSet (checked: first packet
``+``, no zero length without keep_zero_payload, |length| <= the jumbogram bound, n_packets in
range, finite non-negative inter-arrival times), a ``PcapError`` with file and offset (expected),
or a crash: an untyped exception (not a ``TrafficgenError``), a typed error other than
``PcapError``, a ``PcapError`` without offset, an invariant violation, a hang, a warning other than
``IngestWarning``. Each distinct crash (type + innermost trafficgen frame) is minimised by chunk
deletion and printed as hex (also written to ``--out``). Prints inputs/s and the outcome counts;
exit status 1 when anything crashed.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import random
import re
import resource
import signal
import struct
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
WHOLE_SEED_LIMIT = 256 * 1024

INT8 = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x40, 0x45, 0x60, 0x06, 0x11)
INT16 = (0, 1, 2, 8, 14, 20, 40, 0x7F, 0x80, 0xFF, 0x100, 1500, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF,
         0x0800, 0x86DD, 0x8100, 0x88A8, 0x8864, 0x0021, 0x0057, 0xFF03, 0x2000, 0x1FFF)
INT32 = (0, 1, 4, 8, 12, 16, 20, 28, 32, 0x7F, 0xFF, 0xFFFF, 0x10000, 65535 + 40, 262144, 262145,
         0x7FFFFFFF, 0x80000000, 0x800000C8, 0xFFFFFFFE, 0xFFFFFFFF, 0x0A0D0D0A, 0x1A2B3C4D, 0xA1B2C3D4)
LINKTYPES = (0, 1, 9, 12, 14, 101, 104, 108, 113, 192, 228, 229, 276, 2, 147, 0x10000001)


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the reader swallows it."""


class InvariantViolation(Exception):
    """A FlowSet came back but breaks a FlowSet/ingest invariant."""


# ---------------------------------------------------------------- seeds
class Seed:
    """A seed capture: its bytes (cut at a record boundary), the whole file, and field offsets."""

    __slots__ = ("name", "blob", "whole", "fields", "packets", "linktype_at", "byteorder", "ip", "in_blob")

    def __init__(self, name: str, whole: bytes, cut: int):
        self.name = name
        self.whole = whole if len(whole) <= WHOLE_SEED_LIMIT else whole[:WHOLE_SEED_LIMIT]
        self.fields: list[tuple[int, int]] = []  # (offset, width) of header fields
        self.packets: list[int] = []  # offsets of packet data
        self.linktype_at: list[tuple[int, int]] = []  # (offset, width) of link-type fields
        end = _index(whole, self.fields, self.packets, self.linktype_at, cut)
        self.ip = _ip_headers(name, self.whole)  # [(data offset, l3 offset, ip version)]
        self.byteorder = "big" if whole[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d") or (
            whole[:4] == b"\x0a\x0d\x0d\x0a" and whole[8:12] == b"\x1a\x2b\x3c\x4d") else "little"
        self.blob = whole[:end] if end else whole[:cut]
        n = len(self.blob)  # how many entries of each (offset-sorted) list lie inside the cut seed
        self.in_blob = {"fields": sum(p + w <= n for p, w in self.fields),
                        "packets": sum(p < n for p in self.packets),
                        "ip": sum(d + 40 <= n for d, _, _ in self.ip)}

    def pick(self, what: str, whole: bool, rng: random.Random):
        items = getattr(self, what)
        k = len(items) if whole else self.in_blob[what]
        return items[rng.randrange(k)] if k else None


def _index(data: bytes, fields, packets, linktype_at, cut: int) -> int:
    """Walk a (valid-ish) seed once; return the record boundary at or before ``cut`` (0: unknown)."""
    if len(data) >= 24 and data[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                                        b"\xa1\xb2\x3c\x4d"):
        bo = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        fields.extend([(0, 4), (4, 2), (6, 2), (16, 4), (20, 4)])
        linktype_at.append((20, 4))
        pos, boundary = 24, 24
        while pos + 16 <= len(data):
            cap = struct.unpack_from(bo + "I", data, pos + 8)[0]
            if pos + 16 + cap > len(data):
                break
            if pos < WHOLE_SEED_LIMIT:
                fields.extend([(pos, 4), (pos + 4, 4), (pos + 8, 4), (pos + 12, 4)])
                packets.append(pos + 16)
            pos += 16 + cap
            if pos <= cut or boundary == 24:  # at least one record
                boundary = pos
        return boundary
    if len(data) >= 12 and data[:4] == b"\x0a\x0d\x0d\x0a":
        pos, boundary, bo = 0, 0, "<"
        while pos + 12 <= len(data):
            if data[pos: pos + 4] == b"\x0a\x0d\x0d\x0a":
                bo = "<" if data[pos + 8: pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(bo + "II", data, pos)
            if blen < 12 or pos + blen > len(data):
                break
            if pos < WHOLE_SEED_LIMIT:
                fields.extend([(pos, 4), (pos + 4, 4), (pos + blen - 4, 4)])
                if btype == 1:
                    linktype_at.append((pos + 8, 2))
                    fields.append((pos + 16, 4))
                elif btype in (2, 6):
                    fields.extend([(pos + 8, 4), (pos + 12, 4), (pos + 16, 4), (pos + 20, 4), (pos + 24, 4)])
                    packets.append(pos + 28)
                elif btype == 3:
                    fields.append((pos + 8, 4))
                    packets.append(pos + 12)
            pos += blen
            if pos <= cut:
                boundary = pos
            elif boundary == 0:
                boundary = pos
        return boundary
    return 0


def _ip_headers(name: str, data: bytes) -> list[tuple[int, int, int]]:
    """(packet data offset, IP header offset, IP version) of the seed's IP packets, found with the
    reader's own container walk and link-layer decoder (used only to aim mutations)."""
    import numpy as np

    from trafficgen.data.flows.packet_decode import _link_layer, _Reader
    from trafficgen.data.flows.pcap_format import read_records
    from trafficgen.errors import PcapError

    try:
        rec = read_records(name, data=data)
    except PcapError:
        return []
    reason = np.zeros(len(rec), dtype=np.uint8)
    l3, ver, _, _ = _link_layer(_Reader(rec.data), rec, reason)
    keep = np.flatnonzero((reason == 0) & (ver > 0))
    return list(zip(rec.offset[keep].tolist(), l3[keep].tolist(), ver[keep].tolist(), strict=True))


def load_seeds(dirs: list[Path], seed_bytes: int) -> list[Seed]:
    seeds = []
    for d in dirs:
        for f in sorted(d.iterdir()) if d.is_dir() else []:
            if f.is_file() and f.suffix.lower() in (".pcap", ".pcapng", ".cap", ".dmp"):
                seeds.append(Seed(f"{os.path.relpath(d, REPO.parent)}/{f.name}", f.read_bytes(), seed_bytes))
    return seeds


# ---------------------------------------------------------------- mutations
def _put(buf: bytearray, pos: int, value: int, width: int, rng: random.Random, byteorder: str | None = None) -> None:
    if width > len(buf):
        return
    pos = min(max(pos, 0), len(buf) - width)
    order = byteorder or rng.choice(("little", "big"))
    buf[pos: pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, order)


def mutate(seed: Seed, seeds: list[Seed], rng: random.Random) -> bytes:
    whole = rng.random() < 1 / 64
    buf = bytearray(seed.whole if whole else seed.blob)
    for _ in range(1 + min(int(rng.expovariate(0.7)), 5)):
        n = len(buf)
        op = rng.random()
        if n == 0:
            buf += rng.randbytes(rng.randint(1, 64))
        elif op < 0.12:  # bit flip
            p = rng.randrange(n)
            buf[p] ^= 1 << rng.randrange(8)
        elif op < 0.20:  # random / boundary byte
            buf[rng.randrange(n)] = rng.choice(INT8) if rng.random() < 0.5 else rng.randrange(256)
        elif op < 0.28:  # boundary 16/32-bit value anywhere
            w = rng.choice((2, 4))
            _put(buf, rng.randrange(n), rng.choice(INT16 if w == 2 else INT32), w, rng)
        elif op < 0.46 and (f := seed.pick("fields", whole, rng)):  # header field, mostly in the file's order
            p, w = f
            if p + w <= n:
                order = seed.byteorder if rng.random() < 0.9 else None
                r = rng.random()
                if r < 0.4:
                    v = rng.choice(INT32)
                elif r < 0.85:  # a small change of the current value
                    v = int.from_bytes(buf[p: p + w], order or seed.byteorder) + rng.randint(-64, 64)
                else:
                    v = rng.getrandbits(8 * w)
                _put(buf, p, v, w, rng, order)
        elif op < 0.58 and (ip := seed.pick("ip", whole, rng)):  # declared vs wire lengths, IP fields
            _mutate_ip(buf, seed, ip, rng)
        elif op < 0.70 and (p := seed.pick("packets", whole, rng)) is not None:  # link/IP/L4 header bytes
            p += rng.randrange(64)
            if p < n:
                r = rng.random()
                if r < 0.4:
                    buf[p] = rng.choice(INT8) if rng.random() < 0.5 else rng.randrange(256)
                elif r < 0.8:
                    _put(buf, p, rng.choice(INT16), 2, rng)
                else:
                    _put(buf, p, rng.choice(INT32), 4, rng)
        elif op < 0.75 and seed.linktype_at:  # another link type
            p, w = rng.choice(seed.linktype_at)
            if p + w <= n:
                _put(buf, p, rng.choice(LINKTYPES), w, rng)
        elif op < 0.82:  # insert random or repeated bytes
            p = rng.randrange(n + 1)
            k = rng.choice((1, 2, 4, 16, 64))
            buf[p:p] = rng.randbytes(k) if rng.random() < 0.5 else bytes([rng.choice(INT8)]) * k
        elif op < 0.88:  # delete a chunk
            p = rng.randrange(n)
            del buf[p: p + rng.choice((1, 2, 4, 16, 64, 256))]
        elif op < 0.92:  # duplicate a chunk
            p = rng.randrange(n)
            chunk = buf[p: p + rng.choice((4, 16, 64, 512))]
            q = rng.randrange(n + 1)
            buf[q:q] = chunk
        elif op < 0.96:  # truncate
            del buf[rng.randrange(n):]
        else:  # splice: this seed's head, another seed's tail
            other = rng.choice(seeds).blob
            buf = buf[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1):]
    return bytes(buf)


def _mutate_ip(buf: bytearray, seed: Seed, ip: tuple[int, int, int], rng: random.Random) -> None:
    data, l3, ver = ip
    if l3 + 40 > len(buf):
        return
    bo = seed.byteorder
    len_at = l3 + (2 if ver == 4 else 4)  # IPv4 total length / IPv6 payload length (big-endian)
    r = rng.random()
    if r < 0.3:
        cur = int.from_bytes(buf[len_at: len_at + 2], "big")
        _put(buf, len_at, rng.choice((0, 0, 0, 1, 19, 20, 39, 40, 0xFFFF, cur + rng.randint(-40, 40))), 2, rng, "big")
    elif r < 0.55:  # the record's wire length (4 bytes before the packet data in pcap and pcapng)
        cap = len(buf) - data
        _put(buf, data - 4, rng.choice(INT32 + (cap, cap + 1, cap - 1, 65535 + 14)), 4, rng, bo)
    elif r < 0.75:  # TSO-style: declared length 0 and a boundary wire length
        _put(buf, len_at, 0, 2, rng, "big")
        _put(buf, data - 4, rng.choice((0x7FFFFFFF, 0x80000000, 0x800000C8, 0xFFFFFFFF, 65536, 70000, 0)), 4, rng, bo)
    elif r < 0.88:  # protocol / next header
        _put(buf, l3 + (9 if ver == 4 else 6), rng.choice((0, 4, 6, 17, 41, 43, 44, 47, 51, 58, 60, 1, 255)), 1, rng)
    else:  # version / IHL, or a hop-by-hop jumbo option
        if ver == 4 or rng.random() < 0.5:
            buf[l3] = rng.choice((0x45, 0x46, 0x4F, 0x44, 0x40, 0x60, 0x00, rng.randrange(256)))
        else:
            buf[l3 + 4: l3 + 7] = b"\x00\x00\x00"  # payload length 0, next header hop-by-hop
            buf[l3 + 40: l3 + 48] = struct.pack(">BBBBI", 17, 0, 0xC2, 4, rng.choice(INT32))


def options(rng: random.Random) -> dict:
    max_packets = rng.choice((1, 2, 8, 32))
    return {"max_packets": max_packets, "keep_zero_payload": rng.random() < 0.3,
            "split_on_fin": rng.random() < 0.3, "strict": rng.random() < 0.1,
            "idle_timeout": rng.choice((0.001, 1.0, 120.0)), "min_packets": rng.choice((0, 1, 1, 1, max_packets))}


# ---------------------------------------------------------------- one input
def _where(exc: BaseException) -> str:
    """The innermost frame inside trafficgen (file:line function), else the innermost frame."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.name != "_on_alarm"]
    ours = [f for f in frames if "trafficgen" in f.filename and "benchmarks" not in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    return f"{Path(f.filename).name}:{f.lineno} {f.name}"


def check_flowset(fs, opts: dict) -> None:
    import numpy as np

    from trafficgen.data.flows.packet_decode import MAX_JUMBO_LENGTH
    from trafficgen.data.flowset import FlowSet

    if not isinstance(fs, FlowSet):
        raise InvariantViolation(f"read_pcap returned {type(fs).__name__}")
    n = len(fs)
    width = opts["max_packets"]
    st = fs.meta["ingest_stats"]
    if fs.lengths.shape != (n, width):
        raise InvariantViolation(f"lengths shape {fs.lengths.shape}, expected ({n}, {width})")
    if st["flows"] != n or not 0 <= st["decoded"] <= st["packets"]:
        raise InvariantViolation(f"inconsistent ingest_stats {st}")
    if n == 0:
        return
    lo = max(opts["min_packets"], 1)
    if fs.n_packets.min() < min(lo, width) or fs.n_packets.max() > width:
        raise InvariantViolation(f"n_packets outside [{min(lo, width)}, {width}]")
    if not (fs.directions[:, 0] == 1).all():
        raise InvariantViolation("a flow does not start with a client->server packet")
    valid = np.arange(width)[None, :] < fs.n_packets[:, None]
    if np.abs(fs.lengths.astype(np.int64))[valid].max() > MAX_JUMBO_LENGTH:
        raise InvariantViolation("a payload length beyond the jumbogram bound")
    if not opts["keep_zero_payload"] and (fs.lengths[valid] == 0).any():
        raise InvariantViolation("a zero-length packet without keep_zero_payload")
    if not np.isfinite(fs.iat).all() or (fs.iat < 0).any():
        raise InvariantViolation("a non-finite or negative inter-arrival time")


def run_one(blob: bytes, opts: dict, timeout: float) -> tuple[str, str | None, BaseException | None]:
    """('ok' | 'pcap_error' | 'crash', detail, exception)."""
    from trafficgen.data.flows.pcap import read_pcap
    from trafficgen.errors import PcapError, TrafficgenError

    stream = io.BytesIO(blob)
    stream.name = "fuzz.pcap"
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fs = read_pcap(stream, **opts)
        signal.setitimer(signal.ITIMER_REAL, 0)
        check_flowset(fs, opts)
        return "ok", None, None
    except PcapError as exc:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if exc.offset is None or exc.path != "fuzz.pcap":
            return "crash", f"PcapError without file/offset @ {_where(exc)}", exc
        msg = str(exc).split(": ", 1)[-1]
        return "pcap_error", re.sub(r"\d+", "N", msg.split(" (")[0])[:70], None
    except Hang as exc:
        return "crash", f"Hang (> {timeout:g} s) @ {_where(exc)}", exc
    except BaseException as exc:  # noqa: BLE001 - a fuzzer records everything
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(exc, KeyboardInterrupt):
            raise
        kind = "typed " if isinstance(exc, TrafficgenError) else ""
        return "crash", f"{kind}{type(exc).__name__} @ {_where(exc)}", exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _on_alarm(signum, frame):
    raise Hang()


def setup_process(memory_gib: float) -> None:
    """Alarm handler, warnings as errors (IngestWarning ignored), address-space limit."""
    from trafficgen.data.flows.pcap import IngestWarning

    signal.signal(signal.SIGALRM, _on_alarm)
    warnings.resetwarnings()
    warnings.simplefilter("error")
    warnings.simplefilter("ignore", IngestWarning)
    with open("/proc/self/statm") as fh:
        vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = vm + int(memory_gib * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


# ---------------------------------------------------------------- minimisation
def _spans(blob: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(header end, [(start, end) of each complete record/block after it]) of a pcap or pcapng."""
    out: list[tuple[int, int]] = []
    if len(blob) >= 24 and blob[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                                        b"\xa1\xb2\x3c\x4d"):
        bo = "<" if blob[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        pos = 24
        while pos + 16 <= len(blob):
            end = pos + 16 + struct.unpack_from(bo + "I", blob, pos + 8)[0]
            if end > len(blob):
                break
            out.append((pos, end))
            pos = end
        return 24, out
    if blob[:4] == b"\x0a\x0d\x0d\x0a" and len(blob) >= 12:
        pos, bo = 0, "<"
        while pos + 12 <= len(blob):
            if blob[pos: pos + 4] == b"\x0a\x0d\x0d\x0a":
                bo = "<" if blob[pos + 8: pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            btype, blen = struct.unpack_from(bo + "II", blob, pos)
            if blen < 12 or pos + blen > len(blob):
                break
            if btype in (2, 3, 6):  # packet blocks may go; section and interface blocks stay
                out.append((pos, pos + blen))
            pos += blen
        return 0, out
    return 0, []


def minimise(blob: bytes, opts: dict, detail: str, timeout: float, budget_s: float = 60.0) -> bytes:
    """Drop whole records/packet blocks, cut pcap records' data short, then drop chunks of bytes
    (halves down to single bytes), while the crash keeps the same signature."""
    t_end = time.monotonic() + budget_s

    def same(b: bytes) -> bool:
        kind, d, _ = run_one(b, opts, timeout)
        return kind == "crash" and d == detail

    # 1. records
    _, spans = _spans(blob)
    chunk = max(len(spans) // 2, 1)
    while spans and chunk >= 1 and time.monotonic() < t_end:
        i, changed = 0, False
        while i < len(spans) and time.monotonic() < t_end:
            drop = spans[i: i + chunk]
            cand = _without(blob, drop)
            if same(cand):
                blob, changed = cand, True
                _, spans = _spans(blob)
            else:
                i += chunk
        if not changed:
            chunk //= 2
    # 2. pcap: cut each record's packet data short (caplen adjusted), smallest that still crashes
    if blob[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        bo = "<" if blob[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        k = 0
        while time.monotonic() < t_end:
            _, spans = _spans(blob)
            if k >= len(spans):
                break
            a, b = spans[k]
            lo, hi = 0, b - a - 16  # the crash holds at hi bytes; find the fewest
            while lo < hi and time.monotonic() < t_end:
                mid = (lo + hi) // 2
                cand = blob[:a + 8] + struct.pack(bo + "I", mid) + blob[a + 12: a + 16 + mid] + blob[b:]
                if same(cand):
                    hi = mid
                else:
                    lo = mid + 1
            blob = blob[:a + 8] + struct.pack(bo + "I", hi) + blob[a + 12: a + 16 + hi] + blob[b:]
            k += 1
    # 3. bytes
    chunk = max(len(blob) // 2, 1)
    while chunk >= 1 and time.monotonic() < t_end:
        i, changed = 0, False
        while i < len(blob) and time.monotonic() < t_end:
            cand = blob[:i] + blob[i + chunk:]
            if same(cand):
                blob, changed = cand, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return blob


def _without(blob: bytes, spans: list[tuple[int, int]]) -> bytes:
    out, pos = [], 0
    for a, b in spans:
        out.append(blob[pos:a])
        pos = b
    out.append(blob[pos:])
    return b"".join(out)


# ---------------------------------------------------------------- workers
_SEEDS: list[Seed] = []  # set before forking: workers inherit it instead of unpickling it
_COUNTER = None


def worker(job: int, n_inputs: int, args, progress=None, every: int = 500) -> dict:
    """Fuzz ``n_inputs`` inputs with the job's own random stream (reproducible from --seed)."""
    seeds = _SEEDS
    rng = random.Random(args.seed * 1_000_003 + job)
    res = {"outcomes": Counter(), "errors": Counter(), "crashes": {}}
    for i in range(n_inputs):
        seed = seeds[rng.randrange(len(seeds))]
        blob = mutate(seed, seeds, rng)
        opts = options(rng)
        kind, detail, exc = run_one(blob, opts, args.timeout)
        res["outcomes"][kind] += 1
        if kind == "pcap_error":
            res["errors"][detail] += 1
        elif kind == "crash":
            c = res["crashes"].setdefault(detail, {"count": 0, "blob": blob, "opts": opts, "seed": seed.name,
                                                   "message": f"{type(exc).__name__}: {exc}"[:300]})
            c["count"] += 1
        if progress is not None and (i + 1) % every == 0:
            progress(every)
    if progress is not None:
        progress(n_inputs % every)
    return res


def _pool_init(counter, memory_gib):
    global _COUNTER
    _COUNTER = counter
    setup_process(memory_gib)


def _pool_job(payload):
    job, n, args = payload

    def bump(k):
        with _COUNTER.get_lock():
            _COUNTER.value += k

    return worker(job, n, args, bump)


def main(argv=None) -> int:
    global _SEEDS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (each with its own alarm and limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=5.0, help="per-input alarm, seconds")
    ap.add_argument("--memory-gib", type=float, default=2.0, help="address space allowed above start-up size")
    ap.add_argument("--seed-bytes", type=int, default=8192, help="cut seeds at a record boundary after this")
    ap.add_argument("--corpus", type=Path, nargs="*", default=None, help="seed folders (default: shipped + shared)")
    ap.add_argument("--out", type=Path, default=None, help="write minimal reproducers here")
    args = ap.parse_args(argv)

    import trafficgen.data.flows.pcap  # noqa: F401  (import before the limit and the fork)

    dirs = args.corpus or [REPO / "trafficgen" / "datasets" / "ndpi" / "pcap", SHARED / "ndpi" / "pcap",
                           SHARED / "bad"]
    _SEEDS = load_seeds(dirs, args.seed_bytes)
    if not _SEEDS:
        print("no seed captures found", file=sys.stderr)
        return 2
    per_dir = Counter(str(Path(s.name).parent) for s in _SEEDS)
    print(f"{len(_SEEDS)} seeds ({', '.join(f'{k}: {v}' for k, v in per_dir.items())}), "
          f"{sum(len(s.blob) for s in _SEEDS) / 1e6:.1f} MB cut at {args.seed_bytes} bytes; "
          f"{args.inputs:,} inputs, {args.jobs} job(s), seed {args.seed}, alarm {args.timeout:g} s, "
          f"address space +{args.memory_gib:g} GiB", flush=True)

    jobs = max(1, args.jobs)
    shares = [args.inputs // jobs + (1 if j < args.inputs % jobs else 0) for j in range(jobs)]
    t0 = time.perf_counter()
    if jobs == 1:
        setup_process(args.memory_gib)
        state = {"done": 0, "last": t0}

        def progress(k):
            state["done"] += k
            if time.perf_counter() - state["last"] > 30:
                _progress(state["done"], args.inputs, t0)
                state["last"] = time.perf_counter()

        results = [worker(0, shares[0], args, progress)]
    else:
        ctx = mp.get_context("fork")
        counter = ctx.Value("q", 0)
        with ctx.Pool(jobs, initializer=_pool_init, initargs=(counter, args.memory_gib)) as pool:
            pending = pool.map_async(_pool_job, [(j, shares[j], args) for j in range(jobs)])
            while not pending.ready():
                pending.wait(30)
                _progress(counter.value, args.inputs, t0)
            results = pending.get()
        setup_process(args.memory_gib)  # for the minimisation below
    elapsed = time.perf_counter() - t0
    return report(results, args, elapsed)


def _merge(total, r):
    total["outcomes"].update(r["outcomes"])
    total["errors"].update(r["errors"])
    for k, c in r["crashes"].items():
        if k in total["crashes"]:
            total["crashes"][k]["count"] += c["count"]
        else:
            total["crashes"][k] = c


def _progress(done, n, t0):
    dt = time.perf_counter() - t0
    print(f"  {done:>10,} / {n:,} inputs  {dt:7.0f} s  {done / max(dt, 1e-9):7.0f} inputs/s", flush=True)


def report(results, args, elapsed) -> int:
    total = {"outcomes": Counter(), "errors": Counter(), "crashes": {}}
    for r in results:
        _merge(total, r)
    n = sum(total["outcomes"].values())
    o = total["outcomes"]
    print(f"\n{n:,} inputs in {elapsed:.0f} s = {n / elapsed:,.0f} inputs/s ({args.jobs} job(s))")
    print(f"  FlowSet: {o['ok']:,}   PcapError: {o['pcap_error']:,}   crashes: {o['crash']:,}")
    print("  PcapError kinds (top 12):")
    for msg, c in total["errors"].most_common(12):
        print(f"    {c:>9,}  {msg}")
    crashes = total["crashes"]
    untyped = sum(c["count"] for k, c in crashes.items() if not k.startswith(("typed ", "Hang", "PcapError",
                                                                               "InvariantViolation")))
    hangs = sum(c["count"] for k, c in crashes.items() if k.startswith("Hang"))
    print(f"  untyped exceptions: {untyped:,}   hangs: {hangs:,}   distinct crashes: {len(crashes)}")
    if crashes and args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for k, (detail, c) in enumerate(sorted(crashes.items(), key=lambda kv: -kv[1]["count"])):
        small = minimise(c["blob"], c["opts"], detail, args.timeout)
        print(f"\n  crash {k + 1}: {detail}  x{c['count']:,}  (seed {c['seed']}, options {c['opts']})")
        print(f"    {c['message']}")
        print(f"    minimal reproducer ({len(small)} bytes): {small.hex() if len(small) <= 512 else '(see --out)'}")
        if args.out:
            (args.out / f"crash_{k + 1}.pcap").write_bytes(small)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
