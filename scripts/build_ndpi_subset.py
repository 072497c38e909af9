"""Build the shipped nDPI subset (trafficgen/datasets/ndpi/) from nDPI's test captures.

Keeps, for every capture that holds flows of the classes with >= MIN_FLOWS labelled flows
(nDPI's "Unknown" excluded), only the packets of those labelled flows, at most KEEP_PACKETS per
biflow, each cut to SNAPLEN captured bytes (the original wire length is kept in the record
header, and readers take payload lengths from the IP/L4 headers, so the lengths are unchanged).
pcapng captures are rewritten as classic pcap with the same link type; the labels' `pcap` column
is renamed accordingly. Real packets, real headers; nothing is synthesised.

Usage: python scripts/build_ndpi_subset.py /path/to/shared/data/ndpi trafficgen/datasets/ndpi
"""
from __future__ import annotations

import collections
import csv
import shutil
import socket
import struct
import sys
from pathlib import Path

import dpkt

MIN_FLOWS = 30
KEEP_PACKETS = 64
SNAPLEN = 160


def _ip_of(linktype: int, buf: bytes):
    if linktype == dpkt.pcap.DLT_EN10MB:
        eth = dpkt.ethernet.Ethernet(buf)
        return eth.data
    if linktype == 113:
        return dpkt.sll.SLL(buf).data
    if linktype in (101, 228, 229, 12, 14):
        v = buf[0] >> 4
        return dpkt.ip.IP(buf) if v == 4 else dpkt.ip6.IP6(buf) if v == 6 else None
    if linktype == 9:
        return dpkt.ppp.PPP(buf).data
    return None


def _key(ip):
    if isinstance(ip, dpkt.ip.IP):
        src, dst = socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(socket.AF_INET, ip.dst)
    elif isinstance(ip, dpkt.ip6.IP6):
        src, dst = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(socket.AF_INET6, ip.dst)
    else:
        return None
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP):
        proto = "TCP"
    elif isinstance(l4, dpkt.udp.UDP):
        proto = "UDP"
    else:
        return None
    return proto, frozenset([(src, int(l4.sport)), (dst, int(l4.dport))])


def main(src: Path, dst: Path) -> None:
    rows = list(csv.DictReader(open(src / "labels.csv")))
    counts = collections.Counter(r["app"] for r in rows)
    keep_apps = {a for a, n in counts.items() if n >= MIN_FLOWS and a != "Unknown"}
    rows = [r for r in rows if r["app"] in keep_apps and (src / "pcap" / r["pcap"]).exists()]
    wanted = collections.defaultdict(set)
    for r in rows:
        wanted[r["pcap"]].add((r["l4"], frozenset([(r["client_ip"], int(r["client_port"])),
                                                      (r["server_ip"], int(r["server_port"]))])))
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "pcap").mkdir(parents=True)
    renamed = {}
    total_pkts = 0
    for name in sorted(wanted):
        out_name = Path(name).with_suffix(".pcap").name
        renamed[name] = out_name
        with open(src / "pcap" / name, "rb") as fh:
            reader = dpkt.pcap.UniversalReader(fh)
            linktype = reader.datalink()
            seen = collections.Counter()
            records = []
            for ts, buf in reader:
                try:
                    ip = _ip_of(linktype, buf)
                    key = _key(ip) if ip is not None else None
                except (dpkt.UnpackError, struct.error, ValueError, OSError):
                    continue
                if key is None or key not in wanted[name] or seen[key] >= KEEP_PACKETS:
                    continue
                seen[key] += 1
                records.append((ts, buf))
        if not records:
            print(f"skipped {name}: no packet of a labelled flow could be decoded")
            continue
        if any(not 0 <= float(ts) < 2**32 for ts, _ in records):
            print(f"skipped {name}: timestamps do not fit a classic pcap header")
            rows = [r for r in rows if r["pcap"] != name]
            continue
        with open(dst / "pcap" / out_name, "wb") as out:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, linktype))
            for ts, buf in records:
                usec = int(round(float(ts) * 1e6))
                cap = buf[:SNAPLEN]
                out.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(cap), len(buf)))
                out.write(cap)
        total_pkts += len(records)
    with open(dst / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        w.writeheader()
        rows = [r for r in rows if r["pcap"] in renamed and (dst / "pcap" / renamed[r["pcap"]]).exists()]
        for r in rows:
            w.writerow({**r, "pcap": renamed[r["pcap"]]})
    shutil.copy(src / "COPYING", dst / "COPYING")
    (dst / "SOURCE.md").write_text(
        "Subset of the nDPI test captures (github.com/ntop/nDPI, commit "
        "3b1286ab03b0c9223ac208a01868d8c1f6c0ae00, tests/cfgs/default/pcap), LGPL-3.0 (COPYING).\n"
        f"Built by scripts/build_ndpi_subset.py: classes with >= {MIN_FLOWS} labelled flows (Unknown "
        f"excluded), first {KEEP_PACKETS} packets per labelled biflow, {SNAPLEN}-byte snaplen "
        "(wire lengths kept), pcapng rewritten as pcap.\n"
        f"{len(list((dst / 'pcap').iterdir()))} captures, {total_pkts} packets, {len(rows)} labelled flows, "
        f"{len(keep_apps)} classes. labels.csv is nDPI's classification (not hand-made ground truth).\n")
    n_files = len(list((dst / "pcap").iterdir()))
    print(f"{n_files} captures, {total_pkts} packets, {len(rows)} labelled flows, {len(keep_apps)} classes")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
