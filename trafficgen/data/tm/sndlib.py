"""SNDLib dynamic demand XML: one ``<network>`` file = one matrix; a directory (sorted by name)
or a list of files = a series.

What the files do not hold is said, never filled in silently:

* a file without any ``<demand>`` is an error when it is all there is (an all-zero matrix would
  pass for data); inside a series it stays a zero matrix, with a :class:`TMReadWarning` and its
  name in ``meta["files_without_demands"]``;
* SNDLib lists no node-to-itself demands (SNDLib's Abilene: 132 = 12 x 11 demands), so the
  diagonal is 0 because it is not in the file, where the shipped Abilene X files do measure it:
  ``meta["self_demands_in_file"]`` says which, with a :class:`TMReadWarning` when absent.

``topology="abilene"`` maps SNDLib's node names onto the shipped dataset's node ids and order
(:func:`sndlib_node_map`), so a matrix read here lines up with
:func:`trafficgen.datasets.load_abilene` and its routing matrix.
"""
from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

from trafficgen.data.tm._xml import (
    GRANULARITY,
    SECONDS,
    XML_UNITS,
    TMReadWarning,
    parse_time,
    xml_files,
    xml_float,
    xml_root,
    xml_series,
)
from trafficgen.data.tm.abilene import ABILENE_NODES
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError, InputFormatError

__all__ = ["read_sndlib_xml", "sndlib_node_map", "SNDLIB_TOPOLOGIES"]

#: Shipped dataset -> {SNDLib node name: the dataset's node id}, in the dataset's node order.
#: Abilene: SNDLib's ``abilene`` network names its 12 nodes exactly as Y. Zhang's X files do
#: (ATLAM5, ATLAng, ..., WASHng; SNDLib's abilene.gml lists them in the same order).
SNDLIB_TOPOLOGIES: dict[str, dict[str, str]] = {"abilene": {name: name for name in ABILENE_NODES}}

_NO_GEANT = ("no mapping from SNDLib's GEANT node names (at1.at, be1.be, ...) to the shipped GEANT "
             "topology is known: its source (FIGRET) numbers the 22 nodes 0-21 without names; pass "
             "nodes=[...] in the order you need instead")


def sndlib_node_map(topology: str) -> dict[str, str]:
    """{SNDLib node name: node id of the shipped ``topology``} (insertion order = the dataset's)."""
    key = str(topology).lower()
    if key == "geant":
        raise ConfigError(_NO_GEANT)
    if key not in SNDLIB_TOPOLOGIES:
        raise ConfigError(f"no SNDLib node mapping for {topology!r}; known: {', '.join(SNDLIB_TOPOLOGIES)}")
    return dict(SNDLIB_TOPOLOGIES[key])


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


def _rename(parsed, files, mapping: dict[str, str], topology: str):
    """Node names of every parsed file through ``mapping`` (an unknown name is an error)."""
    out = []
    for f, (seen, demands, meta) in zip(files, parsed, strict=True):
        unknown = sorted({name for name in seen if name not in mapping})
        if unknown:
            raise InputFormatError(f"nodes {unknown[:5]} are not SNDLib names of the shipped {topology} "
                                   f"topology ({', '.join(mapping)})", path=f)
        out.append(([mapping[name] for name in seen],
                    {(mapping[a], mapping[b]): v for (a, b), v in demands.items()}, meta))
    return out


def read_sndlib_xml(path, *, nodes=None, topology: str | None = None, interval_s: float | None = None,
                    unit: str | None = None, start: datetime | None = None) -> TMSeries:
    """Read SNDLib demand XML: one ``<network>`` file = one matrix (a directory, sorted by name,
    or a list of files = a series).

    Demands are ``<demands><demand id><source/><target/><demandValue/></demand>``; repeated
    (source, target) pairs are summed. Nodes: ``nodes``, or ``topology`` ("abilene": SNDLib names
    mapped to the shipped dataset's ids and order, see :func:`sndlib_node_map`), or the
    ``<nodes>`` order of the files (then demand endpoints not listed there). Unit:
    ``<meta><unit>`` (SNDLib's MBITPERSEC -> "Mbit/s", the default). Interval: ``interval_s`` or
    ``<meta><granularity>`` ("15min"). Missing demands are reported, see the module doc.
    """
    if topology is not None and nodes is not None:
        raise ConfigError("pass nodes= or topology=, not both (topology fixes the node order)")
    files = xml_files(path)
    parsed = [_sndlib_file(f) for f in files]
    empty = [str(f) for f, (_, demands, _) in zip(files, parsed, strict=True) if not demands]
    if len(empty) == len(files):
        raise InputFormatError("no <demand> elements: the file holds no traffic matrix (an all-zero "
                               "matrix would pass for data)" if len(files) == 1 else
                               f"none of the {len(files)} files holds a <demand> element", path=files[0])
    if topology is not None:
        mapping = sndlib_node_map(topology)
        parsed = _rename(parsed, files, mapping, topology)
        nodes = list(mapping.values())
    series = xml_series(files, parsed, nodes, interval_s, unit, start, "sndlib")
    if empty:
        warnings.warn(f"{len(empty)} of {len(files)} SNDLib files hold no demands and are read as all-zero "
                      f"matrices: {', '.join(Path(e).name for e in empty[:5])}", TMReadWarning, stacklevel=2)
    has_self = any(a == b for _, demands, _ in parsed for (a, b) in demands)
    if not has_self:
        warnings.warn("the SNDLib demands list no node-to-itself traffic: the diagonal is 0 because the file "
                      "does not hold it, not because it was measured (the Abilene X files do include it); "
                      "compare off-diagonal entries only", TMReadWarning, stacklevel=2)
    series.meta.update({"files_without_demands": empty, "self_demands_in_file": has_self})
    if topology is not None:
        series.meta["topology"] = str(topology).lower()
    return series
