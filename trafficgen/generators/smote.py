"""`SmoteGenerator`: SMOTE (Chawla et al., 2002) as a conditional flow generator.

Flows are mapped to fixed-length features (the first ``n_packets`` signed lengths, zero-padded:
:mod:`trafficgen.representations.features`). A new sample of class ``c`` takes a random flow ``x`` of
``c``, one of its ``k`` nearest neighbours ``x'`` within ``c`` (Euclidean, ``k = min(k_neighbors,
n_c - 1)``; the neighbour lists come from sklearn's ``NearestNeighbors``, the same computation as
imblearn's SMOTE) and a gap ``u ~ U[0, 1)``, and returns ``x + u (x' - x)``. A class with one flow
has no neighbour: its samples are copies of that flow (random over-sampling). The rows are
made valid flows by :func:`trafficgen.representations.features.features_to_flows` (round, first
packet positive and non-zero, flow ends at the first 0).
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.serialization import TENSORS_FILE, Field, check_tensors
from trafficgen.representations.features import features_to_flows, flow_features


class SmoteGenerator(FlowGenerator):
    """SMOTE interpolation between same-class flows (see the module docstring)."""

    name = "smote"
    _config_schema = {"classes": Field.class_names(), "class_prior": Field.class_prior("classes")}

    def __init__(self, *, k_neighbors: int = 5, n_packets: int | None = None):
        self.k_neighbors = k_neighbors
        self.n_packets = n_packets

    def fit(self, flows: FlowSet) -> SmoteGenerator:
        if not isinstance(flows, FlowSet) or flows.labels is None or len(flows) == 0:
            raise InputFormatError("SmoteGenerator.fit needs a non-empty labelled FlowSet")
        if int(self.k_neighbors) < 1:
            raise ConfigError(f"k_neighbors must be >= 1, got {self.k_neighbors}")
        X = flow_features(flows, self.n_packets)  # (n, N)
        self.classes_ = flows.classes
        y = np.searchsorted(np.asarray(self.classes_, dtype=object), flows.labels)
        self.X_ = X
        self.y_ = y.astype(np.int64)
        counts = np.bincount(self.y_, minlength=len(self.classes_))
        self.class_prior_ = counts / counts.sum()
        self.max_packets_ = X.shape[1]
        self.neighbors_ = self._neighbours()
        return self

    def _neighbours(self) -> np.ndarray:
        """(n, k) indices into X_ of each row's same-class nearest neighbours (-1 padded)."""
        from sklearn.neighbors import NearestNeighbors

        k = int(self.k_neighbors)
        out = np.full((self.X_.shape[0], k), -1, dtype=np.int64)
        for c in range(len(self.classes_)):
            idx = np.flatnonzero(self.y_ == c)
            kc = min(k, idx.size - 1)
            if kc < 1:
                continue
            nn = NearestNeighbors(n_neighbors=kc + 1).fit(self.X_[idx])
            nb = nn.kneighbors(self.X_[idx], return_distance=False)[:, 1:]  # (n_c, kc), self dropped
            out[idx, :kc] = idx[nb]
        return out

    def sample(self, n: int, *, cls=None, random_state=None) -> FlowSet:
        rng = np.random.default_rng(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        y = np.searchsorted(np.asarray(self.classes_, dtype=object), np.asarray(names, dtype=object))
        X = np.zeros((len(names), self.max_packets_), dtype=np.float64)
        for c in np.unique(y):
            pos = np.flatnonzero(y == c)
            members = np.flatnonzero(self.y_ == c)
            base = members[rng.integers(0, members.size, size=pos.size)]  # (m,)
            nbrs = self.neighbors_[base]  # (m, k)
            n_valid = (nbrs >= 0).sum(axis=1)
            pick = np.floor(rng.random(pos.size) * np.maximum(n_valid, 1)).astype(np.int64)
            other = np.where(n_valid > 0, nbrs[np.arange(pos.size), pick], base)
            gap = rng.random(pos.size)[:, None]
            X[pos] = self.X_[base] + gap * (self.X_[other] - self.X_[base])
        return features_to_flows(X, labels=names)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        return ({"classes": list(self.classes_), "class_prior": self.class_prior_.tolist()},
                {"X": self.X_, "y": self.y_, "neighbors": self.neighbors_}, {})

    @classmethod
    def _load_state(cls, config, tensors, extra):
        obj = cls._from_params(config)
        obj.classes_ = list(config["classes"])
        obj.class_prior_ = np.asarray(config["class_prior"], dtype=np.float64)
        check_tensors(tensors, {"X": 2, "y": 1, "neighbors": 2}, TENSORS_FILE, rows=("X", "y", "neighbors"))
        obj.X_ = tensors["X"].numpy()
        obj.y_ = tensors["y"].numpy().astype(np.int64, copy=False)
        obj.neighbors_ = tensors["neighbors"].numpy().astype(np.int64, copy=False)
        n = len(obj.X_)
        if obj.X_.shape[1] < 1 or n == 0:
            raise InputFormatError(f"tensor 'X' has shape {obj.X_.shape}; expected (flows >= 1, packets >= 1)",
                                   path=TENSORS_FILE)
        if obj.y_.min() < 0 or obj.y_.max() >= len(obj.classes_):
            raise InputFormatError(f"tensor 'y' holds class ids outside [0, {len(obj.classes_)})", path=TENSORS_FILE)
        if obj.neighbors_.size and (obj.neighbors_.min() < -1 or obj.neighbors_.max() >= n):
            raise InputFormatError(f"tensor 'neighbors' holds row ids outside [-1, {n})", path=TENSORS_FILE)
        obj.max_packets_ = obj.X_.shape[1]
        return obj
