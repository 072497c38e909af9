"""Readers and writers of traffic-matrix files -> :class:`~trafficgen.data.tmseries.TMSeries`.

One module per format (all readers accept ``.gz``-compressed files):

* :mod:`~trafficgen.data.tm.abilene`: Abilene X files (:func:`read_abilene_x`), 144-column
  realOD or the original 720-column files; unit "100bytes" per 300 s.
* :mod:`~trafficgen.data.tm.hist`: FIGRET/DOTE ``.hist`` (:func:`read_hist`), one N*N matrix
  per line.
* :mod:`~trafficgen.data.tm.sndlib` (:func:`read_sndlib_xml`) and :mod:`~trafficgen.data.tm.totem`
  (:func:`read_totem_xml`): one XML file = one matrix; a directory or a list of files = a series.
* :mod:`~trafficgen.data.tm.npy` and :mod:`~trafficgen.data.tm.csv`: ``.npy`` / ``.csv``
  written by :func:`write_tm_npy` / :func:`write_tm_csv` together with a ``<file>.json``
  sidecar holding nodes, interval, unit and start, so that a round trip is exact.

:func:`read_tm` dispatches on extension and content. Every reader validates: ragged rows,
non-numbers, NaN/inf and negative values raise :class:`~trafficgen.errors.InputFormatError`
naming the file and the row.
"""
from __future__ import annotations

from pathlib import Path

from trafficgen.data.tm._text import base_suffix, open_text
from trafficgen.data.tm._xml import TMReadWarning
from trafficgen.data.tm.abilene import ABILENE_NODES, ABILENE_X_KINDS, read_abilene_x
from trafficgen.data.tm.csv import read_tm_csv, write_tm_csv
from trafficgen.data.tm.hist import read_hist
from trafficgen.data.tm.npy import read_tm_npy, write_tm_npy
from trafficgen.data.tm.sndlib import read_sndlib_xml, sndlib_node_map
from trafficgen.data.tm.totem import read_totem_xml
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import InputFormatError

__all__ = [
    "ABILENE_NODES", "ABILENE_X_KINDS", "read_abilene_x", "read_hist", "read_sndlib_xml",
    "read_totem_xml", "read_tm_npy", "read_tm_csv", "write_tm_npy", "write_tm_csv", "read_tm",
    "sndlib_node_map", "TMReadWarning",
]


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
    suffix = base_suffix(path)
    if suffix == ".npy":
        return read_tm_npy(path, **kw)
    if suffix == ".csv":
        return read_tm_csv(path, **kw)
    if suffix == ".hist":
        return read_hist(path, **kw)
    if suffix == ".xml":
        return _read_xml(path, path, kw)
    if suffix in (".txt", ".dat", ""):
        with open_text(path) as fh:
            first = next((line for line in fh if line.strip()), "")
        if len(first.split()) in (144, 720):
            return read_abilene_x(path, **kw)
        return read_hist(path, **kw)
    raise InputFormatError(f"unknown TM file type {suffix!r} (expected .npy, .csv, .hist, .xml, .txt)",
                           path=path)


def _read_xml(probe: Path, target, kw) -> TMSeries:
    with open_text(probe) as fh:
        head = fh.read(4096)
    if "IntraTM" in head or "intra-tm" in head.lower():
        return read_totem_xml(target, **kw)
    return read_sndlib_xml(target, **kw)
