"""Interpolating a token model with a per-class Markov chain, step by step (``chain_mix=True``).

The next-token distribution becomes the Jelinek-Mercer interpolation (Jelinek & Mercer 1980; as
for n-gram + neural language models, Mikolov et al. 2011)::

    p(w | c, x_<t) = (1 - lambda_b) p_LM(w | c, x_<t) + lambda_b p_chain(w | c, x_{t-2}, x_{t-1})

with ``p_chain`` the smoothed per-class order-2 chain of
:class:`~trafficgen.generators.markov.MarkovGenerator` and the weight ``lambda_b`` chosen per bucket
``b`` of how much evidence the chain has: the first packet, then the training count of the chain's
full-order context (0, 1-4, 5-19, >= 20). The two models are complementary on small data: the LM
shares strength between nearby lengths and sees the whole prefix, the chain keeps each class's exact
lengths. The weights maximise the likelihood of the LM's own validation part (the flows its early
stopping held out) under a chain fitted on the LM's training rows only (a grid of 21 weights per
bucket: the buckets partition the tokens, so each is a 1-d search); the chain is then refitted on
every training flow. It is one model: :meth:`log_likelihood` scores this mixture and the decode
loop samples it exactly (per flow and step: with probability ``lambda_b`` the chain's draw, else the
LM's), so likelihood and samples stay consistent. Sampling options that reshape the LM's logits
(temperature, top-k / top-p, guidance) act on the LM's part only; the class support
(``support="class"``) truncates both parts; ``temperature=0`` (greedy) decodes the LM alone.
The training-row weights (``class_balance``, ``repeat_weight``) act on the LM only: the chain
counts every training flow.
"""
from __future__ import annotations

import warnings

import numpy as np

from trafficgen.errors import ConfigError
from trafficgen.generators.serialization import TENSORS_FILE, check_tensors

__all__ = ["ChainMix", "COUNT_EDGES", "fit_chain_mix"]

#: Lower edges of the context-count buckets after the first packet (bucket 0 is the first packet).
COUNT_EDGES = (0, 1, 5, 20)
#: Weights of the chain tried per bucket.
WEIGHT_GRID = np.linspace(0.0, 1.0, 21)
#: Order of the interpolated chain.
CHAIN_ORDER = 2
#: Redraws of a chain draw outside the class support before the flow keeps the LM's token.
MAX_REDRAWS = 8


