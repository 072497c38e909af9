"""Timing models on held-out real flows: bits per IAT bin (cheap, low noise) and IAT JSD of
samples, beside the per-class empirical fallback that export uses and the real-vs-real floor.

    python benchmarks/iat_models.py [--dataset ndpi] [--cap 200] [--packets 32]

Same split as the lightweight_ntg recipe (stratified 70/30, seed 0). The JSD rows put each
timing model's IATs on the *real floor sample's* lengths (real training flows with the test
part's class counts), so the difference between rows is the timing alone; the `markov+timing`
row samples lengths and IATs together, and so does `llama+timing` (``--llama``: LLaMA at its
defaults with ``timing=True``; its bits are the timing head's on the real test lengths).
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ndpi")
    ap.add_argument("--cap", type=int, default=200)
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--llama", action="store_true", help="also train LLaMA (defaults, timing=True)")
    ap.add_argument("--out", default=None, help="append the JSON result to this file")
    args = ap.parse_args()

    from trafficgen.evaluation.fidelity import IATJSD
    from trafficgen.experiments.run_evaluation import empirical_timing_sample, real_floor_sample
    from trafficgen.generators.iat_chain import IATChain
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    flows = _load(args.dataset, {"max_packets": args.packets, "max_flows_per_class": args.cap})
    if flows.iat is None:
        raise SystemExit(f"{args.dataset} carries no timing")
    train, test = flows.train_test_split(0.3, random_state=0)
    classes = train.classes
    metric = IATJSD()
    floor = real_floor_sample(train, test, random_state=0)
    rows = {"real_vs_real (floor)": metric.compute(test, floor)}
    emp = empirical_timing_sample(train, floor, random_state=1)
    rows["empirical per class (export fallback)"] = metric.compute(test, emp)
    bits = {}
    for context in IATChain.CONTEXTS:
        chain = IATChain(context=context).fit(train, classes)
        ll, k = chain.log_likelihood_bins(test, classes)
        bits[context] = float(-ll.sum() / np.log(2) / k)
        syn = floor[np.arange(len(floor))]
        syn.iat = chain.sample(syn, classes, np.random.default_rng(2))
        rows[f"iat_chain {context}"] = metric.compute(test, syn)
    mk = MarkovGenerator(order=2, timing=True).fit(train)
    syn = mk.sample(len(test), cls=test.labels.tolist(), random_state=3)
    rows["markov+timing (lengths sampled too)"] = metric.compute(test, syn)
    if args.llama:
        import time

        from trafficgen.generators.llama import LlamaGenerator
        from trafficgen.generators.timing_head import sample_iats

        t0 = time.perf_counter()
        llama = LlamaGenerator(timing="head", random_state=0, progress=False).fit(train)
        bits["llama_fit_seconds"] = time.perf_counter() - t0
        ll, k = llama.timing_log_likelihood(test)
        bits["llama timing head"] = float(-ll.sum() / np.log(2) / k)
        syn = floor[np.arange(len(floor))]
        ids, _ = llama.tokenizer_.encode(syn, llama.max_packets_, clip=True)
        syn.iat = sample_iats(llama, ids, syn, np.random.default_rng(2))
        rows["iat_chain llama timing head"] = metric.compute(test, syn)
        syn = llama.sample(len(test), cls=test.labels.tolist(), random_state=3)
        rows["llama, timing='head' (lengths sampled too)"] = metric.compute(test, syn)
        # timing=True (the default, "chain"): the same LM (timing does not change it) + the IAT chain
        syn.iat = IATChain().fit(train, classes).sample(syn, classes, np.random.default_rng(4))
        rows["llama, timing=True: IAT chain (lengths sampled too)"] = metric.compute(test, syn)
    result = {"dataset": args.dataset, "cap": args.cap, "packets": args.packets, "n_train": len(train),
              "n_test": len(test), "bits_per_iat": bits, "iat_jsd": rows}
    print("| timing | held-out bits per IAT bin | IAT JSD |\n|---|---:|---:|")
    for name, v in rows.items():
        ctx = name.removeprefix("iat_chain ")
        print(f"| {name} | {bits[ctx]:.3f} | {v:.4f} |" if ctx in bits else f"| {name} | | {v:.4f} |")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
