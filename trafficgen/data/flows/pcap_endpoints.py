"""Synthetic endpoints of an export: addresses from configurable pools, one endpoint pair per flow.

Client addresses come from ``client_pool``, server addresses from ``server_pool`` (at most one
IPv4 and one IPv6 network each; the network and broadcast addresses are avoided where the network
has others), client ports from :data:`EPHEMERAL_PORTS`. A flow whose (family, protocol, unordered
endpoint pair) another flow already has redraws its client port, so no reader merges two flows; a
demand no redraw can meet (more flows to one server endpoint than client endpoints exist) is a
:class:`~trafficgen.errors.ConfigError` at once.
"""
from __future__ import annotations

import ipaddress

import numpy as np

from trafficgen.errors import ConfigError

DEFAULT_CLIENT_POOL = ("10.0.0.0/8", "fd00:1::/64")
#: Documentation ranges (RFC 5737, RFC 3849).
DEFAULT_SERVER_POOL = ("198.51.100.0/24", "2001:db8::/64")
EPHEMERAL_PORTS = (49152, 65535)


def _pools(spec, what: str) -> dict:
    specs = [spec] if isinstance(spec, str) else list(spec)
    out = {}
    for s in specs:
        try:
            net = ipaddress.ip_network(str(s), strict=False)
        except ValueError as exc:
            raise ConfigError(f"{what}: not an address network ({exc})") from None
        if net.version in out:
            raise ConfigError(f"{what}: give at most one IPv{net.version} network, got {out[net.version]} and {net}")
        out[net.version] = net
    return out


def _host_range(net) -> tuple[int, int]:
    """[first, end) of the host offsets drawn in ``net`` (capped at 2**62 addresses)."""
    size = min(net.num_addresses, 1 << 62)
    return (1, size - 1) if size > 2 else (0, size)


