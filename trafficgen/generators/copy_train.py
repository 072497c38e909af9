"""`CopyGenerator`: draws training flows verbatim, uniformly within the requested class.

The memorisation upper bound of every fidelity number and the lower bound of every privacy number:
its samples are real flows, so its leakage is 1 and its novelty 0 against its training data. A flow
generator whose fidelity is no better than this one's has learned nothing a lookup does not know.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from trafficgen._random import check_random_state
from trafficgen.data.flowset import FlowSet
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.serialization import Field

__all__ = ["CopyGenerator"]


class CopyGenerator(FlowGenerator):
    """Sample ``n`` training flows of the requested classes with replacement (copies)."""

    name = "copy"
    _fitted_attr: ClassVar[str] = "lengths_"
    _config_schema: ClassVar[dict[str, Field]] = {
        "classes": Field.class_names(), "class_prior": Field.class_prior("classes"),
        "max_packets_": Field.integer(minimum=1)}

    def __init__(self, *, max_packets: int | None = None):
        self.max_packets = max_packets

    def fit(self, flows: FlowSet) -> CopyGenerator:
        width = self._validated_width(flows)
        core = flows.truncate(width) if flows.max_packets > width else flows
        self.classes_ = list(flows.classes)
        self.max_packets_ = width
        self.lengths_ = np.zeros((len(core), width), dtype=np.int32)
        self.lengths_[:, :core.lengths.shape[1]] = core.lengths[:, :width]
        self.n_packets_ = np.minimum(core.n_packets, width).astype(np.int32)
        index = {c: k for k, c in enumerate(self.classes_)}
        self.y_ = np.array([index[c] for c in core.labels], dtype=np.int64)
        counts = np.bincount(self.y_, minlength=len(self.classes_))
        self.class_prior_ = counts / counts.sum()
        return self

    def sample(self, n: int, *, cls=None, random_state=None) -> FlowSet:
        rng = check_random_state(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        index = {c: k for k, c in enumerate(self.classes_)}
        y = np.array([index[c] for c in names], dtype=np.int64)
        order = np.argsort(self.y_, kind="stable")
        starts = np.searchsorted(self.y_[order], np.arange(len(self.classes_)))
        counts = np.bincount(self.y_, minlength=len(self.classes_))
        pick = order[starts[y] + np.floor(rng.random(len(y)) * counts[y]).astype(np.int64)]
        return FlowSet(lengths=self.lengths_[pick].copy(), n_packets=self.n_packets_[pick].copy(), labels=names)

    def _state(self):
        config = self._class_state()
        return config, {"lengths": self.lengths_, "n_packets": self.n_packets_, "y": self.y_}, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        obj = cls._from_class_state(config)
        obj.lengths_ = np.asarray(tensors["lengths"], dtype=np.int32)
        obj.n_packets_ = np.asarray(tensors["n_packets"], dtype=np.int32)
        obj.y_ = np.asarray(tensors["y"], dtype=np.int64)
        return obj
