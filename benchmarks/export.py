"""Export speed: FlowSet.to_pcap (numpy layout) vs a plain dpkt loop writing the same packets, in one process.

    python benchmarks/export.py [--flows 100000] [--dpkt-packets 100000] [--repeat 3] [--out results.json]

Flows: ``--flows`` flows sampled from a Markov chain fitted on the shipped nDPI flows (IATs drawn
from the nDPI flows, protocols and server ports learned from them), so the packet sizes are those
of real traffic. Timed:

* ``to_pcap``: the whole export (endpoints, IATs, conversation plan, headers, checksums, writing),
  zero and random payload; packets/s counts every packet written (handshakes, ACKs and FINs too);
* ``plan`` / ``render``: the conversation plan alone and the rendering of that plan alone;
* ``dpkt loop``: the same plan rendered packet by packet with dpkt objects (``bytes()`` computes
  the checksums) for the first ``--dpkt-packets`` packets; its file must be byte-identical to the
  start of the numpy one (checked), so both do the same work.

The machine is shared (2 cores, other jobs running): the load average is printed beside the
numbers, which are contended, and ratios measured in one process are the figure to read.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def sample_flows(n: int):
    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.generators.markov import MarkovGenerator

    ndpi = load_ndpi_apps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flows = MarkovGenerator(timing=False).fit(ndpi).sample(n, random_state=0)
    return flows, ndpi


def dpkt_loop(plan, path: str, *, linktype: str, limit: int) -> int:
    """The baseline: one dpkt Ethernet/IP/TCP|UDP object per packet of ``plan``, ``bytes()`` for the
    checksums, a record header with struct. Returns the packets written."""
    import dpkt

    from trafficgen.data.flows.pcap_render import CLIENT_MAC, ROUTER_MAC, TIME_RESOLUTIONS, file_header

    pk, ends = plan.packets, plan.endpoints
    res = TIME_RESOLUTIONS[plan.time_resolution]
    k = min(limit, len(pk))
    cols = [a[:k].tolist() for a in (pk.flow, pk.tick, pk.sender, pk.flags, pk.seq, pk.ack, pk.length, pk.syn,
                                     pk.ip_id)]
    fam, proto = plan.family.tolist(), plan.proto.tolist()
    caddr = [bytes(a[:4] if v == 4 else a) for a, v in zip(ends["client_addr"], fam, strict=True)]
    saddr = [bytes(a[:4] if v == 4 else a) for a, v in zip(ends["server_addr"], fam, strict=True)]
    cport, sport_ = ends["client_port"].tolist(), ends["server_port"].tolist()
    mss = pk.mss.tolist()
    with open(path, "wb") as fh:
        fh.write(file_header(linktype, plan.time_resolution))
        for f, tick, sender, flags, seq, ack, length, syn, ip_id in zip(*cols, strict=True):
            client = sender > 0
            src, dst = (caddr[f], saddr[f]) if client else (saddr[f], caddr[f])
            sp, dp = (cport[f], sport_[f]) if client else (sport_[f], cport[f])
            data = bytes(length)
            if proto[f] == 6:
                opts = b""
                if syn:
                    opts = bytes([2, 4]) + struct.pack(">H", mss[f][0 if client else 1]) + bytes(
                        [1, 3, 3, 7, 4, 2, 1, 1])
                l4 = dpkt.tcp.TCP(sport=sp, dport=dp, seq=seq, ack=ack, off=(20 + len(opts)) // 4,
                                  flags=flags, win=64240 if syn else 65535, opts=opts, data=data)
            else:
                l4 = dpkt.udp.UDP(sport=sp, dport=dp, ulen=8 + length, data=data)
            if fam[f] == 4:
                ip = dpkt.ip.IP(id=ip_id, df=1, ttl=64, p=proto[f], src=src, dst=dst, data=l4)
                ip.len = 20 + len(l4)
            else:
                ip = dpkt.ip6.IP6(nxt=proto[f], hlim=64, src=src, dst=dst, data=l4, plen=len(l4))
            frame = ip
            if linktype == "ethernet":
                frame = dpkt.ethernet.Ethernet(dst=ROUTER_MAC if client else CLIENT_MAC,
                                               src=CLIENT_MAC if client else ROUTER_MAC,
                                               type=0x0800 if fam[f] == 4 else 0x86DD, data=ip)
            buf = bytes(frame)
            fh.write(struct.pack("<IIII", tick // res, tick % res, len(buf), len(buf)) + buf)
    return k


def render(plan, path, *, linktype="ethernet", payload="zeros", rng=0):
    """The rendering step of write_pcap alone (one thread)."""
    from trafficgen.data.flows.pcap_render import write_capture

    e = plan.endpoints
    return write_capture(path, plan.packets, family=plan.family, proto=plan.proto, client_addr=e["client_addr"],
                         server_addr=e["server_addr"], client_port=e["client_port"], server_port=e["server_port"],
                         linktype=linktype, time_resolution=plan.time_resolution, payload=payload,
                         rng=np.random.default_rng(rng))


def best(fn, repeat: int) -> tuple[float, float, object]:
    """(best wall seconds, CPU seconds of that run, result) over ``repeat`` runs."""
    runs, out = [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    wall, cpu = min(runs)
    return wall, cpu, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--dpkt-packets", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="also write the numbers as JSON")
    args = ap.parse_args(argv)

    from trafficgen.data.flows.pcap_writer import plan_export, write_pcap

    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          "(shared: numbers are contended)", flush=True)
    flows, ndpi = sample_flows(args.flows)
    opts = dict(timing_from=ndpi, ports_from=ndpi, random_state=0)
    results: dict = {"flows": len(flows), "cores": os.cpu_count(), "load_average": list(load)}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Path(tmp) / "export.pcap"
        for payload in ("zeros", "random"):
            for n_jobs in (1, 2):
                t, cpu, res = best(lambda p=payload, j=n_jobs: write_pcap(flows, out, payload=p, n_jobs=j, **opts),
                                   args.repeat)
                results[f"to_pcap_{payload}_jobs{n_jobs}"] = {
                    "seconds": t, "cpu_seconds": cpu, "packets": res.n_packets, "bytes": res.n_bytes,
                    "packets_per_s": res.n_packets / t, "mb_per_s": res.n_bytes / t / 1e6}
                print(f"to_pcap ({payload} payload, n_jobs={n_jobs}): {res.n_flows} flows, {res.n_packets} packets, "
                      f"{res.n_bytes / 1e6:.1f} MB written in {t:.2f} s (CPU {cpu:.2f} s): "
                      f"{res.n_packets / t:,.0f} packets/s, {res.n_bytes / t / 1e6:.0f} MB/s", flush=True)
        t_plan, c_plan, plan = best(lambda: plan_export(flows, **opts), args.repeat)
        m = len(plan.packets)
        t_render, c_render, _ = best(lambda: render(plan, out), args.repeat)
        print(f"  of which plan {t_plan:.2f} s (CPU {c_plan:.2f} s, {m / t_plan:,.0f} packets/s), render + write "
              f"{t_render:.2f} s (CPU {c_render:.2f} s, {m / t_render:,.0f} packets/s)", flush=True)
        base = Path(tmp) / "dpkt.pcap"
        t0 = time.perf_counter()
        k = dpkt_loop(plan, str(base), linktype="ethernet", limit=args.dpkt_packets)
        t_dpkt = time.perf_counter() - t0
        ours = out.read_bytes()
        theirs = base.read_bytes()
        same = ours[:len(theirs)] == theirs
        dpkt_rate = k / t_dpkt
        top = max(results["to_pcap_zeros_jobs1"]["packets_per_s"], results["to_pcap_zeros_jobs2"]["packets_per_s"])
        results.update(plan_seconds=t_plan, render_seconds=t_render, dpkt_packets=k, dpkt_seconds=t_dpkt,
                       dpkt_packets_per_s=dpkt_rate, dpkt_bytes_identical=same,
                       ratio_to_pcap_vs_dpkt=top / dpkt_rate, ratio_render_vs_dpkt=(m / t_render) / dpkt_rate,
                       load_average_after=list(os.getloadavg()))
        print(f"dpkt loop (same plan, first {k} packets): {t_dpkt:.2f} s, {dpkt_rate:,.0f} packets/s; "
              f"bytes identical to to_pcap's: {same}")
        print(f"ratio: to_pcap {results['ratio_to_pcap_vs_dpkt']:.0f}x the dpkt loop "
              f"(render alone {results['ratio_render_vs_dpkt']:.0f}x); goal >= 500,000 packets/s: "
              f"{'met' if top >= 5e5 else 'not met'} here ({top:,.0f}, zeros payload; load average now "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
