"""NetDiffus (DDIM) and the CVAE baseline: sampling latency, and fidelity + TSTR on the nDPI flows.

    # latency (ms/flow), same process, same data
    python benchmarks/sample_image_models.py [--n-flows 1000] [--steps N] [--max-packets 32]
                                             [--epochs 1] [--threads 2] [--out bench.json]
                                             [--netdiffus-params '{"preset": "small", "sampler": "ddim"}']
                                             [--only netdiffus]
    # fidelity (packet-count / 1-gram JSD ...) and TSTR macro-F1 beside train-on-real
    python benchmarks/sample_image_models.py --mode fidelity [--netdiffus-epochs 10] [--cvae-epochs 100]
                                             [--steps N] [--threads 1] [--out fidelity.json]

Latency: NetDiffus at its defaults (the recorded CPU-budget configuration: "fast" U-Net,
DPM-Solver++ at 10 steps; ``--netdiffus-params``, JSON keyword arguments, and ``--steps``
override them, e.g. ``'{"sample_precision": "bf16"}'`` for the recipe's bf16 sampling), the CVAE at its "small" preset; both are fitted on the shipped CICDOH20 flows for ``--epochs`` epochs (latency does not depend on how
well a model is trained). One call samples ``--n-flows`` flows (NetDiffus in batches of 250).
Prints wall-clock and process-CPU latencies (CPU seconds over all threads: on a shared machine
wall time also counts the other jobs' share) and their ratio.

Fidelity: the shipped nDPI flows (``load_ndpi_apps()``, 32 classes) are split as
``trafficgen evaluate`` splits them (stratified, 30 % test, seed 0); each generator is trained
on the training part, samples as many flows of each class as the test part has (fidelity, vs
the test part) and as the training part has (TSTR: a random forest trained on them, tested on
the real test part, beside the same forest trained on the real training part). SMOTE and
Fast Retransmit fitted on the same training part are shown as baselines.

Both modes record the thread count and the machine's load average (``os.getloadavg``) before
and after, since the latency of a shared machine depends on it. ``--out`` writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from trafficgen._io import atomic_path
from trafficgen.generators.cvae import CVAEGenerator
from trafficgen.generators.netdiffus import NetDiffusGenerator


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def latency(args) -> dict:
    from trafficgen.datasets.flows import load_cicdoh20

    flows = load_cicdoh20("valid", max_packets=args.max_packets)
    result = {"mode": "latency", "n_flows": args.n_flows, "sampler_steps": args.steps, "max_packets": args.max_packets,
              "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "torch": torch.__version__, "load_before": _load()}
    nd_params = {**({} if args.steps is None else {"num_inference_steps": args.steps}),
                 **json.loads(args.netdiffus_params)}
    result["netdiffus_params"] = nd_params
    only = set(args.only.split(",")) if args.only else {"cvae", "netdiffus"}
    for name, gen in (("cvae", CVAEGenerator(preset="small", epochs=args.epochs, random_state=0, progress=False)),
                      ("netdiffus", NetDiffusGenerator(**{**nd_params, "epochs": args.epochs, "random_state": 0,
                                                          "progress": True}))):
        if name not in only:
            continue
        gen.fit(flows)
        n_params = sum(p.numel() for p in gen.model_.parameters())
        load = _load()
        t0, c0 = time.perf_counter(), time.process_time()
        out = gen.sample(args.n_flows, random_state=1)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        result[name] = {"ms_per_flow": 1000 * dt / len(out), "cpu_ms_per_flow": 1000 * cpu / len(out),
                        "seconds": dt, "cpu_seconds": cpu, "parameters": n_params,
                        "mean_packets": float(out.n_packets.mean()), "load_before": load, "load_after": _load()}
        print(f"{name:10s} {result[name]['ms_per_flow']:10.3f} ms/flow wall, {result[name]['cpu_ms_per_flow']:.3f} "
              f"CPU ms/flow ({dt:.1f} s for {len(out)} flows, {n_params / 1e6:.2f}M parameters, "
              f"load {load} -> {result[name]['load_after']})", flush=True)
    if {"cvae", "netdiffus"} <= set(result):
        result["netdiffus_over_cvae"] = result["netdiffus"]["ms_per_flow"] / result["cvae"]["ms_per_flow"]
        print(f"netdiffus / cvae latency ratio: {result['netdiffus_over_cvae']:.0f}x")
    return result


def fidelity(args) -> dict:
    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.evaluation.report import FidelityReport, comparison_markdown
    from trafficgen.evaluation.utility import tstr, tstr_markdown
    from trafficgen.experiments.run_evaluation import sample_like
    from trafficgen.generators.fast_retransmit import FastRetransmitGenerator
    from trafficgen.generators.smote import SmoteGenerator

    real = load_ndpi_apps(max_packets=args.max_packets)
    train, test = real.train_test_split(0.3, random_state=0)  # the split of `trafficgen evaluate`
    result = {"mode": "fidelity", "n_train": len(train), "n_test": len(test), "classes": len(real.classes),
              "threads": torch.get_num_threads(), "sampler_steps": args.steps, "load_before": _load(),
              "generators": {}}
    gens = {
        "netdiffus": NetDiffusGenerator(**{"max_packets": args.max_packets, "epochs": args.netdiffus_epochs,
                                           **({} if args.steps is None else {"num_inference_steps": args.steps}),
                                           **json.loads(args.netdiffus_params), "random_state": 0,
                                           "progress": True}),
        "cvae": CVAEGenerator(preset="small", max_packets=args.max_packets, epochs=args.cvae_epochs,
                              random_state=0, progress=True),
        "smote": SmoteGenerator(),
        "fast_retransmit": FastRetransmitGenerator(),
    }
    only = set(args.only.split(",")) if args.only else set(gens)
    reports, tstr_sets = [], {}
    for i, (name, gen) in enumerate(gens.items()):
        if name not in only:
            continue
        t0 = time.perf_counter()
        gen.fit(train)
        fit_s = time.perf_counter() - t0
        if args.save_dir and hasattr(gen, "save_pretrained"):
            gen.save_pretrained(os.path.join(args.save_dir, name))
        t0 = time.perf_counter()
        syn, _ = sample_like(gen, test, random_state=1000 + i)
        syn_train, _ = sample_like(gen, train, random_state=2000 + i)
        sample_s = time.perf_counter() - t0
        rep = FidelityReport.compute(test, syn, name=name, train=train)
        reports.append(rep)
        tstr_sets[name] = syn_train
        result["generators"][name] = {"params": {k: v for k, v in gen.get_params().items()
                                                 if isinstance(v, (int, float, str, type(None)))},
                                      "fit_seconds": fit_s, "sample_seconds": sample_s,
                                      "n_sampled": len(syn) + len(syn_train), "fidelity": rep.values(),
                                      "load_after": _load()}
        print(f"{name}: fit {fit_s:.0f} s, sampled {len(syn) + len(syn_train)} flows in {sample_s:.0f} s; "
              + ", ".join(f"{k} {v:.4f}" for k, v in rep.values().items()), flush=True)
    result["tstr"] = tstr(tstr_sets, train, test, seeds=3)
    result["load_after"] = _load()
    print(comparison_markdown(reports))
    print(tstr_markdown(result["tstr"]))
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("latency", "fidelity"), default="latency")
    ap.add_argument("--n-flows", type=int, default=1000, help="latency: flows to sample")
    ap.add_argument("--steps", type=int, default=None, help="NetDiffus sampler steps (default: the model's)")
    ap.add_argument("--max-packets", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1, help="latency: training epochs of both models")
    ap.add_argument("--netdiffus-epochs", type=int, default=None,
                    help="fidelity: NetDiffus training epochs (default: the model's step budget)")
    ap.add_argument("--cvae-epochs", type=int, default=100, help="fidelity: CVAE training epochs (early stopping)")
    ap.add_argument("--only", default="", help="comma-separated subset of netdiffus,cvae (latency) or "
                    "netdiffus,cvae,smote,fast_retransmit (fidelity)")
    ap.add_argument("--netdiffus-params", default="{}", help="NetDiffusGenerator keyword arguments (JSON)")
    ap.add_argument("--save-dir", default=None, help="fidelity: save the fitted models here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = latency(args) if args.mode == "latency" else fidelity(args)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
