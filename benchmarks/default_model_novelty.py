"""Novelty and fidelity of the default model (issue: sampled YouTube flows must differ from every
training flow in >= 50 % of cases), across training seeds and class-balance settings.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/default_model_novelty.py \
        --balance 0 0.5 --seeds 0 1 2 3 [--classes YouTube NetFlix Zoom DNS] [-n 1000] [--threads 1]

For every (class_balance, seed): train :data:`DEFAULT_CONFIG` with those two values changed on
all shipped nDPI flows (as ``trafficgen sample`` does), sample ``n`` flows per class and report
novelty (share of samples equal to no training flow of any class), the share of one-packet flows
and the packet-count JSD to the real class, plus the mean over seeds. The reference line is the
leave-one-out novelty of the real flows: what a generator of the true distribution would reach.
Training is deterministic for a given seed and thread count; other thread counts change the
floating-point sums, hence the model, by a little.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--balance", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--classes", nargs="+", default=["YouTube", "NetFlix", "Zoom", "DNS"])
    ap.add_argument("-n", type=int, default=1000, help="samples per class")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.evaluation.fidelity import PacketCountJSD
    from trafficgen.evaluation.privacy import Novelty, leave_one_out_novelty
    from trafficgen.generators.default_model import DEFAULT_CONFIG
    from trafficgen.generators.llama import LlamaGenerator

    real = load_ndpi_apps(progress=False)
    loo = leave_one_out_novelty(real)
    print(f"torch {torch.__version__}, threads {args.threads}; {len(real)} shipped flows, "
          f"{len(real.classes)} classes")
    print("real leave-one-out novelty: " + ", ".join(f"{c} {loo[c]:.3f}" for c in args.classes))
    rows = []
    for balance in args.balance:
        per_seed = []
        for seed in args.seeds:
            cfg = {**DEFAULT_CONFIG, "class_balance": balance, "random_state": seed}
            t0 = time.perf_counter()
            gen = LlamaGenerator(**cfg, progress=False).fit(real)
            train_s = time.perf_counter() - t0
            syn = gen.sample(args.n * len(args.classes), cls=[c for c in args.classes for _ in range(args.n)],
                             random_state=0)
            novelty = Novelty().compute_breakdown(real, syn)
            jsd = PacketCountJSD().compute_breakdown(real.select(args.classes), syn)
            row = {"class_balance": balance, "seed": seed, "train_s": round(train_s, 1),
                   "best_epoch": gen.history_["best_epoch"],
                   **{c: {"novelty": novelty[c], "one_packet": float(np.mean(syn.select(c).n_packets == 1)),
                          "packet_count_jsd": jsd[c]} for c in args.classes}}
            rows.append(row)
            per_seed.append(row)
            print(f"balance {balance:g} seed {seed}: train {train_s:.0f} s (best epoch {row['best_epoch']}); "
                  + "; ".join(f"{c} novelty {row[c]['novelty']:.3f} 1-pkt {row[c]['one_packet']:.2f} "
                              f"JSD {row[c]['packet_count_jsd']:.3f}" for c in args.classes), flush=True)
        print(f"balance {balance:g} mean over seeds {args.seeds}: "
              + "; ".join(f"{c} novelty {np.mean([r[c]['novelty'] for r in per_seed]):.3f} "
                          f"JSD {np.mean([r[c]['packet_count_jsd'] for r in per_seed]):.3f}" for c in args.classes))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"leave_one_out": {c: loo[c] for c in args.classes}, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
