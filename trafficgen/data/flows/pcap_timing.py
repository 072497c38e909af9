"""IATs and flow start times of an export, in the capture's ticks (:func:`~trafficgen.data.flows.pcap_writer.write_pcap`).

* The flows' own IATs, rounded to the tick.
* Flows without IATs: each packet after the first draws its IAT uniformly from the IATs of
  ``timing_from`` (flows read from captures) of the same class and the same condition (same
  direction as the previous packet, or a direction change); a class or condition that set lacks
  falls back to its IATs of the condition over all classes. Without ``timing_from``: exponential
  IATs with the means of :data:`DEFAULT_IAT`.
* Starts: a Poisson process of ``rate`` flows per second from ``t0``, or the flows' ``first_ts``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from trafficgen.errors import ConfigError, InputFormatError

if TYPE_CHECKING:  # FlowSet.to_pcap imports this package: annotations only, no import cycle
    from trafficgen.data.flowset import FlowSet

#: Means (seconds) of the exponential IATs used when neither the flows nor ``timing_from`` give any.
DEFAULT_IAT = {"same_direction": 0.001, "direction_change": 0.02}


def flow_labels(fs: FlowSet) -> np.ndarray:
    """The labels, or "" for every flow of an unlabelled set."""
    return fs.labels if fs.labels is not None else np.full(len(fs), "", dtype=object)


def class_codes(labels: np.ndarray, classes: list) -> np.ndarray:
    """(n,) int64 index of each label in the sorted list ``classes`` (-1 when absent)."""
    if not classes or not len(labels):
        return np.full(len(labels), -1, dtype=np.int64)
    cls = np.asarray(classes, dtype=str)
    lab = labels.astype(str)
    pos = np.searchsorted(cls, lab).clip(0, len(cls) - 1)
    return np.where(cls[pos] == lab, pos, -1).astype(np.int64)


def gap_ticks(fs: FlowSet, timing_from, res: int, rng) -> tuple[np.ndarray, str]:
    """(n, W) int64 gaps in ticks before each packet (0 for the first and past the end), and
    where they came from."""
    valid = fs.valid_mask
    later = valid.copy()
    later[:, :1] = False
    if fs.iat is not None:
        iat = fs.iat
        bad = later & ~(np.isfinite(iat) & (iat >= 0))
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise InputFormatError("IATs must be finite and >= 0", offset=row)
        return np.where(later, np.rint(iat * res), 0).astype(np.int64), "flows"
    change = np.zeros(valid.shape, dtype=bool)
    change[:, 1:] = fs.directions[:, 1:] != fs.directions[:, :-1]
    n, w = valid.shape
    iat = np.zeros((n, w))
    timing = "default"
    labels = fs.labels if fs.labels is not None else np.full(n, None, dtype=object)
    if timing_from is not None:
        if timing_from.iat is None:
            raise ConfigError("timing_from has no IATs (e.g. CICDOH20 as shipped): give flows read from captures")
        timing = "empirical"
        iat = empirical_iats(timing_from, labels, later, change, rng)
    else:
        means = np.where(change, DEFAULT_IAT["direction_change"], DEFAULT_IAT["same_direction"])
        iat = rng.exponential(1.0, size=(n, w)) * means
    return np.where(later, np.rint(iat * res), 0).astype(np.int64), timing


def empirical_iats(ref: FlowSet, labels, later, change, rng) -> np.ndarray:
    """Draw each needed IAT uniformly from ref's IATs of the same class and condition (direction
    change or not); a class or condition ref lacks falls back to all of ref's IATs of the condition
    (then to all of ref's IATs)."""
    r_later = ref.valid_mask.copy()
    r_later[:, :1] = False
    r_change = np.zeros(r_later.shape, dtype=bool)
    r_change[:, 1:] = ref.directions[:, 1:] != ref.directions[:, :-1]
    rows, cols = np.nonzero(r_later)
    if rows.size == 0:
        raise ConfigError("timing_from has no IATs to draw from (every flow has one packet)")
    r_labels = flow_labels(ref)
    classes = sorted(set(r_labels.tolist()))
    # pools: key = 2 * class + changed for ref's classes, then 2 * C + changed for all classes
    n_cls = len(classes)
    chg = r_change[rows, cols].astype(np.int64)
    vals = ref.iat[rows, cols]
    key = np.concatenate([2 * class_codes(r_labels, classes)[rows] + chg, 2 * n_cls + chg])
    vals = np.concatenate([vals, vals])
    order = np.argsort(key, kind="stable")
    vals = vals[order]
    count = np.bincount(key, minlength=2 * n_cls + 2)
    first = np.cumsum(count) - count
    need_r, need_c = np.nonzero(later)
    code = class_codes(labels, classes)[need_r]
    n_chg = change[need_r, need_c].astype(np.int64)
    want = np.where(code >= 0, 2 * code + n_chg, 2 * n_cls + n_chg)
    want = np.where(count[want] > 0, want, 2 * n_cls + n_chg)  # class lacks the condition: all classes
    u = rng.random(want.size)
    pick = first[want] + np.minimum((u * count[want]).astype(np.int64), count[want] - 1)
    out = np.zeros(later.shape)
    empty = count[want] == 0  # no IAT of that condition at all: any IAT of ref
    out[need_r, need_c] = np.where(empty, vals[np.minimum((u * vals.size).astype(np.int64), vals.size - 1)],
                                   vals[np.where(empty, 0, pick)])
    return out


def start_ticks(fs: FlowSet, starts, rate, t0, res, rng, ref: FlowSet | None = None) -> np.ndarray:
    """(n,) int64 start tick of each flow: ``"flows"`` their own ``first_ts``; ``"rate"`` a Poisson
    process of ``rate`` flows/s from ``t0``; ``"empirical"`` gaps between consecutive starts drawn
    from those of ``ref`` (within each of its captures, ``source``), from ``t0``."""
    if starts == "flows":
        first = fs.first_ts
        if not np.all(np.isfinite(first)) or np.any(first < 0):
            raise InputFormatError("first_ts must be finite epoch seconds >= 0")
        return np.rint(first * res).astype(np.int64)
    if starts == "empirical":
        pool = start_gaps(ref)
        gaps = pool[rng.integers(0, pool.size, size=len(fs))]
    else:
        gaps = rng.exponential(1.0 / float(rate), size=len(fs))
    gaps[:1] = 0.0
    return int(round(t0 * res)) + np.cumsum(np.rint(gaps * res).astype(np.int64))


def start_gaps(ref: FlowSet | None) -> np.ndarray:
    """Gaps (s) between consecutive flow starts of ``ref``, inside each capture (``source``): the
    arrival process of the training data (gaps across captures taken years apart mean nothing)."""
    if ref is None or ref.first_ts is None:
        raise ConfigError("starts='empirical' needs timing_from flows with start times (first_ts), e.g. flows "
                          "read from captures")
    source = ref.source.astype(str) if ref.source is not None else np.zeros(len(ref), dtype=str)
    capture = np.unique(source, return_inverse=True)[1].reshape(-1)
    order = np.lexsort((ref.first_ts, capture))
    ts, src = ref.first_ts[order], capture[order]
    same = src[1:] == src[:-1]
    gaps = (ts[1:] - ts[:-1])[same]
    if gaps.size == 0:
        raise ConfigError("timing_from has no two flows of one capture: no start gaps to draw from")
    return gaps
