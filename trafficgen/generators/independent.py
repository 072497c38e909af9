"""`IndependentGenerator`: per-class, per-position marginals with a flow-length distribution.

A sample of class ``c`` draws its packet count from the class's empirical packet-count
distribution, then packet ``i`` independently from the empirical distribution of the ``i``-th
length over the class's flows that have at least ``i + 1`` packets. It reproduces the packet-count
and per-position 1-gram histograms exactly (in expectation) and nothing about order: the
reference that shows what sequence structure a model adds (bigram and Markov-transition JSD).
"""
from __future__ import annotations

import numpy as np

from trafficgen._random import check_random_state
from trafficgen.data.flowset import FlowSet
from trafficgen.generators.copy_train import CopyGenerator

__all__ = ["IndependentGenerator"]


class IndependentGenerator(CopyGenerator):
    """Flow length, then each position's length, drawn independently per class (stores the
    training flows as :class:`~trafficgen.generators.copy_train.CopyGenerator` does; only the
    sampling differs)."""

    name = "independent"

    def sample(self, n: int, *, cls=None, random_state=None) -> FlowSet:
        rng = check_random_state(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        index = {c: k for k, c in enumerate(self.classes_)}
        y = np.array([index[c] for c in names], dtype=np.int64)
        width = self.max_packets_
        lengths = np.zeros((len(y), width), dtype=np.int32)
        n_packets = np.zeros(len(y), dtype=np.int32)
        for c in np.unique(y):
            out = np.flatnonzero(y == c)
            members = np.flatnonzero(self.y_ == c)
            n_packets[out] = self.n_packets_[members[rng.integers(0, len(members), size=len(out))]]
            for i in range(width):
                need = out[n_packets[out] > i]
                if not len(need):
                    break
                donors = members[self.n_packets_[members] > i]  # flows of c with a packet i
                lengths[need, i] = self.lengths_[donors[rng.integers(0, len(donors), size=len(need))], i]
        return FlowSet(lengths=lengths, n_packets=n_packets, labels=names)
