"""Shared helpers of the XML TM readers (SNDLib, TOTEM): file lists, parsing without namespaces,
numbers, times, and the assembly of per-file demands into one series."""
from __future__ import annotations

import gzip
import math
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np

from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError


class TMReadWarning(UserWarning):
    """A TM file was read, but it lacks something (demands, the diagonal) a user would assume."""


XML_UNITS = {"bitpersec": "bit/s", "bps": "bit/s", "bit/s": "bit/s", "kbitpersec": "kbit/s",
             "kbps": "kbit/s", "kbit/s": "kbit/s", "mbitpersec": "Mbit/s", "mbps": "Mbit/s",
             "mbit/s": "Mbit/s", "gbitpersec": "Gbit/s", "gbps": "Gbit/s", "gbit/s": "Gbit/s",
             "bytes": "bytes"}
GRANULARITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|h|hour|d|day)s?\s*$", re.IGNORECASE)
SECONDS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def xml_files(path) -> list[Path]:
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.name.lower().endswith((".xml", ".xml.gz")))
            if not files:
                raise InputFormatError("directory holds no .xml files", path=path)
            return files
        return [path]
    files = [Path(p) for p in path]
    if not files:
        raise InputFormatError("empty list of XML files")
    return files


def xml_root(path: Path) -> ET.Element:
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            root = ET.parse(fh).getroot()
    except (OSError, ET.ParseError, EOFError, gzip.BadGzipFile) as exc:
        raise InputFormatError(f"not well-formed XML: {exc}", path=path) from exc
    for el in root.iter():  # drop namespaces: {http://sndlib.zib.de/network}demand -> demand
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.rsplit("}", 1)[1]
    return root


def xml_float(text, path: Path, what: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise InputFormatError(f"{what}: {text!r} is not a number", path=path) from None
    if not math.isfinite(value) or value < 0:
        raise InputFormatError(f"{what}: NaN/inf or negative value {value!r}", path=path)
    return value


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.strip()
    for fmt in (None, "%Y%m%d-%H%M", "%Y-%m-%d-%H-%M"):
        try:
            return datetime.fromisoformat(text) if fmt is None else datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def xml_series(files, parsed, nodes, interval_s, unit, start, kind) -> TMSeries:
    """parsed: per file (node order seen, {(src, dst): value}, meta) -> one TMSeries."""
    order: dict[str, int] = {}
    for seen, _, _ in parsed:
        for name in seen:
            order.setdefault(name, len(order))
    nodes = [str(v) for v in nodes] if nodes is not None else list(order)
    index = {name: k for k, name in enumerate(nodes)}
    values = np.zeros((len(parsed), len(nodes), len(nodes)))  # (T, N, N)
    for t, (_, demands, _) in enumerate(parsed):
        for (a, b), v in demands.items():
            if a not in index or b not in index:
                raise InputFormatError(f"node {a if a not in index else b!r} is not in the node list",
                                       path=files[t])
            values[t, index[a], index[b]] += v
    meta0 = parsed[0][2]
    if interval_s is None:
        interval_s = meta0.get("interval_s")
    if interval_s is None:
        raise InputFormatError("the file gives no interval (granularity/duration); pass interval_s",
                               path=files[0])
    unit = unit or meta0.get("unit")
    start = start or meta0.get("start")
    return TMSeries(values, nodes, float(interval_s), unit, start,
                    meta={"source": [str(f) for f in files], "format": kind})
