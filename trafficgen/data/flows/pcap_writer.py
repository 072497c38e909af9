"""Export a :class:`~trafficgen.data.flowset.FlowSet` as a pcap capture that tools can replay.

>>> result = flows.to_pcap("out.pcap", labels_path="out.labels.csv", random_state=0)  # doctest: +SKIP
>>> back = read_pcaps("out.pcap", labels="out.labels.csv", max_packets=flows.max_packets)  # doctest: +SKIP

Every flow becomes a conversation between synthetic endpoints; :func:`read_pcaps` gives the flows
back (same label, signed payload lengths and directions per flow; IATs to the capture's time
resolution; flows in the order of their first packet, ``result.order``):

* **Endpoints.** The client address is drawn from ``client_pool``, the server address from
  ``server_pool`` (one IPv4 and/or one IPv6 network each; defaults: private ``10.0.0.0/8`` and
  ``fd00:1::/64`` clients, documentation ``198.51.100.0/24`` and ``2001:db8::/64`` servers), the
  client port from 49152-65535. Every flow gets its own (protocol, endpoint pair), so no reader
  merges two flows. ``ipv6="flows"`` keeps each flow's own address family (provenance
  ``client_ip``), IPv4 where unknown; a number is the fraction of flows made IPv6 at random.
* **Protocol and server port**, per flow, first found of: the flow's own provenance
  (``protocol``, ``server_port``); ``protocol`` / ``server_ports`` given per class (a dict) or for
  all; learned from ``ports_from`` (training flows: the most common protocol of the class and the
  most common server port of the class and protocol); ``"tcp"`` and ``default_port``.
* **TCP** (RFC 793 / 1122 / 5681 behaviour of a common stack): three-way handshake (SYN and
  SYN/ACK with MSS, window scale and SACK-permitted options), one segment per FlowSet packet
  (PSH/ACK) with sequence and acknowledgement numbers advancing by payload, a pure ACK after every
  second segment of a burst and when the delayed-ACK timer (``delayed_ack`` seconds) expires
  before the peer's next packet (otherwise the peer's next segment carries the ACK), keep-alive
  probes and their ACKs in idle gaps longer than ``keepalive`` seconds (readers with a 120 s idle
  timeout keep the flow whole), and a FIN/ACK, FIN/ACK, ACK close started by the client. The
  handshake takes one ``rtt``, the close three half-RTTs after the last segment.
* **UDP**: one datagram per packet.
* **Payload bytes** are zeros or random (``payload="random"``), never training data. IPv4 header,
  TCP and UDP checksums are correct (UDP checksum 0 sent as 0xFFFF). A packet whose payload does
  not fit one IP packet (over 65,495 TCP / 65,507 UDP bytes on IPv4) is a ConfigError.
* **Time.** Flow starts (the SYN, or the first datagram) follow a Poisson process of ``rate``
  flows per second from ``t0`` (``starts="rate"``), the training data's arrivals (``"empirical"``:
  gaps between consecutive flow starts of ``timing_from`` inside each of its captures, from
  ``t0``), or are the flows' own ``first_ts`` (``starts="flows"``). Packets follow the flows'
  IATs, rounded to the capture's resolution (``time_resolution`` "us" or "ns"; float64 epoch
  seconds carry about 0.24 us, so "ns" captures read back to that). Flows without IATs get them
  drawn per class and per
  condition (same direction as the previous packet, or a direction change) from the empirical
  IATs of ``timing_from``; without it from :data:`DEFAULT_IAT` (exponential, mean 1 ms within a
  direction, 20 ms at a direction change). Either is said by an :class:`ExportWarning` and in
  ``result.timing``.

Link types: Ethernet (locally administered MACs) or raw IP.

Pipeline: :func:`plan_export` chooses per flow (this module: protocol, server port, family;
:mod:`~trafficgen.data.flows.pcap_endpoints`: addresses and ports;
:mod:`~trafficgen.data.flows.pcap_timing`: IATs and starts) and lays out every packet
(:mod:`~trafficgen.data.flows.pcap_conversation`); :func:`write_pcap` renders them
(:mod:`~trafficgen.data.flows.pcap_render`: vectorised numpy headers and checksums, byte for byte
what dpkt builds packet by packet, many times faster; ``benchmarks/export.py`` measures both).
"""
from __future__ import annotations

