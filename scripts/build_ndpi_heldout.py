"""Build a held-out real flow dataset from the nDPI test captures the shipped subset leaves out.

The shipped subset (trafficgen/datasets/ndpi) holds the 201 captures with flows of its 33 apps.
This script reads the OTHER captures of nDPI's test suite (../shared/data/ndpi/pcap), labels their
biflows with nDPI's labels.csv (matched by capture, L4 protocol and endpoint pair; "Unknown"
dropped), keeps the apps with >= 10 labelled flows and writes a FlowSet: a real data set that no
default of the library was tuned on (issue 17's extra data set).

Usage: python scripts/build_ndpi_heldout.py ../shared/data/ndpi out/ndpi_heldout.parquet [--packets 32]
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from trafficgen.data.flows.pcap import read_pcaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ndpi", type=Path, help="the shared nDPI folder (pcap/ and labels.csv)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--min-flows", type=int, default=10, help="apps with fewer labelled flows are dropped "
                    "(10 keeps 652 flows of 27 apps; 30 keeps only 273 flows of 3)")
    args = ap.parse_args()
    shipped = {p.stem for p in (Path(__file__).resolve().parents[1] / "trafficgen" / "datasets" / "ndpi"
                                / "pcap").iterdir()}
    captures = sorted(p for p in (args.ndpi / "pcap").iterdir() if p.stem not in shipped)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flows = read_pcaps(captures, labels=args.ndpi / "labels.csv", on_error="skip", max_packets=args.packets,
                           progress=False)
    counts = flows.class_counts()
    keep = sorted(c for c, k in counts.items() if k >= args.min_flows and c != "Unknown")
    flows = flows[np.flatnonzero(np.isin(flows.labels, keep))]
    flows.meta.update({"dataset": "ndpi_heldout", "captures": len(captures)})
    flows.to_parquet(args.out)
    print(f"{len(captures)} captures not in the shipped subset -> {len(flows)} flows of {len(keep)} apps: "
          + ", ".join(f"{c} {counts[c]}" for c in keep))


if __name__ == "__main__":
    main()
