"""DDPM-TME estimation benchmark: throughput, an ablation of Algorithm 2, and reference priors.

    python benchmarks/ddpm_tme_bench.py --models runs/ddpm_tme_full -o runs/bench-ddpm-tme
        [--datasets abilene,geant] [--threads 1,2] [--stride 4]

Uses the DDPM-TME models the recipe saved (``MODELS/ddpm_tme_{dataset}``) and the recipe's data
split and estimation settings (``trafficgen/recipes/ddpm_tme.yaml``). Three parts, all in one
process so every number sits beside tomogravity's on the same test matrices:

1. throughput: test matrices per second of the whole estimation call (pool sampling, noise
   optimisation, projection) with 1 and 2 torch threads, next to tomogravity's;
2. ablation (TRE mean): single start (the paper) vs ``n_starts`` averaged, ``n_opt`` in {0, 5, 40},
   and the final step none (the paper's raw output) / WLS (tomogravity's) / KL projection;
3. reference priors with the same projections: the training mean (naive baseline), the test
   period's own mean (an oracle no estimator has) and the E/R round trip of the true matrices
   (the best a perfect latent search could reach through this decoder);
4. ``cond``: throughput (1 and 2 threads) and TRE of the link-load-conditional model the recipe
   saved (``MODELS/ddpm_tme_cond_{dataset}``) with the recipe's ``cond_estimation``, beside the
   projected training mean.

``--parts cond`` runs part 4 only (default: all four).

Writes ``OUT/ddpm_tme_bench.md`` and ``OUT/ddpm_tme_bench.json``; Abilene's ablation uses every
``--stride``-th test matrix to keep the run to a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    import numpy as np
    import torch

    from trafficgen._io import atomic_path
    from trafficgen.estimation.classic import tomogravity_estimate
    from trafficgen.evaluation.tm.estimation_metrics import tre
    from trafficgen.generators.tm.ddpm_tme.estimate import refine_to_link_loads
    from trafficgen.generators.tm.ddpm_tme.model import DDPMTME
    from trafficgen.recipes.ddpm_tme import _load
    from trafficgen.recipes.runner import load_recipe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="recipe output folder with ddpm_tme_{dataset}/")
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--datasets", default="abilene,geant")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--stride", type=int, default=4, help="Abilene test stride for the ablation")
    parser.add_argument("--parts", default="throughput,ablation,reference,cond")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe("ddpm_tme")
    est_cfg = dict(recipe["estimation"])
    seed = int(recipe.get("seed", 0))
    mean_tre = lambda x, xh: float(np.nanmean(tre(x, xh)))  # noqa: E731
    results, lines = {}, ["# DDPM-TME estimation benchmark", ""]
    for ds in args.datasets.split(","):
        train, X, A = _load(ds, recipe.get(ds, {}))
        Y = X @ A
        parts = set(args.parts.split(","))
        model = DDPMTME.from_pretrained(args.models / f"ddpm_tme_{ds}")
        res = results[ds] = {"n_test": len(X), "throughput": [], "ablation": [], "reference": [], "cond": []}
        if "cond" in parts and (args.models / f"ddpm_tme_cond_{ds}").exists():
            cond = DDPMTME.from_pretrained(args.models / f"ddpm_tme_cond_{ds}")
            cond_cfg = {**est_cfg, **recipe.get("cond_estimation", {}), **recipe.get(ds, {}).get("cond_estimation", {})}
            mp = mean_tre(X, refine_to_link_loads(np.tile(train.flat.mean(0), (len(X), 1)), Y, A, projection="kl"))
            for threads in [int(t) for t in args.threads.split(",")]:
                torch.set_num_threads(threads)
                t0, c0 = time.perf_counter(), time.process_time()
                est = cond.estimate(Y, A, random_state=seed, **cond_cfg)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                res["cond"].append({"threads": threads, "tms_per_s": len(X) / dt, "tms_per_cpu_s": len(X) / cpu,
                                    "tre_mean": mean_tre(X, est), "mean_prior_tre_mean": mp})
                print(ds, "cond", res["cond"][-1], flush=True)
            lines += [f"## {ds}: link-load-conditional DDPM-TME ({len(X)} test matrices, {cond_cfg})", "",
                      "| torch threads | TMs/s (wall, contended) | TMs per CPU second | TRE mean | mean_prior TRE mean |",
                      "|---:|---:|---:|---:|---:|"]
            lines += [f"| {r['threads']} | {r['tms_per_s']:.1f} | {r['tms_per_cpu_s']:.1f} | {r['tre_mean']:.4f} | "
                      f"{r['mean_prior_tre_mean']:.4f} |" for r in res["cond"]]
            lines.append("")
        if not parts & {"throughput", "ablation", "reference"}:
            continue
        # 1. throughput on the whole test set
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            est = model.estimate(Y, A, random_state=seed, **est_cfg)
            dt = time.perf_counter() - t0
            t1 = time.perf_counter()
            tg = tomogravity_estimate(Y, A)
            dt_tg = time.perf_counter() - t1
            res["throughput"].append({"threads": threads, "ddpm_tme_tms_per_s": len(X) / dt,
                                      "tomogravity_tms_per_s": len(X) / dt_tg, "ddpm_tme_tre_mean": mean_tre(X, est),
                                      "tomogravity_tre_mean": mean_tre(X, tg)})
            print(ds, res["throughput"][-1], flush=True)
        torch.set_num_threads(1)
        # 2. ablation on a subset
        idx = np.arange(0, len(X), args.stride if ds == "abilene" else 1)
        Xs, Ys = X[idx], Y[idx]
        tg_sub = mean_tre(Xs, tomogravity_estimate(Ys, A))
        res["ablation_n_test"], res["tomogravity_tre_mean_subset"] = len(idx), tg_sub
        for n_starts in (1, int(est_cfg.get("n_starts", 16))):
            for n_opt, lr in ((0, 0.01), (int(est_cfg.get("n_opt", 5)), float(est_cfg.get("lr", 0.01))), (40, 0.05)):
                cfg = {**est_cfg, "n_starts": n_starts, "n_opt": n_opt, "lr": lr, "projection": "none"}
                t0 = time.perf_counter()
                _, raw = model.estimate(Ys, A, random_state=seed, return_raw=True, **cfg)
                dt = time.perf_counter() - t0
                row = {"n_starts": n_starts, "n_opt": n_opt, "lr": lr, "tms_per_s_raw": len(idx) / dt,
                       "none": mean_tre(Xs, raw), "wls": mean_tre(Xs, refine_to_link_loads(raw, Ys, A, projection="wls")),
                       "kl": mean_tre(Xs, refine_to_link_loads(raw, Ys, A, projection="kl"))}
                res["ablation"].append(row)
                print(ds, row, flush=True)
        # 3. reference priors
        priors = {"training mean (naive baseline)": np.tile(train.flat.mean(0), (len(idx), 1)),
                  "test-period mean (oracle)": np.tile(X.mean(0), (len(idx), 1)),
                  "E/R round trip of the truth (oracle)": model.decode(model.encode(Xs))}
        for name, prior in priors.items():
            row = {"prior": name, "none": mean_tre(Xs, prior),
                   "wls": mean_tre(Xs, refine_to_link_loads(prior, Ys, A, projection="wls")),
                   "kl": mean_tre(Xs, refine_to_link_loads(prior, Ys, A, projection="kl"))}
            res["reference"].append(row)
            print(ds, row, flush=True)
        lines += [f"## {ds} ({len(X)} test matrices)", "", "Throughput (whole test set):", "",
                  "| torch threads | DDPM-TME TMs/s | tomogravity TMs/s | DDPM-TME TRE mean | tomogravity TRE mean |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['threads']} | {r['ddpm_tme_tms_per_s']:.1f} | {r['tomogravity_tms_per_s']:.0f} | "
                  f"{r['ddpm_tme_tre_mean']:.4f} | {r['tomogravity_tre_mean']:.4f} |" for r in res["throughput"]]
        lines += ["", f"Ablation (TRE mean on {len(idx)} test matrices; tomogravity {tg_sub:.4f} on the same):", "",
                  "| n_starts | n_opt | lr | raw (no projection) | WLS projection | KL projection | ratio KL / tomogravity | TMs/s before projection |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['n_starts']} | {r['n_opt']} | {r['lr']} | {r['none']:.4f} | {r['wls']:.4f} | {r['kl']:.4f} | "
                  f"{r['kl'] / tg_sub:.3f} | {r['tms_per_s_raw']:.1f} |" for r in res["ablation"]]
        lines += ["", "Reference priors, same projections (TRE mean):", "",
                  "| prior | raw | WLS projection | KL projection |", "|---|---:|---:|---:|"]
        lines += [f"| {r['prior']} | {r['none']:.4f} | {r['wls']:.4f} | {r['kl']:.4f} |" for r in res["reference"]]
        lines.append("")
    with atomic_path(args.out / "ddpm_tme_bench.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    with atomic_path(args.out / "ddpm_tme_bench.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
