"""Per-class output bias (and variants) of the token models, measured on validation data only.

    python benchmarks/token_class_bias.py DATASET --row NAME [--model llama|mamba|markov] [--kw JSON]
                                          [--cap 200] [--packets 32] [--val 0.3] [--out F.jsonl]
    python benchmarks/token_class_bias.py --table F.jsonl        # the markdown table of the rows

Same split as ``benchmarks/token_sampling_tune.py``: the lightweight_ntg recipe's training part
(stratified 70/30, seed 0) is split again (stratified, ``--val`` of it, seed 1) into a fitting part
and a validation part; the recipe's test part is never read. One invocation fits one generator
(``--model`` with constructor kwargs ``--kw``, ``random_state=0``) on the fitting part and writes one
row: held-out NLL of the validation part in bits per flow (the main signal), and, with the model's
default sampling settings, the four fidelity JSDs of samples against the validation part (their
mean ``mean_jsd``), leakage against the fitting part, TSTR (RandomForest trained on samples with
the fitting part's class counts, scored on the validation part, 2 seeds) and TRTS
(see ``token_sampling_tune.score``). Fit times are wall clock on a shared 2-core machine
(one torch thread): contended.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

COLS = ("val_bits_per_flow", "mean_jsd", "packet_count_jsd", "length_jsd", "bigram_jsd", "markov_jsd",
        "leakage", "tstr", "trts")


def table(path: str) -> str:
    rows = [json.loads(line) for line in open(path) if line.strip()]
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        first = next(r for r in rows if r["dataset"] == ds)
        out.append(f"\n### {ds} (fit {first['n_fit']} flows)\n")
        out.append("| row | " + " | ".join(COLS) + " | fit s (contended) | best epoch / steps |")
        out.append("|---|" + "---:|" * (len(COLS) + 2))
        for r in rows:
            if r["dataset"] != ds:
                continue
            h = r.get("history") or {}
            out.append(f"| {r['row']} | " + " | ".join(f"{r[c]:.3f}" for c in COLS)
                       + f" | {r.get('fit_s', '')} | {h.get('best_epoch', '')} / {h.get('steps', '')} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", nargs="?")
    ap.add_argument("--row", default=None)
    ap.add_argument("--model", default="llama", choices=["llama", "mamba", "markov"])
    ap.add_argument("--kw", default="{}", help="constructor kwargs as JSON")
    ap.add_argument("--cap", type=int, default=200, help="flows per class (0: all)")
    ap.add_argument("--packets", type=int, default=32)
    ap.add_argument("--val", type=float, default=0.3)
    ap.add_argument("--out", default=None, help="append the JSON row to this file")
    ap.add_argument("--save", default=None, help="save the fitted model to this directory")
    ap.add_argument("--table", default=None, help="print the table of a JSONL file and exit")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    warnings.simplefilter("ignore")
    import torch
    from token_sampling_tune import score

    from trafficgen.recipes.lightweight_ntg import _load

    torch.set_num_threads(1)
    flows = _load(args.dataset, {"max_packets": args.packets, "max_flows_per_class": args.cap or None})
    train, _test = flows.train_test_split(0.3, random_state=0)
    fit, val = train.train_test_split(args.val, random_state=1)
    kw = json.loads(args.kw)
    if args.model == "markov":
        from trafficgen.generators.markov import MarkovGenerator

        gen = MarkovGenerator(**{"order": 2, "timing": False, **kw})
    elif args.model == "llama":
        from trafficgen.generators.llama import LlamaGenerator

        gen = LlamaGenerator(**{"random_state": 0, "progress": False, **kw})
    else:
        from trafficgen.generators.mamba import MambaGenerator

        gen = MambaGenerator(**{"random_state": 0, "progress": False, **kw})
    t0 = time.perf_counter()
    gen.fit(fit)
    row = {"dataset": args.dataset, "cap": args.cap, "packets": args.packets, "n_fit": len(fit), "n_val": len(val),
           "row": args.row or f"{args.model} {args.kw}", "model": args.model, "kw": kw,
           "fit_s": round(time.perf_counter() - t0)}
    row["val_bits_per_flow"] = round(float(-gen.log_likelihood(val).mean() / np.log(2)), 3)
    hist = getattr(gen, "history_", None) or {}
    row["history"] = {k: hist[k] for k in ("best_epoch", "steps", "still_improving") if k in hist}
    if hist.get("val_loss"):
        row["history"]["val_loss"] = [round(float(v), 4) for v in hist["val_loss"]]
    row.update(score(gen, {}, fit, val, 1000))
    if args.save:
        gen.save_pretrained(args.save)
    print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
