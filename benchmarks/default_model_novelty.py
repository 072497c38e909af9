"""Novelty and fidelity of the default model (issue: sampled YouTube flows must differ from every
training flow in >= 50 % of cases), across training seeds and class-balance settings.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/default_model_novelty.py \
        --balance 1 --seeds 0 1 2 3 [--set repeat_weight=1.0 ...] [--classes YouTube NetFlix Zoom DNS]
        [-n 1000] [--n-all 200] [--threads 1]

For every (class_balance, seed): train :data:`DEFAULT_CONFIG` with those two values (and the
``--set`` ones) changed on all shipped nDPI flows (as ``trafficgen sample`` does), sample ``n``
flows per class and report
novelty (share of samples equal to no training flow of any class), the share of one-packet flows
and the packet-count JSD to the real class; then ``--n-all`` flows of every class for the
all-class means of novelty, packet-count JSD and length (1-gram) JSD; plus the mean over seeds.
Other settings: ``--set key=value`` (e.g. ``epochs=5 repeat_weight=0.8``). The reference line is the
leave-one-out novelty of the real flows: what a generator of the true distribution would reach;
the class-blind baseline is every shipped flow, class ignored, compared with the class.
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
    ap.add_argument("--n-all", type=int, default=200, help="samples per class for the all-class means")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="other DEFAULT_CONFIG overrides (JSON values; none = null), e.g. epochs=6 patience=none")
    ap.add_argument("--references-only", action="store_true",
                    help="print the reference lines (real leave-one-out novelty, class-blind baseline) and stop")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from trafficgen.data.flowset import FlowSet
    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.evaluation.fidelity import BigramJSD, LengthJSD, PacketCountJSD
    from trafficgen.evaluation.privacy import Novelty, leave_one_out_novelty
    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.pretrained.default_model import DEFAULT_CONFIG

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = None if value.lower() == "none" else json.loads(value)
    real = load_ndpi_apps(progress=False)
    loo = leave_one_out_novelty(real)
    print(f"torch {torch.__version__}, threads {args.threads}; {len(real)} shipped flows, "
          f"{len(real.classes)} classes")
    shown = {k: v for k, v in {**DEFAULT_CONFIG, **overrides}.items() if k not in ("class_balance", "random_state")}
    print(f"config (class_balance and seed per row): {shown}")
    print("real leave-one-out novelty: " + ", ".join(f"{c} {loo[c]:.3f}" for c in args.classes))
    blind = {}  # every shipped flow, class ignored, against each class: the class-blind baseline
    for c in args.classes:
        as_c = FlowSet.from_sequences(real.sequences(), [c] * len(real))
        blind[c] = {m.name: m().compute_breakdown(real.select([c]), as_c)[c] for m in (PacketCountJSD, LengthJSD, BigramJSD)}
    print("class-blind baseline (all shipped flows vs the class), JSD packet-count / length / bigram: "
          + ", ".join(f"{c} {' / '.join(f'{v:.3f}' for v in blind[c].values())}" for c in args.classes))
    if args.references_only:
        return
    rows = []
    for balance in args.balance:
        per_seed = []
        for seed in args.seeds:
            cfg = {**DEFAULT_CONFIG, **overrides, "class_balance": balance, "random_state": seed}
            t0 = time.perf_counter()
            gen = LlamaGenerator(**cfg, progress=False).fit(real)
            train_s = time.perf_counter() - t0
            syn = gen.sample(args.n * len(args.classes), cls=[c for c in args.classes for _ in range(args.n)],
                             random_state=0)
            novelty = Novelty().compute_breakdown(real, syn)
            jsd = PacketCountJSD().compute_breakdown(real.select(args.classes), syn)
            every = gen.sample(args.n_all * len(real.classes),
                               cls=[c for c in real.classes for _ in range(args.n_all)], random_state=1)
            all_means = {m.name: float(np.mean(list(m().compute_breakdown(real, every).values())))
                         for m in (Novelty, PacketCountJSD, LengthJSD)}  # keys: novelty, packet_count_jsd, length_jsd
            row = {"class_balance": balance, "seed": seed, "train_s": round(train_s, 1),
                   "best_epoch": gen.history_["best_epoch"], "all_classes_mean": all_means,
                   **{c: {"novelty": novelty[c], "one_packet": float(np.mean(syn.select(c).n_packets == 1)),
                          "packet_count_jsd": jsd[c]} for c in args.classes},
                   "overrides": overrides}
            rows.append(row)
            per_seed.append(row)
            print(f"balance {balance:g} seed {seed}: train {train_s:.0f} s (best epoch {row['best_epoch']}); "
                  + "; ".join(f"{c} novelty {row[c]['novelty']:.3f} 1-pkt {row[c]['one_packet']:.2f} "
                              f"JSD {row[c]['packet_count_jsd']:.3f}" for c in args.classes)
                  + f"; all {len(real.classes)} classes: novelty {all_means['novelty']:.3f} packet-count JSD "
                    f"{all_means['packet_count_jsd']:.3f} length JSD {all_means['length_jsd']:.3f}", flush=True)
        print(f"balance {balance:g} mean over seeds {args.seeds}: "
              + "; ".join(f"{c} novelty {np.mean([r[c]['novelty'] for r in per_seed]):.3f} "
                          f"JSD {np.mean([r[c]['packet_count_jsd'] for r in per_seed]):.3f}" for c in args.classes)
              + "; all classes: " + ", ".join(f"{k} {np.mean([r['all_classes_mean'][k] for r in per_seed]):.3f}"
                                              for k in ("novelty", "packet_count_jsd", "length_jsd")))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"leave_one_out": {c: loo[c] for c in args.classes}, "class_blind_baseline": blind,
                       "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
