"""`IATChain`: per-class inter-arrival times as a Markov chain over log-spaced IAT bins, given the
lengths (the timing model of :class:`~trafficgen.generators.markov.MarkovGenerator`).

Every packet after the first of a flow has an IAT (the first one's is 0 by ``FlowSet``'s
convention). Its bin (:class:`~trafficgen.representations.iat_bins.IATBins`) is drawn given the
flow's class ``c``, whether the packet changes direction ``d`` (an answer: a round trip or think
time; or a burst of the same side: pacing) and the decade ``b`` of the previous packet's IAT
(``none`` for the second packet), with the same interpolated Witten-Bell smoothing as the length
chain over the back-off levels

    (c, d, b)  ->  (c, d)  ->  (d)  ->  uniform over the bins

and the bin becomes seconds through the training data's quantiles inside it.

The context was chosen by held-out bits per IAT bin on the recipe's split of nDPI
(``benchmarks/iat_models.py``; 200/class and all flows): the previous decade gives 4.96 / 4.91
bits against 4.99 / 4.97 for (c, d) alone; the previous exact bin (5.00 / 4.98) and the
payload's size bucket (5.03 / 4.99; with the decade 5.21 / 5.17) fit the training part better
but the test part worse. Timing is hard to predict from these contexts: most of the IAT
entropy is left (the bin's marginal entropy is about 5 bits).
"""
from __future__ import annotations

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError
from trafficgen.generators.count_table import CountTable
from trafficgen.representations.iat_bins import IATBins

__all__ = ["IATChain"]

def _events(flows: FlowSet, class_index: dict[str, int], bins: IATBins, with_iat: bool = True):
    """(class, direction change, previous bin, bin, row, column) of every packet after the first of
    each flow (previous bin ``bins.n_bins`` is "none"; the bins are None without ``with_iat``)."""
    later = flows.valid_mask.copy()
    later[:, :1] = False
    rows, cols = np.nonzero(later)
    change = (flows.directions[rows, cols] != flows.directions[rows, cols - 1]).astype(np.int64)
    flow_cls = np.array([class_index[c] for c in flows.labels], dtype=np.int64)  # one lookup per flow
    cls = flow_cls[rows]
    cur = prev = None
    if with_iat:
        all_bins = bins.encode(flows.iat)  # (n, W)
        cur = all_bins[rows, cols]
        prev = np.where(cols >= 2, all_bins[rows, np.maximum(cols - 1, 0)], bins.n_bins)
    return cls, change, prev, cur, rows, cols


