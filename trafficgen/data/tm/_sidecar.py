"""The ``<file>.json`` sidecar of the npy/CSV formats: nodes, interval, unit and start, so that
a round trip is exact.

A sidecar is validated field by field: a wrong type or value raises
:class:`~trafficgen.errors.InputFormatError` naming the sidecar file, the field and what was
expected (never a bare TypeError/ValueError from deep inside).
"""
from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

from trafficgen._io import atomic_path
from trafficgen.data.tm._text import nodes_or_default
from trafficgen.data.tmseries import UNITS, TMSeries
from trafficgen.errors import InputFormatError

#: Fields a sidecar may hold.
SIDECAR_FIELDS = ("nodes", "interval_s", "unit", "start")


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_sidecar(series: TMSeries, path: Path) -> None:
    meta = {"nodes": series.nodes, "interval_s": series.interval_s, "unit": series.unit,
            "start": None if series.start is None else series.start.isoformat()}
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def read_sidecar(path: Path) -> dict:
    """The validated sidecar of ``path`` ({} when there is none): ``nodes`` a list of names,
    ``interval_s`` a positive number, ``unit`` one of the TM units, ``start`` an ISO time (or
    null). Unknown keys are ignored."""
    side_path = sidecar_path(path)
    if not side_path.exists():
        return {}
    try:
        side = json.loads(side_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFormatError(f"bad metadata sidecar: {exc}", path=side_path) from exc
    if not isinstance(side, dict):
        raise InputFormatError(f"metadata sidecar must be a JSON object with {', '.join(SIDECAR_FIELDS)}, "
                               f"got a {type(side).__name__}", path=side_path)

    def bad(field: str, expected: str):
        return InputFormatError(f"metadata sidecar field {field!r}: expected {expected}, got {side[field]!r}",
                                path=side_path)

    out = {}
    if side.get("nodes") is not None:
        nodes = side["nodes"]
        if not isinstance(nodes, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                  for v in nodes):
            raise bad("nodes", "a list of node names")
        if len({str(v) for v in nodes}) != len(nodes):
            raise bad("nodes", "distinct node names")
        out["nodes"] = [str(v) for v in nodes]
    if side.get("interval_s") is not None:
        value = side["interval_s"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise bad("interval_s", "a positive number of seconds")
        out["interval_s"] = float(value)
    if side.get("unit") is not None:
        if side["unit"] not in UNITS:
            raise bad("unit", f"one of {', '.join(UNITS)}")
        out["unit"] = side["unit"]
    if side.get("start"):
        try:
            out["start"] = datetime.fromisoformat(side["start"])
        except (TypeError, ValueError):
            raise bad("start", "an ISO 8601 time such as 2004-03-01T00:00:00, or null") from None
    return out


def resolve_meta(path: Path, n: int | None, nodes, interval_s, unit, start, default_nodes=None) -> dict:
    """Metadata from keywords, else the sidecar, else ``default_nodes`` / "0".."N-1" for nodes."""
    side = read_sidecar(path)
    from_sidecar = nodes is None and "nodes" in side
    nodes = nodes if nodes is not None else side.get("nodes", default_nodes)
    n = len(nodes) if n is None and nodes is not None else n
    interval_s = interval_s if interval_s is not None else side.get("interval_s")
    unit = unit if unit is not None else side.get("unit")
    if start is None:
        start = side.get("start")
    if interval_s is None or unit is None:
        raise InputFormatError(f"interval_s and unit are not in the file; pass them or keep the "
                               f"{sidecar_path(path).name} sidecar", path=path)
    if from_sidecar and len(nodes) != n:
        raise InputFormatError(f"metadata sidecar names {len(nodes)} nodes but {path.name} holds {n}",
                               path=sidecar_path(path))
    return {"nodes": nodes_or_default(nodes, n, path), "interval_s": float(interval_s),
            "unit": unit, "start": start, "nodes_from": sidecar_path(path) if from_sidecar else path}
