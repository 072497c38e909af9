"""Readers and writers of traffic-matrix files -> :class:`~trafficgen.data.tmseries.TMSeries`.

Formats (all readers accept ``.gz``-compressed files):

* Abilene X files (:func:`read_abilene_x`): one line per 5-minute interval, either the 144-column
  "realOD" files or the original 720-column X files (5 blocks of 144: realOD, simpleGravity,
  simpleTomogravity, generalGravity, generalTomogravity). Unit "100bytes" per 300 s.
* FIGRET/DOTE ``.hist`` (:func:`read_hist`): one matrix per line, N*N whitespace-separated floats.
* SNDLib dynamic demand XML (:func:`read_sndlib_xml`) and TOTEM IntraTM XML
  (:func:`read_totem_xml`): one file = one matrix; a directory or a list of files = a series.
* ``.npy`` (:func:`read_tm_npy`) and ``.csv`` (:func:`read_tm_csv`), written by
  :func:`write_tm_npy` / :func:`write_tm_csv` together with a ``<file>.json`` sidecar holding
  nodes, interval, unit and start, so that a round trip is exact.

CSV layout (decided once): **wide** = one row per matrix, N*N values origin-major, with an
optional header of ``src->dst`` names (the writer always writes it; node names come from it);
**long** = header ``t,src,dst,value`` with one row per non-zero entry (missing entries are 0).
Rows are counted from 1, header included, in error messages.

Every reader validates: ragged rows, non-numbers, NaN/inf and negative values raise
:class:`~trafficgen.errors.InputFormatError` naming the file and the row.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError

__all__ = [
    "ABILENE_NODES", "ABILENE_X_KINDS", "read_abilene_x", "read_hist", "read_sndlib_xml",
    "read_totem_xml", "read_tm_npy", "read_tm_csv", "write_tm_npy", "write_tm_csv", "read_tm",
]

#: Node order of the Abilene X files (Y. Zhang's dataset).
ABILENE_NODES = ["ATLAM5", "ATLAng", "CHINng", "DNVRng", "HSTNng", "IPLSng", "KSCYng", "LOSAng",
                 "NYCMng", "SNVAng", "STTLng", "WASHng"]
#: The five 144-column blocks of an original 720-column Abilene X file, in file order.
ABILENE_X_KINDS = ("realOD", "simpleGravity", "simpleTomogravity", "generalGravity",
                   "generalTomogravity")


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _base_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def _parse_rows(path: Path, *, sep: str | None, header: bool = False) -> tuple[np.ndarray, list[int]]:
    """Numeric rows of a text file -> ((R, C) float64, 1-based line number of each row).

    Blank lines are skipped; ``header=True`` skips the first non-blank line. Raises
    InputFormatError (file + row) on non-numbers, ragged rows, NaN/inf and negative values.
    """
    rows, line_nos = [], []
    width = None
    try:
        with _open_text(path) as fh:
            skip = header
            for line_no, line in enumerate(fh, start=1):
                text = line.strip()
                if not text:
                    continue
                if skip:
                    skip = False
                    continue
                fields = text.split(sep)
                try:
                    row = np.array([float(f) for f in fields], dtype=np.float64)
                except ValueError:
                    bad = next(f for f in fields if not _is_float(f))
                    raise InputFormatError(f"row {line_no}: {bad!r} is not a number",
                                           path=path, offset=line_no) from None
                if width is None:
                    width = row.size
                elif row.size != width:
                    raise InputFormatError(
                        f"row {line_no}: expected {width} values (as in the first row), got {row.size}",
                        path=path, offset=line_no)
                rows.append(row)
                line_nos.append(line_no)
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise InputFormatError(f"cannot read text: {exc}", path=path) from exc
    if not rows:
        raise InputFormatError("no data rows", path=path)
    data = np.stack(rows)  # (R, C)
    _check_values(data, path, line_nos)
    return data, line_nos


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_values(data: np.ndarray, path, line_nos=None) -> None:
    """Raise on the first row holding NaN/inf or a negative value (rows named by line number)."""
    flat = data.reshape(data.shape[0], -1)
    for mask, what in ((~np.isfinite(flat), "NaN or infinite value"), (flat < 0, "negative value")):
        if mask.any():
            r, c = (int(v) for v in np.argwhere(mask)[0])
            row = line_nos[r] if line_nos is not None else r
            label = "row" if line_nos is not None else "matrix"
            raise InputFormatError(f"{label} {row}, column {c + 1}: {what} {float(flat[r, c])!r}",
                                   path=path, offset=row)


def _square_side(n_values: int, path) -> int:
    n = math.isqrt(n_values)
    if n * n != n_values:
        raise InputFormatError(f"{n_values} values per row is not N*N for any N", path=path, offset=1)
    return n


def _nodes_or_default(nodes, n: int, path) -> list[str]:
    if nodes is None:
        return [str(i) for i in range(n)]
    nodes = [str(v) for v in nodes]
    if len(nodes) != n:
        raise InputFormatError(f"{len(nodes)} node names for {n} nodes", path=path)
    return nodes


def read_abilene_x(path, *, kind: str = "realOD", nodes=None, start: datetime | None = None) -> TMSeries:
    """Read an Abilene X file (144-column realOD or original 720-column) as (T, 12, 12).

    ``kind`` picks the 144-column block of a 720-column file (one of :data:`ABILENE_X_KINDS`); a
    144-column file holds realOD only. Unit "100bytes" per 300 s; nodes :data:`ABILENE_NODES`.
    ``start`` is not in the file (X01 starts 2004-03-01 00:00, X02 one week later).
    """
    path = Path(path)
    if kind not in ABILENE_X_KINDS:
        raise InputFormatError(f"unknown kind {kind!r}; expected one of {ABILENE_X_KINDS}", path=path)
    data, _ = _parse_rows(path, sep=None)  # (T, C)
    n_od = len(ABILENE_NODES) ** 2
    if data.shape[1] == n_od:
        if kind != "realOD":
            raise InputFormatError(f"a 144-column file holds only realOD, not {kind!r}", path=path)
        block = data
    elif data.shape[1] == 5 * n_od:
        k = ABILENE_X_KINDS.index(kind)
        block = data[:, k * n_od:(k + 1) * n_od]
    else:
        raise InputFormatError(f"expected 144 or 720 columns, got {data.shape[1]}", path=path, offset=1)
    values = block.reshape(-1, 12, 12)  # (T, 12, 12), origin-major
    return TMSeries(values, _nodes_or_default(nodes or ABILENE_NODES, 12, path), 300.0, "100bytes",
                    start, meta={"source": str(path), "kind": kind})


def read_hist(path, *, interval_s: float = 900.0, unit: str = "bit/s", nodes=None,
              start: datetime | None = None) -> TMSeries:
    """Read a FIGRET/DOTE ``.hist`` file: one N*N matrix per line (origin-major)."""
    path = Path(path)
    data, _ = _parse_rows(path, sep=None)  # (T, N*N)
    n = _square_side(data.shape[1], path)
    return TMSeries(data.reshape(-1, n, n), _nodes_or_default(nodes, n, path), float(interval_s), unit,
                    start, meta={"source": str(path)})


# ----------------------------------------------------------------------------- npy / csv + sidecar

def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _write_sidecar(series: TMSeries, path: Path) -> None:
    meta = {"nodes": series.nodes, "interval_s": series.interval_s, "unit": series.unit,
            "start": None if series.start is None else series.start.isoformat()}
    with atomic_path(_sidecar(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def _resolve_meta(path: Path, n: int | None, nodes, interval_s, unit, start, default_nodes=None) -> dict:
    """Metadata from keywords, else the sidecar, else ``default_nodes`` / "0".."N-1" for nodes."""
    side = {}
    if _sidecar(path).exists():
        try:
            side = json.loads(_sidecar(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFormatError(f"bad metadata sidecar: {exc}", path=_sidecar(path)) from exc
    nodes = nodes if nodes is not None else side.get("nodes", default_nodes)
    n = len(nodes) if n is None and nodes is not None else n
    interval_s = interval_s if interval_s is not None else side.get("interval_s")
    unit = unit if unit is not None else side.get("unit")
    if start is None and side.get("start"):
        start = datetime.fromisoformat(side["start"])
    if interval_s is None or unit is None:
        raise InputFormatError(f"interval_s and unit are not in the file; pass them or keep the "
                               f"{_sidecar(path).name} sidecar", path=path)
    return {"nodes": _nodes_or_default(nodes, n, path), "interval_s": float(interval_s),
            "unit": unit, "start": start}


def write_tm_npy(series: TMSeries, path) -> Path:
    """Write ``series.values`` (T, N, N) float64 to ``path`` (.npy) + a ``<path>.json`` sidecar."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(series.values, dtype=np.float64), allow_pickle=False)
    _write_sidecar(series, path)
    return path


