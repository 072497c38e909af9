"""Privacy metrics on whole sequences: uniqueness alignment and leakage.

A "sequence" is the tuple of signed lengths of a flow (its first ``max_packets`` packets; both
sets are cut to their common width first). Distinct sequences are found with ``np.unique`` on
rows of the length matrix extended by ``n_packets`` (so padding can never merge two flows).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError
from trafficgen.evaluation.metric import ALL, Metric


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
    reference: ClassVar[str] = "train"

    @property
    def missing_value(self) -> float:
        return 0.0

    def _compute(self, real, synthetic):
        return jaccard(real, synthetic)


class Novelty(Metric):
    """Share of synthetic flows whose sequence equals **no** real-training sequence of any class.

    Pass the generator's training flows as ``real``. Higher is better for privacy (1: nothing is
    copied verbatim). Per class, that class's synthetic flows are checked against *all* training
    flows (a YouTube sample that copies a Google training flow is a copy too). Repetitive real
    traffic bounds it below 1: a generator sampling the true distribution scores about the
    leave-one-out novelty of the real flows themselves (:func:`leave_one_out_novelty`).
    """

    name = "novelty"
    direction: ClassVar[str] = "higher"
    reference: ClassVar[str] = "train"

    def compute_breakdown(self, real: FlowSet, synthetic: FlowSet) -> dict[str, float]:
        real, synthetic = self._align(real, synthetic)
        if len(real) == 0:
            raise InputFormatError("the real FlowSet is empty")
        seen = {row.tobytes() for row in distinct_sequences(real)}
        novel = np.array([row.tobytes() not in seen for row in _rows(synthetic)], dtype=bool)  # (n,)
        if real.labels is None or synthetic.labels is None:
            return {ALL: float(novel.mean()) if len(novel) else float(self.missing_value)}
        return {c: float(novel[synthetic.labels == c].mean()) if np.any(synthetic.labels == c)
                else float(self.missing_value) for c in real.classes}


def leave_one_out_novelty(flows: FlowSet) -> dict[str, float]:
    """Per class: the share of real flows whose sequence occurs nowhere else in ``flows`` (the
    novelty a perfect generator of this traffic would reach against these flows)."""
    rows = _rows(flows)
    _, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    unique_here = counts[inverse.ravel()] == 1  # (n,)
    labels = flows.labels if flows.labels is not None else np.full(len(flows), ALL)
    return {str(c): float(unique_here[labels == c].mean()) for c in np.unique(labels)}


#: The privacy metrics of a report, in order.
PRIVACY_METRICS: tuple[type[Metric], ...] = (UniqAlign, Leakage, Novelty)
