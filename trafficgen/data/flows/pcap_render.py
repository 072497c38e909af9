"""Packet table -> pcap bytes: headers laid out and checksummed with numpy, a chunk at a time.

Records are grouped by layout (address family, TCP / TCP with SYN options / UDP); each group's
headers are one (k, H) uint8 matrix filled column by column and scattered into the chunk buffer,
whose payload bytes are zeros or random. Checksums are RFC 1071 ones' complement sums: the IPv4
header's over its matrix columns, TCP's and UDP's over the pseudo-header, the L4 header and the
payload, whose 16-bit word sums come from two ``np.add.reduceat`` passes over the buffer's even
and odd bytes (a payload starting at an odd offset swaps their roles).

Ethernet frames go between the client host (``02:00:00:00:00:01``) and its router
(``02:00:00:00:00:02``), both locally administered addresses. IPv4: DF set, TTL 64; IPv6: hop
limit 64, flow label 0.
"""
from __future__ import annotations

import struct
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from trafficgen._progress import progress as progress_reporter
from trafficgen.data.flows.pcap_conversation import Packets

#: Link types by name -> DLT number.
LINKTYPES = {"ethernet": 1, "raw": 101}
#: Timestamp resolutions by name -> ticks per second.
TIME_RESOLUTIONS = {"us": 1_000_000, "ns": 1_000_000_000}
_MAGIC = {"us": 0xA1B2C3D4, "ns": 0xA1B23C4D}
#: The capture's snapshot length (every packet is written whole).
SNAPLEN = 262_144
CLIENT_MAC = bytes.fromhex("020000000001")
ROUTER_MAC = bytes.fromhex("020000000002")
_CHUNK_BYTES = 32 << 20


def max_payload(family: int, proto: int) -> int:
    """Largest payload of one IP packet without options (IPv4 total / IPv6 payload length 65535)."""
    l4 = 20 if proto == 6 else 8
    return 65535 - l4 - (20 if family == 4 else 0)


def _be16(M, col, v):
    v = np.asarray(v, dtype=np.int64)
    M[:, col] = (v >> 8) & 0xFF
    M[:, col + 1] = v & 0xFF


def _be32(M, col, v):
    v = np.asarray(v, dtype=np.int64)
    for k in range(4):
        M[:, col + k] = (v >> (24 - 8 * k)) & 0xFF


def _le32(M, col, v):
    v = np.asarray(v, dtype=np.int64)
    for k in range(4):
        M[:, col + k] = (v >> (8 * k)) & 0xFF


def _word_sum(M, a: int, b: int) -> np.ndarray:
    """(k,) uint64 sum of the big-endian 16-bit words of columns [a, b) (b - a even)."""
    hi = M[:, a:b:2].astype(np.uint64)
    lo = M[:, a + 1:b:2].astype(np.uint64)
    return (hi << np.uint64(8)).sum(axis=1) + lo.sum(axis=1)


def _fold(s: np.ndarray) -> np.ndarray:
    s = s.astype(np.uint64)
    for _ in range(4):
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return s