class IATChain:
    """IAT bins given class, direction change and the previous IAT's decade (module docstring).
    ``context="direction"`` drops the previous decade (the per-class, per-condition marginal)."""

    #: Back-off levels kept by each ``context`` (the most specific dropped first).
    CONTEXTS = {"previous": 0, "direction": 1}

    def __init__(self, bins: IATBins | None = None, *, context: str = "previous"):
        from trafficgen.errors import ConfigError

        if context not in self.CONTEXTS:
            raise ConfigError(f"context must be one of {', '.join(self.CONTEXTS)}, got {context!r}")
        self.bins = IATBins() if bins is None else bins
        self.context = context

    # keys of the back-off levels, most specific first
    def _keys(self, cls, change, prev) -> list[np.ndarray]:
        decade = np.where(prev >= self.bins.n_bins, -1, prev // self.bins.bins_per_decade) + 1  # 0: none
        n_decades = self.bins.n_bins // self.bins.bins_per_decade + 2
        cd = cls * 2 + change
        keys = [cd * n_decades + decade, cd, change]
        return keys[self.CONTEXTS[self.context]:]

    def fit(self, flows: FlowSet, classes: list[str]) -> IATChain:
        if flows.iat is None:
            raise InputFormatError("timing needs flows with inter-arrival times (read from captures)")
        index = {c: i for i, c in enumerate(classes)}
        cls, change, prev, cur, rows, cols = _events(flows, index, self.bins)
        self.bins.fit(flows.iat[rows, cols])
        self.tables_ = [CountTable.from_events(k, cur) for k in self._keys(cls, change, prev)]
        return self

    def _level_probability(self, keys: list[np.ndarray], token: np.ndarray) -> np.ndarray:
        """Interpolated Witten-Bell P(bin | context) (E,)."""
        p = np.full(len(token), 1.0 / self.bins.n_bins)
        for table, key in zip(self.tables_[::-1], keys[::-1], strict=True):  # least specific first
            idx, found = table.find(key)
            n = table.ctx_total[idx].astype(np.float64)
            t = table.ctx_types[idx].astype(np.float64)
            c = table.pair_counts(idx, found, token).astype(np.float64)
            p = np.where(found, (c + t * p) / np.maximum(n + t, 1.0), p)
        return p

    def log_likelihood_bins(self, flows: FlowSet, classes: list[str]) -> tuple[np.ndarray, int]:
        """(natural-log likelihood of each flow's IAT bins (n,), number of scored IATs)."""
        index = {c: i for i, c in enumerate(classes)}
        cls, change, prev, cur, rows, _ = _events(flows, index, self.bins)
        p = self._level_probability(self._keys(cls, change, prev), cur)
        out = np.zeros(len(flows))
        np.add.at(out, rows, np.log(p))
        return out, len(cur)

    def sample(self, flows: FlowSet, classes: list[str], rng: np.random.Generator) -> np.ndarray:
        """(n, W) IATs in seconds for sampled lengths ``flows`` (labels = class names), drawn
        packet by packet (each bin depends on the one before)."""
        index = {c: i for i, c in enumerate(classes)}
        cls, change, _, _, rows, cols = _events(flows, index, self.bins, with_iat=False)
        iat = np.zeros(flows.lengths.shape)
        bin_of = np.full(flows.lengths.shape, self.bins.n_bins, dtype=np.int64)  # "none"
        levels = self.tables_
        for col in range(1, flows.lengths.shape[1]):
            at = np.flatnonzero(cols == col)
            if not len(at):
                continue
            r = rows[at]
            prev = bin_of[r, col - 1] if col >= 2 else np.full(len(at), self.bins.n_bins)
            keys = self._keys(cls[at], change[at], prev)
            nxt = np.full(len(at), -1, dtype=np.int64)
            u_level, u_draw = rng.random((len(levels) + 1, len(at))), rng.random((len(levels) + 1, len(at)))
            for lvl, (table, key) in enumerate(zip(levels, keys, strict=True)):
                pending = nxt < 0
                idx, found = table.find(key)
                n_h, t_h = table.ctx_total[idx], table.ctx_types[idx]
                take = pending & found & (u_level[lvl] * (n_h + t_h) < n_h)
                if take.any():
                    nxt[take] = table.draw(idx[take], u_draw[lvl][take])
            pending = nxt < 0
            nxt[pending] = np.floor(u_draw[-1][pending] * self.bins.n_bins).astype(np.int64)
            bin_of[r, col] = nxt
        later = flows.valid_mask.copy()
        later[:, :1] = False
        iat[later] = self.bins.decode(bin_of[later], rng)
        return iat

    # ------------------------------------------------------------------ persistence
    def state(self, prefix: str = "iat") -> dict[str, np.ndarray]:
        out = {f"{prefix}.quantiles": self.bins.quantiles_}
        for j, table in enumerate(self.tables_):
            out.update(table.state(f"{prefix}.level{j}"))
        return out

    def config(self) -> dict:
        return {**self.bins.to_dict(), "context": self.context}

    @classmethod
    def from_state(cls, config: dict, tensors: dict, prefix: str = "iat") -> IATChain:
        obj = cls(IATBins.from_dict(config, tensors[f"{prefix}.quantiles"]), context=str(config["context"]))
        obj.tables_ = [CountTable.from_state(tensors, f"{prefix}.level{j}") for j in range(3 - cls.CONTEXTS[obj.context])]
        return obj
