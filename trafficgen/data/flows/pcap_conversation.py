"""Flows -> the packets of protocol-valid TCP / UDP conversations (one table, file order).

Vectorised over all packets of all flows (no Python loop per packet). The rules, for a flow of
data packets ``j = 0 .. n-1`` at ticks ``t_j`` (the writer's time unit) and a half round trip
``h = rtt // 2``:

* TCP: SYN (client) at ``s``, SYN/ACK at ``s + h``, ACK at ``s + rtt`` (= ``t_0``, the first
  segment follows it at once); SYN and SYN/ACK carry options (MSS = the largest segment the other
  side sends, at least 1460 / 1440 on IPv6; window scale 7; SACK permitted). Data segments are
  PSH/ACK (a zero-length FlowSet packet is a pure ACK from its side).
* Delayed ACKs (RFC 1122 / 5681): a *burst* is a run of segments of one side with no gap over
  ``delayed_ack`` ticks inside. The receiver ACKs every second segment of a burst at once, unless
  that segment ends the side's run and the receiver's own next packet follows within
  ``delayed_ack`` (it carries the ACK); an odd last segment of a burst is ACKed ``delayed_ack``
  after it when the next packet of the flow comes later than that.
* Keep-alive: in a gap over ``keepalive`` ticks between two segments, the client sends a probe
  (sequence number one below the next, no data) every ``keepalive`` ticks, each ACKed by the
  server half a round trip later.
* Close: client FIN/ACK ``h`` after the last segment, server FIN/ACK ``h`` later, client ACK.
* Sequence numbers start at a random ISN per side and advance by payload (+1 for SYN and FIN);
  every packet after the SYN acknowledges all the other side has sent before it in the file.
  IP identification counts up per side from a random start.
* UDP: one datagram per packet at its tick.

Within a flow packets are ordered by a rank that follows the list above (ticks never decrease
along it), so a control packet that shares a tick with a segment is placed where the stack would
send it; the file is ordered by (tick, flow, rank).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
#: Window scale shift in the SYN options; every later packet advertises 65535 << 7 bytes.
WINDOW_SCALE = 7


@dataclass
class Packets:
    """One row per packet, in file order."""

    flow: np.ndarray  # (m,) int64 index of the flow
    tick: np.ndarray  # (m,) int64 capture time in ticks
    sender: np.ndarray  # (m,) int8 +1 client, -1 server
    flags: np.ndarray  # (m,) uint8 TCP flags (0 for UDP)
    seq: np.ndarray  # (m,) uint64
    ack: np.ndarray  # (m,) uint64
    length: np.ndarray  # (m,) int64 payload bytes
    syn: np.ndarray  # (m,) bool: a SYN or SYN/ACK (header with options)
    ip_id: np.ndarray  # (m,) int64
    mss: np.ndarray  # (n_flows, 2) int64 MSS option of the client's SYN and of the server's SYN/ACK
    per_direction: np.ndarray  # (n_flows, 2) int64 packets client->server, server->client

    def __len__(self) -> int:
        return int(self.flow.shape[0])


def _excl_cumsum_per_flow(values: np.ndarray, flow_start: np.ndarray, flow_of: np.ndarray) -> np.ndarray:
    """Exclusive running sum of ``values`` inside each flow (rows sorted by flow)."""
    c = np.cumsum(values) - values
    return c - c[flow_start][flow_of]


def plan_conversations(lengths, directions, n_packets, gaps, start, proto, family, *, rtt: int,
                       delayed_ack: int, keepalive: int | None, rng) -> Packets:
    """The packet table of every flow. ``lengths``/``directions``/``gaps`` are (n, W) FlowSet
    rows (``gaps`` in ticks before each packet), ``start``/``proto``/``family`` per flow."""
    n, w = lengths.shape
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Packets(flow=empty, tick=empty, sender=empty.astype(np.int8), flags=empty.astype(np.uint8),
                       seq=empty.astype(np.uint64), ack=empty.astype(np.uint64), length=empty,
                       syn=empty.astype(bool), ip_id=empty, mss=np.zeros((0, 2), np.int64),
                       per_direction=np.zeros((0, 2), np.int64))
    tcp = proto == 6
    half = rtt // 2
    valid = np.arange(w)[None, :] < n_packets[:, None]
    hs = np.where(tcp, rtt, 0)
    ticks2d = start[:, None] + hs[:, None] + np.cumsum(np.where(valid, gaps, 0), axis=1)  # (n, W)
    f, j = np.nonzero(valid)  # row-major: by flow, then packet
    t = ticks2d[f, j]
    d = directions[f, j].astype(np.int8)
    size = np.abs(lengths[f, j]).astype(np.int64)
    m = f.size
    first = j == 0
    last = np.ones(m, dtype=bool)
    last[:-1] = f[1:] != f[:-1]
    t_last = t[last]  # (n,) flows are never empty here
    next_t = np.empty(m, dtype=np.int64)
    next_t[:-1] = t[1:]
    next_t[last] = t_last + half  # the client's FIN
    next_gap = next_t - t
    d_prev = np.roll(d, 1)
    d_next = np.roll(d, -1)
    gap_prev = t - np.roll(t, 1)
    same_prev = ~first & (d == d_prev)
    last_of_run = last | (d != d_next)
    burst_start = ~same_prev | (gap_prev > delayed_ack)
    burst_id = np.cumsum(burst_start) - 1
    pos = np.arange(m) - np.flatnonzero(burst_start)[burst_id] + 1  # 1-based place in the burst
    seg = tcp[f] & (size > 0)
    ack_now = seg & (pos % 2 == 0) & ~(last_of_run & (next_gap <= delayed_ack))
    ack_late = seg & (pos % 2 == 1) & (next_gap > delayed_ack)
    n_probe = np.zeros(m, dtype=np.int64)
    if keepalive is not None:
        n_probe = np.where(tcp[f] & ~last, np.maximum(next_gap - 1, 0) // keepalive, 0)

    # ranks: handshake 0-2; data packet j at 10 + stride * j, its ACK +1, keep-alive k (>= 1) and
    # its ACK +2k, +2k+1; the close after the last data packet
    stride = 2 * int(n_probe.max(initial=0)) + 2
    base = 10 + stride * j
    parts = []  # (flow, tick, rank, sender, flags, length, probe, syn)

    def add(flow, tick, rank, sender, flags, length=None, probe=False, syn=False):
        k = flow.shape[0]
        parts.append((flow, tick, rank, np.broadcast_to(np.asarray(sender, np.int8), (k,)),
                      np.broadcast_to(np.asarray(flags, np.uint8), (k,)),
                      np.zeros(k, np.int64) if length is None else length,
                      np.broadcast_to(np.asarray(probe), (k,)), np.broadcast_to(np.asarray(syn), (k,))))

    tf = np.flatnonzero(tcp)
    ts = start[tf]
    add(tf, ts, np.zeros_like(tf), 1, SYN, syn=True)
    add(tf, ts + half, np.ones_like(tf), -1, SYN | ACK, syn=True)
    add(tf, ts + rtt, np.full_like(tf, 2), 1, ACK)
    data_flags = np.where(tcp[f], np.where(size > 0, PSH | ACK, ACK), 0).astype(np.uint8)
    add(f, t, base, d, data_flags, size)
    for sel, when in ((ack_now, t), (ack_late, t + delayed_ack)):
        k = np.flatnonzero(sel)
        add(f[k], when[k], base[k] + 1, -d[k], ACK)
    if n_probe.any():
        src = np.repeat(np.arange(m), n_probe)
        kth = np.arange(src.size) - np.repeat(np.cumsum(n_probe) - n_probe, n_probe) + 1
        probe_t = t[src] + kth * keepalive
        add(f[src], probe_t, base[src] + 2 * kth, 1, ACK, probe=True)
        add(f[src], np.minimum(probe_t + half, next_t[src]), base[src] + 2 * kth + 1, -1, ACK)
    tl = t_last[tf]
    rank_end = np.full_like(tf, 10 + stride * w)
    add(tf, tl + half, rank_end, 1, FIN | ACK)
    add(tf, tl + 2 * half, rank_end + 1, -1, FIN | ACK)
    add(tf, tl + 3 * half, rank_end + 2, 1, ACK)

    flow, tick, rank, sender, flags, length, probe, syn = (np.concatenate(c) for c in zip(*parts, strict=True))
    # per-flow order = (flow, rank) (ticks rise with the rank inside a flow); one int64 key when it fits
    span = 10 + stride * w + 3
    order = np.argsort(flow * span + rank, kind="stable") if n * span < 2**62 else np.lexsort((rank, flow))
    flow, tick, rank, sender, flags, length, probe, syn = (
        a[order] for a in (flow, tick, rank, sender, flags, length, probe, syn))
    starts = np.flatnonzero(np.r_[True, flow[1:] != flow[:-1]])
    flow_start = np.zeros(n, dtype=np.int64)
    flow_start[flow[starts]] = starts
    consumed = length + ((flags & SYN) != 0) + ((flags & FIN) != 0)  # sequence space used
    client = sender > 0
    c_before = _excl_cumsum_per_flow(np.where(client, consumed, 0), flow_start, flow)
    s_before = _excl_cumsum_per_flow(np.where(client, 0, consumed), flow_start, flow)
    isn = rng.integers(0, 1 << 32, size=(n, 2), dtype=np.int64)  # client, server
    own = np.where(client, isn[flow, 0] + c_before, isn[flow, 1] + s_before) - probe
    other = np.where(client, isn[flow, 1] + s_before, isn[flow, 0] + c_before)
    mask32 = (1 << 32) - 1
    seq = np.where(tcp[flow], own & mask32, 0).astype(np.uint64)
    ack = np.where((flags & ACK) != 0, other & mask32, 0).astype(np.uint64)
    id0 = rng.integers(0, 1 << 16, size=(n, 2), dtype=np.int64)
    count_c = _excl_cumsum_per_flow(client.astype(np.int64), flow_start, flow)
    count_s = _excl_cumsum_per_flow((~client).astype(np.int64), flow_start, flow)
    ip_id = np.where(client, id0[flow, 0] + count_c, id0[flow, 1] + count_s) & 0xFFFF

    floor = np.where(family == 6, 1440, 1460)
    big = np.abs(lengths)
    mss_c = np.maximum(floor, np.where(directions < 0, big, 0).max(axis=1, initial=0))  # client receives
    mss_s = np.maximum(floor, np.where(directions > 0, big, 0).max(axis=1, initial=0))
    mss = np.minimum(np.stack([mss_c, mss_s], axis=1), 65535)
    per_dir = np.stack([np.bincount(flow[client], minlength=n), np.bincount(flow[~client], minlength=n)], axis=1)

    fo = np.argsort(tick, kind="stable")  # file order (tick, flow, rank): rows are in (flow, rank) order
    return Packets(flow=flow[fo], tick=tick[fo], sender=sender[fo], flags=flags[fo], seq=seq[fo], ack=ack[fo],
                   length=length[fo], syn=syn[fo], ip_id=ip_id[fo], mss=mss.astype(np.int64), per_direction=per_dir)
