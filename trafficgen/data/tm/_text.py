"""Shared helpers of the text-based TM readers: open (``.gz`` too), parse numeric rows, validate
values, node lists. Rows are counted from 1, header included, in error messages."""
from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from trafficgen.errors import InputFormatError


def open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def base_suffix(path: Path) -> str:
    """The suffix below an optional ``.gz``: ``x.csv.gz`` -> ``.csv``."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def parse_rows(path: Path, *, sep: str | None, header: bool = False) -> tuple[np.ndarray, list[int]]:
    """Numeric rows of a text file -> ((R, C) float64, 1-based line number of each row).

    Blank lines are skipped; ``header=True`` skips the first non-blank line. Raises
    InputFormatError (file + row) on non-numbers, ragged rows, NaN/inf and negative values.
    """
    rows, line_nos = [], []
    width = None
    try:
        with open_text(path) as fh:
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
                    bad = next(f for f in fields if not is_float(f))
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
    check_values(data, path, line_nos)
    return data, line_nos


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_values(data: np.ndarray, path, line_nos=None) -> None:
    """Raise on the first row holding NaN/inf or a negative value (rows named by line number)."""
    flat = data.reshape(data.shape[0], -1)
    for mask, what in ((~np.isfinite(flat), "NaN or infinite value"), (flat < 0, "negative value")):
        if mask.any():
            r, c = (int(v) for v in np.argwhere(mask)[0])
            row = line_nos[r] if line_nos is not None else r
            label = "row" if line_nos is not None else "matrix"
            raise InputFormatError(f"{label} {row}, column {c + 1}: {what} {float(flat[r, c])!r}",
                                   path=path, offset=row)


def square_side(n_values: int, path) -> int:
    n = math.isqrt(n_values)
    if n * n != n_values:
        raise InputFormatError(f"{n_values} values per row is not N*N for any N", path=path, offset=1)
    return n


def nodes_or_default(nodes, n: int, path) -> list[str]:
    if nodes is None:
        return [str(i) for i in range(n)]
    nodes = [str(v) for v in nodes]
    if len(nodes) != n:
        raise InputFormatError(f"{len(nodes)} node names for {n} nodes", path=path)
    return nodes
