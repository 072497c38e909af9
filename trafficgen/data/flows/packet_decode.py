"""Vectorised link / IP / L4 header decoding of every packet of a capture at once.

Each packet gets exactly one outcome code (:data:`REASONS`); only ``ok`` packets (TCP or UDP with
their ports readable) go on to flow assembly. All reads go through clipped fancy indexing on the
file buffer and are validated against the packet's captured end, so malformed packets are skipped
and counted, never read out of bounds.

Link layers: Ethernet (802.1Q / QinQ 0x88a8 / 0x9100 / 0x9200 tags, up to 3; PPPoE session), Linux cooked
SLL (113) and SLL2 (276), raw IP (101, 12, 14, 228, 229), BSD null (0) and OpenBSD loop (108) in
either byte order, PPP (9), Cisco HDLC (104), PPI (192, unwrapped to its inner link type).

Lengths: the payload length is the IP-declared length minus the IP header (with IPv6 extension
headers) and the L4 header (TCP data offset, 8 for UDP), so snaplen-truncated captures still give
real lengths. Two repairs are flagged, not skipped:

* declared IP length 0 (TCP segmentation offload): the on-wire length is used instead
  (``ip_len_from_wire``), bounded by :data:`MAX_IP_LENGTH` (65535; a larger wire length is also
  flagged ``inconsistent_length``). An IPv6 payload length of 0 is a jumbogram only with a Jumbo
  Payload option (RFC 2675) first in a hop-by-hop header: its 32-bit length is used, clamped to
  the wire length (and :data:`MAX_JUMBO_LENGTH`), not flagged ``ip_len_from_wire``;
* declared length larger than the on-wire length, or smaller than the headers: clamped to the
  on-wire length / to a 0-byte payload (``inconsistent_length``).

Fragments: a first fragment (offset 0, more-fragments set) is counted toward its flow with *its own*
payload (declared length of that fragment minus headers; the rest of the datagram is not added).
Non-first fragments carry no L4 header, cannot be assigned to a flow without reassembly, and are
skipped and counted (``fragment``). IPv6 extension headers (hop-by-hop, routing, fragment,
destination options, AH; at most 8) are walked. IP-in-IP, 6in4 and GRE are counted as ``tunnel``
and skipped (not decapsulated); other protocols (ICMP, IGMP, SCTP, ESP, ...) as
``other_protocol``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trafficgen.data.flows.pcap_format import Records

OK, NON_IP, UNSUPPORTED_LINK, TRUNCATED, MALFORMED, FRAGMENT, TUNNEL, OTHER_PROTO = range(8)
#: Outcome names, indexed by code.
REASONS = ("ok", "non_ip", "unsupported_linktype", "truncated", "malformed", "fragment", "tunnel",
           "other_protocol")

#: Largest IPv4 total length / IPv6 payload length (16-bit fields). A declared length of 0 (TCP
#: segmentation offload) takes the record's wire length, bounded by this.
MAX_IP_LENGTH = 65535
#: Largest IPv6 jumbogram payload length accepted (RFC 2675 allows 2**32 - 1; FlowSet lengths are int32).
MAX_JUMBO_LENGTH = 2**31 - 1

_KNOWN_LINKTYPES = {0, 1, 9, 12, 14, 101, 104, 108, 113, 228, 229, 276}
_IPV6_EXT = (0, 43, 44, 51, 60)


@dataclass
class Decoded:
    """Per-packet header fields; rows where ``reason == OK`` are valid TCP/UDP packets."""

    reason: np.ndarray  # (n,) uint8 outcome code
    ipver: np.ndarray  # (n,) uint8 4 / 6
    src_hi: np.ndarray  # (n,) uint64 upper 64 bits of the IPv6 source (0 for IPv4)
    src_lo: np.ndarray  # (n,) uint64 lower 64 bits (the IPv4 address for IPv4)
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray  # (n,) int64 6 / 17
    sport: np.ndarray  # (n,) int64
    dport: np.ndarray  # (n,) int64
    payload: np.ndarray  # (n,) int64 L4 payload bytes (>= 0)
    tcp_flags: np.ndarray  # (n,) int64 (0 for UDP)
    first_fragment: np.ndarray  # (n,) bool
    inconsistent: np.ndarray  # (n,) bool: a length was clamped
    from_wire: np.ndarray  # (n,) bool: declared length 0, on-wire length used

    def counts(self) -> dict:
        c = np.bincount(self.reason, minlength=len(REASONS))
        out = {name: int(c[i]) for i, name in enumerate(REASONS)}
        ok = self.reason == OK
        out["first_fragment"] = int((self.first_fragment & ok).sum())
        out["inconsistent_length"] = int((self.inconsistent & ok).sum())
        out["ip_len_from_wire"] = int((self.from_wire & ok).sum())
        return out


class _Reader:
    """Clipped big/little-endian gathers from the file buffer."""

    def __init__(self, data: np.ndarray):
        self.d = data
        self.last = max(len(data) - 1, 0)

    def u8(self, idx):
        if len(self.d) == 0:
            return np.zeros(np.shape(idx), dtype=np.int64)
        return np.take(self.d, idx, mode="clip").astype(np.int64)

    def u16(self, idx):
        return _b16(self.block(idx, 2), 0)

    def u16le(self, idx):
        blk = self.block(idx, 2)
        return _b8(blk, 0) | (_b8(blk, 1) << 8)

    def u32(self, idx):
        return (self.u16(idx) << 16) | self.u16(idx + 2)

    def u32le(self, idx):
        return self.u16le(idx) | (self.u16le(idx + 2) << 16)

    def block(self, idx, k: int) -> np.ndarray:
        """(len(idx), k) uint8: k consecutive bytes from each index, copied row by row through a
        sliding-window view (no (n, k) index array; one cache line per row)."""
        if len(self.d) < k:
            return np.zeros((len(idx), k), dtype=np.uint8)
        win = np.lib.stride_tricks.sliding_window_view(self.d, k)  # (len - k + 1, k) view
        return win[np.clip(idx, 0, len(win) - 1)]


def _b8(blk, col):
    return blk[:, col].astype(np.int64)


def _b16(blk, col):
    return (blk[:, col].astype(np.int64) << 8) | blk[:, col + 1]


def _b32(blk, col):
    return (_b16(blk, col) << 16) | _b16(blk, col + 2)


def _b64(blk, col):
    return (_b32(blk, col).astype(np.uint64) << np.uint64(32)) | _b32(blk, col + 4).astype(np.uint64)


def _link_layer(r: _Reader, rec: Records, reason: np.ndarray):
    """(l3 offset, ip version 4/6 or 0) per packet; sets NON_IP / TRUNCATED / UNSUPPORTED_LINK."""
    n = len(rec)
    base = rec.offset.copy()
    end = rec.offset + rec.caplen
    lt = rec.linktype.astype(np.int64) & 0x0FFFFFFF
    # PPI: unwrap to the inner DLT (single pass).
    m = lt == 192
    if m.any():
        idx = np.flatnonzero(m)
        hl = r.u16le(base[idx] + 2)
        inner = r.u32le(base[idx] + 4)
        bad = (hl < 8) | (base[idx] + hl > end[idx])
        reason[idx[bad]] = TRUNCATED
        base[idx] += np.where(bad, 0, hl)
        lt[idx] = np.where(bad, -1, inner)
    l3 = np.zeros(n, dtype=np.int64)
    et = np.full(n, -1, dtype=np.int64)  # ethertype-like protocol id
    hdr = np.zeros(n, dtype=np.int64)  # link header bytes needed before reading et
    single = n > 0 and lt.min() == lt.max()
    present = {int(lt[0])} if single else set(np.unique(lt).tolist())

    def sel(*codes):
        """slice(None) when every packet has one of these link types, else a mask, or None."""
        if not present.intersection(codes):
            return None
        return slice(None) if single else np.isin(lt, codes)

    if (m := sel(1)) is not None:
        et[m], l3[m], hdr[m] = r.u16(base[m] + 12), base[m] + 14, 14
    if (m := sel(113)) is not None:
        et[m], l3[m], hdr[m] = r.u16(base[m] + 14), base[m] + 16, 16
    if (m := sel(276)) is not None:
        et[m], l3[m], hdr[m] = r.u16(base[m]), base[m] + 20, 20
    if (m := sel(104)) is not None:
        et[m], l3[m], hdr[m] = r.u16(base[m] + 2), base[m] + 4, 4
    if (m := sel(101, 12, 14)) is not None:
        v = r.u8(base[m]) >> 4
        et[m], l3[m], hdr[m] = np.where(v == 4, 0x0800, np.where(v == 6, 0x86DD, -1)), base[m], 1
    if (m := sel(228)) is not None:
        et[m], l3[m] = 0x0800, base[m]
    if (m := sel(229)) is not None:
        et[m], l3[m] = 0x86DD, base[m]
    if (m := sel(0, 108)) is not None:
        fam_le, fam_be = r.u32le(base[m]), r.u32(base[m])
        fam = np.where(fam_le <= 0xFF, fam_le, fam_be)
        et[m] = np.where(fam == 2, 0x0800, np.where(np.isin(fam, (10, 24, 28, 30)), 0x86DD, -1))
        l3[m], hdr[m] = base[m] + 4, 4
    if (m := sel(9)) is not None:
        ff03 = r.u16(base[m]) == 0xFF03
        ppp = np.where(ff03, r.u16(base[m] + 2), r.u16(base[m]))
        et[m] = np.where(ppp == 0x21, 0x0800, np.where(ppp == 0x57, 0x86DD, -1))
        l3[m] = base[m] + np.where(ff03, 4, 2)
        hdr[m] = np.where(ff03, 4, 2)
    if not present <= _KNOWN_LINKTYPES:
        reason[~np.isin(lt, list(_KNOWN_LINKTYPES)) & (reason == OK)] = UNSUPPORTED_LINK
    reason[(base + hdr > end) & (reason == OK)] = TRUNCATED
    # VLAN / QinQ tags (Ethernet and SLL), then PPPoE session.
    for _ in range(3):
        m = ((et == 0x8100) | (et == 0x88A8) | (et == 0x9100) | (et == 0x9200)) & (reason == OK)
        if not m.any():
            break
        reason[m & (l3 + 4 > end)] = TRUNCATED
        et[m] = r.u16(l3[m] + 2)
        l3[m] += 4
    m = (et == 0x8864) & (reason == OK)
    if m.any():
        reason[m & (l3 + 8 > end)] = TRUNCATED
        ppp = r.u16(l3[m] + 6)
        et[m] = np.where(ppp == 0x21, 0x0800, np.where(ppp == 0x57, 0x86DD, -1))
        l3[m] += 8
    ver = np.where(et == 0x0800, 4, np.where(et == 0x86DD, 6, 0))
    reason[(ver == 0) & (reason == OK)] = NON_IP
    return l3, ver, end, base


def decode(rec: Records) -> Decoded:
    """Decode every packet of ``rec``; see the module docstring for the rules."""
    n = len(rec)
    r = _Reader(rec.data)
    reason = np.zeros(n, dtype=np.uint8)
    l3, ver, end, base = _link_layer(r, rec, reason)
    wire_ip = rec.wirelen - (l3 - rec.offset)  # on-wire bytes from the IP header on
    out = Decoded(
        reason=reason, ipver=ver.astype(np.uint8),
        src_hi=np.zeros(n, np.uint64), src_lo=np.zeros(n, np.uint64),
        dst_hi=np.zeros(n, np.uint64), dst_lo=np.zeros(n, np.uint64),
        proto=np.zeros(n, np.int64), sport=np.zeros(n, np.int64), dport=np.zeros(n, np.int64),
        payload=np.zeros(n, np.int64), tcp_flags=np.zeros(n, np.int64),
        first_fragment=np.zeros(n, bool), inconsistent=np.zeros(n, bool), from_wire=np.zeros(n, bool),
    )
    l4 = np.zeros(n, dtype=np.int64)
    ip_left = np.zeros(n, dtype=np.int64)  # declared bytes from the L4 header on
    proto = np.full(n, -1, dtype=np.int64)

    # ---- IPv4
    i4 = np.flatnonzero((ver == 4) & (reason == OK))
    if i4.size:
        o = l3[i4]
        blk = r.block(o, 20)  # (n4, 20) the fixed IPv4 header
        trunc = o + 20 > end[i4]
        vihl = _b8(blk, 0)
        ihl = (vihl & 15) * 4
        bad = ((vihl >> 4) != 4) | (ihl < 20)
        trunc |= o + ihl > end[i4]
        tot = _b16(blk, 2)
        frag = _b16(blk, 6)
        fo = frag & 0x1FFF
        wire = wire_ip[i4]
        zero = tot == 0
        too_big = (tot > wire) & (wire >= ihl)
        over = zero & (wire > MAX_IP_LENGTH)  # a record's wire length is not bounded by anything
        tot = np.where(zero, np.minimum(wire, MAX_IP_LENGTH), np.where(too_big, wire, tot))
        small = tot < ihl
        out.from_wire[i4] = zero
        out.inconsistent[i4] = too_big | small | over
        reason[i4] = np.select([trunc, bad, fo != 0], [TRUNCATED, MALFORMED, FRAGMENT], OK)
        out.first_fragment[i4] = (frag & 0x2000) != 0
        out.src_lo[i4] = _b32(blk, 12).astype(np.uint64)
        out.dst_lo[i4] = _b32(blk, 16).astype(np.uint64)
        proto[i4] = _b8(blk, 9)
        l4[i4] = o + ihl
        ip_left[i4] = np.maximum(tot - ihl, 0)

    # ---- IPv6 (+ extension headers)
    i6 = np.flatnonzero((ver == 6) & (reason == OK))
    if i6.size:
        o = l3[i6]
        blk = r.block(o, 40)  # (n6, 40) the fixed IPv6 header
        trunc = o + 40 > end[i6]
        bad = (_b8(blk, 0) >> 4) != 6
        plen = _b16(blk, 4)
        wire = wire_ip[i6] - 40
        w = np.maximum(wire, 0)
        nh = _b8(blk, 6)
        zero = plen == 0
        # RFC 2675 jumbogram: payload length 0 and a Jumbo Payload option (0xC2, 4 bytes) as the
        # first option of a hop-by-hop header; its 32-bit length counts from the end of the IPv6
        # header (the hop-by-hop header included), like the payload length field.
        jumbo = np.zeros(i6.size, dtype=bool)
        jumbo_len = np.zeros(i6.size, dtype=np.int64)
        jz = np.flatnonzero(zero & (nh == 0) & (o + 48 <= end[i6]))
        if jz.size:
            hbh = r.block(o[jz] + 40, 8)  # (nj, 8) next header, length, option type, option length, value
            is_jumbo = (_b8(hbh, 2) == 0xC2) & (_b8(hbh, 3) == 4)
            jumbo[jz] = is_jumbo
            jumbo_len[jz] = np.where(is_jumbo, _b32(hbh, 4), 0)
        no_jumbo = zero & ~jumbo
        too_big = ~zero & (plen > wire) & (wire >= 0)
        jumbo_clamped = jumbo & ((jumbo_len > w) | (jumbo_len > MAX_JUMBO_LENGTH))
        plen = np.select([jumbo, no_jumbo, too_big],
                         [np.minimum(np.minimum(jumbo_len, w), MAX_JUMBO_LENGTH), np.minimum(w, MAX_IP_LENGTH), w],
                         plen)
        out.from_wire[i6] = no_jumbo
        out.inconsistent[i6] = too_big | (no_jumbo & (w > MAX_IP_LENGTH)) | jumbo_clamped
        pos = o + 40
        frag = np.zeros(i6.size, dtype=bool)
        for _ in range(8):
            m = np.isin(nh, _IPV6_EXT) & ~trunc & ~bad & ~frag
            if not m.any():
                break
            p = pos[m]
            trunc[m] |= p + 8 > end[i6[m]]
            hl = np.where(nh[m] == 44, 8, np.where(nh[m] == 51, (r.u8(p + 1) + 2) * 4, (r.u8(p + 1) + 1) * 8))
            is_frag = nh[m] == 44
            fo = r.u16(p + 2)
            frag[m] = is_frag & ((fo & 0xFFF8) != 0)
            ff = np.zeros(i6.size, dtype=bool)
            ff[m] = is_frag & ((fo & 1) != 0)
            out.first_fragment[i6] |= ff
            nh[m] = r.u8(p)
            pos[m] = p + hl
        still_ext = np.isin(nh, _IPV6_EXT) & ~frag
        ext_len = pos - (o + 40)
        short = plen < ext_len
        out.inconsistent[i6] |= short
        reason[i6] = np.select([trunc, bad | still_ext, frag], [TRUNCATED, MALFORMED, FRAGMENT], OK)
        out.src_hi[i6], out.src_lo[i6] = _b64(blk, 8), _b64(blk, 16)
        out.dst_hi[i6], out.dst_lo[i6] = _b64(blk, 24), _b64(blk, 32)
        proto[i6] = nh
        l4[i6] = pos
        ip_left[i6] = np.maximum(plen - ext_len, 0)

    # ---- L4
    ok = reason == OK
    reason[ok & np.isin(proto, (4, 41, 47))] = TUNNEL
    reason[ok & ~np.isin(proto, (4, 41, 47, 6, 17))] = OTHER_PROTO
    it = np.flatnonzero((reason == OK) & (proto == 6))
    if it.size:
        o = l4[it]
        blk = r.block(o, 14)  # (nt, 14) ports ... data offset, flags
        trunc = o + 20 > end[it]
        doff = (_b8(blk, 12) >> 4) * 4
        bad = doff < 20
        reason[it] = np.select([trunc, bad], [TRUNCATED, MALFORMED], OK)
        pay = ip_left[it] - doff
        out.inconsistent[it] |= pay < 0
        out.payload[it] = np.maximum(pay, 0)
        out.sport[it], out.dport[it] = _b16(blk, 0), _b16(blk, 2)
        out.tcp_flags[it] = _b8(blk, 13)
    iu = np.flatnonzero((reason == OK) & (proto == 17))
    if iu.size:
        o = l4[iu]
        reason[iu[o + 8 > end[iu]]] = TRUNCATED
        pay = ip_left[iu] - 8
        out.inconsistent[iu] |= pay < 0
        out.payload[iu] = np.maximum(pay, 0)
        blk = r.block(o, 4)  # (nu, 4) ports
        out.sport[iu], out.dport[iu] = _b16(blk, 0), _b16(blk, 2)
    out.proto = np.where(reason == OK, proto, 0)
    return out
