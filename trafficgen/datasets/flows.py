"""Shipped real flow datasets."""
from __future__ import annotations

import warnings
from pathlib import Path

from trafficgen.data.flowset import FlowSet

_HERE = Path(__file__).parent


def ndpi_capture_dir() -> Path:
    """Folder of the shipped nDPI captures (``pcap/``, ``labels.csv``, ``COPYING``)."""
    return _HERE / "ndpi"


def load_ndpi_apps(*, max_packets: int = 32, min_count: int = 30, progress: bool = False) -> FlowSet:
    """Labelled biflows of nDPI's test captures, classes with >= ``min_count`` flows.

    Source: nDPI's test captures (LGPL-3.0, see ``ndpi/COPYING`` and ``ndpi/SOURCE.md``), cut to
    the labelled flows of the 33 classes with >= 30 flows in nDPI's own labels. Labels are nDPI's
    classification joined by (capture, L4 protocol, unordered endpoints). Zero-payload packets
    are dropped (the FlowSet convention); the reader's skip counts are in
    ``meta["ingest_stats"]``. Ingested from the pcaps on every call (about a second).
    """
    from trafficgen.data.flows.pcap import read_pcaps

    root = ndpi_capture_dir()
    with warnings.catch_warnings():  # the known skip counts of the shipped captures are in meta
        warnings.simplefilter("ignore")
        flows = read_pcaps([root / "pcap"], labels=root / "labels.csv", max_packets=max_packets,
                           progress=progress)
    flows = flows.min_class_count(min_count) if min_count > 1 else flows
    flows.meta["dataset"] = "ndpi_apps"
    return flows


def load_cicdoh20(split: str = "all", *, max_packets: int = 32) -> FlowSet:
    """CICDOH20 flows (Benign, DNS2TCP, DNSCat2, Iodine) as shipped by CertTA (MIT).

    ``split``: "valid" (600 flows), "test" (600 flows) or "all". Lengths are signed **IP** packet
    lengths (``meta["length_kind"] == "ip"``), not payload lengths.
    """
    from trafficgen.data.flows.certta import read_certta_json

    root = _HERE / "certta"
    names = root / "labels.json"
    splits = {"valid": ["valid"], "test": ["test"], "all": ["valid", "test"]}
    if split not in splits:
        from trafficgen.errors import ConfigError

        raise ConfigError(f"unknown split {split!r}; use one of {sorted(splits)}")
    parts = [read_certta_json(root / f"cicdoh20_{s}.json.gz", label_names=names, max_packets=max_packets)
             for s in splits[split]]
    flows = FlowSet.concat(parts) if len(parts) > 1 else parts[0]
    flows.meta.update({"dataset": "cicdoh20", "length_kind": "ip"})
    return flows
