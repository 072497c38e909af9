"""UniqAlign, Leakage and Novelty: identities and hand-computed values."""
from __future__ import annotations

import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.privacy import (
    Leakage,
    Novelty,
    UniqAlign,
    jaccard,
    leave_one_out_novelty,
    uniqueness,
)


def fs(seqs, labels=None, width=None):
    return FlowSet.from_sequences(seqs, labels=labels, max_packets=width)


def test_uniqueness_counts_padding_apart():
    # [1, 2] and [1, 2, 0-padding] never merge; [1] vs [1, 2] are different
    a = fs([[1, 2], [1, 2], [1], [3, -4, 5]], width=4)
    assert uniqueness(a) == 3 / 4


def test_uniq_align():
    a = fs([[1, 2], [1, 2], [3], [4]])
    b = fs([[9], [8], [7], [6]])
    assert UniqAlign().compute(a, a) == 0.0
    assert UniqAlign().compute(a, b) == pytest.approx(abs(3 / 4 - 1))
    assert UniqAlign().direction == "lower" and UniqAlign().range == (0.0, 1.0)


def test_leakage_identities_and_hand_case():
    a = fs([[1, 2], [1, 2], [3], [4, -5]])
    assert Leakage().compute(a, a) == 1.0
    assert Leakage().compute(a, fs([[10], [11, -1]])) == 0.0
    # distinct {[1,2],[3],[4,-5]} vs {[3],[4,-5],[6]}: 2 shared of 4
    assert jaccard(a, fs([[3], [4, -5], [6], [6]], width=2)) == 0.5


def test_leakage_per_class_missing_class_leaks_nothing():
    train = fs([[1], [2], [3]], labels=["a", "a", "b"])
    syn = fs([[1], [9]], labels=["a", "a"])
    assert Leakage().compute_breakdown(train, syn) == {"a": pytest.approx(1 / 3), "b": 0.0}


def test_novelty_counts_cross_class_copies_and_padding():
    train = FlowSet.from_sequences([[5], [1, 2], [1, 2, 3]], labels=["x", "a", "a"])
    syn = FlowSet.from_sequences([[5], [3], [1, 2], [1]], labels=["a", "a", "x", "x"])
    m = Novelty()
    # a: [5] copies class x's training flow, [3] is new; x: [1, 2] is a copy, [1] is new
    assert m.compute_breakdown(train, syn) == {"a": 0.5, "x": 0.5}
    assert m.direction == "higher" and m.compute(train, syn) == 0.5
    assert m.compute_breakdown(train, FlowSet.from_sequences([[9]], labels=["a"])) == {"a": 1.0, "x": 0.0}
    # unlabelled: one number; [1, 2] and [1, 2, 3] are different sequences (packet count counts)
    assert Novelty().compute_breakdown(FlowSet.from_sequences([[5], [1, 2, 3]]),
                                       FlowSet.from_sequences([[5], [1, 2], [6], [1, 2, 3]])) == {"__all__": 0.5}


def test_leave_one_out_novelty():
    flows = FlowSet.from_sequences([[1350], [1350], [1350, -20], [7], [7]], labels=["yt", "yt", "yt", "dns", "g"])
    assert leave_one_out_novelty(flows) == {"dns": 0.0, "g": 0.0, "yt": 1 / 3}
