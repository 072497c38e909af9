"""The ``<file>.json`` sidecar of the npy/CSV formats: nodes, interval, unit and start, so that
a round trip is exact."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from trafficgen._io import atomic_path
from trafficgen.data.tm._text import nodes_or_default
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_sidecar(series: TMSeries, path: Path) -> None:
    meta = {"nodes": series.nodes, "interval_s": series.interval_s, "unit": series.unit,
            "start": None if series.start is None else series.start.isoformat()}
    with atomic_path(sidecar_path(path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))


def resolve_meta(path: Path, n: int | None, nodes, interval_s, unit, start, default_nodes=None) -> dict:
    """Metadata from keywords, else the sidecar, else ``default_nodes`` / "0".."N-1" for nodes."""
    side = {}
    if sidecar_path(path).exists():
        try:
            side = json.loads(sidecar_path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputFormatError(f"bad metadata sidecar: {exc}", path=sidecar_path(path)) from exc
    nodes = nodes if nodes is not None else side.get("nodes", default_nodes)
    n = len(nodes) if n is None and nodes is not None else n
    interval_s = interval_s if interval_s is not None else side.get("interval_s")
    unit = unit if unit is not None else side.get("unit")
    if start is None and side.get("start"):
        start = datetime.fromisoformat(side["start"])
    if interval_s is None or unit is None:
        raise InputFormatError(f"interval_s and unit are not in the file; pass them or keep the "
                               f"{sidecar_path(path).name} sidecar", path=path)
    return {"nodes": nodes_or_default(nodes, n, path), "interval_s": float(interval_s),
            "unit": unit, "start": start}