def _draw_hosts(net, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """k random host addresses of ``net`` as (hi, lo) uint64 halves of the 128-bit value (IPv4
    in lo). The network and broadcast addresses are avoided where the network has others."""
    lo_off, hi_off = _host_range(net)
    off = rng.integers(lo_off, hi_off, size=k, dtype=np.int64).astype(np.uint64)
    base = int(net.network_address)
    hi = np.full(k, base >> 64, dtype=np.uint64)
    lo0 = np.uint64(base & ((1 << 64) - 1))
    lo = lo0 + off
    hi += (lo < lo0).astype(np.uint64)  # carry
    return hi, lo


def _address_bytes(fam, hi, lo) -> np.ndarray:
    """(k, 16) uint8: the 16 address bytes (IPv4: the 4 bytes first, then zeros)."""
    k = fam.shape[0]
    out = np.zeros((k, 16), dtype=np.uint8)
    be = np.stack([hi, lo], axis=1).astype(">u8").view(np.uint8).reshape(k, 16)
    v4 = fam == 4
    out[v4, :4] = be[v4, 12:16]
    out[~v4] = be[~v4]
    return out


def _address_text(fam, hi, lo) -> np.ndarray:
    """Canonical text of each address (each distinct address formatted once)."""
    out = np.empty(fam.shape[0], dtype=object)
    v4 = np.flatnonzero(fam == 4)
    x, inv = np.unique(lo[v4].astype(np.int64), return_inverse=True)
    octets = [((x >> s) & 0xFF).tolist() for s in (24, 16, 8, 0)]
    out[v4] = np.asarray([f"{a}.{b}.{c}.{d}" for a, b, c, d in zip(*octets, strict=True)], dtype=object)[inv]
    for i in np.flatnonzero(fam == 6).tolist():
        out[i] = ipaddress.IPv6Address((int(hi[i]) << 64) | int(lo[i])).compressed
    return out


def draw_endpoints(fam, proto, server_port, client_pool, server_pool, rng) -> dict:
    cpools, spools = _pools(client_pool, "client_pool"), _pools(server_pool, "server_pool")
    k = fam.shape[0]
    c_hi, c_lo = np.zeros(k, np.uint64), np.zeros(k, np.uint64)
    s_hi, s_lo = np.zeros(k, np.uint64), np.zeros(k, np.uint64)
    for v in (4, 6):
        sel = np.flatnonzero(fam == v)
        if not sel.size:
            continue
        for pools, what in ((cpools, "client_pool"), (spools, "server_pool")):
            if v not in pools:
                raise ConfigError(f"{sel.size} flows are IPv{v} but {what} has no IPv{v} network")
        c_hi[sel], c_lo[sel] = _draw_hosts(cpools[v], sel.size, rng)
        s_hi[sel], s_lo[sel] = _draw_hosts(spools[v], sel.size, rng)
    lo_port, hi_port = EPHEMERAL_PORTS
    if k:  # more flows to one server endpoint than client endpoints exist: no redraw can help
        servers = np.stack([fam, proto, s_hi.astype(np.int64), s_lo.astype(np.int64), server_port], 1)
        order, same = _sorted_duplicates(servers)
        run = np.cumsum(~same) - 1  # server group of each sorted row
        counts = np.bincount(run)
        group_fam = servers[order][~same, 0]
        room = {v: (_host_range(cpools[v])[1] - _host_range(cpools[v])[0]) * (hi_port - lo_port + 1) for v in cpools}
        full = [int(c) for c, v in zip(counts.tolist(), group_fam.tolist(), strict=True) if c > room[v]]
        if full:
            raise ConfigError(f"{max(full)} flows go to one server endpoint, more than client_pool has client "
                              "endpoints (addresses x ephemeral ports): give a larger client_pool network")
    c_port = rng.integers(lo_port, hi_port + 1, size=k).astype(np.int64)
    for _ in range(64):  # redraw the client port of a flow whose (protocol, endpoint pair) is taken
        a = np.stack([c_hi, c_lo, c_port.astype(np.uint64)], axis=1)
        b = np.stack([s_hi, s_lo, server_port.astype(np.uint64)], axis=1)
        first_a = _row_less(a, b)
        lo_ep, hi_ep = np.where(first_a[:, None], a, b), np.where(first_a[:, None], b, a)
        key = np.concatenate([fam[:, None].astype(np.uint64), proto[:, None].astype(np.uint64), lo_ep, hi_ep], 1)
        order, same = _sorted_duplicates(key)
        dup = order[same]
        if not dup.size:
            break
        c_port[dup] = rng.integers(lo_port, hi_port + 1, size=dup.size)
    else:
        raise ConfigError("the address pools are too small for this many flows (each flow needs its own "
                          "endpoint pair): give larger client_pool networks")
    return {"client_addr": _address_bytes(fam, c_hi, c_lo), "server_addr": _address_bytes(fam, s_hi, s_lo),
            "client_port": c_port, "server_port": server_port.astype(np.int64),
            "client_ip": _address_text(fam, c_hi, c_lo), "server_ip": _address_text(fam, s_hi, s_lo)}


def _sorted_duplicates(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, same): the stable row order of a (k, m) array and, per sorted row, whether it
    equals the one before (so ``order[same]`` are the later copies of repeated rows)."""
    order = np.lexsort(rows.T[::-1])
    srt = rows[order]
    same = np.zeros(rows.shape[0], dtype=bool)
    same[1:] = np.all(srt[1:] == srt[:-1], axis=1)
    return order, same


def _row_less(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise lexicographic a <= b of two (k, m) arrays."""
    out = np.ones(a.shape[0], dtype=bool)
    decided = np.zeros(a.shape[0], dtype=bool)
    for j in range(a.shape[1]):
        lt, gt = a[:, j] < b[:, j], a[:, j] > b[:, j]
        out[~decided & gt] = False
        decided |= lt | gt
    return out
