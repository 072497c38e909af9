"""`MarkovGenerator`: a per-class Markov chain over exact signed payload lengths, with an
end-of-flow state, Witten-Bell smoothing and back-off (the reference every flow model is read
against).

Events are the :class:`~trafficgen.representations.tokenizer.FlowTokenizer` tokens (one signed
length per packet, ``<EOS>`` after the last packet of a flow shorter than ``max_packets``), so
held-out likelihoods are over the same outcomes as the LLaMA / Mamba generators' and directly
comparable. The next token given the class ``c`` and the previous ``order`` tokens ``h`` (``<BOS>``
padded) is the interpolated Witten-Bell estimate (Witten & Bell 1991; Chen & Goodman 1998)::

    P_j(w | c, h_j) = (n(c, h_j, w) + T(c, h_j) * P_{j-1}(w | c, h_{j-1})) / (n(c, h_j) + T(c, h_j))

for j = order .. 1 (``h_j`` the last j tokens; a context never seen in training is skipped), then
the class unigram (j = 0), the all-class unigram and, last, the uniform distribution over every
length token and ``<EOS>`` (so every flow the tokenizer can encode has a finite likelihood).
``n`` are training counts and ``T`` the number of distinct tokens seen after a context. The first
packet is sent by the client (``FlowSet``'s convention): step 0 is restricted to positive lengths
(renormalised), and a flow ends at ``<EOS>`` or after ``max_packets`` packets (that end is forced,
so it contributes no likelihood term).

Sampling draws from exactly that distribution, vectorised over all flows of a step: at each level
a flow keeps the empirical next-token distribution of its context with probability
``n / (n + T)`` (inverse CDF over the stored counts), else backs off one level.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from trafficgen._random import check_random_state
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.count_table import CountTable
from trafficgen.generators.serialization import TENSORS_FILE, Field, check_tensors
from trafficgen.representations.tokenizer import EOS_ID, PAD_ID, FlowTokenizer, count_clipped

__all__ = ["MarkovGenerator"]

BOS = PAD_ID  # the context padding before the first packet


class MarkovGenerator(FlowGenerator):
    """Per-class Markov chain of order ``order`` over exact signed lengths (see the module docstring).

    Parameters
    ----------
    order : context length in packets (default 2; 0 = per-class i.i.d. lengths with an end state).
    max_packets : packets modelled per flow (default: the data's width, capped at 32).
    max_length : largest absolute payload length with its own token (longer ones are clipped to it
        and counted at fit time in ``n_clipped_``), as in the token models.
    timing : learn and sample inter-arrival times with an :class:`~trafficgen.generators.iat_chain.IATChain`
        (``"auto"``, the default: when the training flows carry IATs; ``True``: required;
        ``False``: lengths only). Lengths are drawn first, so they do not depend on this.
    """

    name = "markov"
    _fitted_attr: ClassVar[str] = "tables_"
    _config_schema: ClassVar[dict[str, Field]] = {
        "classes": Field.class_names(), "class_prior": Field.class_prior("classes"),
        "max_packets_": Field.integer(minimum=1), "n_symbols": Field.integer(minimum=3),
        "timing": Field.object(required=False)}
    _extra_schemas: ClassVar[dict[str, dict[str, Field]]] = {
        "tokenizer.json": {"type": Field.string(equals="FlowTokenizer"), "classes": Field.class_names(),
                           "max_length": Field.integer(minimum=1)}}

    def __init__(self, *, order: int = 2, max_packets: int | None = None, max_length: int = 1500,
                 timing: bool | str = "auto"):
        self.order = order
        self.max_packets = max_packets
        self.max_length = max_length
        self.timing = timing

    # ------------------------------------------------------------------ keys
    def _keys(self, cls_ids: np.ndarray, context: np.ndarray, j: int) -> np.ndarray:
        """int64 keys of (class, last j context symbols); ``context`` (E, order) dense symbols."""
        key = cls_ids.astype(np.int64)
        for col in range(self.order - j, self.order):
            key = key * self.n_symbols_ + context[:, col]
        return key

    def _symbols(self, tokens: np.ndarray) -> np.ndarray:
        return self.symbol_of_token_[tokens]

    # ------------------------------------------------------------------ fit
    def fit(self, flows: FlowSet) -> MarkovGenerator:
        width = self._validated_width(flows)
        order = int(self.order)
        if order < 0:
            raise ConfigError(f"order must be >= 0, got {self.order}")
        self.tokenizer_ = FlowTokenizer(classes=flows.classes, max_length=int(self.max_length))
        self.n_clipped_ = count_clipped(flows, width, int(self.max_length))
        ids, _ = self.tokenizer_.encode(flows, width, clip=True)  # (n, W + 2): <CLASS> PL... <EOS>
        self.classes_ = list(flows.classes)
        self.max_packets_ = width
        counts = np.bincount(ids[:, 0] - self.tokenizer_.first_class_id, minlength=len(self.classes_))
        self.class_prior_ = counts / counts.sum()
        # dense symbols: 0 BOS, 1 EOS, then the length tokens seen in training, last "unseen"
        seen = np.unique(ids[:, 1:][ids[:, 1:] > EOS_ID])
        self.symbol_of_token_ = np.full(self.tokenizer_.vocab_size, len(seen) + 2, dtype=np.int64)
        self.symbol_of_token_[BOS], self.symbol_of_token_[EOS_ID] = 0, 1
        self.symbol_of_token_[seen] = np.arange(2, len(seen) + 2)
        self.n_symbols_ = len(seen) + 3
        if len(self.classes_) * float(self.n_symbols_) ** (order + 1) >= 2.0**62:
            raise ConfigError(f"order {order} with {self.n_symbols_} symbols and {len(self.classes_)} classes "
                              "overflows the 64-bit context keys; use a lower order")
        _, cls_ids, context, token, _ = self._events(ids)
        self.tables_ = [CountTable.from_events(self._keys(cls_ids, context, j), token) for j in range(order + 1)]
        self.global_counts_ = np.bincount(token, minlength=self.tokenizer_.vocab_size).astype(np.int64)
        self.first_step_ = self._first_step_distribution()  # (C, V)
        self.timing_ = self._fit_timing(flows.truncate(width) if flows.max_packets > width else flows)
        return self

    def _fit_timing(self, flows: FlowSet):
        """The fitted :class:`IATChain`, or None (``timing`` off, or "auto" without IATs)."""
        from trafficgen.generators.iat_chain import IATChain

        if self.timing not in (True, False, "auto"):
            raise ConfigError(f"timing must be True, False or 'auto', got {self.timing!r}")
        if self.timing is False or (self.timing == "auto" and flows.iat is None):
            return None
        return IATChain().fit(flows, self.classes_)

    def _events(self, ids: np.ndarray):
        """Every (row, class, context, next token, position) of encoded flows ``ids`` (n, W + 2),
        except the forced end after ``max_packets`` packets."""
        n, w2 = ids.shape
        width = w2 - 2
        body = ids[:, 1:]  # (n, W + 1): lengths, <EOS>, <PAD>
        padded = np.concatenate([np.full((n, self.order), BOS, dtype=np.int64), body], axis=1)
        keep = (body != PAD_ID) & ~((np.arange(w2 - 1) == width)[None, :] & (body == EOS_ID))
        rows, pos = np.nonzero(keep)
        sym = self._symbols(padded)
        context = np.stack([sym[rows, pos + k] for k in range(self.order)], axis=1) if self.order else \
            np.zeros((len(rows), 0), dtype=np.int64)
        cls_ids = ids[rows, 0] - self.tokenizer_.first_class_id
        return rows, cls_ids, context, body[rows, pos], pos

    # ------------------------------------------------------------------ the distribution
    @property
    def _n_outcomes(self) -> int:
        return self.tokenizer_.n_length_tokens + 1  # every length + <EOS>

    def _interpolated(self, cls_ids: np.ndarray, context: np.ndarray, token: np.ndarray) -> np.ndarray:
        """P(token | class, context) (E,) without the step-0 restriction."""
        p = np.full(len(token), 1.0 / self._n_outcomes)
        n_all = float(self.global_counts_.sum())
        t_all = float(np.count_nonzero(self.global_counts_))
        p = (self.global_counts_[token] + t_all * p) / (n_all + t_all)
        for j, table in enumerate(self.tables_):
            idx, found = table.find(self._keys(cls_ids, context, j))
            n = table.ctx_total[idx].astype(np.float64)
            t = table.ctx_types[idx].astype(np.float64)
            c = table.pair_counts(idx, found, token).astype(np.float64)
            p = np.where(found, (c + t * p) / np.maximum(n + t, 1.0), p)
        return p

    def _first_step_distribution(self) -> np.ndarray:
        """(C, V) step-0 distributions: positive lengths only, renormalised."""
        v = self.tokenizer_.vocab_size
        positive = self.tokenizer_.length_to_id(np.arange(1, self.tokenizer_.max_length + 1))
        out = np.zeros((len(self.classes_), v))
        for c in range(len(self.classes_)):
            cls_ids = np.full(len(positive), c)
            context = np.full((len(positive), self.order), self._symbols(np.array([BOS]))[0])
            p = self._interpolated(cls_ids, context, positive)
            out[c, positive] = p / p.sum()
        return out

    def event_probabilities(self, ids: np.ndarray, *, with_counts: bool = False) -> tuple[np.ndarray, ...]:
        """(rows, positions, P(token | class, context)) of every scored event of encoded flows
        ``ids`` (n, W + 2) (tokenizer ids, ``max_packets_`` wide): the terms of :meth:`log_likelihood`,
        in row-major order (rows, then positions), the forced end after ``max_packets_`` left out.
        ``with_counts`` adds each event's full-order context count (:meth:`context_counts`)."""
        rows, cls_ids, context, token, pos = self._events(ids)
        p = self._interpolated(cls_ids, context, token)
        first = pos == 0
        p[first] = self.first_step_[cls_ids[first], token[first]]
        if with_counts:
            return rows, pos, p, self.context_counts(cls_ids, context)
        return rows, pos, p

    def log_likelihood(self, flows: FlowSet) -> np.ndarray:
        """Natural-log likelihood of each flow given its class, log p(x | c) (n,), in nats.

        Lengths beyond ``max_length`` are clipped (as at fit time); flows are truncated to
        ``max_packets_``. Classes the model does not know raise ``UnknownClassError``."""
        self._check_fitted()
        ids, _ = self.tokenizer_.encode(flows.truncate(self.max_packets_) if flows.max_packets > self.max_packets_
                                        else flows, self.max_packets_, clip=True)
        rows, _pos, p = self.event_probabilities(ids)[:3]
        out = np.zeros(len(ids))
        np.add.at(out, rows, np.log(p))
        return out

    # ------------------------------------------------------------------ one step of the chain
    @property
    def n_uniforms(self) -> int:
        """Uniforms per flow that :meth:`draw_next` takes in each of ``u_level`` and ``u_draw``."""
        return len(self.tables_) + 2

    def start_history(self, n: int) -> np.ndarray:
        """(n, order) context symbols before the first packet (``<BOS>`` padding)."""
        return np.full((n, self.order), self._symbols(np.array([BOS]))[0], dtype=np.int64)

    def push_history(self, history: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """``history`` (m, order) shifted by one, ``tokens`` (m,) (token ids) appended."""
        if not self.order:
            return history
        return np.concatenate([history[:, 1:], self._symbols(tokens)[:, None]], axis=1)

    def draw_first(self, cls_ids: np.ndarray, u: np.ndarray) -> np.ndarray:
        """First-packet tokens (m,) of classes ``cls_ids`` (m,) by inverse CDF at uniforms ``u`` (m,)."""
        cdf = np.cumsum(self.first_step_, axis=1)  # (C, V)
        out = np.empty(len(cls_ids), dtype=np.int64)
        for c in np.unique(cls_ids):  # per class: the first index whose CDF reaches u * total
            rows = np.flatnonzero(cls_ids == c)
            out[rows] = np.searchsorted(cdf[c], u[rows] * cdf[c, -1], side="left")
        return np.minimum(out, cdf.shape[1] - 1)

    def context_counts(self, cls_ids: np.ndarray, history: np.ndarray) -> np.ndarray:
        """n(c, h): training count of each flow's full-order context (m,), 0 where never seen."""
        idx, found = self.tables_[-1].find(self._keys(cls_ids, history, len(self.tables_) - 1))
        return np.where(found, self.tables_[-1].ctx_total[idx], 0)

    def draw_next(self, cls_ids: np.ndarray, history: np.ndarray, u_level: np.ndarray,
                  u_draw: np.ndarray, *, with_counts: bool = False):
        """Next tokens (m,) (``<EOS>`` or a length) given classes (m,) and context symbols
        (m, order), with uniforms ``u_level`` and ``u_draw`` (:attr:`n_uniforms`, m): at each
        back-off level a flow keeps its context's empirical distribution with probability
        n / (n + T), else it backs off one level (the interpolated Witten-Bell distribution).
        ``with_counts`` also returns :meth:`context_counts` of the contexts (found on the way)."""
        m = len(cls_ids)
        nxt = np.full(m, -1, dtype=np.int64)
        counts = None
        for level, j in enumerate(range(len(self.tables_) - 1, -1, -1)):
            table = self.tables_[j]
            pending = nxt < 0
            idx, found = table.find(self._keys(cls_ids, history, j))
            n_h = table.ctx_total[idx]
            t_h = table.ctx_types[idx]
            if counts is None:  # the full-order level comes first
                counts = np.where(found, n_h, 0)
            take = pending & found & (u_level[level] * (n_h + t_h) < n_h)
            if take.any():
                nxt[take] = table.draw(idx[take], u_draw[level][take])
        n_all = int(self.global_counts_.sum())
        t_all = int(np.count_nonzero(self.global_counts_))
        pending = nxt < 0
        take = pending & (u_level[-2] * (n_all + t_all) < n_all)  # all-class unigram
        if take.any():
            target = np.floor(u_draw[-2][take] * n_all).astype(np.int64)
            nxt[take] = np.searchsorted(np.cumsum(self.global_counts_), target, side="right")
        pending = nxt < 0
        if pending.any():  # uniform over every length and <EOS>
            outcomes = np.arange(self.tokenizer_.output_ids.start, self.tokenizer_.output_ids.stop)
            nxt[pending] = outcomes[np.floor(u_draw[-1][pending] * len(outcomes)).astype(np.int64)]
        return (nxt, counts) if with_counts else nxt

    # ------------------------------------------------------------------ sample
    def sample(self, n: int, *, cls=None, random_state=None) -> FlowSet:
        rng = check_random_state(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        index = {c: k for k, c in enumerate(self.classes_)}
        cls_ids = np.array([index[c] for c in names], dtype=np.int64)  # (n,)
        n, width = len(cls_ids), self.max_packets_
        tokens = np.zeros((n, width), dtype=np.int64)  # token ids, 0 = none
        n_packets = np.full(n, width, dtype=np.int64)
        # step 0: the dense first-step distribution of the class (positive lengths)
        first = self.draw_first(cls_ids, rng.random(n))
        tokens[:, 0] = first
        history = self.push_history(self.start_history(n), first)
        alive = np.ones(n, dtype=bool)
        for step in range(1, width):
            rows = np.flatnonzero(alive)
            if not len(rows):
                break
            m = len(rows)
            u_level, u_draw = rng.random((self.n_uniforms, m)), rng.random((self.n_uniforms, m))
            nxt = self.draw_next(cls_ids[rows], history[rows], u_level, u_draw)
            ended = nxt == EOS_ID
            n_packets[rows[ended]] = step
            alive[rows[ended]] = False
            go = rows[~ended]
            tokens[go, step] = nxt[~ended]
            history[go] = self.push_history(history[go], nxt[~ended])
        lengths = np.where(tokens > EOS_ID, self.tokenizer_.id_to_length(np.maximum(tokens, 2)), 0)
        lengths[np.arange(width)[None, :] >= n_packets[:, None]] = 0
        out = FlowSet(lengths=lengths.astype(np.int32), n_packets=n_packets.astype(np.int32), labels=names)
        if self.timing_ is not None:  # its own stream, after the lengths: they do not depend on it
            out.iat = self.timing_.sample(out, self.classes_, np.random.default_rng(rng.integers(2**63 - 1)))
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self):
        tensors = {"symbol_of_token": self.symbol_of_token_, "global_counts": self.global_counts_}
        for j, table in enumerate(self.tables_):
            tensors.update(table.state(f"order{j}"))
        config = {**self._class_state(), "n_symbols": int(self.n_symbols_), "n_clipped": int(self.n_clipped_)}
        if self.timing_ is not None:
            config["timing"] = self.timing_.config()
            tensors.update(self.timing_.state("iat"))
        return config, tensors, {"tokenizer.json": self.tokenizer_.to_dict()}

    @classmethod
    @classmethod
    def tensor_names(cls, order: int) -> list[str]:
        """Names of the length model's tensors in ``model.safetensors`` for a chain of ``order``."""
        return ["symbol_of_token", "global_counts"] + [
            f"order{j}.{k}" for j in range(int(order) + 1) for k in CountTable.FIELDS]

    @classmethod
    def _load_state(cls, config, tensors, extra):
        check_tensors(tensors, dict.fromkeys(cls.tensor_names(config["params"].get("order", 2)), 1), TENSORS_FILE)
        obj = cls._from_class_state(config)
        obj.n_symbols_ = int(config["n_symbols"])
        obj.n_clipped_ = int(config.get("n_clipped", 0))
        obj.tokenizer_ = FlowTokenizer.from_dict(extra["tokenizer.json"])
        obj.symbol_of_token_ = np.asarray(tensors["symbol_of_token"], dtype=np.int64)
        obj.global_counts_ = np.asarray(tensors["global_counts"], dtype=np.int64)
        obj.tables_ = [CountTable.from_state(tensors, f"order{j}") for j in range(int(obj.order) + 1)]
        obj.first_step_ = obj._first_step_distribution()
        obj.timing_ = None
        if config.get("timing") is not None:
            from trafficgen.generators.iat_chain import IATChain

            obj.timing_ = IATChain.from_state(config["timing"], tensors, "iat")
        return obj