def _segment_sums(a: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """sum(a[s_k:e_k]) per k (segments sorted and disjoint, a has an element past every e)."""
    if s.size == 0:
        return np.zeros(0, dtype=np.uint64)
    idx = np.empty(2 * s.size, dtype=np.int64)
    idx[0::2], idx[1::2] = s, e
    r = np.add.reduceat(a, idx, dtype=np.uint64)[0::2]
    return np.where(e > s, r, np.uint64(0))


def payload_word_sums(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Sums (folded or not: equal modulo 0xFFFF) of the big-endian 16-bit words of
    ``buf[start:start+length]`` (an odd last byte padded with 0), per row, in one pass over ``buf``.
    ``buf`` must have two bytes past the last payload; segments are sorted and disjoint.

    A payload's big-endian sum weighs the bytes at offsets of its start's parity by 256, the others
    by 1. The native (little-endian) 16-bit words of ``buf`` inside the payload weigh the odd
    offsets by 256: right as they are for an odd start, byte-swapped after folding for an even one
    (RFC 1071, 2.B). A byte whose word partner lies outside the payload is added on its own."""
    s = start.astype(np.int64)
    e = s + length
    words = buf[:buf.shape[0] // 2 * 2].view(np.uint16)  # native order
    lo, hi = (s + 1) // 2, e // 2
    part = np.zeros(s.shape[0], dtype=np.uint64)
    whole = np.flatnonzero(hi > lo)  # payloads holding a whole word of buf
    part[whole] = _segment_sums(words, lo[whole], hi[whole])
    weighs_even = (s % 2 == 0) if sys.byteorder == "little" else (s % 2 == 1)
    f = _fold(part[weighs_even])
    part[weighs_even] = ((f & np.uint64(0xFF)) << np.uint64(8)) | (f >> np.uint64(8))
    has = length > 0
    first = np.flatnonzero(has & (s % 2 == 1))  # a first byte at an odd offset: the high half
    part[first] += buf[s[first]].astype(np.uint64) << np.uint64(8)
    last = np.flatnonzero(has & (e % 2 == 1))  # a last byte at an even offset: high for an even start
    byte = buf[e[last] - 1].astype(np.uint64)
    part[last] += np.where(s[last] % 2 == 0, byte << np.uint64(8), byte)
    return part


def file_header(linktype: str, time_resolution: str) -> bytes:
    return struct.pack("<IHHiIII", _MAGIC[time_resolution], 2, 4, 0, 0, SNAPLEN, LINKTYPES[linktype])


def _templates(family, proto, client_addr, server_addr, client_port, server_port, link: int):
    """Per flow and side (0 client, 1 server): the bytes every packet of that side shares (link
    header, IP header but lengths / id / checksum, the two ports) as (n, 2, P) uint8, and the
    unfolded sums of their 16-bit words that enter the IPv4 header checksum and the TCP/UDP
    pseudo-header checksum (addresses, protocol, ports), each (n, 2)."""
    n = family.shape[0]
    P = link + 40 + 4
    T = np.zeros((n, 2, P), dtype=np.uint8)
    v4 = family == 4
    for side in (0, 1):
        M = T[:, side]  # (n, P) view
        client = side == 0
        src, dst = (client_addr, server_addr) if client else (server_addr, client_addr)
        sport, dport = (client_port, server_port) if client else (server_port, client_port)
        if link:
            M[:, 0:12] = np.frombuffer((ROUTER_MAC + CLIENT_MAC) if client else (CLIENT_MAC + ROUTER_MAC), np.uint8)
            _be16(M, 12, np.where(v4, 0x0800, 0x86DD))
        ip = link
        M[v4, ip] = 0x45
        M[v4, ip + 6] = 0x40  # DF
        M[v4, ip + 8] = 64
        M[v4, ip + 9] = proto[v4]
        M[v4, ip + 12:ip + 16] = src[v4, :4]
        M[v4, ip + 16:ip + 20] = dst[v4, :4]
        v6 = ~v4
        M[v6, ip] = 0x60
        M[v6, ip + 6] = proto[v6]
        M[v6, ip + 7] = 64
        M[v6, ip + 8:ip + 24] = src[v6]
        M[v6, ip + 24:ip + 40] = dst[v6]
        ports4 = np.zeros((n, 4), dtype=np.uint8)
        _be16(ports4, 0, sport)
        _be16(ports4, 2, dport)
        M[v4, ip + 20:ip + 24] = ports4[v4]
        M[v6, ip + 40:ip + 44] = ports4[v6]
    ip_sum = np.where(v4[:, None], _word_sum(T.reshape(2 * n, P), link, link + 20).reshape(n, 2), 0)
    addr4 = _word_sum(T.reshape(2 * n, P), link + 12, link + 20).reshape(n, 2)
    addr6 = _word_sum(T.reshape(2 * n, P), link + 8, link + 40).reshape(n, 2)
    port_sum = np.zeros((n, 2), dtype=np.uint64)
    for side in (0, 1):
        sp, dp = (client_port, server_port) if side == 0 else (server_port, client_port)
        port_sum[:, side] = sp.astype(np.uint64) + dp.astype(np.uint64)
    pseudo = np.where(v4[:, None], addr4, addr6) + proto[:, None].astype(np.uint64) + port_sum
    return T, ip_sum.astype(np.uint64), pseudo


def write_capture(path, pk: Packets, *, family, proto, client_addr, server_addr, client_port, server_port,
                  linktype: str, time_resolution: str, payload: str, rng, progress: bool = False,
                  n_jobs: int = 1, chunk_bytes: int = _CHUNK_BYTES) -> dict:
    """Write the capture of packet table ``pk`` (per-flow ``family``/``proto``/addresses (n, 16)
    /ports) to ``path``, rendering ``n_jobs`` chunks at a time in threads (numpy releases the GIL
    in the heavy steps). Returns ``{"n_packets", "n_bytes", "packets_per_direction"}``."""
    res = TIME_RESOLUTIONS[time_resolution]
    link = 14 if linktype == "ethernet" else 0
    fl = pk.flow
    fam, pr = family[fl], proto[fl]
    l4 = np.where(pr == 6, np.where(pk.syn, 32, 20), 8)
    hdr = 16 + link + np.where(fam == 4, 20, 40) + l4
    rec = hdr + pk.length
    ends = np.cumsum(rec)
    m = len(pk)
    head = file_header(linktype, time_resolution)
    tpl, ip_sum, pseudo = _templates(family, proto, client_addr, server_addr, client_port, server_port, link)
    ctx = dict(pk=pk, fam=fam, pr=pr, hdr=hdr, rec=rec, link=link, res=res, payload=payload, tpl=tpl,
               ip_sum=ip_sum, pseudo=pseudo)
    bounds = [0]
    while bounds[-1] < m:  # chunks of about chunk_bytes (at least one packet)
        i = bounds[-1]
        before = int(ends[i - 1]) if i else 0
        bounds.append(max(int(np.searchsorted(ends, before + chunk_bytes, side="right")), i + 1))
    chunks = list(zip(bounds[:-1], bounds[1:], strict=True))
    # one generator per chunk, drawn up front: the bytes do not depend on n_jobs or scheduling
    seeds = rng.integers(0, 2**63, size=len(chunks)) if payload == "random" else [None] * len(chunks)
    n_jobs = max(1, min(int(n_jobs), len(chunks)))
    with open(path, "wb") as fh, progress_reporter(m, "export", unit="packets", enabled=progress) as bar, \
            ThreadPoolExecutor(max_workers=n_jobs) as pool:
        fh.write(head)
        pending: deque = deque()
        for (i, j), seed in zip(chunks, seeds, strict=True):
            pending.append((j - i, pool.submit(_render_chunk, i, j, seed=seed, **ctx)))
            while len(pending) > n_jobs or (pending and (i, j) == chunks[-1]):
                done, future = pending.popleft()
                fh.write(future.result().data)
                bar.update(done)
    return {"n_packets": m, "n_bytes": len(head) + (int(ends[-1]) if m else 0),
            "packets_per_direction": pk.per_direction}


def _bytes_of(values, dtype: str, k: int, width: int) -> np.ndarray:
    """(k, width) uint8 view of ``values`` written as ``dtype`` (e.g. ">u4")."""
    return np.ascontiguousarray(np.asarray(values).astype(dtype)).view(np.uint8).reshape(k, width)


def _render_chunk(i, j, *, seed, pk, fam, pr, hdr, rec, link, res, payload, tpl, ip_sum, pseudo) -> np.ndarray:
    off = np.cumsum(rec[i:j]) - rec[i:j]  # (k,) record offsets in the chunk
    total = int(off[-1] + rec[j - 1])
    if payload == "random":
        raw = np.random.default_rng(seed).bit_generator.random_raw((total + 9) // 8)  # fastest uniform bits
        buf = raw.view(np.uint8)[:total + 2]
        buf[total:] = 0
        psum = payload_word_sums(buf, off + hdr[i:j], pk.length[i:j])
    else:
        buf = np.zeros(total + 2, dtype=np.uint8)
        psum = np.zeros(j - i, dtype=np.uint64)
    layout = fam[i:j] * 4 + np.where(pr[i:j] == 6, np.where(pk.syn[i:j], 2, 1), 0)
    mask16 = np.uint64(0xFFFF)
    for key in np.unique(layout).tolist():
        g = np.flatnonzero(layout == key)
        rows = g + i
        k = g.size
        v, kind = divmod(key, 4)
        ip_len = 20 if v == 4 else 40
        l4_len = {0: 8, 1: 20, 2: 32}[kind]
        H = 16 + link + ip_len + l4_len
        M = np.empty((k, H), dtype=np.uint8)
        length = pk.length[rows]
        f = pk.flow[rows]
        side = (pk.sender[rows] < 0).astype(np.int64)
        tick = pk.tick[rows]
        wire = H - 16 + length
        M[:, 0:16] = _bytes_of(np.stack([tick // res, tick % res, wire, wire], axis=1), "<u4", k, 16)
        t = 16 + link + ip_len  # L4 header
        M[:, 16:t + 4] = tpl[f, side, :t + 4 - 16]  # link, IP, ports
        l4_total = (l4_len + length).astype(np.uint64)
        ip = 16 + link
        if v == 4:
            ident = pk.ip_id[rows].astype(np.uint64)
            M[:, ip + 2:ip + 4] = _bytes_of(20 + l4_total, ">u2", k, 2)
            M[:, ip + 4:ip + 6] = _bytes_of(ident, ">u2", k, 2)
            ip_ck = ~_fold(ip_sum[f, side] + 20 + l4_total + ident) & mask16
            M[:, ip + 10:ip + 12] = _bytes_of(ip_ck, ">u2", k, 2)
        else:
            M[:, ip + 4:ip + 6] = _bytes_of(l4_total, ">u2", k, 2)
        total_sum = pseudo[f, side] + l4_total + psum[g]
        if kind:  # TCP
            seq, ack = pk.seq[rows], pk.ack[rows]
            M[:, t + 4:t + 12] = _bytes_of(np.stack([seq, ack], axis=1), ">u4", k, 8)
            off_flags = (np.uint64(l4_len // 4) << np.uint64(12)) | pk.flags[rows].astype(np.uint64)
            win = np.uint64(64240 if kind == 2 else 65535)  # a SYN's window is never scaled
            M[:, t + 12:t + 14] = _bytes_of(off_flags, ">u2", k, 2)
            M[:, t + 14] = int(win) >> 8
            M[:, t + 15] = int(win) & 0xFF
            M[:, t + 18:t + 20] = 0
            total_sum = total_sum + (seq >> np.uint64(16)) + (seq & mask16) + (ack >> np.uint64(16)) + (ack & mask16) \
                + off_flags + win
            if kind == 2:
                mss = pk.mss[f, side].astype(np.uint64)
                opts = np.array([2, 4, 0, 0, 1, 3, 3, 7, 4, 2, 1, 1], dtype=np.uint8)
                M[:, t + 20:t + 32] = opts
                M[:, t + 22:t + 24] = _bytes_of(mss, ">u2", k, 2)
                total_sum = total_sum + np.uint64(0x0204 + 0x0103 + 0x0307 + 0x0402 + 0x0101) + mss
            ck = ~_fold(total_sum) & mask16
            M[:, t + 16:t + 18] = _bytes_of(ck, ">u2", k, 2)
        else:  # UDP: its length is in the pseudo-header and in the header
            M[:, t + 4:t + 6] = _bytes_of(l4_total, ">u2", k, 2)
            ck = ~_fold(total_sum + l4_total) & mask16
            ck = np.where(ck == 0, mask16, ck)  # 0 means "no checksum"
            M[:, t + 6:t + 8] = _bytes_of(ck, ">u2", k, 2)
        buf[(off[g][:, None] + np.arange(H)).ravel()] = M.ravel()
    return buf[:total]
