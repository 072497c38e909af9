"""TOTEM IntraTM XML: ``<IntraTM ASID><src id><dst id>value</dst>``; one file = one matrix, a
directory (sorted by name) or a list of files = a series."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from trafficgen.data.tm._xml import XML_UNITS, parse_time, xml_files, xml_float, xml_root, xml_series
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError

__all__ = ["read_totem_xml"]


def _totem_file(path: Path):
    root = xml_root(path)
    tms = [el for el in root.iter() if isinstance(el.tag, str) and el.tag.lower() in ("intratm", "intra-tm")]
    if not tms:
        raise InputFormatError("no <IntraTM> element", path=path)
    seen, demands = [], {}
    for src in tms[0].iter("src"):
        a = src.get("id")
        for dst in src.iter("dst"):
            b = dst.get("id")
            if a is None or b is None:
                raise InputFormatError("<src> and <dst> need an id attribute", path=path)
            text = dst.findtext("value") if dst.find("value") is not None else dst.text
            demands[a, b] = demands.get((a, b), 0.0) + xml_float(text, path, f"src {a} dst {b}")
            seen += [a, b]
    if all(s.isdigit() for s in seen):  # numeric router ids: numeric order, not first appearance
        seen = sorted(set(seen), key=int)
    meta = {"start": parse_time(root.findtext("info/date"))}
    duration = root.findtext("info/duration")
    if duration and duration.strip():
        meta["interval_s"] = xml_float(duration, path, "<duration>")
    raw_unit = (root.findtext("info/units") or root.findtext("info/unit") or "").strip().lower()
    if raw_unit in XML_UNITS:
        meta["unit"] = XML_UNITS[raw_unit]
    return seen, demands, meta


def read_totem_xml(path, *, nodes=None, interval_s: float | None = None, unit: str | None = None,
                   start: datetime | None = None) -> TMSeries:
    """Read TOTEM IntraTM XML: ``<IntraTM ASID><src id><dst id>value</dst>`` (``<value>`` child
    also accepted); one file = one matrix, a directory (sorted by name) or list = a series.

    Numeric node ids are ordered numerically. Interval: ``interval_s`` or ``<info><duration>``
    (seconds), else 900 s (the GEANT TOTEM data is 15-minute). Unit: ``unit`` or
    ``<info><units>``, else "kbit/s" (how the anonymised GEANT TOTEM matrices are usually read;
    SNDLib's notes describe the raw values as sampled bytes per 15 min -- pass ``unit`` when your
    data says otherwise).
    """
    files = xml_files(path)
    parsed = [_totem_file(f) for f in files]
    if interval_s is None and parsed[0][2].get("interval_s") is None:
        interval_s = 900.0
    if unit is None:
        unit = parsed[0][2].get("unit", "kbit/s")
    return xml_series(files, parsed, nodes, interval_s, unit, start, "totem")
