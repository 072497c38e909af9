"""UniqAlign and Leakage: identities and hand-computed values."""
from __future__ import annotations

import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.privacy import Leakage, UniqAlign, jaccard, uniqueness


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