def read_tm_npy(path, *, nodes=None, interval_s: float | None = None, unit: str | None = None,
                start: datetime | None = None) -> TMSeries:
    """Read a (T, N, N) or (T, N*N) ``.npy`` array; metadata from the keywords or the sidecar."""
    path = Path(path)
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFormatError(f"not a readable .npy array: {exc}", path=path) from exc
    if values.ndim == 2:
        n = _square_side(values.shape[1], path)
        values = values.reshape(-1, n, n)
    if values.ndim != 3 or values.shape[1] != values.shape[2]:
        raise InputFormatError(f"expected shape (T, N, N) or (T, N*N), got {values.shape}", path=path)
    if not np.issubdtype(values.dtype, np.number):
        raise InputFormatError(f"expected a numeric array, got dtype {values.dtype}", path=path)
    values = values.astype(np.float64)
    _check_values(values, path)
    meta = _resolve_meta(path, values.shape[1], nodes, interval_s, unit, start)
    return TMSeries(values, meta["nodes"], meta["interval_s"], meta["unit"], meta["start"],
                    meta={"source": str(path)})


def write_tm_csv(series: TMSeries, path, *, layout: str = "wide") -> Path:
    """Write a CSV (``layout`` "wide" or "long", see the module doc) + a ``<path>.json`` sidecar.

    Values are written with 17 significant digits, so reading back is exact.
    """
    path = Path(path)
    if layout not in ("wide", "long"):
        raise InputFormatError(f"unknown CSV layout {layout!r}; use 'wide' or 'long'", path=path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        if layout == "wide":
            fh.write(",".join(f"{a}->{b}" for a in series.nodes for b in series.nodes) + "\n")
            np.savetxt(fh, series.flat, fmt="%.17g", delimiter=",")
        else:
            fh.write("t,src,dst,value\n")
            for t, i, j in np.argwhere(series.values != 0):
                fh.write(f"{t},{series.nodes[i]},{series.nodes[j]},{series.values[t, i, j]:.17g}\n")
    _write_sidecar(series, path)
    return path


def read_tm_csv(path, *, nodes=None, interval_s: float | None = None, unit: str | None = None,
                start: datetime | None = None) -> TMSeries:
    """Read a wide or long CSV (layout detected from the header; see the module doc)."""
    path = Path(path)
    with _open_text(path) as fh:
        first = next((line.strip() for line in fh if line.strip()), "")
    header = [h.strip() for h in first.split(",")]
    has_header = bool(first) and not all(_is_float(h) for h in header)
    if has_header and [h.lower() for h in header] == ["t", "src", "dst", "value"]:
        return _read_long_csv(path, nodes, interval_s, unit, start)
    data, _ = _parse_rows(path, sep=",", header=has_header)  # (T, N*N)
    n = _square_side(data.shape[1], path)
    if nodes is None and has_header:
        if len(header) != data.shape[1] or not all("->" in h for h in header):
            raise InputFormatError("header must name every column as src->dst", path=path, offset=1)
        nodes = [h.split("->", 1)[0] for h in header[::n]]
    meta = _resolve_meta(path, n, nodes, interval_s, unit, start)
    return TMSeries(data.reshape(-1, n, n), meta["nodes"], meta["interval_s"], meta["unit"],
                    meta["start"], meta={"source": str(path)})


def _read_long_csv(path: Path, nodes, interval_s, unit, start) -> TMSeries:
    entries = []
    order: dict[str, int] = {}
    with _open_text(path) as fh:
        lines = [(no, line.strip()) for no, line in enumerate(fh, start=1) if line.strip()][1:]
    for no, text in lines:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise InputFormatError(f"row {no}: expected 4 fields t,src,dst,value, got {len(parts)}",
                                   path=path, offset=no)
        try:
            t, value = int(parts[0]), float(parts[3])
        except ValueError:
            raise InputFormatError(f"row {no}: t must be an integer and value a number",
                                   path=path, offset=no) from None
        if t < 0 or not math.isfinite(value) or value < 0:
            raise InputFormatError(f"row {no}: negative t or NaN/inf/negative value", path=path, offset=no)
        for name in parts[1:3]:
            order.setdefault(name, len(order))
        entries.append((t, parts[1], parts[2], value))
    if not entries:
        raise InputFormatError("no data rows", path=path)
    meta = _resolve_meta(path, None, nodes, interval_s, unit, start, default_nodes=list(order))
    index = {name: k for k, name in enumerate(meta["nodes"])}
    n = len(index)
    values = np.zeros((max(e[0] for e in entries) + 1, n, n))  # (T, N, N)
    for t, a, b, value in entries:
        if a not in index or b not in index:
            raise InputFormatError(f"node {a if a not in index else b!r} is not in the node list", path=path)
        values[t, index[a], index[b]] += value
    return TMSeries(values, meta["nodes"], meta["interval_s"], meta["unit"], meta["start"],
                    meta={"source": str(path)})


# ----------------------------------------------------------------------------- dispatch

def read_tm(path, **kw) -> TMSeries:
    """Read any supported TM file or directory, dispatching on extension and content.

    ``.npy`` -> :func:`read_tm_npy`; ``.csv`` -> :func:`read_tm_csv`; ``.hist`` -> :func:`read_hist`;
    ``.xml`` (or a directory of them) -> SNDLib or TOTEM by the root element; ``.txt`` with 144 or
    720 columns -> :func:`read_abilene_x`, other ``.txt`` -> :func:`read_hist`. ``kw`` is passed on.
    """
    path = Path(path)
    if not path.exists():
        raise InputFormatError("no such file or directory", path=path)
    if path.is_dir():
        xmls = sorted(p for p in path.iterdir() if p.name.lower().endswith((".xml", ".xml.gz")))
        if not xmls:
            raise InputFormatError("directory holds no .xml traffic matrices", path=path)
        return _read_xml(xmls[0], path, kw)
    suffix = _base_suffix(path)
    if suffix == ".npy":
        return read_tm_npy(path, **kw)
    if suffix == ".csv":
        return read_tm_csv(path, **kw)
    if suffix == ".hist":
        return read_hist(path, **kw)
    if suffix == ".xml":
        return _read_xml(path, path, kw)
    if suffix in (".txt", ".dat", ""):
        with _open_text(path) as fh:
            first = next((line for line in fh if line.strip()), "")
        if len(first.split()) in (144, 720):
            return read_abilene_x(path, **kw)
        return read_hist(path, **kw)
    raise InputFormatError(f"unknown TM file type {suffix!r} (expected .npy, .csv, .hist, .xml, .txt)",
                           path=path)


def _read_xml(probe: Path, target, kw) -> TMSeries:
    with _open_text(probe) as fh:
        head = fh.read(4096)
    if "IntraTM" in head or "intra-tm" in head.lower():
        return read_totem_xml(target, **kw)
    return read_sndlib_xml(target, **kw)



# ----------------------------------------------------------------------------- SNDLib / TOTEM XML

_XML_UNITS = {"bitpersec": "bit/s", "bps": "bit/s", "bit/s": "bit/s", "kbitpersec": "kbit/s",
              "kbps": "kbit/s", "kbit/s": "kbit/s", "mbitpersec": "Mbit/s", "mbps": "Mbit/s",
              "mbit/s": "Mbit/s", "gbitpersec": "Gbit/s", "gbps": "Gbit/s", "gbit/s": "Gbit/s",
              "bytes": "bytes"}
_GRANULARITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|h|hour|d|day)s?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}


