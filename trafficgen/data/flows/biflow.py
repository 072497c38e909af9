"""Vectorised biflow assembly: decoded TCP/UDP packets -> per-flow signed payload sequences.

Rules (shared with the slow reference in ``tests/data/pcap_reference.py``):

* Key: (L4 protocol, unordered pair of endpoints (ip, port)). Packets are taken in file order.
* A key's packets are split into separate biflows when the gap between two consecutive packets
  of the key exceeds ``idle_timeout`` seconds (timestamps going backwards never split).
* ``split_on_fin``: a pure SYN (SYN without ACK) starts a new biflow when a FIN or RST was seen in
  the current biflow since its last pure SYN, i.e. a new connection on reused ports after a close.
  (Splitting right after the FIN itself would cut the closing handshake and any half-closed data
  into bogus flows with the wrong client.)
* Zero-payload packets are dropped after splitting unless ``keep_zero_payload`` (they carry no
  application data and a signed 0 has no direction; when kept, ``directions`` holds it).
* The client is the sender of the first *kept* packet, so every flow starts with a ``+`` packet
  (the :class:`~trafficgen.data.flowset.FlowSet` convention). With the default dropping this is the
  first packet carrying payload, which for server-first protocols (SMTP/FTP banners) is the TCP
  server.
* The first ``max_packets`` kept packets are stored; flows with fewer than ``max(min_packets, 1)``
  kept packets are dropped. ``iat[j]`` is the gap to the previous stored packet (first 0; a
  negative gap from out-of-order timestamps is clamped to 0). ``first_ts`` is the timestamp of the
  biflow's first packet (zero-payload ones included). Flows are ordered by their first packet.
"""
from __future__ import annotations

import ipaddress

import numpy as np

from trafficgen.data.flows.packet_decode import OK, Decoded

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10


def _ip_ids(ver, hi, lo):
    """Integer id per address: the IPv4 value itself, or 2**32 + rank among the IPv6 addresses."""
    ids = lo.astype(np.int64) & 0xFFFFFFFF
    v6 = np.flatnonzero(ver == 6)
    table6 = np.zeros((0, 2), dtype=np.uint64)
    if v6.size:
        table6, inv = np.unique(np.stack([hi[v6], lo[v6]], axis=1), axis=0, return_inverse=True)
        ids[v6] = (1 << 32) + inv.reshape(-1)
    return ids, table6


def _format_ips(ids: np.ndarray, table6: np.ndarray) -> np.ndarray:
    uniq, inv = np.unique(ids, return_inverse=True)
    v4 = uniq[uniq < (1 << 32)]
    octets = [((v4 >> s) & 0xFF).tolist() for s in (24, 16, 8, 0)]
    names = [f"{a}.{b}.{c}.{d}" for a, b, c, d in zip(*octets, strict=True)]
    for u in uniq[uniq >= (1 << 32)].tolist():
        hi, lo = table6[u - (1 << 32)]
        names.append(str(ipaddress.IPv6Address((int(hi) << 64) | int(lo))))
    return np.asarray(names, dtype=object)[inv.reshape(-1)]


