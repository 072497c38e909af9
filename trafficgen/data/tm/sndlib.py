"""SNDLib dynamic demand XML: one ``<network>`` file = one matrix; a directory (sorted by name)
or a list of files = a series."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from trafficgen.data.tm._xml import (
    GRANULARITY,
    SECONDS,
    XML_UNITS,
    parse_time,
    xml_files,
    xml_float,
    xml_root,
    xml_series,
)
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError

__all__ = ["read_sndlib_xml"]


def _sndlib_file(path: Path):
    root = xml_root(path)
    seen = [n.get("id") for n in root.iter("node") if n.get("id") is not None]
    demands: dict[tuple[str, str], float] = {}
    for k, d in enumerate(root.iter("demand")):
        src, dst, val = d.findtext("source"), d.findtext("target"), d.findtext("demandValue")
        if src is None or dst is None or val is None:
            raise InputFormatError(f"demand {d.get('id') or k}: needs <source>, <target>, <demandValue>",
                                   path=path, offset=k)
        src, dst = src.strip(), dst.strip()
        demands[src, dst] = demands.get((src, dst), 0.0) + xml_float(val, path, f"demand {d.get('id')}")
        seen += [src, dst]
    meta = {}
    gran = GRANULARITY.match(root.findtext("meta/granularity") or "")
    if gran:
        meta["interval_s"] = float(gran.group(1)) * SECONDS[gran.group(2).lower()]
    raw_unit = (root.findtext("meta/unit") or "").strip().lower()
    meta["unit"] = XML_UNITS.get(raw_unit, "Mbit/s")
    meta["start"] = parse_time(root.findtext("meta/time"))
    return seen, demands, meta


def read_sndlib_xml(path, *, nodes=None, interval_s: float | None = None, unit: str | None = None,
                    start: datetime | None = None) -> TMSeries:
    """Read SNDLib demand XML: one ``<network>`` file = one matrix (a directory, sorted by name,
    or a list of files = a series).

    Demands are ``<demands><demand id><source/><target/><demandValue/></demand>``; repeated
    (source, target) pairs are summed. Nodes: ``nodes`` or the ``<nodes>`` order of the files
    (then demand endpoints not listed there). Unit: ``<meta><unit>`` (SNDLib's MBITPERSEC ->
    "Mbit/s", the default). Interval: ``interval_s`` or ``<meta><granularity>`` ("15min").
    """
    files = xml_files(path)
    parsed = [_sndlib_file(f) for f in files]
    return xml_series(files, parsed, nodes, interval_s, unit, start, "sndlib")
