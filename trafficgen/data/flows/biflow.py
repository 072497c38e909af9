"""Vectorised, incremental biflow assembly: decoded TCP/UDP packets -> per-flow signed payload sequences.

Rules (shared with the slow reference in ``tests/data/flows/pcap_reference.py``):

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

:class:`FlowAssembler` applies these rules to a capture fed in windows (:meth:`~FlowAssembler.add`
per window, in file order; the result does not depend on where the windows end). Memory: per key
seen, its open biflow's state (last timestamp, FIN/RST seen, row); per biflow, one row of
``max_packets`` stored packets. It grows with the flow table, never with the packet count.
Within a window the work is vectorised: the open biflow of each key the window touches enters the
window's sorted packets as a *carry* row placed before the key's packets, holding the biflow's last
timestamp and FIN/RST state, so the splitting rules run unchanged across window ends.
"""
from __future__ import annotations

import ipaddress

import numpy as np

from trafficgen.data.flows.packet_decode import OK, Decoded

_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_LO_MASK = (1 << 52) - 1


def _format_ips(ids: np.ndarray, table6: np.ndarray) -> np.ndarray:
    """Address text per id: the IPv4 value itself, or 2**32 + row of ``table6`` ((hi, lo) of IPv6)."""
    uniq, inv = np.unique(ids, return_inverse=True)
    v4 = uniq[uniq < (1 << 32)]
    octets = [((v4 >> s) & 0xFF).tolist() for s in (24, 16, 8, 0)]
    names = [f"{a}.{b}.{c}.{d}" for a, b, c, d in zip(*octets, strict=True)]
    for u in uniq[uniq >= (1 << 32)].tolist():
        hi, lo = table6[u - (1 << 32)]
        names.append(str(ipaddress.IPv6Address((int(hi) << 64) | int(lo))))
    return np.asarray(names, dtype=object)[inv.reshape(-1)]


class _Table:
    """Column arrays with a row count, grown by doubling (``cols[name][:n]`` are the rows)."""

    def __init__(self, **columns: tuple):
        self.n = 0
        self.cols = {k: np.zeros((16, *shape), dtype=dt) for k, (dt, shape) in columns.items()}

    def extend(self, k: int) -> slice:
        """Room for ``k`` more rows (zeroed); returns their slice."""
        need = self.n + k
        cap = len(next(iter(self.cols.values())))
        if need > cap:
            cap = max(need, 2 * cap)
            for name, a in self.cols.items():
                b = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
                b[: self.n] = a[: self.n]
                self.cols[name] = b
        rows = slice(self.n, need)
        self.n = need
        return rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]


