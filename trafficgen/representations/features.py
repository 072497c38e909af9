"""Fixed-length flow features for classifiers and SMOTE: the first N signed lengths.

``flow_features(flows, n_packets=N)`` is :meth:`FlowSet.to_features`: row ``i`` holds the signed
payload lengths of the first ``N`` packets of flow ``i``; a flow with fewer packets is
**right-padded with 0**, and 0 means "no packet here" (zero-payload packets are dropped at
ingestion, so 0 never occurs inside a flow). Longer flows are truncated.

``features_to_flows`` is the inverse for *generated* rows (SMOTE interpolations, noise), which
need not be valid flows. It makes them valid, in this order:

1. values are rounded to the nearest integer and clipped to [-65535, 65535];
2. the first packet must be client -> server and non-zero: a negative first value is replaced
   by its absolute value and a 0 by 1 (every flow has at least one packet);
3. the flow ends at its first 0 (everything after it is dropped).
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.flowset import FlowSet

#: Largest payload length (IPv4 total length field).
MAX_LENGTH = 65535


def flow_features(flows: FlowSet, n_packets: int | None = None) -> np.ndarray:
    """(n_flows, n_packets) float32 signed lengths, zero-padded (see the module docstring)."""
    return flows.to_features(n_packets)


def features_to_flows(X, labels=None) -> FlowSet:
    """Valid FlowSet of width ``X.shape[1]`` from arbitrary real-valued rows (module docstring)."""
    X = np.rint(np.asarray(X, dtype=np.float64))
    X = np.clip(X, -MAX_LENGTH, MAX_LENGTH).astype(np.int32)  # (n, N)
    if X.ndim != 2:
        from trafficgen.errors import InputFormatError

        raise InputFormatError(f"features must be 2-D (n_flows, n_packets), got shape {X.shape}")
    if X.shape[1] == 0:
        return FlowSet.from_sequences([[] for _ in range(X.shape[0])], labels=labels, max_packets=0)
    first = np.abs(X[:, 0])
    X[:, 0] = np.where(first == 0, 1, first)
    is_zero = X == 0
    n = np.where(is_zero.any(axis=1), is_zero.argmax(axis=1), X.shape[1]).astype(np.int32)  # (n,)
    valid = np.arange(X.shape[1])[None, :] < n[:, None]
    X = np.where(valid, X, 0)
    return FlowSet(lengths=X, n_packets=n, labels=None if labels is None else list(labels))