def _xml_files(path) -> list[Path]:
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


def _xml_root(path: Path) -> ET.Element:
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            root = ET.parse(fh).getroot()
    except (OSError, ET.ParseError, EOFError, gzip.BadGzipFile) as exc:
        raise InputFormatError(f"not well-formed XML: {exc}", path=path) from exc
    for el in root.iter():  # drop namespaces: {http://sndlib.zib.de/network}demand -> demand
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.rsplit("}", 1)[1]
    return root


def _xml_float(text, path: Path, what: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise InputFormatError(f"{what}: {text!r} is not a number", path=path) from None
    if not math.isfinite(value) or value < 0:
        raise InputFormatError(f"{what}: NaN/inf or negative value {value!r}", path=path)
    return value


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.strip()
    for fmt in (None, "%Y%m%d-%H%M", "%Y-%m-%d-%H-%M"):
        try:
            return datetime.fromisoformat(text) if fmt is None else datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def _xml_series(files, parsed, nodes, interval_s, unit, start, kind) -> TMSeries:
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


def _sndlib_file(path: Path):
    root = _xml_root(path)
    seen = [n.get("id") for n in root.iter("node") if n.get("id") is not None]
    demands: dict[tuple[str, str], float] = {}
    for k, d in enumerate(root.iter("demand")):
        src, dst, val = d.findtext("source"), d.findtext("target"), d.findtext("demandValue")
        if src is None or dst is None or val is None:
            raise InputFormatError(f"demand {d.get('id') or k}: needs <source>, <target>, <demandValue>",
                                   path=path, offset=k)
        src, dst = src.strip(), dst.strip()
        demands[src, dst] = demands.get((src, dst), 0.0) + _xml_float(val, path, f"demand {d.get('id')}")
        seen += [src, dst]
    meta = {}
    gran = _GRANULARITY.match(root.findtext("meta/granularity") or "")
    if gran:
        meta["interval_s"] = float(gran.group(1)) * _SECONDS[gran.group(2).lower()]
    raw_unit = (root.findtext("meta/unit") or "").strip().lower()
    meta["unit"] = _XML_UNITS.get(raw_unit, "Mbit/s")
    meta["start"] = _parse_time(root.findtext("meta/time"))
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
    files = _xml_files(path)
    parsed = [_sndlib_file(f) for f in files]
    return _xml_series(files, parsed, nodes, interval_s, unit, start, "sndlib")


def _totem_file(path: Path):
    root = _xml_root(path)
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
            demands[a, b] = demands.get((a, b), 0.0) + _xml_float(text, path, f"src {a} dst {b}")
            seen += [a, b]
    if all(s.isdigit() for s in seen):  # numeric router ids: numeric order, not first appearance
        seen = sorted(set(seen), key=int)
    meta = {"start": _parse_time(root.findtext("info/date"))}
    duration = root.findtext("info/duration")
    if duration and duration.strip():
        meta["interval_s"] = _xml_float(duration, path, "<duration>")
    raw_unit = (root.findtext("info/units") or root.findtext("info/unit") or "").strip().lower()
    if raw_unit in _XML_UNITS:
        meta["unit"] = _XML_UNITS[raw_unit]
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
    files = _xml_files(path)
    parsed = [_totem_file(f) for f in files]
    if interval_s is None and parsed[0][2].get("interval_s") is None:
        interval_s = 900.0
    if unit is None:
        unit = parsed[0][2].get("unit", "kbit/s")
    return _xml_series(files, parsed, nodes, interval_s, unit, start, "totem")