def buckets(pos: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Bucket (E,) of events at positions ``pos`` whose chain context has ``counts`` training events."""
    return np.where(pos == 0, 0, np.searchsorted(np.asarray(COUNT_EDGES), counts, side="right"))


def mixture_log_prob(log_p_lm: np.ndarray, p_chain: np.ndarray, w) -> np.ndarray:
    """log((1 - w) p_LM + w p_chain), elementwise (w may be 0 or 1)."""
    w = np.asarray(w, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-w + 1e-300) + log_p_lm, np.log(w) + np.log(p_chain))


def best_weights(log_p_lm: np.ndarray, p_chain: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """(n_buckets,) chain weights from :data:`WEIGHT_GRID` maximising the summed log-likelihood
    of the mixture per bucket (0.5 for a bucket without events)."""
    out = np.full(len(COUNT_EDGES) + 1, 0.5)
    for b in range(len(out)):
        m = bucket == b
        if m.any():
            ll = mixture_log_prob(log_p_lm[m][None, :], p_chain[m][None, :], WEIGHT_GRID[:, None]).sum(axis=1)  # (G,)
            out[b] = float(WEIGHT_GRID[int(np.argmax(ll))])
    return out


class ChainMix:
    """A fitted chain and its weights per bucket; mixes event probabilities and decode steps."""

    def __init__(self, chain, weights):
        self.chain = chain
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.shape != (len(COUNT_EDGES) + 1,) or ((self.weights < 0) | (self.weights > 1)).any():
            raise ConfigError(f"chain_mix weights must be {len(COUNT_EDGES) + 1} numbers in [0, 1], got {weights!r}")

    def mixed_log_probs(self, ids: np.ndarray, log_p_lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, log p of the mixture) of every scored event of ``ids`` (n, W + 2), given the LM's
        log-probabilities of the same events in the same (row-major) order."""
        rows, pos, p_chain, counts = self.chain.event_probabilities(ids, with_counts=True)
        if len(rows) != len(log_p_lm):
            raise ValueError(f"{len(log_p_lm)} LM terms for {len(rows)} chain events")
        return rows, mixture_log_prob(log_p_lm, p_chain, self.weights[buckets(pos, counts)])

    def start(self, cls_ids: np.ndarray) -> _ChainDecodeState:
        return _ChainDecodeState(self, np.asarray(cls_ids, dtype=np.int64))

    # ------------------------------------------------------------------ persistence
    def state(self, prefix: str) -> tuple[dict, dict[str, np.ndarray]]:
        config, tensors, _ = self.chain._state()
        config = {"params": self.chain.get_params(), **config}
        return ({"weights": self.weights.tolist(), "chain": config},
                {f"{prefix}.{k}": np.asarray(v) for k, v in tensors.items()})

    @classmethod
    def from_state(cls, config: dict, tensors: dict, prefix: str, tokenizer) -> ChainMix:
        from trafficgen.generators.markov import MarkovGenerator

        names = MarkovGenerator.tensor_names(config["chain"]["params"].get("order", CHAIN_ORDER))
        check_tensors(tensors, {f"{prefix}.{k}": 1 for k in names}, TENSORS_FILE)  # named with the prefix
        own = {k[len(prefix) + 1:]: np.asarray(v) for k, v in tensors.items() if k.startswith(prefix + ".")}
        chain = MarkovGenerator._load_state(config["chain"], own, {"tokenizer.json": tokenizer.to_dict()})
        return cls(chain, config["weights"])


class _ChainDecodeState:
    """The chain's context of every decoded flow; :meth:`mix_step` replaces the LM's draws."""

    def __init__(self, mix: ChainMix, cls_ids: np.ndarray):
        self.mix, self.cls_ids = mix, cls_ids
        self.history = mix.chain.start_history(len(cls_ids))  # (B, order)

    def n_uniforms(self) -> int:
        return 1 + 2 * self.mix.chain.n_uniforms

    def mix_step(self, t: int, lm_tokens: np.ndarray, u: np.ndarray, alive: np.ndarray | None = None,
                 allowed: np.ndarray | None = None, more_uniforms=None) -> np.ndarray:
        """Tokens (B,) of step ``t``: each flow's chain draw where ``u[0] < lambda_b``, else the LM's
        ``lm_tokens`` (B,); ``u`` (:meth:`n_uniforms`, B) uniforms (drawn for every flow, so the
        result does not depend on which have ended). Only the ``alive`` flows (B,) bool (None: all)
        are drawn and advanced; the others keep the LM's token. ``allowed`` (C, V') bool, the class
        support over ``<EOS>`` + lengths (None: everything), truncates the chain's part too: a draw
        outside it is redrawn (rejection sampling, exact for the renormalised truncated chain) with
        ``more_uniforms(k, m)`` -> (k, m) uniforms, at most :data:`MAX_REDRAWS` times, after which
        the flow keeps the LM's token (which is inside). Advances the chain's contexts."""
        chain, k = self.mix.chain, self.mix.chain.n_uniforms
        rows = np.arange(len(lm_tokens)) if alive is None else np.flatnonzero(alive)
        cls_ids, history = self.cls_ids[rows], self.history[rows]

        def draw(idx, u_first, u_level, u_draw):
            if t == 0:
                return chain.draw_first(cls_ids[idx], u_first), None
            return chain.draw_next(cls_ids[idx], history[idx], u_level, u_draw, with_counts=True)

        proposal, counts = draw(slice(None), u[1, rows], u[1:1 + k, rows], u[1 + k:1 + 2 * k, rows])
        bucket = np.zeros(len(rows), dtype=np.int64) if t == 0 else buckets(np.full(len(rows), t), counts)
        take = u[0, rows] < self.mix.weights[bucket]
        if allowed is not None:
            first_output = chain.tokenizer_.output_ids.start
            for _ in range(MAX_REDRAWS):
                bad = np.flatnonzero(take & ~allowed[cls_ids, proposal - first_output])
                if not len(bad) or more_uniforms is None:
                    break
                extra = more_uniforms(1 + 2 * k, len(bad))  # (1 + 2k, m)
                proposal[bad] = draw(bad, extra[0], extra[1:1 + k], extra[1 + k:])[0]
            take &= allowed[cls_ids, proposal - first_output]
        out = lm_tokens.copy()
        out[rows] = np.where(take, proposal, lm_tokens[rows])
        self.history[rows] = chain.push_history(history, out[rows])
        return out


def fit_chain_mix(flows, train_rows: np.ndarray, val_rows: np.ndarray, *, width: int, tokenizer,
                  lm_event_log_probs) -> tuple[ChainMix, dict]:
    """Choose the weights on ``val_rows`` with a chain fitted on ``train_rows``, then refit the
    chain on every flow. ``lm_event_log_probs(ids)`` gives the trained LM's log-probabilities of
    the scored events of encoded flows ``ids``. Returns the mix and a summary for the history.
    Without validation rows the weights are 0.5 everywhere (said in the summary)."""
    from trafficgen.generators.markov import MarkovGenerator

    def chain_on(part):
        with warnings.catch_warnings():  # the LM's fit has said what the chain would (clipped lengths)
            warnings.simplefilter("ignore", UserWarning)
            return MarkovGenerator(order=CHAIN_ORDER, max_packets=width, max_length=tokenizer.max_length,
                                   timing=False).fit(part)

    summary: dict = {"order": CHAIN_ORDER, "count_edges": list(COUNT_EDGES)}
    weights = np.full(len(COUNT_EDGES) + 1, 0.5)
    if len(val_rows) and len(train_rows):
        part = chain_on(flows[np.asarray(train_rows)])
        val = flows[np.asarray(val_rows)]
        known = np.isin(np.asarray(val.labels), part.classes_)  # a class only in the validation part: skip it
        val = val[known]
        if len(val):
            ids_lm, _ = tokenizer.encode(val, width, clip=True)
            ids_ch, _ = part.tokenizer_.encode(val, width, clip=True)
            log_lm = lm_event_log_probs(ids_lm)
            _, pos, p_chain, counts = part.event_probabilities(ids_ch, with_counts=True)
            bucket = buckets(pos, counts)
            weights = best_weights(log_lm, p_chain, bucket)
            mixed = mixture_log_prob(log_lm, p_chain, weights[bucket])
            bits = 1.0 / (len(val) * np.log(2))
            summary.update(val_flows=int(len(val)), val_bits_per_flow={
                "lm": round(float(-log_lm.sum() * bits), 3), "chain": round(float(-np.log(p_chain).sum() * bits), 3),
                "mix": round(float(-mixed.sum() * bits), 3)},
                events_per_bucket=np.bincount(bucket, minlength=len(weights)).tolist())
    else:
        summary["note"] = "no validation part: chain weights 0.5"
    chain = chain_on(flows)
    if list(chain.classes_) != list(tokenizer.classes) or chain.tokenizer_.max_length != tokenizer.max_length:
        raise ValueError("the chain's tokenizer differs from the LM's")
    summary["weights"] = [float(x) for x in weights]
    return ChainMix(chain, weights), summary