import csv
import inspect
import os
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trafficgen._io import atomic_path, check_output_path
from trafficgen._random import check_random_state
from trafficgen.data.flows.pcap_conversation import Packets, plan_conversations
from trafficgen.data.flows.pcap_endpoints import DEFAULT_CLIENT_POOL, DEFAULT_SERVER_POOL, draw_endpoints
from trafficgen.data.flows.pcap_render import LINKTYPES, TIME_RESOLUTIONS, max_payload, write_capture
from trafficgen.data.flows.pcap_timing import DEFAULT_IAT, class_codes, flow_labels, gap_ticks, start_ticks
from trafficgen.errors import ConfigError, InputFormatError

if TYPE_CHECKING:  # FlowSet.to_pcap calls write_pcap: FlowSet is only annotated here (no import cycle)
    from trafficgen.data.flowset import FlowSet


def _is_flowset(obj) -> bool:
    """Duck-typed FlowSet check (this module sits above flowset.py's to_pcap, so it does not import it)."""
    return type(obj).__name__ == "FlowSet" and hasattr(obj, "lengths") and hasattr(obj, "n_packets")

__all__ = ["write_pcap", "plan_export", "ExportPlan", "PcapExport", "ExportWarning", "DEFAULT_IAT", "write_labels_csv"]

#: Flow starts with ``starts="rate"`` begin here (2023-11-14 22:13:20 UTC).
DEFAULT_T0 = 1_700_000_000.0
_PROTOCOLS = {"tcp": 6, "udp": 17, 6: 6, 17: 17}
_LABEL_COLUMNS = ("pcap", "l4", "client_ip", "client_port", "server_ip", "server_port", "ndpi_proto", "app",
                  "category")


class ExportWarning(UserWarning):
    """Something about an export a user must know: IATs not from the flows, flows a reader may
    split or see differently."""


@dataclass
class PcapExport:
    """What :func:`write_pcap` wrote. ``flows`` is what :func:`~trafficgen.data.flows.pcap.read_pcaps`
    gives back: the exported flows in file order (``order`` indexes the input), with their
    synthetic provenance and IATs at the capture's resolution. ``packets_per_direction`` (n, 2):
    client->server and server->client packets of each flow, control packets included (what a
    flow meter such as nfstream counts)."""

    path: Path
    linktype: str
    time_resolution: str
    n_flows: int
    n_packets: int
    n_bytes: int
    timing: str  # "flows" | "empirical" | "default"
    starts: str
    payload: str
    flows: FlowSet
    order: np.ndarray
    packets_per_direction: np.ndarray
    labels_path: Path | None = None
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "labels_path": None if self.labels_path is None else str(self.labels_path),
                "linktype": self.linktype, "time_resolution": self.time_resolution, "n_flows": self.n_flows,
                "n_packets": self.n_packets, "n_bytes": self.n_bytes, "timing": self.timing,
                "starts": self.starts, "payload": self.payload, "notes": list(self.notes)}


@dataclass
class ExportPlan:
    """Every packet of an export before it is rendered (:func:`plan_export`): the exported flows
    (input order, flows without packets left out: ``keep`` indexes the input) and per flow their
    ``family`` (4 / 6), ``proto`` (6 / 17), ``endpoints`` (address bytes (n, 16), text, ports),
    ``gaps`` (ticks before each packet) and ``start`` tick; ``packets`` the packet table."""

    flows: FlowSet
    keep: np.ndarray
    family: np.ndarray
    proto: np.ndarray
    endpoints: dict
    gaps: np.ndarray
    start: np.ndarray
    packets: Packets
    timing: str
    time_resolution: str
    notes: list


