"""Sequential DDPM-TME (issue 21 item 4): choose on a validation split of the training period.

    python benchmarks/tme_sequential_val.py abilene|geant [--epochs E] [--noises 1,2]

Fits on the first 75 % of the recipe's training matrices and scores (TRE mean) on the last 25 %,
every method with the recipe's KL projection: the projected training mean; the training-free
sequential rival (:func:`~trafficgen.estimation.sequential.sequential_kl_estimate`, running mean of
the earlier estimates, several ``beta``); the link-load-conditional DDPM-TME (``condition="links"``,
the 2026-12-02 choice, refined from the projected mean at step 50); and the sequential DDPM-TME
(``condition="previous"``, each ``prev_noise``) from pure noise and refined from step 50. With
``--ridge`` also the ridge rival (the recipe's ``ridge_prior``, penalty chosen inside the fit part)
and both models refined from the projected ridge prior (``init``, steps ``--t-starts``). The test
matrices are never read.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    import torch

    from trafficgen.estimation.sequential import sequential_kl_estimate
    from trafficgen.evaluation.tm.estimation_metrics import tre
    from trafficgen.generators.tm.ddpm_tme.estimate import refine_to_link_loads
    from trafficgen.generators.tm.ddpm_tme.model import DDPMTME
    from trafficgen.recipes.ddpm_tme import _load_timed, ridge_prior
    from trafficgen.recipes.runner import load_recipe

    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", choices=("abilene", "geant"))
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--noises", default="1,2")
    ap.add_argument("--betas", default="0,0.5,0.9,0.99")
    ap.add_argument("--skip-links", action="store_true")
    ap.add_argument("--ridge", action="store_true")
    ap.add_argument("--only-ridge-starts", action="store_true")
    ap.add_argument("--t-starts", default="50")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg = load_recipe("ddpm_tme")
    name = args.dataset
    train, _, A, _, _ = _load_timed(name, cfg.get(name, {}))
    n_fit = int(round(0.75 * len(train)))
    fit, val = train[:n_fit], train.flat[n_fit:]
    Y = val @ A
    score = lambda est: float(np.nanmean(tre(val, est)))  # noqa: E731
    pm = refine_to_link_loads(np.tile(fit.flat.mean(0), (len(val), 1)), Y, A, projection="kl")
    print(f"{name}: fit {n_fit}, validation {len(val)} matrices", flush=True)
    print(f"  projected training mean           {score(pm):.4f}", flush=True)
    for beta in [float(b) for b in args.betas.split(",")]:
        print(f"  training-free sequential beta={beta:<5g} {score(sequential_kl_estimate(Y, A, fit.flat.mean(0), beta=beta)):.4f}",
              flush=True)
    ridge = None
    if args.ridge:
        ridge, alpha = ridge_prior(fit.flat, A, Y, alphas=cfg["rivals"]["ridge_alphas"], projection="kl")
        print(f"  ridge from link loads + KL (alpha {alpha:g})  {score(refine_to_link_loads(ridge, Y, A, projection='kl')):.4f}",
              flush=True)
    ddpm = {**cfg.get("ddpm", {}), **cfg.get(name, {}).get("ddpm", {}), "epochs": args.epochs, "progress": False}
    refine = dict(start="projected_mean", t_start=50, steps=4, n_starts=16)
    conds = ([] if args.skip_links else [("links", {})]) + [("previous", {"prev_noise": float(s)})
                                                            for s in args.noises.split(",")]
    for cond, extra in conds:
        t0 = time.process_time()
        model = DDPMTME(**ddpm, condition=cond, **extra, random_state=0).fit(fit, routing=A)
        fit_s = time.process_time() - t0
        variants = [] if args.only_ridge_starts else [("refined from step 50", refine)]
        if ridge is not None:
            variants += [(f"refined from the projected ridge prior, step {t}", {**refine, "t_start": int(t), "init": ridge})
                         for t in args.t_starts.split(",")]
        if cond == "previous" and not args.only_ridge_starts:
            variants += [("refined from the projected previous estimate, step 50", {**refine, "start": "previous"}),
                         ("pure noise, 16 samples", dict(start="pool", n_starts=16, n_opt=0, steps=5))]
        for label, kw in variants:
            t0 = time.perf_counter()
            est = model.estimate(Y, A, random_state=0, projection="kl", **kw)
            dt = time.perf_counter() - t0
            print(f"  DDPM-TME condition={cond} {extra} {label}: {score(est):.4f} "
                  f"({len(val) / dt:.0f} TMs/s wall, fit {fit_s:.0f} cpu-s)", flush=True)


if __name__ == "__main__":
    main()
