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
    """Unfolded sums of the big-endian 16-bit words of ``buf[start:start+length]`` (an odd last
    byte padded with 0), per row. ``buf`` must have two bytes past the last payload."""
    out = np.zeros(start.shape[0], dtype=np.uint64)
    nz = np.flatnonzero(length > 0)
    if nz.size == 0:
        return out
    s, e = start[nz], start[nz] + length[nz]
    even, odd = buf[0::2], buf[1::2]
    sum_even = _segment_sums(even, (s + 1) // 2, (e + 1) // 2)  # bytes at even offsets in [s, e)
    sum_odd = _segment_sums(odd, s // 2, e // 2)  # bytes at odd offsets in [s, e)
    first_even = (s % 2) == 0
    high = np.where(first_even, sum_even, sum_odd)
    low = np.where(first_even, sum_odd, sum_even)
    out[nz] = (high << np.uint64(8)) + low
    return out


def file_header(linktype: str, time_resolution: str) -> bytes:
    return struct.pack("<IHHiIII", _MAGIC[time_resolution], 2, 4, 0, 0, SNAPLEN, LINKTYPES[linktype])


def write_capture(path, pk: Packets, *, family, proto, client_addr, server_addr, client_port, server_port,
                  linktype: str, time_resolution: str, payload: str, rng, progress: bool = False,
                  chunk_bytes: int = _CHUNK_BYTES) -> dict:
    """Write the capture of packet table ``pk`` (per-flow ``family``/``proto``/addresses (n, 16)
    /ports) to ``path``. Returns ``{"n_packets", "n_bytes", "packets_per_direction"}``."""
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
    ctx = dict(pk=pk, fam=fam, pr=pr, l4=l4, hdr=hdr, rec=rec, link=link, res=res, payload=payload, rng=rng,
               client_addr=client_addr, server_addr=server_addr, client_port=client_port, server_port=server_port)
    with open(path, "wb") as fh, progress_reporter(m, "export", unit="packets", enabled=progress) as bar:
        fh.write(head)
        i = 0
        while i < m:
            before = int(ends[i - 1]) if i else 0
            j = max(int(np.searchsorted(ends, before + chunk_bytes, side="right")), i + 1)
            fh.write(_render_chunk(i, j, before, **ctx).data)
            bar.update(j - i)
            i = j
    return {"n_packets": m, "n_bytes": len(head) + (int(ends[-1]) if m else 0),
            "packets_per_direction": pk.per_direction}


def _render_chunk(i, j, before, *, pk, fam, pr, l4, hdr, rec, link, res, payload, rng, client_addr, server_addr,
                  client_port, server_port) -> np.ndarray:
    off = np.cumsum(rec[i:j]) - rec[i:j]  # (k,) record offsets in the chunk
    total = int(off[-1] + rec[j - 1])
    if payload == "random":
        buf = rng.integers(0, 256, size=total + 2, dtype=np.uint8)
        buf[total:] = 0
        psum = payload_word_sums(buf, off + hdr[i:j], pk.length[i:j])
    else:
        buf = np.zeros(total + 2, dtype=np.uint8)
        psum = np.zeros(j - i, dtype=np.uint64)
    layout = fam[i:j] * 4 + np.where(pr[i:j] == 6, np.where(pk.syn[i:j], 2, 1), 0)
    for key in np.unique(layout).tolist():
        g = np.flatnonzero(layout == key)
        rows = g + i
        v, kind = divmod(key, 4)
        ip_len = 20 if v == 4 else 40
        l4_len = {0: 8, 1: 20, 2: 32}[kind]
        H = 16 + link + ip_len + l4_len
        M = np.zeros((g.size, H), dtype=np.uint8)
        length = pk.length[rows]
        client = pk.sender[rows] > 0
        f = pk.flow[rows]
        # record header (little-endian)
        tick = pk.tick[rows]
        _le32(M, 0, tick // res)
        _le32(M, 4, tick % res)
        wire = H - 16 + length
        _le32(M, 8, wire)
        _le32(M, 12, wire)
        c = 16
        if link:
            macs = np.frombuffer(ROUTER_MAC + CLIENT_MAC + CLIENT_MAC + ROUTER_MAC, np.uint8).reshape(2, 12)
            M[:, c:c + 12] = macs[(~client).astype(np.int64)]  # c2s: dst router, src client
            _be16(M, c + 12, 0x0800 if v == 4 else 0x86DD)
            c += 14
        ip = c
        src = np.where(client[:, None], client_addr[f], server_addr[f])
        dst = np.where(client[:, None], server_addr[f], client_addr[f])
        l4_total = l4_len + length
        proto_num = 6 if kind else 17
        if v == 4:
            M[:, ip] = 0x45
            _be16(M, ip + 2, 20 + l4_total)
            _be16(M, ip + 4, pk.ip_id[rows])
            M[:, ip + 6] = 0x40  # DF
            M[:, ip + 8] = 64
            M[:, ip + 9] = proto_num
            M[:, ip + 12:ip + 16] = src[:, :4]
            M[:, ip + 16:ip + 20] = dst[:, :4]
            _be16(M, ip + 10, ~_fold(_word_sum(M, ip, ip + 20)) & np.uint64(0xFFFF))
            pseudo = _word_sum(M, ip + 12, ip + 20)
        else:
            M[:, ip] = 0x60
            _be16(M, ip + 4, l4_total)
            M[:, ip + 6] = proto_num
            M[:, ip + 7] = 64
            M[:, ip + 8:ip + 24] = src
            M[:, ip + 24:ip + 40] = dst
            pseudo = _word_sum(M, ip + 8, ip + 40)
        pseudo = pseudo + np.uint64(proto_num) + l4_total.astype(np.uint64)
        t = ip + ip_len
        sport = np.where(client, client_port[f], server_port[f])
        dport = np.where(client, server_port[f], client_port[f])
        _be16(M, t, sport)
        _be16(M, t + 2, dport)
        if kind:  # TCP
            _be32(M, t + 4, pk.seq[rows].astype(np.int64))
            _be32(M, t + 8, pk.ack[rows].astype(np.int64))
            M[:, t + 12] = (l4_len // 4) << 4
            M[:, t + 13] = pk.flags[rows]
            if kind == 2:
                _be16(M, t + 14, 64240)  # a SYN's window is never scaled
                M[:, t + 20:t + 32] = np.array([2, 4, 0, 0, 1, 3, 3, 7, 4, 2, 1, 1], dtype=np.uint8)
                _be16(M, t + 22, pk.mss[f, np.where(client, 0, 1)])
            else:
                _be16(M, t + 14, 65535)
            ck_col = t + 16
        else:  # UDP
            _be16(M, t + 4, l4_total)
            ck_col = t + 6
        ck = ~_fold(pseudo + _word_sum(M, t, t + l4_len) + psum[g]) & np.uint64(0xFFFF)
        if not kind:
            ck = np.where(ck == 0, np.uint64(0xFFFF), ck)  # UDP: 0 means "no checksum"
        _be16(M, ck_col, ck.astype(np.int64))
        buf[(off[g][:, None] + np.arange(H)).ravel()] = M.ravel()
    return buf[:total]
