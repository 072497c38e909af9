"""The per-class length tables of the class quantile maps (:mod:`trafficgen.representations.length_maps`,
``NetDiffusGenerator(length_transform="class_...")``): which lengths each class used in training and
how often, overall, per packet position and per packet-count bucket, and the sparse form
config.json keeps them in."""
from __future__ import annotations

import numpy as np

from trafficgen.representations.length_maps import COUNT_BUCKETS, count_bucket

__all__ = ["class_length_tables", "class_position_counts", "dense_counts", "sparse_counts"]


def class_length_tables(flows, classes) -> tuple[dict, dict]:
    """({class: its training packets' distinct |L|, sorted}, {class: how many packets had each})."""
    lengths, counts = {}, {}
    for c in classes:
        table, n = np.unique(np.abs(flows.lengths[(flows.labels == c)[:, None] & flows.valid_mask]), return_counts=True)
        lengths[c], counts[c] = table.astype(int).tolist(), n.astype(int).tolist()
    return lengths, counts


def class_position_counts(flows, class_lengths: dict, width: int, *, by_count: bool = False) -> dict:
    """{class: (width, K) int64 how often each of its K table lengths (``class_lengths[class]``) was
    the packet at each position} (the ``"class_position_quantile"`` map); with ``by_count``
    (B, width, K), per packet-count bucket (:data:`COUNT_BUCKETS`) as well."""
    out = {}
    for c, table in class_lengths.items():
        table = np.asarray(table, dtype=np.int64)
        rows = np.asarray(flows.labels) == c
        mags = np.abs(flows.lengths[rows, :width]).astype(np.int64)  # (n_c, W)
        present = flows.valid_mask[rows, :width]  # (n_c, W)
        bucket = np.broadcast_to(count_bucket(np.maximum(flows.n_packets[rows], 1))[:, None] if by_count else
                                 np.zeros((len(mags), 1), dtype=np.int64), mags.shape)[present]
        counts = np.zeros((len(COUNT_BUCKETS) if by_count else 1, width, len(table)), dtype=np.int64)  # (B, W, K)
        pos = np.broadcast_to(np.arange(width), mags.shape)[present]
        np.add.at(counts, (bucket, pos, np.searchsorted(table, mags[present])), 1)
        out[c] = counts if by_count else counts[0]
    return out


def sparse_counts(counts: np.ndarray) -> list[list[int]]:
    """The nonzero entries of a count array as ``[i, j, .., count]`` rows (how config.json keeps
    the position tables: most (bucket, position, length) cells are empty)."""
    counts = np.asarray(counts)
    idx = np.argwhere(counts)  # (nnz, ndim)
    return np.column_stack([idx, counts[tuple(idx.T)]]).astype(np.int64).tolist()


def dense_counts(rows, shape: tuple[int, ...]) -> np.ndarray | None:
    """Inverse of :func:`sparse_counts` onto ``shape`` (int64); None if a row is malformed (wrong
    length, an index outside ``shape``, a count <= 0)."""
    try:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, len(shape) + 1)  # (nnz, ndim + 1)
    except (TypeError, ValueError):
        return None
    idx, val = rows[:, :-1], rows[:, -1]
    if np.any(idx < 0) or np.any(idx >= np.asarray(shape)) or np.any(val <= 0):
        return None
    out = np.zeros(shape, dtype=np.int64)
    np.add.at(out, tuple(idx.T), val)
    return out
