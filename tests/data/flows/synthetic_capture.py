"""Large synthetic Ethernet/IPv4 pcap captures, written fast (tests and ``benchmarks/ingest.py``).

dpkt builds one TCP and one UDP frame once; numpy stamps copies of those templates with each
packet's addresses, ports and lengths and lays the records out in one buffer per batch (a few
seconds for millions of packets, where building every packet with dpkt takes minutes). Flows of
2..40 packets overlap in time (their packets interleave in the file), the first packet of a flow
is client -> server, checksums are left 0 (the reader does not check them).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_ETH_IP = 14  # IP header offset in the frame
_TEMPLATES: dict[int, np.ndarray] = {}


def _template(proto: int) -> np.ndarray:
    if proto not in _TEMPLATES:
        import dpkt

        l4 = dpkt.tcp.TCP(sport=1, dport=2, flags=dpkt.tcp.TH_ACK) if proto == 6 else dpkt.udp.UDP(sport=1, dport=2)
        ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=proto, data=l4)
        frame = dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x01" * 6, data=ip)
        _TEMPLATES[proto] = np.frombuffer(bytes(frame), dtype=np.uint8)
    return _TEMPLATES[proto]


def _put_be(rows: np.ndarray, col: int, values: np.ndarray, width: int) -> None:
    for k in range(width):
        rows[:, col + k] = (values >> (8 * (width - 1 - k))) & 0xFF


def write_synthetic_capture(path, n_packets: int, *, seed: int = 0, payload: tuple[int, int] = (1, 1400),
                            flows_per_batch: int = 2000) -> Path:
    """Write ``n_packets`` packets of TCP (2/3) and UDP (1/3) biflows to ``path``; returns it."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    written, t0 = 0, 1.7e9
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while written < n_packets:
            b = flows_per_batch
            sizes = rng.integers(2, 41, b)
            flow = np.repeat(np.arange(b), sizes)  # (p,) flow of each packet
            first = np.r_[0, np.cumsum(sizes)[:-1]]  # (b,) index of each flow's first packet
            start = t0 + rng.random(b) * 20.0
            cs = np.cumsum(rng.exponential(0.05, flow.size))
            ts = start[flow] + (cs - cs[first][flow])  # a flow's packets from its start time on
            order = np.argsort(ts, kind="stable")  # flows interleave
            flow, ts = flow[order], ts[order]
            is_first = np.zeros(flow.size, dtype=bool)
            is_first[np.argsort(order)[first]] = True
            keep = min(flow.size, n_packets - written)
            flow, ts, is_first = flow[:keep], ts[:keep], is_first[:keep]
            proto = np.where(np.arange(b) % 3 == 0, 17, 6)[flow]
            cli = (10 << 24) | rng.integers(0, 1 << 24, b)
            srv = (192 << 24) | (168 << 16) | rng.integers(0, 1 << 16, b)
            cport = rng.integers(1024, 65535, b)
            sport = np.where(np.arange(b) % 3 == 0, 53, 443)
            to_server = is_first | (rng.random(keep) < 0.5)
            src = np.where(to_server, cli[flow], srv[flow])
            dst = np.where(to_server, srv[flow], cli[flow])
            sp = np.where(to_server, cport[flow], sport[flow])
            dp = np.where(to_server, sport[flow], cport[flow])
            pay = rng.integers(payload[0], payload[1] + 1, keep)
            fh.write(_records(ts, proto, src, dst, sp, dp, pay))
            written += keep
            t0 = float(ts.max()) + 1.0
    return path


def _records(ts, proto, src, dst, sp, dp, pay) -> bytes:
    """The pcap records of one batch, laid out with numpy."""
    hlen = np.where(proto == 6, 54, 42)
    rec_len = 16 + hlen + pay
    off = np.r_[0, np.cumsum(rec_len)[:-1]]
    buf = np.zeros(int(rec_len.sum()), dtype=np.uint8)
    sec = ts.astype(np.int64)
    usec = np.minimum(np.rint((ts - sec) * 1e6).astype(np.int64), 999_999)
    for p, width in ((6, 54), (17, 42)):
        sel = np.flatnonzero(proto == p)
        if not sel.size:
            continue
        rows = np.zeros((sel.size, 16 + width), dtype=np.uint8)
        caplen = width + pay[sel]
        for col, values in ((0, sec[sel]), (4, usec[sel]), (8, caplen), (12, caplen)):  # little-endian header
            for k in range(4):
                rows[:, col + k] = (values >> (8 * k)) & 0xFF
        rows[:, 16:] = _template(p)
        h = 16 + _ETH_IP
        _put_be(rows, h + 2, width - _ETH_IP + pay[sel], 2)  # IP total length
        _put_be(rows, h + 12, src[sel], 4)
        _put_be(rows, h + 16, dst[sel], 4)
        _put_be(rows, h + 20, sp[sel], 2)
        _put_be(rows, h + 22, dp[sel], 2)
        if p == 17:
            _put_be(rows, h + 24, 8 + pay[sel], 2)  # UDP length
        buf[(off[sel, None] + np.arange(16 + width)[None, :]).reshape(-1)] = rows.reshape(-1)
    return buf.tobytes()