class FlowAssembler:
    """Incremental biflow assembly: ``add(decoded, ts)`` per window in file order, then ``finish()``.

    ``finish`` returns (FlowSet column dict without ``source``/labels, counters); the same as one
    ``add`` of the whole capture.
    """

    def __init__(self, *, max_packets: int, idle_timeout: float, split_on_fin: bool, keep_zero_payload: bool,
                 min_packets: int):
        self.width = int(max_packets)
        self.idle_timeout = idle_timeout
        self.split_on_fin = bool(split_on_fin)
        self.keep_zero_payload = bool(keep_zero_payload)
        self.min_packets = int(min_packets)
        self.counts = {"zero_payload_dropped": 0, "flows": 0, "flows_below_min_packets": 0,
                       "packets_beyond_max": 0}
        self._seen = 0  # decoded TCP/UDP packets so far (their file-order position)
        self._v6: dict = {}  # (hi, lo) of an IPv6 address -> its rank (ids 2**32 + rank)
        self._keys: dict = {}  # (protocol << 52 | low endpoint, high endpoint) -> key index
        w = (self.width,)
        # per key: its open biflow (row), last packet time, FIN/RST since its last anchor (split_on_fin)
        self._k = _Table(last_ts=(np.float64, ()), fin=(bool, ()), row=(np.int64, ()))
        # per biflow
        self._f = _Table(first_pos=(np.int64, ()), first_ts=(np.float64, ()), plo=(np.int64, ()),
                         hi=(np.int64, ()), client=(np.int64, ()), n_kept=(np.int64, ()),
                         lengths=(np.int32, w), dirs=(np.int8, w), times=(np.float64, w))

    # ------------------------------------------------------------------ ids
    def _ip_ids(self, ver, hi, lo) -> np.ndarray:
        """Integer id per address: the IPv4 value itself, or 2**32 + rank of first sight (IPv6)."""
        ids = lo.astype(np.int64) & 0xFFFFFFFF
        v6 = np.flatnonzero(ver == 6)
        if v6.size:
            pairs, inv = np.unique(np.stack([hi[v6], lo[v6]], axis=1), axis=0, return_inverse=True)
            table = self._v6
            rank = np.fromiter((table.setdefault(k, len(table)) for k in zip(*pairs.T.tolist(), strict=True)),
                               dtype=np.int64, count=len(pairs))
            ids[v6] = (1 << 32) + rank[inv.reshape(-1)]
        return ids

    def _key_ids(self, plo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        get = self._keys.get
        return np.fromiter((get(k, -1) for k in zip(plo.tolist(), hi.tolist(), strict=True)), dtype=np.int64, count=len(plo))

    # ------------------------------------------------------------------ one window
    def add(self, dec: Decoded, ts: np.ndarray) -> None:
        """Feed the next window's decoded packets (``dec``) and their timestamps."""
        idx = np.flatnonzero(dec.reason == OK)
        m = idx.size
        if m == 0:
            return
        width = self.width
        ts = ts[idx]
        proto = dec.proto[idx]
        ver = np.concatenate([dec.ipver[idx], dec.ipver[idx]])
        ip_ids = self._ip_ids(ver, np.concatenate([dec.src_hi[idx], dec.dst_hi[idx]]),
                              np.concatenate([dec.src_lo[idx], dec.dst_lo[idx]]))
        ep = (ip_ids << 16) | np.concatenate([dec.sport[idx], dec.dport[idx]])  # (2m,) endpoint value
        ep_src, ep_dst = ep[:m], ep[m:]
        lo, hi = np.minimum(ep_src, ep_dst), np.maximum(ep_src, ep_dst)
        plo = (proto << 52) | lo  # endpoint values < 2**49, protocol < 2**8: one int64 key column
        order = np.lexsort((hi, plo))  # stable: file order inside each key
        plo_s, hi_s = plo[order], hi[order]
        newkey = np.ones(m, dtype=bool)
        newkey[1:] = (plo_s[1:] != plo_s[:-1]) | (hi_s[1:] != hi_s[:-1])
        gs = np.flatnonzero(newkey)  # first sorted packet of each key of the window
        kid = self._key_ids(plo_s[gs], hi_s[gs])
        old = kid >= 0
        ins = gs[old]  # carry rows go before these packets
        kold = kid[old]
        kt = self._k

        # ---- sorted packets with one carry row before each key that has an open biflow
        def c(values, carry):
            return np.insert(values, ins, carry) if ins.size else values

        real = c(np.ones(m, dtype=bool), False)
        plo_c, hi_c = c(plo_s, plo_s[ins]), c(hi_s, hi_s[ins])
        ts_c = c(ts[order], kt["last_ts"][kold])
        src_c = c(ep_src[order], 0)
        pay_c = c(dec.payload[idx][order], 0)
        pos_c = c(self._seen + order, -1)
        mc = real.size
        gstart = np.ones(mc, dtype=bool)
        gstart[1:] = (plo_c[1:] != plo_c[:-1]) | (hi_c[1:] != hi_c[:-1])
        seg = gstart.copy()
        seg[1:] |= (ts_c[1:] - ts_c[:-1]) > self.idle_timeout
        start = seg.copy()
        if self.split_on_fin:
            fl = c(dec.tcp_flags[idx][order], 0)
            tcp = (plo_c >> 52) == 6
            finrst = tcp & ((fl & (_FIN | _RST)) != 0)
            if ins.size:  # the carry row stands for the open biflow's packets since its last anchor
                finrst[ins + np.arange(ins.size)] = kt["fin"][kold]
            pure_syn = tcp & ((fl & (_SYN | _ACK)) == _SYN) & real
            anchor = seg | pure_syn
            pos = np.arange(mc)
            last_anchor = np.maximum.accumulate(np.where(anchor, pos, 0))
            prev_anchor = np.zeros(mc, dtype=np.int64)
            prev_anchor[1:] = last_anchor[:-1]
            csum = np.zeros(mc + 1, dtype=np.int64)
            np.cumsum(finrst, out=csum[1:])
            start |= pure_syn & ~seg & ((csum[pos] - csum[prev_anchor]) > 0)
        fid = np.cumsum(start) - 1  # window flow per sorted row
        n_local = int(fid[-1]) + 1
        ffp = np.flatnonzero(start)  # first row of each window flow
        cont = ~real[ffp]  # window flows that continue an open biflow (they start at a carry row)

        # ---- rows: open biflows keep theirs, new biflows get new ones
        ft = self._f
        row = np.empty(n_local, dtype=np.int64)
        row[cont] = kt["row"][kold]
        new = np.flatnonzero(~cont)
        rows = ft.extend(new.size)
        row[new] = np.arange(rows.start, rows.stop)
        first = ffp[new]
        ft["first_pos"][rows] = pos_c[first]
        ft["first_ts"][rows] = ts_c[first]
        ft["plo"][rows] = plo_c[first]
        ft["hi"][rows] = hi_c[first]

        # ---- kept packets -> stored cells
        keep = real if self.keep_zero_payload else real & (pay_c > 0)
        kpos = np.flatnonzero(keep)
        self.counts["zero_payload_dropped"] += int(m - kpos.size)
        kf = fid[kpos]
        n_kept = np.bincount(kf, minlength=n_local)
        kstart = np.zeros(n_local, dtype=np.int64)
        np.cumsum(n_kept[:-1], out=kstart[1:])
        before = ft["n_kept"][row]  # kept packets of the biflow in earlier windows
        rank = before[kf] + np.arange(kpos.size) - kstart[kf]
        gets_client = (before == 0) & (n_kept > 0)
        ft["client"][row[gets_client]] = src_c[kpos[kstart[gets_client]]]
        client = ft["client"][row]
        ft["n_kept"][row] = before + n_kept
        self.counts["packets_beyond_max"] += int((rank >= width).sum())
        sel = rank < width
        kpos, kf, rank = kpos[sel], kf[sel], rank[sel]
        direction = np.where(src_c[kpos] == client[kf], 1, -1).astype(np.int8)
        r = row[kf]
        ft["lengths"][r, rank] = direction * pay_c[kpos]
        ft["dirs"][r, rank] = direction
        ft["times"][r, rank] = ts_c[kpos]

        # ---- key state after the window: last time, FIN/RST since the last anchor, open biflow
        gend = np.append(np.flatnonzero(gstart)[1:], mc) - 1  # last row of each key
        last_ts, open_row = ts_c[gend], row[fid[gend]]
        fin = np.zeros(gend.size, dtype=bool)
        if self.split_on_fin:
            fin = (csum[gend + 1] - csum[last_anchor[gend]]) > 0
        kt["last_ts"][kold], kt["fin"][kold], kt["row"][kold] = last_ts[old], fin[old], open_row[old]
        fresh = ~old
        krows = kt.extend(int(fresh.sum()))
        kt["last_ts"][krows], kt["fin"][krows], kt["row"][krows] = last_ts[fresh], fin[fresh], open_row[fresh]
        fresh_keys = zip(plo_s[gs[fresh]].tolist(), hi_s[gs[fresh]].tolist(), strict=True)
        self._keys.update(zip(fresh_keys, range(krows.start, krows.stop), strict=True))
        self._seen += m

    # ------------------------------------------------------------------ result
    def finish(self) -> tuple[dict, dict]:
        """(FlowSet column dict without ``source``/labels, counters) of everything added."""
        counts = dict(self.counts)
        width = self.width
        if self._seen == 0:
            return _empty_columns(width), counts
        ft = self._f
        n = ft.n
        n_kept = ft["n_kept"][:n]
        keep_flow = n_kept >= max(self.min_packets, 1)
        counts["flows_below_min_packets"] = int((~keep_flow).sum())
        fsel = np.flatnonzero(keep_flow)
        fsel = fsel[np.argsort(ft["first_pos"][fsel], kind="stable")]
        counts["flows"] = int(fsel.size)
        times = ft["times"][fsel]
        n_packets = np.minimum(n_kept[fsel], width).astype(np.int32)
        iat = np.zeros_like(times)
        iat[:, 1:] = np.maximum(times[:, 1:] - times[:, :-1], 0.0)
        iat[np.arange(width)[None, :] >= n_packets[:, None]] = 0.0
        plo, hi = ft["plo"][fsel], ft["hi"][fsel]
        lo = plo & _LO_MASK
        cl = ft["client"][fsel]
        sv = np.where(cl == lo, hi, lo)  # endpoint of the other side
        table6 = np.asarray(list(self._v6), dtype=np.uint64).reshape(-1, 2)
        names = _format_ips(np.concatenate([cl >> 16, sv >> 16]), table6)
        k = fsel.size
        cols = {
            "lengths": ft["lengths"][fsel], "n_packets": n_packets, "directions": ft["dirs"][fsel],
            "iat": iat, "protocol": (plo >> 52).astype(np.int16),
            "client_ip": names[:k], "client_port": (cl & 0xFFFF).astype(np.int32),
            "server_ip": names[k:], "server_port": (sv & 0xFFFF).astype(np.int32),
            "first_ts": ft["first_ts"][fsel],
        }
        return cols, counts


def assemble(dec: Decoded, ts: np.ndarray, *, max_packets: int, idle_timeout: float,
             split_on_fin: bool, keep_zero_payload: bool, min_packets: int) -> tuple[dict, dict]:
    """Assemble one capture decoded at once: (FlowSet column dict without ``source``/labels, counters)."""
    asm = FlowAssembler(max_packets=max_packets, idle_timeout=idle_timeout, split_on_fin=split_on_fin,
                        keep_zero_payload=keep_zero_payload, min_packets=min_packets)
    asm.add(dec, ts)
    return asm.finish()


def _empty_columns(width: int) -> dict:
    return {
        "lengths": np.zeros((0, width), np.int32), "n_packets": np.zeros(0, np.int32),
        "directions": np.zeros((0, width), np.int8), "iat": np.zeros((0, width)),
        "protocol": np.zeros(0, np.int16), "client_ip": np.zeros(0, object),
        "client_port": np.zeros(0, np.int32), "server_ip": np.zeros(0, object),
        "server_port": np.zeros(0, np.int32), "first_ts": np.zeros(0),
    }
