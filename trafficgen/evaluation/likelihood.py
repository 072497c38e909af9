"""Held-out likelihood of a flow model on real flows: the cheap, low-noise signal to tune against.

Works with any model that has ``log_likelihood(flows) -> (n,)`` natural-log likelihoods given the
class (LLaMA, Mamba, Markov; the CVAE's is an ELBO, a lower bound, and says so in ``kind``).
"""
from __future__ import annotations

import math

import numpy as np

from trafficgen.data.flowset import FlowSet

__all__ = ["likelihood_summary", "has_likelihood"]


def has_likelihood(model) -> bool:
    return callable(getattr(model, "log_likelihood", None))


def likelihood_summary(model, flows: FlowSet) -> dict:
    """``{"bits_per_flow", "bits_per_packet", "n_flows", "n_packets", "kind", "per_class"}`` of
    ``-log2 p(x | c)`` over ``flows`` (restricted to the classes the model knows). Packets are
    counted up to the model's ``max_packets_`` (the events it scores, ``<EOS>`` included in the
    flow's bits but not in the packet count)."""
    known = set(getattr(model, "classes_", flows.classes))
    keep = np.array([c in known for c in flows.labels], dtype=bool)
    flows = flows[np.flatnonzero(keep)]
    ll = np.asarray(model.log_likelihood(flows), dtype=np.float64)  # (n,) nats
    width = int(getattr(model, "max_packets_", flows.max_packets))
    n_pk = np.minimum(flows.n_packets, width).astype(np.int64)
    bits = -ll / math.log(2)
    per_class = {}
    for c in flows.classes:
        sel = flows.labels == c
        per_class[c] = {"bits_per_flow": float(bits[sel].mean()),
                        "bits_per_packet": float(bits[sel].sum() / max(int(n_pk[sel].sum()), 1)),
                        "n_flows": int(sel.sum())}
    return {"bits_per_flow": float(bits.mean()) if len(bits) else float("nan"),
            "bits_per_packet": float(bits.sum() / max(int(n_pk.sum()), 1)),
            "n_flows": int(len(bits)), "n_packets": int(n_pk.sum()),
            "kind": getattr(model, "likelihood_kind", "exact"), "per_class": per_class}
