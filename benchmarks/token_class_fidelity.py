"""Are a token model's samples faithful to *their class*? Class-leakage diagnosis and the two
sampling remedies (classifier-free guidance, per-class length support), beside Markov order 2.

    python benchmarks/token_class_fidelity.py DATASET [--cap 200] [--packets 32] [--model DIR] [--out F.jsonl]

Same split as the lightweight_ntg recipe (stratified 70/30, seed 0). LLaMA at its defaults with
``cfg_dropout=0.1`` (or ``--model``, a saved one) is trained on the training part. Each row:

* ``unseen_in_class``: share of the sampled packets whose length the class's training flows never
  use (the real test part's own share is the reference: a generator far above it borrows other
  classes' lengths, far below it only copies);
* ``trts``: macro F1 of a RandomForest trained on the real training part and tested on the
  samples (are samples recognisable as their class?);
* ``tstr`` (2 seeds) and the fidelity JSDs / leakage as in the recipe.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

SETTINGS = [("guidance 1 (plain)", {"guidance_scale": 1.0}), ("guidance 1.5 (default)", {"guidance_scale": 1.5}),
            ("guidance 2", {"guidance_scale": 2.0}), ("guidance 3", {"guidance_scale": 3.0}),
            ("support=class", {"guidance_scale": 1.0, "support": "class"}),
            ("guidance 2 + support=class", {"guidance_scale": 2.0, "support": "class"})]


def unseen_in_class(flows, train) -> float:
    """Mean over classes of the share of packets whose length the class's training flows lack."""
    shares = []
    for c in sorted(set(flows.labels.tolist())):
        seen = set(train.lengths[train.valid_mask & (train.labels == c)[:, None]].tolist())
        got = flows.lengths[flows.valid_mask & (flows.labels == c)[:, None]].tolist()
        if got:
            shares.append(np.mean([x not in seen for x in got]))
    return float(np.mean(shares))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--cap", type=int, default=200, help="flows per class (0: all)")
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--model", default=None, help="a saved LLaMA trained on this split with cfg_dropout > 0")
    ap.add_argument("--save", default=None, help="save the trained LLaMA here")
    ap.add_argument("--out", default=None, help="append JSON rows to this file")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import f1_score

    from trafficgen.evaluation.report import FidelityReport
    from trafficgen.evaluation.utility import tstr
    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.recipes.lightweight_ntg import _load
    from trafficgen.registry import load_generator
    from trafficgen.representations.features import flow_features

    flows = _load(args.dataset, {"max_packets": args.packets, "max_flows_per_class": args.cap or None})
    train, test = flows.train_test_split(0.3, random_state=0)
    t0 = time.perf_counter()
    llama = load_generator(args.model) if args.model else LlamaGenerator(cfg_dropout=0.1, random_state=0,
                                                                          progress=False).fit(train)
    fit_s = time.perf_counter() - t0
    if args.save:
        llama.save_pretrained(args.save)
    rf = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(flow_features(train), train.labels)
    common = {"dataset": args.dataset, "cap": args.cap, "packets": args.packets, "n_train": len(train),
              "n_test": len(test), "llama_fit_s": round(fit_s)}
    rows = [{"row": "real test part", "unseen_in_class": round(unseen_in_class(test, train), 3),
             "trts": round(f1_score(test.labels, rf.predict(flow_features(test)), average="macro"), 3)}]
    markov = MarkovGenerator(order=2, timing=False).fit(train)
    nll = {"markov": float(-markov.log_likelihood(test).mean() / np.log(2)),
           "llama": float(-llama.log_likelihood(test).mean() / np.log(2))}
    candidates = [("markov order 2", markov, {})] + [(f"llama, {name}", llama, kw) for name, kw in SETTINGS]
    for name, gen, kw in candidates:
        syn = gen.sample(len(test), cls=test.labels.tolist(), random_state=1000, **kw)
        syn_train = gen.sample(len(train), cls=train.labels.tolist(), random_state=2000, **kw)
        values = FidelityReport.compute(test, syn, train=train).values()
        row = {"row": name, "unseen_in_class": round(unseen_in_class(syn, train), 3),
               "trts": round(f1_score(syn.labels, rf.predict(flow_features(syn)), average="macro"), 3),
               "tstr": round(tstr({"x": syn_train}, train, test, seeds=2, n_estimators=100)["x"]["macro_f1_mean"], 3),
               **{k: round(values[k], 3) for k in ("packet_count_jsd", "length_jsd", "bigram_jsd", "markov_jsd",
                                                   "leakage")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{args.dataset}: held-out bits/flow markov {nll['markov']:.2f}, llama {nll['llama']:.2f}; "
          f"LLaMA fit {fit_s:.0f} s\n")
    cols = ["unseen_in_class", "trts", "tstr", "packet_count_jsd", "length_jsd", "bigram_jsd", "markov_jsd", "leakage"]
    print("| samples | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for r in rows:
        print(f"| {r['row']} | " + " | ".join(f"{r[c]:.3f}" if c in r else "" for c in cols) + " |")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({**common, "nll_bits_per_flow": nll, "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
