"""Would chain_mix gain from a separate weight for the end-of-flow decision? Held-out likelihood only.

    python benchmarks/chain_mix_eos_probe.py DATASET [--cap 200] [--packets 32] [--load DIR]

Same split as ``benchmarks/token_class_bias.py`` (the test part is never read); LLaMA at its defaults
is fitted on the fitting part (or loaded from ``--load``, a model saved by that script's ``--save``).
Every event of a validation flow is scored in two factorisations, both with weights per
context-count bucket chosen on one half of the validation flows and scored on the other
(2-fold cross-fitting):

- ``one weight`` (today's chain_mix): ``p = (1 - w) p_LM + w p_chain`` over <EOS> and lengths;
- ``stop + length``: the end decision ``q = (1 - v) q_LM + v q_chain`` with ``q = p(<EOS>)``, then the
  length given no end, ``(1 - w) p_LM / (1 - q_LM) + w p_chain / (1 - q_chain)``.

The second has the first as a special case (v = w), so its cross-fitted gain measures what a separate
stop weight could buy. Each model's p(<EOS>) at a position is read by scoring the flow cut there.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from trafficgen.generators.chain_mix import WEIGHT_GRID, best_weights, buckets, mixture_log_prob

sys.path.insert(0, str(Path(__file__).resolve().parent))


def eos_probabilities(gen, val, width):
    """(LM, chain) p(<EOS>) (E,) at every scored event of ``val``, in event order (0 at position 0)."""
    ids, _ = gen.tokenizer_.encode(val, width, clip=True)
    _, rows = gen._event_log_probs(ids, with_rows=True)
    pos = np.concatenate([np.arange(int((rows == r).sum())) for r in range(len(val))])
    q_lm, q_ch = np.zeros(len(rows)), np.zeros(len(rows))
    starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(val)))[:-1]])
    n = np.asarray(val.n_packets)
    for t in range(1, width):
        keep = np.flatnonzero(n >= t)  # flows with an event at position t
        if not len(keep):
            break
        cut = val[keep].truncate(t)
        ids_t, _ = gen.tokenizer_.encode(cut, width, clip=True)
        lm_t, rows_t = gen._event_log_probs(ids_t, with_rows=True)
        ids_c, _ = gen.chain_mix_.chain.tokenizer_.encode(cut, width, clip=True)
        rows_c, _pos_c, p_c = gen.chain_mix_.chain.event_probabilities(ids_c)
        last = np.r_[rows_t[1:] != rows_t[:-1], True]  # the last event of each cut flow: <EOS> at t
        q_lm[starts[keep] + t] = np.exp(lm_t[last])
        q_ch[starts[keep] + t] = p_c[np.r_[rows_c[1:] != rows_c[:-1], True]]
    return q_lm, q_ch, pos


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--cap", type=int, default=200)
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--load", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch
    from chain_mix_weight_probe import class_halves, fit_val_split, scored_events

    from trafficgen.generators.llama import LlamaGenerator

    torch.set_num_threads(1)
    fit, val = fit_val_split(args.dataset, args.cap, args.packets)
    gen = LlamaGenerator.from_pretrained(args.load) if args.load else LlamaGenerator(random_state=0, progress=False).fit(fit)
    width = gen.max_packets_
    log_lm, rows, pos, p_ch, counts = scored_events(gen, val)
    q_lm, q_ch, pos2 = eos_probabilities(gen, val, width)
    assert np.array_equal(pos, pos2)
    bucket = buckets(pos, counts)
    n = np.asarray(val.n_packets)
    is_end = pos == n[rows]  # the observed event is <EOS>
    p_lm = np.exp(log_lm)
    # stop part and length part of each model, per event
    with np.errstate(divide="ignore", invalid="ignore"):
        len_lm = np.where(is_end, 1.0, p_lm / np.maximum(1 - q_lm, 1e-300))
        len_ch = np.where(is_end, 1.0, p_ch / np.maximum(1 - q_ch, 1e-300))

    def stop_terms(v, m):  # log p of the stop decision of events m under stop weights v (per event)
        q = (1 - v) * q_lm[m] + v * q_ch[m]
        return np.where(is_end[m], np.log(np.maximum(q, 1e-300)), np.log(np.maximum(1 - q, 1e-300)))

    ev_half = class_halves(np.asarray(val.labels))[rows]
    one, two = np.zeros(len(rows)), np.zeros(len(rows))
    for h in (0, 1):
        a, b = ev_half == h, ev_half != h
        w1 = best_weights(log_lm[a], p_ch[a], bucket[a])
        one[b] = mixture_log_prob(log_lm[b], p_ch[b], w1[bucket[b]])
        # length weights on the length events; stop weights on every event with a choice (pos >= 1)
        la = a & ~is_end
        w2 = best_weights(np.log(len_lm[la]), len_ch[la], bucket[la])
        v2 = np.full_like(w2, 0.5)
        sa = a & (pos >= 1)
        for k in range(len(v2)):
            m = sa & (bucket == k)
            if m.any():
                q = (1 - WEIGHT_GRID[:, None]) * q_lm[m][None] + WEIGHT_GRID[:, None] * q_ch[m][None]  # (G, e)
                ll = np.where(is_end[m][None], np.log(np.maximum(q, 1e-300)), np.log(np.maximum(1 - q, 1e-300))).sum(1)
                v2[k] = WEIGHT_GRID[int(np.argmax(ll))]
        vb = v2[bucket[b]]
        stop = np.where(pos[b] >= 1, stop_terms(vb, b), 0.0)
        length = np.where(is_end[b], 0.0, mixture_log_prob(np.log(np.maximum(len_lm[b], 1e-300)), len_ch[b], w2[bucket[b]]))
        two[b] = stop + length
        print(f"half {h}: one weight {np.round(w1, 2).tolist()}; stop {np.round(v2, 2).tolist()}, length {np.round(w2, 2).tolist()}")
    bits = 1.0 / np.log(2)
    nv = len(val)
    print(f"{args.dataset}: {nv} validation flows; bits per flow (cross-fitted)")
    print(f"  LM alone {-log_lm.sum() * bits / nv:.3f}; chain alone {-np.log(p_ch).sum() * bits / nv:.3f}")
    print(f"  one weight {-one.sum() * bits / nv:.3f}; stop + length {-two.sum() * bits / nv:.3f}")
    sanity = np.where(pos >= 1, np.where(is_end, np.log(q_lm), np.log(np.maximum(1 - q_lm, 1e-300))), 0) + \
        np.where(is_end, 0, np.log(np.maximum(len_lm, 1e-300)))
    print(f"  check: LM refactored {-sanity.sum() * bits / nv:.3f} (= LM alone)")


if __name__ == "__main__":
    main()
