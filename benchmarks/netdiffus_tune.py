"""NetDiffus tuning on a fixed validation split (never the test part): fit one configuration on
80 % of the lightweight_ntg training part, score samplers / decoders on the other 20 %.

    python benchmarks/netdiffus_tune.py --dataset ndpi --name fast_quantile \
        --params '{"preset": "fast", "length_transform": "quantile", "ema_decay": 0.999, "epochs": 40}' \
        --out benchmarks/results/netdiffus_2026-12-02/tune_ndpi_fast_quantile.json [--save-dir DIR]

The split is the recipe's (``trafficgen.recipes.lightweight_ntg._load``: nDPI 200 per class,
CICDOH20 whole, 32 packets, stratified 70/30 with seed 0); its training part is split again
(stratified 80/20, seed 1) into fit / validation. Scores on the validation part, for every
sampler setting in ``--samplers`` (``name:steps[:guidance[:precision[:noise_scale]]]``; ``--draws K`` synthetic
draws each, also averaged) and both end detections (``--ends``): the
four fidelity JSDs of as many samples per class as the validation part has, and TSTR
(random forest, 100 trees, seed 0, and ``tstr_f1_mean3`` over forest seeds 0-2) of as many samples per class as the fit part has. Also the
final training loss and the sampling time per flow (one thread, *contended* machine).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from trafficgen._io import atomic_path


def split(dataset: str):
    from trafficgen.recipes.lightweight_ntg import _load

    flows = _load(dataset, {"max_packets": 32, "max_flows_per_class": {"ndpi": 200, "cicdoh20": None}})
    train, test = flows.train_test_split(0.3, random_state=0)
    fit, val = train.train_test_split(0.2, random_state=1)
    return fit, val, test


def score(gen, fit, val, images_val, images_fit, labels_val, labels_fit, end: str, counts_val=None,
          counts_fit=None) -> dict:
    from trafficgen.evaluation.fidelity import fidelity_metrics
    from trafficgen.evaluation.utility import fit_score

    syn_val = gen.decode_images(images_val, labels=labels_val, end_detection=end, packet_counts=counts_val)
    syn_fit = gen.decode_images(images_fit, labels=labels_fit, end_detection=end, packet_counts=counts_fit)
    out = {m.name: float(m.compute(val, syn_val)) for m in fidelity_metrics()}
    out.update(mean_packets=float(syn_val.n_packets.mean()), real_mean_packets=float(val.n_packets.mean()))
    f1s = [fit_score(syn_fit, val, seed=s, n_packets=val.max_packets)[0] for s in range(3)]
    out["tstr_f1"] = f1s[0]
    out["tstr_f1_mean3"] = float(np.mean(f1s))  # forest seeds 0-2 (the forest's share of the noise)
    return out


def score_references(fit, val, draws: int) -> dict:
    """The rivals on the same split: ``markov`` (order 2), ``smote`` and ``copy`` (the fitting flows
    drawn with the validation part's class counts: the real-vs-real floor of the JSDs) fitted on the
    fit part, each scored like NetDiffus (four JSDs against the validation part, TSTR over forest seeds
    0-2), the mean over ``draws`` synthetic draws."""
    from trafficgen.evaluation.fidelity import fidelity_metrics
    from trafficgen.evaluation.utility import fit_score
    from trafficgen.experiments.run_evaluation import sample_like
    from trafficgen.registry import get_generator

    rows = {}
    for name in ("markov", "smote", "copy"):
        gen = get_generator(name)().fit(fit)  # seeds come with each draw
        per_draw = []
        for d in range(draws):
            syn_val, _ = sample_like(gen, val, random_state=1 + 100 * d)
            syn_fit, _ = sample_like(gen, fit, random_state=2 + 100 * d)
            out = {m.name: float(m.compute(val, syn_val)) for m in fidelity_metrics()}
            out["tstr_f1_mean3"] = float(np.mean([fit_score(syn_fit, val, seed=s, n_packets=val.max_packets)[0]
                                                  for s in range(3)]))
            per_draw.append(out)
        rows[name] = {k: float(np.mean([r[k] for r in per_draw])) for k in per_draw[0]}
        print(name, json.dumps(rows[name]), flush=True)
    return rows


def main(argv=None) -> dict:
    from trafficgen.evaluation.utility import fit_score
    from trafficgen.generators.netdiffus import NetDiffusGenerator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("ndpi", "cicdoh20"), default="ndpi")
    ap.add_argument("--name", required=True)
    ap.add_argument("--params", default="{}", help="NetDiffusGenerator parameters (JSON)")
    ap.add_argument("--samplers", default="dpmsolver++:10,ddim:10,unipc:10",
                    help="comma-separated name:steps[:guidance[:precision[:noise_scale]]] (precision fp32 | bf16)")
    ap.add_argument("--draws", type=int, default=1, help="synthetic draws per sampler (different seeds)")
    ap.add_argument("--ends", default="first_gap,step", help="end detections to score (comma-separated)")
    ap.add_argument("--references", action="store_true",
                    help="score markov / smote / copy on the same split instead of NetDiffus")
    ap.add_argument("--load", default=None, help="score a saved model instead of fitting")
    ap.add_argument("--save-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fit, val, _ = split(args.dataset)
    params = {"random_state": 0, "progress": False, **json.loads(args.params)}
    result = {"dataset": args.dataset, "name": args.name, "params": params, "n_fit": len(fit), "n_val": len(val),
              "load_before": list(os.getloadavg()),
              "real_fit_tstr_f1": fit_score(fit, val, seed=0, n_packets=val.max_packets)[0]}
    if args.references:
        result["references"] = score_references(fit, val, args.draws)
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
        return result
    if args.load:
        gen = NetDiffusGenerator.from_pretrained(args.load)
        result["fit_seconds"] = None
    else:
        gen = NetDiffusGenerator(**params)
        t0 = time.perf_counter()
        gen.fit(fit)
        result["fit_seconds"] = time.perf_counter() - t0
        if args.save_dir:
            gen.save_pretrained(os.path.join(args.save_dir, f"{args.dataset}_{args.name}"))
    result["train_loss_last"] = gen.history_.get("train_loss", [None])[-1]
    result["steps"] = gen.history_.get("steps")
    result["samplers"] = {}
    for spec in args.samplers.split(","):
        name, steps, *rest = spec.split(":")
        w = float(rest[0]) if rest else 1.0
        precision = rest[1] if len(rest) > 1 else "fp32"
        noise_scale = float(rest[2]) if len(rest) > 2 else 1.0
        draws = []
        for d in range(args.draws):
            # class ids (with count_condition: (class, packet count) ids, the counts drawn from the class's)
            lab_val, cnt_val = gen.draw_conditions(val.labels, np.random.default_rng(11 + 100 * d))
            lab_fit, cnt_fit = gen.draw_conditions(fit.labels, np.random.default_rng(12 + 100 * d))
            kw = dict(sampler=name, num_inference_steps=int(steps), guidance_scale=w, precision=precision,
                      noise_scale=noise_scale)
            t0 = time.perf_counter()
            im_val = gen.sample_images(lab_val, random_state=1 + 100 * d, **kw)
            ms = 1000 * (time.perf_counter() - t0) / len(lab_val)
            im_fit = gen.sample_images(lab_fit, random_state=2 + 100 * d, **kw)
            res = {"ms_per_flow_1thread": ms}
            for end in args.ends.split(","):
                res[end] = score(gen, fit, val, im_val, im_fit, val.labels, fit.labels, end, cnt_val, cnt_fit)
            draws.append(res)
        res = dict(draws[0])
        if args.draws > 1:  # the mean over draws of every score, and the draws themselves
            for end in args.ends.split(","):
                res[f"{end}_mean_over_draws"] = {k: float(np.mean([r[end][k] for r in draws])) for k in draws[0][end]}
            res["draws"] = draws
        result["samplers"][spec] = res
        print(args.dataset, args.name, spec, json.dumps({k: v for k, v in res.items() if k != "draws"}), flush=True)
    result["load_after"] = list(os.getloadavg())
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
