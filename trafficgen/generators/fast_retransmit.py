"""`FastRetransmitGenerator`: the "Fast Retransmit" domain augmentation as a flow generator.

Transformation of one flow: with probability ``p``, pick one packet index ``j`` uniformly among

* ``target="any"``: all packets of the flow, or
* ``target="client"``: the client -> server packets (positive direction) only; a flow without
  one is left unchanged,

and insert a copy of packet ``j`` right after it (position ``j + 1``), as a TCP sender
retransmitting a segment would; later packets shift one place right and the flow is cut back
to ``max_packets`` (a full flow loses its last packet). Directions move with their lengths.
Inter-arrival times and provenance are not carried to the output.

As a :class:`FlowGenerator`: ``fit(flows)`` stores the real flows per class; ``sample(n, cls=...)``
draws real flows of the requested class uniformly with replacement and transforms each one.
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.serialization import TENSORS_FILE, Field, check_tensors


def retransmit(flows: FlowSet, *, p: float = 0.5, target: str = "any", random_state=None) -> FlowSet:
    """Apply the Fast Retransmit transformation to every flow (module docstring); labels kept."""
    if not 0.0 <= float(p) <= 1.0:
        raise ConfigError(f"p must lie in [0, 1], got {p}")
    if target not in ("any", "client"):
        raise ConfigError(f"target must be 'any' or 'client', got {target!r}")
    rng = np.random.default_rng(random_state)
    n, W = flows.lengths.shape
    valid = flows.valid_mask  # (n, W)
    eligible = valid & (flows.directions > 0) if target == "client" else valid
    n_elig = eligible.sum(axis=1)  # (n,)
    hit = (rng.random(n) < p) & (n_elig > 0)
    # the k-th eligible packet, k uniform in [0, n_elig)
    k = np.floor(rng.random(n) * np.maximum(n_elig, 1)).astype(np.int64)
    rank = np.cumsum(eligible, axis=1) - 1  # (n, W)
    j = np.argmax(eligible & (rank == k[:, None]), axis=1)  # (n,)
    cols = np.arange(W)[None, :]  # (1, W)
    src = np.where(hit[:, None] & (cols > j[:, None]), cols - 1, cols)  # (n, W)
    rows = np.arange(n)[:, None]
    n_new = np.where(hit, np.minimum(flows.n_packets + 1, W), flows.n_packets).astype(np.int32)
    keep = cols < n_new[:, None]
    lengths = np.where(keep, flows.lengths[rows, src], 0)
    directions = np.where(keep, flows.directions[rows, src], 0)
    return FlowSet(lengths=lengths, n_packets=n_new, directions=directions, labels=flows.labels)


class FastRetransmitGenerator(FlowGenerator):
    """Resample real flows of a class and duplicate one packet with probability ``p``."""

    name = "fast_retransmit"
    _config_schema = {"classes": Field.class_names(), "class_prior": Field.class_prior("classes")}

    def __init__(self, *, p: float = 0.5, target: str = "any"):
        self.p = p
        self.target = target

    def fit(self, flows: FlowSet) -> FastRetransmitGenerator:
        if not isinstance(flows, FlowSet) or flows.labels is None or len(flows) == 0:
            raise InputFormatError("FastRetransmitGenerator.fit needs a non-empty labelled FlowSet")
        retransmit(flows[:0], p=self.p, target=self.target)  # validates p and target
        self.classes_ = flows.classes
        self.flows_ = FlowSet(lengths=flows.lengths, n_packets=flows.n_packets,
                              directions=flows.directions, labels=flows.labels)
        counts = np.array([np.sum(flows.labels == c) for c in self.classes_], dtype=np.float64)
        self.class_prior_ = counts / counts.sum()
        self.max_packets_ = flows.max_packets
        return self

    def sample(self, n: int, *, cls=None, random_state=None) -> FlowSet:
        rng = np.random.default_rng(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        labels = np.asarray(names, dtype=object)
        idx = np.zeros(len(names), dtype=np.int64)
        for c in sorted(set(names)):
            pos = np.flatnonzero(labels == c)
            members = np.flatnonzero(self.flows_.labels == c)
            idx[pos] = members[rng.integers(0, members.size, size=pos.size)]
        return retransmit(self.flows_[idx], p=self.p, target=self.target, random_state=rng)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        y = np.searchsorted(np.asarray(self.classes_, dtype=object), self.flows_.labels)
        return ({"classes": list(self.classes_), "class_prior": self.class_prior_.tolist()},
                {"lengths": self.flows_.lengths, "n_packets": self.flows_.n_packets,
                 "directions": self.flows_.directions, "y": y.astype(np.int64)}, {})

    @classmethod
    def _load_state(cls, config, tensors, extra):
        obj = cls._from_params(config)
        obj.classes_ = list(config["classes"])
        obj.class_prior_ = np.asarray(config["class_prior"], dtype=np.float64)
        check_tensors(tensors, {"lengths": 2, "n_packets": 1, "directions": 2, "y": 1}, TENSORS_FILE,
                      rows=("lengths", "n_packets", "directions", "y"))
        y = tensors["y"].numpy()
        if len(y) == 0 or y.min() < 0 or y.max() >= len(obj.classes_):
            raise InputFormatError(f"tensor 'y' must hold class ids in [0, {len(obj.classes_)}) for >= 1 flow",
                                   path=TENSORS_FILE)
        labels = np.asarray(obj.classes_, dtype=object)[y]
        obj.flows_ = FlowSet(lengths=tensors["lengths"].numpy(), n_packets=tensors["n_packets"].numpy(),
                             directions=tensors["directions"].numpy(), labels=labels)
        obj.max_packets_ = obj.flows_.max_packets
        return obj
