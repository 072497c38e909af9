"""`CountTable`: sorted counts of (context, next symbol) pairs with vectorised lookup and
inverse-CDF draws, the storage of the back-off chains (:class:`~trafficgen.generators.markov.MarkovGenerator`'s
lengths, :class:`~trafficgen.generators.iat_chain.IATChain`'s IAT bins)."""
from __future__ import annotations

import numpy as np

__all__ = ["CountTable"]


class CountTable:
    """Counts of (context key, next token) pairs for one back-off level, sorted by key.

    ``ctx_keys`` (K,) sorted unique context keys, ``ctx_total`` (K,) n(h), ``ctx_types`` (K,) T(h),
    ``ctx_start`` (K + 1,) offsets into the pair arrays; ``pair_token`` (P,) and ``pair_count`` (P,)
    the followers of each context in token order, ``pair_cum`` (P,) their running count sum.
    """

    def __init__(self, ctx_keys, ctx_total, ctx_types, ctx_start, pair_token, pair_count):
        self.ctx_keys = np.asarray(ctx_keys, dtype=np.int64)
        self.ctx_total = np.asarray(ctx_total, dtype=np.int64)
        self.ctx_types = np.asarray(ctx_types, dtype=np.int64)
        self.ctx_start = np.asarray(ctx_start, dtype=np.int64)
        self.pair_token = np.asarray(pair_token, dtype=np.int64)
        self.pair_count = np.asarray(pair_count, dtype=np.int64)
        self.pair_cum = np.cumsum(self.pair_count)

    @classmethod
    def from_events(cls, ctx: np.ndarray, token: np.ndarray) -> CountTable:
        """From parallel arrays of context keys and next tokens (E,)."""
        order = np.lexsort((token, ctx))
        ctx, token = ctx[order], token[order]
        new_pair = np.ones(len(ctx), dtype=bool)
        new_pair[1:] = (ctx[1:] != ctx[:-1]) | (token[1:] != token[:-1])
        first = np.flatnonzero(new_pair)
        pair_ctx, pair_token = ctx[first], token[first]
        pair_count = np.diff(np.append(first, len(ctx)))
        ctx_keys, ctx_first, ctx_types = np.unique(pair_ctx, return_index=True, return_counts=True)
        ctx_start = np.append(ctx_first, len(pair_ctx))
        totals = np.add.reduceat(pair_count, ctx_first) if len(ctx_first) else np.zeros(0, np.int64)
        return cls(ctx_keys, totals, ctx_types, ctx_start, pair_token, pair_count)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index into the context arrays, found mask) for context keys (E,)."""
        idx = np.searchsorted(self.ctx_keys, keys)
        idx = np.minimum(idx, max(len(self.ctx_keys) - 1, 0))
        found = (self.ctx_keys[idx] == keys) if len(self.ctx_keys) else np.zeros(len(keys), dtype=bool)
        return idx, found

    def pair_counts(self, idx: np.ndarray, found: np.ndarray, token: np.ndarray) -> np.ndarray:
        """n(h, w) for contexts ``idx`` (found ones only; 0 elsewhere) and tokens (E,)."""
        out = np.zeros(len(idx), dtype=np.int64)
        if not len(self.pair_token):
            return out
        lo, hi = self.ctx_start[idx], self.ctx_start[idx + 1]
        # search each token inside its context's (sorted) follower segment
        pos = _segment_searchsorted(self.pair_token, lo, hi, token)
        hit = found & (pos < hi) & (self.pair_token[np.minimum(pos, len(self.pair_token) - 1)] == token)
        out[hit] = self.pair_count[pos[hit]]
        return out

    def draw(self, idx: np.ndarray, u: np.ndarray) -> np.ndarray:
        """A follower token of each context ``idx`` by inverse CDF of a uniform ``u`` in [0, 1)."""
        lo = self.ctx_start[idx]
        before = np.where(lo > 0, self.pair_cum[np.maximum(lo - 1, 0)], 0)
        target = before + np.floor(u * self.ctx_total[idx]).astype(np.int64)  # in [before, before + n)
        pos = np.searchsorted(self.pair_cum, target, side="right")
        return self.pair_token[pos]

    #: The stored arrays, in constructor order (tensor names ``{prefix}.{field}``).
    FIELDS = ("ctx_keys", "ctx_total", "ctx_types", "ctx_start", "pair_token", "pair_count")

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.{k}": getattr(self, k) for k in self.FIELDS}

    @classmethod
    def from_state(cls, tensors: dict, prefix: str) -> CountTable:
        return cls(*(np.asarray(tensors[f"{prefix}.{k}"], dtype=np.int64) for k in cls.FIELDS))


def _segment_searchsorted(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For each i, the first position p in [lo_i, hi_i) with values[p] >= x_i (vectorised binary
    search; each segment of ``values`` is sorted)."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        go_right = active & (values[np.minimum(mid, len(values) - 1)] < x)
        lo = np.where(go_right, mid + 1, lo)
        hi = np.where(active & ~go_right, mid, hi)