def plan_export(flows: FlowSet, *, client_pool=DEFAULT_CLIENT_POOL, server_pool=DEFAULT_SERVER_POOL,
                ipv6: float | str = "flows", protocol: str | dict | None = None,
                server_ports: int | dict | None = None, default_port: int = 443, ports_from: FlowSet | None = None,
                timing_from: FlowSet | None = None, starts: str = "rate", rate: float = 100.0,
                t0: float = DEFAULT_T0, rtt: float = 0.02, delayed_ack: float = 0.04,
                keepalive: float | None = 100.0, time_resolution: str = "us", random_state=None) -> ExportPlan:
    """Choose endpoints, protocols, ports, IATs and start times and lay out every packet of the
    export (:func:`write_pcap` renders it; the options are its own)."""
    if not _is_flowset(flows):
        raise ConfigError(f"flows must be a FlowSet, got {type(flows).__name__}")
    if time_resolution not in TIME_RESOLUTIONS:
        raise ConfigError(f"time_resolution must be one of {', '.join(TIME_RESOLUTIONS)}, got {time_resolution!r}")
    if starts not in ("rate", "flows", "empirical"):
        raise ConfigError(f"starts must be 'rate', 'flows' or 'empirical', got {starts!r}")
    if starts == "rate" and not (np.isfinite(rate) and rate > 0):
        raise ConfigError(f"rate must be > 0 flows per second, got {rate}")
    if starts == "flows" and flows.first_ts is None:
        raise ConfigError("starts='flows' needs the flows' own start times (provenance first_ts); use starts='rate'")
    for name, value in (("rtt", rtt), ("delayed_ack", delayed_ack)):
        if not (np.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be >= 0 seconds, got {value}")
    if keepalive is not None and not (keepalive > max(rtt, delayed_ack)):
        raise ConfigError(f"keepalive must be longer than rtt and delayed_ack ({max(rtt, delayed_ack)} s), "
                          f"got {keepalive}")
    rng = check_random_state(random_state)
    res = TIME_RESOLUTIONS[time_resolution]
    notes: list[str] = []
    keep = np.flatnonzero(flows.n_packets > 0)
    if keep.size < len(flows):
        notes.append(f"{len(flows) - keep.size} flows without packets were not exported")
    fs = flows[keep] if keep.size < len(flows) else flows
    if len(fs) and np.any(fs.directions[:, 0] < 0):
        notes.append(f"{int((fs.directions[:, 0] < 0).sum())} flows start server->client: a reader takes the "
                     "first sender as the client, so they come back with their signs flipped")
    zero = int((fs.lengths[fs.valid_mask] == 0).sum())
    if zero:
        notes.append(f"{zero} zero-payload packets are written as pure ACKs (TCP) or empty datagrams (UDP): a "
                     "reader drops them by default, and keeping them (keep_zero_payload) keeps the handshakes too")
    proto = _protocols(fs, protocol, ports_from)
    _check_sizes(fs, proto)
    fam = _families(fs, ipv6, rng)
    gaps, timing = gap_ticks(fs, timing_from, res, rng)
    start = start_ticks(fs, starts, rate, t0, res, rng, ref=timing_from)
    ports = _server_ports(fs, proto, server_ports, default_port, ports_from)
    ends = draw_endpoints(fam, proto, ports, client_pool, server_pool, rng)
    if keepalive is None or np.any(proto == 17):
        idle = int(round(120.0 * res))
        unprobed = (proto == 17) if keepalive is not None else np.ones(len(fs), dtype=bool)
        long_gap = np.any((gaps > idle) & unprobed[:, None], axis=1)
        if long_gap.any():
            notes.append(f"{int(long_gap.sum())} flows have an idle gap over 120 s without keep-alives: readers "
                         "with a 120 s idle timeout (read_pcaps' and nfstream's default) split them")
    timing_note = {"empirical": "the flows carry no IATs: drawn from the per-class empirical IATs of timing_from",
                   "default": f"the flows carry no IATs: drawn from the default {DEFAULT_IAT} (exponential means, s)"}
    if timing in timing_note and np.any(fs.n_packets > 1):
        notes.insert(0, timing_note[timing])
    packets = plan_conversations(fs.lengths, fs.directions, fs.n_packets, gaps, start, proto, fam,
                                 rtt=int(round(rtt * res)), delayed_ack=int(round(delayed_ack * res)),
                                 keepalive=None if keepalive is None else int(round(keepalive * res)), rng=rng)
    return ExportPlan(flows=fs, keep=keep, family=fam, proto=proto, endpoints=ends, gaps=gaps, start=start,
                      packets=packets, timing=timing, time_resolution=time_resolution, notes=notes)


def write_pcap(flows: FlowSet, path: str | os.PathLike, *, linktype: str = "ethernet", payload: str = "zeros",
               labels_path: str | os.PathLike | None = None, progress: bool = False, n_jobs: int | None = None,
               random_state=None, **options) -> PcapExport:
    """Write ``flows`` to ``path`` as a pcap capture (module docstring: the rules); ``labels_path``
    also writes the labels CSV that ``read_pcaps(labels=...)`` / ``trafficgen ingest --labels``
    read. Both files are written atomically and checked before any work. Reading the capture back
    (``read_pcaps(path, labels=labels_path, max_packets=flows.max_packets)``) gives ``result.flows``:
    exactly the input's labels, signed lengths and directions (in ``result.order``) for flows that
    start client->server and hold no zero-payload packet (the FlowSet conventions), IATs to the
    capture's resolution. ``options``: those of
    :func:`plan_export` (``client_pool``, ``server_pool``, ``ipv6``, ``protocol``,
    ``server_ports``, ``default_port``, ``ports_from``, ``timing_from``, ``starts``, ``rate``,
    ``t0``, ``rtt``, ``delayed_ack``, ``keepalive``, ``time_resolution``). ``n_jobs``: chunks
    rendered at once in threads (None: 1; the bytes do not depend on it)."""
    if linktype not in LINKTYPES:
        raise ConfigError(f"linktype must be one of {', '.join(LINKTYPES)}, got {linktype!r}")
    if payload not in ("zeros", "random"):
        raise ConfigError(f"payload must be 'zeros' or 'random', got {payload!r}")
    unknown = sorted(set(options) - set(inspect.signature(plan_export).parameters) - {"flows", "random_state"})
    if unknown:
        raise ConfigError(f"unknown export option(s) {', '.join(map(repr, unknown))}")
    path = check_output_path(path, "file")
    if labels_path is not None:
        labels_path = check_output_path(labels_path, "file")
        if _is_flowset(flows) and flows.labels is None:
            raise ConfigError("labels_path needs labelled flows")
    rng = check_random_state(random_state)
    plan = plan_export(flows, random_state=rng, **options)
    for note in plan.notes:
        warnings.warn(note, ExportWarning, stacklevel=2)
    ends = plan.endpoints
    with atomic_path(path) as tmp:
        info = write_capture(tmp, plan.packets, family=plan.family, proto=plan.proto, client_addr=ends["client_addr"],
                             server_addr=ends["server_addr"], client_port=ends["client_port"],
                             server_port=ends["server_port"], linktype=linktype,
                             time_resolution=plan.time_resolution, payload=payload, rng=rng, progress=progress,
                             n_jobs=1 if n_jobs is None else int(n_jobs))
    order = np.argsort(plan.start, kind="stable")
    back = _expected_flows(plan, order, path)
    back.meta = dict(flows.meta)
    result = PcapExport(path=path, linktype=linktype, time_resolution=plan.time_resolution, n_flows=len(plan.flows),
                        n_packets=info["n_packets"], n_bytes=info["n_bytes"], timing=plan.timing,
                        starts=options.get("starts", "rate"), payload=payload, flows=back, order=plan.keep[order],
                        packets_per_direction=info["packets_per_direction"][order], notes=plan.notes)
    if labels_path is not None:
        write_labels_csv(back, labels_path)
        result.labels_path = labels_path
    return result


def write_labels_csv(flows: FlowSet, path: str | os.PathLike) -> Path:
    """The labels CSV of exported flows (``PcapExport.flows``) in the nDPI format ``read_pcaps``
    joins: ``pcap, l4, client_ip, client_port, server_ip, server_port, ndpi_proto, app, category``
    (the label in ``ndpi_proto`` and ``app``, ``category`` = "synthetic")."""
    for name in ("labels", "source", "protocol", "client_ip", "client_port", "server_ip", "server_port"):
        if getattr(flows, name) is None:
            raise ConfigError(f"a labels CSV needs the column {name!r}")
    l4 = {6: "TCP", 17: "UDP"}
    with atomic_path(path, kind="file") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(_LABEL_COLUMNS)
        for i in range(len(flows)):
            w.writerow([Path(str(flows.source[i])).name, l4[int(flows.protocol[i])], flows.client_ip[i],
                        int(flows.client_port[i]), flows.server_ip[i], int(flows.server_port[i]),
                        flows.labels[i], flows.labels[i], "synthetic"])
    return Path(path)


# ---------------------------------------------------------------------- per-flow choices

def _mode(counter: Counter) -> int:
    """The most common value (ties: the smallest)."""
    return min(counter, key=lambda v: (-counter[v], v))


def _protocol_number(value, what: str) -> int:
    key = value.lower() if isinstance(value, str) else value
    if key not in _PROTOCOLS:
        raise ConfigError(f"{what}: protocol must be 'tcp' or 'udp', got {value!r}")
    return _PROTOCOLS[key]


def _protocols(fs: FlowSet, protocol, ports_from) -> np.ndarray:
    if fs.protocol is not None:
        bad = np.flatnonzero(~np.isin(fs.protocol, (6, 17)))
        if bad.size:
            raise InputFormatError(f"flow {int(bad[0])} has protocol {int(fs.protocol[bad[0]])}; only TCP (6) and "
                                   "UDP (17) flows can be exported", offset=int(bad[0]))
        return fs.protocol.astype(np.int64)
    learned: dict = {}
    if ports_from is not None and ports_from.labels is not None and ports_from.protocol is not None:
        by_class: dict = defaultdict(Counter)
        for c, p in zip(ports_from.labels.tolist(), ports_from.protocol.tolist(), strict=True):
            by_class[c][p] += 1
        learned = {c: _mode(n) for c, n in by_class.items()}
    per_class = protocol if isinstance(protocol, dict) else {}
    default = 6 if protocol is None or isinstance(protocol, dict) else _protocol_number(protocol, "protocol")
    labels = flow_labels(fs)
    classes = sorted(set(labels.tolist()))
    table = np.empty(len(classes), dtype=np.int64)
    for k, c in enumerate(classes):
        if c in per_class:
            table[k] = _protocol_number(per_class[c], f"protocol[{c!r}]")
        elif c in learned and not isinstance(protocol, str):
            table[k] = int(learned[c])
        else:
            table[k] = default
    return table[class_codes(labels, classes)]


def _server_ports(fs: FlowSet, proto, server_ports, default_port, ports_from) -> np.ndarray:
    n = len(fs)
    for p in ([default_port, server_ports] if not isinstance(server_ports, dict) else
              [default_port, *server_ports.values()]):
        if p is not None and not (isinstance(p, (int, np.integer)) and 1 <= int(p) <= 65535):
            raise ConfigError(f"a server port must be an integer in [1, 65535], got {p!r}")
    if fs.server_port is not None:
        return fs.server_port.astype(np.int64)
    by_key: dict = defaultdict(Counter)  # (class, protocol) and (class, None) -> Counter of server ports
    if ports_from is not None and ports_from.labels is not None and ports_from.server_port is not None:
        pr = ports_from.protocol.tolist() if ports_from.protocol is not None else [None] * len(ports_from)
        for c, p, port in zip(ports_from.labels.tolist(), pr, ports_from.server_port.tolist(), strict=True):
            by_key[c, p][port] += 1
            by_key[c, None][port] += 1
    labels = flow_labels(fs)
    classes = sorted(set(labels.tolist()))
    codes = class_codes(labels, classes)
    out = np.full(n, int(default_port), dtype=np.int64)
    for k, c in enumerate(classes):
        sel = codes == k
        if isinstance(server_ports, dict) and c in server_ports:
            out[sel] = server_ports[c]
        elif isinstance(server_ports, (int, np.integer)):
            out[sel] = server_ports
        else:
            for p in (6, 17):
                found = by_key.get((c, p)) or by_key.get((c, None))
                if found:
                    out[sel & (proto == p)] = _mode(found)
    return out


def _families(fs: FlowSet, ipv6, rng) -> np.ndarray:
    n = len(fs)
    if isinstance(ipv6, str):
        if ipv6 != "flows":
            raise ConfigError(f"ipv6 must be 'flows' or a fraction in [0, 1], got {ipv6!r}")
        if fs.client_ip is None:
            return np.full(n, 4, dtype=np.int64)
        return np.asarray([6 if (ip is not None and ":" in ip) else 4 for ip in fs.client_ip], dtype=np.int64)
    if not 0.0 <= float(ipv6) <= 1.0:
        raise ConfigError(f"ipv6 must be 'flows' or a fraction in [0, 1], got {ipv6!r}")
    return np.where(rng.random(n) < float(ipv6), 6, 4).astype(np.int64)


def _check_sizes(fs: FlowSet, proto) -> None:
    big = np.abs(fs.lengths).max(axis=1) if fs.max_packets else np.zeros(len(fs), np.int64)
    limit = np.where(proto == 6, max_payload(4, 6), max_payload(4, 17))
    bad = np.flatnonzero(big > limit)
    if bad.size:
        i = int(bad[0])
        raise ConfigError(f"flow {i} has a packet of {int(big[i])} payload bytes: more than one IPv4 "
                          f"{'TCP' if proto[i] == 6 else 'UDP'} packet carries ({int(limit[i])})")


# ---------------------------------------------------------------------- endpoints

def _expected_flows(plan: ExportPlan, order, path) -> FlowSet:
    """What a reader gives back: flows in file order (by start), IATs at the capture's resolution."""
    fs, ends, res = plan.flows, plan.endpoints, TIME_RESOLUTIONS[plan.time_resolution]
    iat = plan.gaps.astype(np.float64) / res
    return type(fs)(lengths=fs.lengths[order], n_packets=fs.n_packets[order], directions=fs.directions[order],
                   iat=iat[order], labels=None if fs.labels is None else fs.labels[order],
                   source=np.full(len(fs), str(path), dtype=object), protocol=plan.proto[order],
                   client_ip=ends["client_ip"][order], client_port=ends["client_port"][order],
                   server_ip=ends["server_ip"][order], server_port=ends["server_port"][order],
                   first_ts=plan.start[order].astype(np.float64) / res)
