"""Abilene X files (Y. Zhang's dataset) -> (T, 12, 12) :class:`~trafficgen.data.tmseries.TMSeries`.

One line per 5-minute interval, either the 144-column "realOD" files or the original 720-column
X files (5 blocks of 144: realOD, simpleGravity, simpleTomogravity, generalGravity,
generalTomogravity). Unit "100bytes" per 300 s. ``.gz`` files are read too.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from trafficgen.data.tm._text import nodes_or_default, parse_rows
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError

__all__ = ["ABILENE_NODES", "ABILENE_X_KINDS", "read_abilene_x"]

#: Node order of the Abilene X files (Y. Zhang's dataset).
ABILENE_NODES = ["ATLAM5", "ATLAng", "CHINng", "DNVRng", "HSTNng", "IPLSng", "KSCYng", "LOSAng",
                 "NYCMng", "SNVAng", "STTLng", "WASHng"]
#: The five 144-column blocks of an original 720-column Abilene X file, in file order.
ABILENE_X_KINDS = ("realOD", "simpleGravity", "simpleTomogravity", "generalGravity",
                   "generalTomogravity")


def read_abilene_x(path, *, kind: str = "realOD", nodes=None, start: datetime | None = None) -> TMSeries:
    """Read an Abilene X file (144-column realOD or original 720-column) as (T, 12, 12).

    ``kind`` picks the 144-column block of a 720-column file (one of :data:`ABILENE_X_KINDS`); a
    144-column file holds realOD only. Unit "100bytes" per 300 s; nodes :data:`ABILENE_NODES`.
    ``start`` is not in the file (X01 starts 2004-03-01 00:00, X02 one week later).
    """
    path = Path(path)
    if kind not in ABILENE_X_KINDS:
        raise InputFormatError(f"unknown kind {kind!r}; expected one of {ABILENE_X_KINDS}", path=path)
    data, _ = parse_rows(path, sep=None)  # (T, C)
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
    return TMSeries(values, nodes_or_default(nodes or ABILENE_NODES, 12, path), 300.0, "100bytes",
                    start, meta={"source": str(path), "kind": kind})
