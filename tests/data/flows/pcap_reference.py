"""Slow, independent reference for the pcap reader, built on dpkt (tests only).

Same flow rules as trafficgen.data.flows.biflow (documented there), written the obvious way: dpkt parses
each packet's headers, a per-packet dict of open flows does the assembly. Wire length is not
exposed by dpkt's readers, so the captured length stands in for it (pick captures without
snaplen truncation). Supports Ethernet (dpkt's VLAN handling), SLL, SLL2, raw IP and null/loop.
"""
from __future__ import annotations

import socket

import dpkt

_FRAG_EXT = 44


def _ip_text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _l3(linktype: int, buf: bytes):
    """(IP object, link header length) or (None, 0)."""
    if linktype == 1:
        eth = dpkt.ethernet.Ethernet(buf)
        if getattr(eth, "mpls_labels", None) or getattr(eth, "isl", None):
            return None, 0
        l2 = 14 + 4 * len(getattr(eth, "vlan_tags", []) or [])
        inner = eth.data
        if isinstance(inner, dpkt.pppoe.PPPoE):
            inner, l2 = getattr(inner.data, "data", None), l2 + 8
        return (inner, l2) if isinstance(inner, (dpkt.ip.IP, dpkt.ip6.IP6)) else (None, 0)
    if linktype == 113:
        sll = dpkt.sll.SLL(buf)
        return (sll.data, 16) if isinstance(sll.data, (dpkt.ip.IP, dpkt.ip6.IP6)) else (None, 0)
    if linktype == 276:
        sll = dpkt.sll2.SLL2(buf)
        return (sll.data, 20) if isinstance(sll.data, (dpkt.ip.IP, dpkt.ip6.IP6)) else (None, 0)
    if linktype in (0, 108):
        lo = dpkt.loopback.Loopback(buf)
        return (lo.data, 4) if isinstance(lo.data, (dpkt.ip.IP, dpkt.ip6.IP6)) else (None, 0)
    if linktype in (101, 12, 14, 228, 229):
        ver = buf[0] >> 4 if buf else 0
        return (dpkt.ip.IP(buf), 0) if ver == 4 else (dpkt.ip6.IP6(buf), 0) if ver == 6 else (None, 0)
    raise ValueError(f"reference does not support link type {linktype}")


def packet_fields(linktype: int, buf: bytes):
    """(proto, src ip text, sport, dst ip text, dport, payload, tcp flags) or None when skipped."""
    try:
        ip, l2 = _l3(linktype, buf)
        if ip is None:
            return None
        wire = len(buf) - l2  # captured bytes from the IP header on (stands in for the wire length)
        if isinstance(ip, dpkt.ip.IP):
            if ip.offset:
                return None
            hl = ip.hl * 4
            total = ip.len
            if total == 0 or total > wire:
                total = wire
            left = max(total - hl, 0)
            proto, raw_l4 = ip.p, bytes(buf[l2 + hl:])
        else:
            ext = getattr(ip, "all_extension_headers", [])
            for h in ext:
                if isinstance(h, dpkt.ip6.IP6FragmentHeader) and h.frag_off != 0:
                    return None
            ext_len = sum(len(bytes(h)) for h in ext)
            plen = ip.plen
            wire -= 40
            if plen == 0 or plen > wire:
                plen = wire
            left = max(plen - ext_len, 0)
            proto, raw_l4 = ip.p, bytes(buf[l2 + 40 + ext_len:])
        if proto == 6:
            tcp = dpkt.tcp.TCP(raw_l4)
            return (6, _ip_text(ip.src), tcp.sport, _ip_text(ip.dst), tcp.dport,
                    max(left - tcp.off * 4, 0), tcp.flags)
        if proto == 17:
            if len(raw_l4) < 8:
                return None
            udp = dpkt.udp.UDP(raw_l4[:8])
            return (17, _ip_text(ip.src), udp.sport, _ip_text(ip.dst), udp.dport, max(left - 8, 0), 0)
    except (dpkt.UnpackError, dpkt.NeedData, ValueError, IndexError):
        return None
    return None


def reference_flows(path, *, max_packets=32, idle_timeout=120.0, keep_zero_payload=False):
    """List of (proto, frozenset of endpoints, n_c2s, n_s2c, bytes_c2s, bytes_s2c, client) per flow."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        linktype = reader.datalink()
        packets = list(reader)
    open_flows: dict = {}
    done: list = []
    for ts, buf in packets:
        f = packet_fields(linktype, bytes(buf))
        if f is None:
            continue
        proto, sip, sport, dip, dport, payload, _ = f
        key = (proto, frozenset([(sip, sport), (dip, dport)]))
        flow = open_flows.get(key)
        if flow is not None and ts - flow["last"] > idle_timeout:
            done.append(flow)
            flow = None
        if flow is None:
            flow = {"key": key, "last": ts, "client": None, "pkts": []}
            open_flows[key] = flow
        flow["last"] = ts
        if payload == 0 and not keep_zero_payload:
            continue
        if flow["client"] is None:
            flow["client"] = (sip, sport)
        if len(flow["pkts"]) < max_packets:
            flow["pkts"].append((1 if (sip, sport) == flow["client"] else -1, payload))
    done.extend(open_flows.values())
    out = []
    for fl in done:
        if not fl["pkts"]:
            continue
        c2s = [p for d, p in fl["pkts"] if d > 0]
        s2c = [p for d, p in fl["pkts"] if d < 0]
        out.append((fl["key"][0], fl["key"][1], len(c2s), len(s2c), sum(c2s), sum(s2c), fl["client"]))
    return out
