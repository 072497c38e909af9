"""Does chain_mix need class-dependent weights? A held-out likelihood probe on validation data only.

    python benchmarks/chain_mix_weight_probe.py DATASET [--cap 200] [--packets 32] [--seed 0]

Same split as ``benchmarks/token_class_bias.py`` (the lightweight_ntg training part split again into
a fitting and a validation part; the test part is never read). LLaMA at its defaults is fitted on
the fitting part. On the validation part, whose flows neither the LM nor its chain saw, the events'
LM log-probabilities and chain probabilities are computed once; then weight schemes are chosen on
one half of the validation flows and scored on the other (2-fold cross-fitting, stratified by
class), in bits per flow:

- ``model``: the weights the fit chose (on the LM's own early-stopping rows), for reference;
- ``bucket``: one weight per context-count bucket (today's structure, re-chosen on the half);
- ``bucket x size``: per bucket and per class-size group (training flows of the class < 50 or not);
- ``bucket x class``: per bucket and class, where the class has >= 30 events of that bucket in the
  choosing half, else the bucket's global weight.

It also prints, per class-size group, the LM's, the chain's and the mixture's bits per flow.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SMALL_CLASS = 50
MIN_EVENTS = 30


def choose(log_lm, p_ch, bucket, key, keys, fallback):
    """Weights (n_keys, n_buckets) by grid search per (key, bucket); fallback where < MIN_EVENTS."""
    from trafficgen.generators.chain_mix import best_weights

    out = np.tile(fallback, (len(keys), 1))
    for i, k in enumerate(keys):
        m = key == k
        w = best_weights(log_lm[m], p_ch[m], bucket[m])
        n = np.bincount(bucket[m], minlength=len(fallback))
        out[i] = np.where(n >= MIN_EVENTS, w, fallback)
    return out


def fit_val_split(dataset: str, cap: int, packets: int):
    """token_class_bias.py's split: the lightweight_ntg training part (test 0.3, seed 0) split again
    into a fitting and a validation part (0.3, seed 1); the test part is never returned."""
    from trafficgen.recipes.lightweight_ntg import _load

    flows = _load(dataset, {"max_packets": packets, "max_flows_per_class": cap or None})
    train, _test = flows.train_test_split(0.3, random_state=0)
    return train.train_test_split(0.3, random_state=1)


def scored_events(gen, val):
    """Every event of ``val`` under the fitted token model ``gen`` and its chain: (E,) LM log-probs,
    flow rows, positions, chain probabilities and the chain's context counts (same event order)."""
    width = gen.max_packets_
    ids, _ = gen.tokenizer_.encode(val, width, clip=True)
    log_lm, rows_lm = gen._event_log_probs(ids, with_rows=True)
    chain = gen.chain_mix_.chain
    ids_ch, _ = chain.tokenizer_.encode(val, width, clip=True)
    rows, pos, p_ch, counts = chain.event_probabilities(ids_ch, with_counts=True)
    assert np.array_equal(rows, rows_lm)
    return log_lm, rows, pos, p_ch, counts


def class_halves(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n,) 0/1: every class's flows split in two halves at random (the 2-fold cross-fitting)."""
    rng = np.random.default_rng(seed)
    half = np.zeros(len(labels), dtype=int)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        half[idx[::2]] = 1
    return half


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--cap", type=int, default=200)
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    from trafficgen.generators.chain_mix import best_weights, buckets, mixture_log_prob
    from trafficgen.generators.llama import LlamaGenerator

    torch.set_num_threads(1)
    fit, val = fit_val_split(args.dataset, args.cap, args.packets)
    gen = LlamaGenerator(random_state=args.seed, progress=False).fit(fit)
    mix = gen.chain_mix_
    log_lm, rows, pos, p_ch, counts = scored_events(gen, val)
    bucket = buckets(pos, counts)
    labels = np.asarray(val.labels)
    classes = list(gen.classes_)
    cls_of_flow = np.array([classes.index(c) for c in labels])
    train_count = np.bincount([classes.index(c) for c in fit.labels], minlength=len(classes))
    ev_cls = cls_of_flow[rows]
    ev_small = (train_count[ev_cls] < SMALL_CLASS).astype(int)
    n = len(val)
    bits = 1.0 / np.log(2)

    ev_half = class_halves(cls_of_flow)[rows]

    schemes = {"model": np.zeros(len(log_lm)), "bucket": np.zeros(len(log_lm)),
               "bucket x size": np.zeros(len(log_lm)), "bucket x class": np.zeros(len(log_lm))}
    schemes["model"] = mixture_log_prob(log_lm, p_ch, mix.weights[bucket])
    for h in (0, 1):
        a, b = ev_half == h, ev_half != h  # choose on a, score b
        glob = best_weights(log_lm[a], p_ch[a], bucket[a])
        schemes["bucket"][b] = mixture_log_prob(log_lm[b], p_ch[b], glob[bucket[b]])
        w_size = choose(log_lm[a], p_ch[a], bucket[a], ev_small[a], [0, 1], glob)
        schemes["bucket x size"][b] = mixture_log_prob(log_lm[b], p_ch[b], w_size[ev_small[b], bucket[b]])
        w_cls = choose(log_lm[a], p_ch[a], bucket[a], ev_cls[a], list(range(len(classes))), glob)
        schemes["bucket x class"][b] = mixture_log_prob(log_lm[b], p_ch[b], w_cls[ev_cls[b], bucket[b]])
        print(f"half {h}: bucket weights {np.round(glob, 2).tolist()}; small-class weights "
              f"{np.round(w_size[1], 2).tolist()}, large {np.round(w_size[0], 2).tolist()}")
    print(f"{args.dataset}: {n} validation flows, {int((train_count < SMALL_CLASS).sum())} of {len(classes)} "
          f"classes with < {SMALL_CLASS} training flows; model weights {np.round(mix.weights, 2).tolist()}")
    small_flow = train_count[cls_of_flow] < SMALL_CLASS
    print("| scheme | bits/flow all | small classes | large classes |")
    print("|---|---:|---:|---:|")
    for name, terms in {"LM alone": log_lm, "chain alone": np.log(p_ch), **schemes}.items():
        per_flow = np.bincount(rows, weights=terms, minlength=n)
        print(f"| {name} | {-per_flow.mean() * bits:.3f} | {-per_flow[small_flow].mean() * bits:.3f} | "
              f"{-per_flow[~small_flow].mean() * bits:.3f} |")


if __name__ == "__main__":
    main()
