"""Choose the token models' sampling defaults on validation data, never on the test part.

    python benchmarks/token_sampling_tune.py DATASET [--cap 200] [--packets 32] [--val 0.3] [--out F.jsonl]
                                             [--grid guidance=1,1.5,2 support=none,class temperature=1,0.9,0.8 top_p=none,0.9]

The lightweight_ntg recipe's training part (stratified 70/30, seed 0) is split again (stratified,
``--val`` of it, seed 1) into a fitting part and a validation part; the test part is not read.
LLaMA at its defaults and Markov order 2 are fitted on the fitting part. For every sampling
setting of the grid (guidance scale x per-class length support x temperature x top-p), samples with the
fitting part's class counts train a RandomForest that is scored on the validation part (TSTR,
2 seeds), and samples with the validation part's class counts are scored against it (the four
fidelity JSDs, leakage against the fitting part; ``trts``: macro F1 of a RandomForest trained on
the real fitting part and tested on these samples). ``mean_jsd`` is the mean of the four JSDs.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings

import numpy as np
from sklearn.metrics import f1_score

from trafficgen.representations.features import flow_features

JSDS = ("packet_count_jsd", "length_jsd", "bigram_jsd", "markov_jsd")


def parse_grid(items: list[str]) -> dict[str, list]:
    grid = {"guidance": [1.0, 1.5, 2.0], "support": [None, "class"], "temperature": [1.0, 0.9, 0.8], "top_p": [None]}
    for item in items:
        key, values = item.split("=")
        conv = (lambda v: None if v == "none" else v) if key == "support" else (
            lambda v: None if v == "none" else float(v))
        grid[key] = [conv(v) for v in values.split(",")]
    return grid


def score(gen, kw: dict, fit, val, seed: int) -> dict:
    from trafficgen.evaluation.report import FidelityReport
    from trafficgen.evaluation.utility import tstr

    syn_val = gen.sample(len(val), cls=val.labels.tolist(), random_state=seed, **kw)
    syn_fit = gen.sample(len(fit), cls=fit.labels.tolist(), random_state=seed + 1, **kw)
    values = FidelityReport.compute(val, syn_val, train=fit).values()
    row = {k: round(float(values[k]), 4) for k in (*JSDS, "leakage")}
    row["mean_jsd"] = round(float(np.mean([values[k] for k in JSDS])), 4)
    row["tstr"] = round(tstr({"x": syn_fit}, fit, val, seeds=2, n_estimators=100)["x"]["macro_f1_mean"], 4)
    row["trts"] = round(float(f1_score(syn_val.labels, real_rf(fit).predict(flow_features(syn_val)),
                                       average="macro")), 4)
    return row


_RF: dict = {}


def real_rf(fit):
    """A RandomForest trained on the real fitting part (TRTS: are samples recognisable as their class?)."""
    from sklearn.ensemble import RandomForestClassifier

    if id(fit) not in _RF:
        _RF[id(fit)] = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(
            flow_features(fit), fit.labels)
    return _RF[id(fit)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("--cap", type=int, default=200, help="flows per class (0: all)")
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--val", type=float, default=0.3)
    ap.add_argument("--llama", default="{}", help="LlamaGenerator kwargs as JSON")
    ap.add_argument("--out", default=None, help="append JSON rows to this file")
    ap.add_argument("--grid", nargs="*", default=[])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    torch.set_num_threads(1)
    flows = _load(args.dataset, {"max_packets": args.packets, "max_flows_per_class": args.cap or None})
    train, _test = flows.train_test_split(0.3, random_state=0)
    fit, val = train.train_test_split(args.val, random_state=1)
    common = {"dataset": args.dataset, "cap": args.cap, "packets": args.packets, "n_fit": len(fit), "n_val": len(val),
              "llama": json.loads(args.llama)}
    t0 = time.perf_counter()
    llama = LlamaGenerator(random_state=0, progress=False, **json.loads(args.llama)).fit(fit)
    common["llama_fit_s"] = round(time.perf_counter() - t0)
    markov = MarkovGenerator(order=2, timing=False).fit(fit)
    common["val_bits_per_flow"] = {"markov": round(float(-markov.log_likelihood(val).mean() / np.log(2)), 3),
                                   "llama": round(float(-llama.log_likelihood(val).mean() / np.log(2)), 3)}
    print(json.dumps(common), flush=True)
    rows = [{"row": "markov order 2", **score(markov, {}, fit, val, 1000)}]
    print(json.dumps(rows[-1]), flush=True)
    grid = parse_grid(args.grid)
    for g, s, t, p in itertools.product(grid["guidance"], grid["support"], grid["temperature"], grid["top_p"]):
        kw = {"guidance_scale": g, "support": s, "temperature": t, "top_p": p}
        rows.append({"row": f"llama g={g} support={s} T={t} top_p={p}", **kw, **score(llama, kw, fit, val, 1000)})
        print(json.dumps(rows[-1]), flush=True)
    cols = ["tstr", "trts", "mean_jsd", *JSDS, "leakage"]
    print("| setting | " + " | ".join(cols) + " |\n|---|" + "---:|" * len(cols))
    for r in rows:
        print(f"| {r['row']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps({**common, "rows": rows}) + "\n")


if __name__ == "__main__":
    main()
