"""Ingestion speed: trafficgen.read_pcap vs a plain dpkt loop vs nfstream, in one process.

    python benchmarks/ingest.py [--packets 1000000] [--real DIR] [--skip-nfstream] [--repeat 2]

(a) the real Ethernet pcap captures of DIR (default ../shared/data/ndpi/pcap) concatenated into one
    temporary capture; (b) a synthetic Ethernet/IPv4 TCP+UDP capture of --packets packets written
    with dpkt. Prints packets/s of each reader and the ratios to the dpkt loop. Every reader keeps
    the first 10 packet sizes per biflow, so they do comparable work.
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

N_FIRST = 10


def dpkt_loop(path: str) -> int:
    """The baseline: dpkt.pcap.Reader + dpkt.ethernet.Ethernet + a per-packet dict of flows."""
    import dpkt

    flows: dict = {}
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
            except (dpkt.UnpackError, dpkt.NeedData):
                continue
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            l4 = ip.data
            if not isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                continue
            a, b = (ip.src, l4.sport), (ip.dst, l4.dport)
            key = (ip.p, a, b) if a <= b else (ip.p, b, a)
            size = len(l4.data)
            if size == 0:
                continue
            f = flows.get(key)
            if f is None:
                flows[key] = f = [a, []]
            if len(f[1]) < N_FIRST:
                f[1].append(size if a == f[0] else -size)
    return len(flows)


def trafficgen_read(path: str) -> int:
    from trafficgen.data.flows.pcap import read_pcap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(read_pcap(path, max_packets=N_FIRST))


def nfstream_read(path: str) -> int:
    import nfstream

    df = nfstream.NFStreamer(source=path, n_dissections=0, statistical_analysis=False,
                             splt_analysis=N_FIRST, n_meters=1).to_pandas()
    return len(df)


def concat_real(src_dir: Path, out: str) -> int:
    """Concatenate the little-endian microsecond Ethernet pcaps of src_dir (records copied as is)."""
    n = 0
    with open(out, "wb") as fo:
        fo.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for f in sorted(src_dir.glob("*.pcap")):
            data = f.read_bytes()
            if len(data) < 24 or data[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack_from("<I", data, 20)[0] != 1:
                continue
            pos, end, start = 24, len(data), 24
            ok = True
            while pos + 16 <= end:
                cap = struct.unpack_from("<I", data, pos + 8)[0]
                if cap > 262144 or pos + 16 + cap > end:
                    ok = False
                    break
                pos += 16 + cap
                n += 1
            if ok or pos > start:
                fo.write(data[start:pos])
    return n


def synthetic(out: str, n_packets: int, seed: int = 0) -> int:
    """TCP+UDP biflows of 2..40 packets, written with dpkt (headers built by dpkt per flow)."""
    import dpkt

    rng = np.random.default_rng(seed)
    written = 0
    with open(out, "wb") as fh:
        w = dpkt.pcap.Writer(fh, snaplen=65535, linktype=1)
        t = 1.7e9
        while written < n_packets:
            n_flows = 2000
            sizes = rng.integers(2, 41, n_flows)
            for k in range(n_flows):
                proto = 6 if k % 3 else 17
                cli = bytes([10, rng.integers(0, 255), rng.integers(0, 255), rng.integers(1, 255)])
                srv = bytes([192, 168, rng.integers(0, 255), rng.integers(1, 255)])
                cport, sport = int(rng.integers(1024, 65535)), (443 if proto == 6 else 53)
                templates = []
                for src, dst, sp, dp in ((cli, srv, cport, sport), (srv, cli, sport, cport)):
                    l4 = dpkt.tcp.TCP(sport=sp, dport=dp, flags=dpkt.tcp.TH_ACK) if proto == 6 else \
                        dpkt.udp.UDP(sport=sp, dport=dp)
                    ip = dpkt.ip.IP(src=src, dst=dst, p=proto, data=l4)
                    templates.append(dpkt.ethernet.Ethernet(src=b"\x00" * 6, dst=b"\x01" * 6, data=ip))
                for j in range(int(sizes[k])):
                    d = int(rng.random() < 0.5) if j else 0
                    payload = int(rng.integers(1, 1400))
                    frame = templates[d]
                    frame.data.data.data = b"\x00" * payload
                    if proto == 17:
                        frame.data.data.ulen = 8 + payload
                    frame.data.len = 0
                    frame.data.sum = 0
                    w.writepkt(bytes(frame), ts=t)
                    t += float(rng.exponential(0.001))
                    written += 1
                    if written >= n_packets:
                        return written
    return written


def bench(label: str, path: str, n_packets: int, readers, repeat: int) -> None:
    print(f"\n{label}: {n_packets:,} packets, {os.path.getsize(path) / 1e6:.1f} MB (best of {repeat})")
    rates = {}
    for name, fn in readers:
        dt = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            flows = fn(path)
            dt = min(dt, time.perf_counter() - t0)
        rates[name] = n_packets / dt
        print(f"  {name:12s} {dt:8.2f} s  {rates[name]:>12,.0f} packets/s  {flows:>8,} flows")
    base = rates.get("dpkt loop")
    for name, r in rates.items():
        if name != "dpkt loop" and base:
            print(f"  {name} / dpkt loop = {r / base:.1f}x")
    if "trafficgen" in rates and "nfstream" in rates:
        print(f"  trafficgen / nfstream = {rates['trafficgen'] / rates['nfstream']:.1f}x")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "ndpi" / "pcap")
    ap.add_argument("--skip-nfstream", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per reader")
    args = ap.parse_args(argv)
    readers = [("trafficgen", trafficgen_read), ("dpkt loop", dpkt_loop)]
    try:
        import nfstream  # noqa: F401

        if not args.skip_nfstream:
            readers.append(("nfstream", nfstream_read))
    except ImportError:
        print("nfstream not installed: skipped (pip install trafficgen[pcap])")
    with tempfile.TemporaryDirectory() as tmp:
        if args.real.exists():
            real = os.path.join(tmp, "real.pcap")
            n = concat_real(args.real, real)
            bench(f"(a) real Ethernet captures of {args.real}", real, n, readers, args.repeat)
        else:
            print(f"(a) skipped: {args.real} not found")
        syn = os.path.join(tmp, "synthetic.pcap")
        t0 = time.perf_counter()
        n = synthetic(syn, args.packets)
        print(f"\n(synthetic capture written with dpkt in {time.perf_counter() - t0:.1f} s)")
        bench("(b) synthetic Ethernet/IPv4 TCP+UDP", syn, n, readers, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