def assemble(dec: Decoded, ts: np.ndarray, *, max_packets: int, idle_timeout: float,
             split_on_fin: bool, keep_zero_payload: bool, min_packets: int) -> tuple[dict, dict]:
    """Return (FlowSet column dict without ``source``/labels, counters)."""
    idx = np.flatnonzero(dec.reason == OK)
    counts = {"zero_payload_dropped": 0, "flows": 0, "flows_below_min_packets": 0,
              "packets_beyond_max": 0}
    width = int(max_packets)
    if idx.size == 0:
        return _empty_columns(width), counts
    ts = ts[idx]
    proto = dec.proto[idx]
    flags = dec.tcp_flags[idx]
    payload = dec.payload[idx]
    ver = np.concatenate([dec.ipver[idx], dec.ipver[idx]])
    ip_ids, table6 = _ip_ids(ver, np.concatenate([dec.src_hi[idx], dec.dst_hi[idx]]),
                             np.concatenate([dec.src_lo[idx], dec.dst_lo[idx]]))
    m = idx.size
    ep = (ip_ids << 16) | np.concatenate([dec.sport[idx], dec.dport[idx]])  # (2m,) endpoint value
    ep_src, ep_dst = ep[:m], ep[m:]
    lo, hi = np.minimum(ep_src, ep_dst), np.maximum(ep_src, ep_dst)
    plo = (proto << 52) | lo  # endpoint values < 2**49, protocol < 2**8: one int64 key column
    order = np.lexsort((hi, plo))  # stable: file order inside each key
    plo_s, hi_s, ts_s = plo[order], hi[order], ts[order]
    lo_s, pr_s = plo_s & ((1 << 52) - 1), plo_s >> 52
    newkey = np.ones(m, dtype=bool)
    newkey[1:] = (plo_s[1:] != plo_s[:-1]) | (hi_s[1:] != hi_s[:-1])
    seg = newkey.copy()
    seg[1:] |= (ts_s[1:] - ts_s[:-1]) > idle_timeout
    start = seg.copy()
    if split_on_fin:
        fl = flags[order]
        tcp = pr_s == 6
        finrst = tcp & ((fl & (_FIN | _RST)) != 0)
        pure_syn = tcp & ((fl & (_SYN | _ACK)) == _SYN)
        anchor = seg | pure_syn
        pos = np.arange(m)
        last_anchor = np.maximum.accumulate(np.where(anchor, pos, 0))
        prev_anchor = np.zeros(m, dtype=np.int64)
        prev_anchor[1:] = last_anchor[:-1]
        csum = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(finrst, out=csum[1:])
        start |= pure_syn & ~seg & ((csum[pos] - csum[prev_anchor]) > 0)
    fid = np.cumsum(start) - 1  # flow id per sorted packet
    n_flows = int(fid[-1]) + 1
    flow_first_pos = np.flatnonzero(start)
    first_ts = ts_s[flow_first_pos]
    first_pkt = order[flow_first_pos]  # file position of each flow's first packet

    pay_s = payload[order]
    keep = np.ones(m, dtype=bool) if keep_zero_payload else pay_s > 0
    counts["zero_payload_dropped"] = int(m - keep.sum())
    kpos = np.flatnonzero(keep)
    kf = fid[kpos]
    n_kept = np.bincount(kf, minlength=n_flows)
    kstart = np.zeros(n_flows, dtype=np.int64)
    np.cumsum(n_kept[:-1], out=kstart[1:])
    rank = np.arange(kpos.size) - kstart[kf]
    src_s = ep_src[order]
    client_ep = np.zeros(n_flows, dtype=np.int64)
    has = n_kept > 0
    client_ep[has] = src_s[kpos[kstart[has]]]
    counts["packets_beyond_max"] = int((rank >= width).sum())
    sel = rank < width
    kpos, kf, rank = kpos[sel], kf[sel], rank[sel]
    direction = np.where(src_s[kpos] == client_ep[kf], 1, -1).astype(np.int8)
    lengths = np.zeros((n_flows, width), dtype=np.int32)
    dirs = np.zeros((n_flows, width), dtype=np.int8)
    times = np.zeros((n_flows, width), dtype=np.float64)
    lengths[kf, rank] = direction * pay_s[kpos]
    dirs[kf, rank] = direction
    times[kf, rank] = ts_s[kpos]
    iat = np.zeros_like(times)
    iat[:, 1:] = np.maximum(times[:, 1:] - times[:, :-1], 0.0)
    n_packets = np.minimum(n_kept, width).astype(np.int32)
    iat[np.arange(width)[None, :] >= n_packets[:, None]] = 0.0
    keep_flow = n_kept >= max(int(min_packets), 1)
    counts["flows_below_min_packets"] = int((~keep_flow).sum())
    fsel = np.flatnonzero(keep_flow)
    fsel = fsel[np.argsort(first_pkt[fsel], kind="stable")]
    counts["flows"] = int(fsel.size)
    # endpoints of the client / the other side
    lo_f, hi_f = lo_s[flow_first_pos][fsel], hi_s[flow_first_pos][fsel]
    cl = client_ep[fsel]
    sv = np.where(cl == lo_f, hi_f, lo_f)
    all_ids = np.concatenate([cl >> 16, sv >> 16])
    names = _format_ips(all_ids, table6)
    k = fsel.size
    cols = {
        "lengths": lengths[fsel], "n_packets": n_packets[fsel], "directions": dirs[fsel],
        "iat": iat[fsel], "protocol": pr_s[flow_first_pos][fsel].astype(np.int16),
        "client_ip": names[:k], "client_port": (cl & 0xFFFF).astype(np.int32),
        "server_ip": names[k:], "server_port": (sv & 0xFFFF).astype(np.int32),
        "first_ts": first_ts[fsel],
    }
    return cols, counts


def _empty_columns(width: int) -> dict:
    return {
        "lengths": np.zeros((0, width), np.int32), "n_packets": np.zeros(0, np.int32),
        "directions": np.zeros((0, width), np.int8), "iat": np.zeros((0, width)),
        "protocol": np.zeros(0, np.int16), "client_ip": np.zeros(0, object),
        "client_port": np.zeros(0, np.int32), "server_ip": np.zeros(0, object),
        "server_port": np.zeros(0, np.int32), "first_ts": np.zeros(0),
    }
