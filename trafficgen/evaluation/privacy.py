"""Privacy metrics on whole sequences: uniqueness alignment and leakage.

A "sequence" is the tuple of signed lengths of a flow (its first ``max_packets`` packets; both
sets are cut to their common width first). Distinct sequences are found with ``np.unique`` on
rows of the length matrix extended by ``n_packets`` (so padding can never merge two flows).
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.metric import Metric


def _rows(flows: FlowSet) -> np.ndarray:
    """(n, W + 1) int64 rows: the n_packets column then the 0-padded lengths."""
    return np.concatenate([flows.n_packets[:, None], flows.lengths], axis=1).astype(np.int64)


def distinct_sequences(flows: FlowSet) -> np.ndarray:
    """(k, W + 1) distinct rows of :func:`_rows`."""
    if len(flows) == 0:
        return np.zeros((0, flows.max_packets + 1), dtype=np.int64)
    return np.unique(_rows(flows), axis=0)


def uniqueness(flows: FlowSet) -> float:
    """Distinct sequences / sequences (0 for an empty set)."""
    return 0.0 if len(flows) == 0 else distinct_sequences(flows).shape[0] / len(flows)


def jaccard(a: FlowSet, b: FlowSet) -> float:
    """|distinct(a) & distinct(b)| / |distinct(a) | distinct(b)| (0 when both are empty).
    Both sets must have the same width."""
    ua, ub = distinct_sequences(a), distinct_sequences(b)
    union_n = ua.shape[0] + ub.shape[0]
    if union_n == 0:
        return 0.0
    _, counts = np.unique(np.concatenate([ua, ub], axis=0), axis=0, return_counts=True)
    inter = int((counts == 2).sum())
    return inter / (union_n - inter)


class UniqAlign(Metric):
    """|uniqueness(real) - uniqueness(synthetic)|, uniqueness = distinct sequences / sequences.

    Lower is better: a generator should repeat sequences about as often as the real traffic
    does (mode collapse raises the gap, and so does adding noise to highly repetitive protocols).
    """

    name = "uniq_align"

    def _compute(self, real, synthetic):
        return abs(uniqueness(real) - uniqueness(synthetic))


class Leakage(Metric):
    """Jaccard similarity of the sets of distinct real-**training** and synthetic sequences.

    Pass the generator's training flows as ``real``. Lower is better (0: no training sequence
    is reproduced verbatim; 1: the synthetic set is exactly the training set's sequences).
    A real class the synthetic set lacks leaks nothing (0).
    """

    name = "leakage"

    @property
    def missing_value(self) -> float:
        return 0.0

    def _compute(self, real, synthetic):
        return jaccard(real, synthetic)


#: The privacy metrics of a report, in order.
PRIVACY_METRICS: tuple[type[Metric], ...] = (UniqAlign, Leakage)
