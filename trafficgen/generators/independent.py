"""`IndependentGenerator`: per-class, per-position marginals with a flow-length distribution.

A sample of class ``c`` draws its packet count from the class's empirical packet-count
distribution, then packet ``i`` independently from the empirical distribution of the ``i``-th
length over the class's flows that have at least ``i + 1`` packets. It reproduces the packet-count
and per-position 1-gram histograms exactly (in expectation) and nothing about order: the
reference that shows what sequence structure a model adds (bigram and Markov-transition JSD).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from trafficgen._random import check_random_state
from trafficgen.data.flowset import FlowSet
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.serialization import Field

__all__ = ["IndependentGenerator"]


class IndependentGenerator(FlowGenerator):
    """Flow length, then each position's length, drawn independently per class."""

    name = "independent"
    _fitted_attr: ClassVar[str] = "lengths_"
    _config_schema: ClassVar[dict[str, Field]] = {
        "classes": Field.class_names(), "class_prior": Field.class_prior("classes"),
        "max_packets_": Field.integer(minimum=1)}

    def __init__(self, *, max_packets: int | None = None):
        self.max_packets = max_packets

    def fit(self, flows: FlowSet) -> IndependentGenerator:
        width = self._validated_width(flows)
        core = flows.truncate(width) if flows.max_packets > width else flows
        self.classes_ = list(flows.classes)
        self.max_packets_ = width
        index = {c: k for k, c in enumerate(self.classes_)}
        self.y_ = np.array([index[c] for c in core.labels], dtype=np.int64)
        self.lengths_ = np.zeros((len(core), width), dtype=np.int32)
        self.lengths_[:, :core.lengths.shape[1]] = core.lengths[:, :width]
        self.n_packets_ = np.minimum(core.n_packets, width).astype(np.int32)
        counts = np.bincount(self.y_, minlength=len(self.classes_))
        self.class_prior_ = counts / counts.sum()
        return self

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

    def _state(self):
        config = {"classes": list(self.classes_), "class_prior": self.class_prior_.tolist(),
                  "max_packets_": int(self.max_packets_)}
        return config, {"lengths": self.lengths_, "n_packets": self.n_packets_, "y": self.y_}, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        obj = cls._from_params(config)
        obj.classes_ = list(config["classes"])
        obj.class_prior_ = np.asarray(config["class_prior"], dtype=np.float64)
        obj.max_packets_ = int(config["max_packets_"])
        obj.lengths_ = np.asarray(tensors["lengths"], dtype=np.int32)
        obj.n_packets_ = np.asarray(tensors["n_packets"], dtype=np.int32)
        obj.y_ = np.asarray(tensors["y"], dtype=np.int64)
        return obj
