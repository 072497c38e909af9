"""Sampling latency (ms/flow) of NetDiffus (DDIM) and the CVAE baseline, same process, same data.

    python benchmarks/sample_image_models.py [--n-flows 1000] [--steps 50] [--max-packets 32]
                                             [--epochs 1] [--threads 2] [--out bench.json]

Both models use the "small" preset and are fitted on the shipped CICDOH20 flows for
``--epochs`` epochs (latency does not depend on how well a model is trained). Prints the
latencies and their ratio; writes them as JSON when ``--out`` is given.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from trafficgen._io import atomic_path
from trafficgen.datasets.flows import load_cicdoh20
from trafficgen.generators.cvae import CVAEGenerator
from trafficgen.generators.netdiffus import NetDiffusGenerator


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-flows", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--max-packets", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    flows = load_cicdoh20("valid", max_packets=args.max_packets)
    result = {"n_flows": args.n_flows, "ddim_steps": args.steps, "max_packets": args.max_packets,
              "threads": args.threads, "machine": platform.processor() or platform.machine()}
    for name, gen in (("cvae", CVAEGenerator(preset="small", epochs=args.epochs, random_state=0, progress=False)),
                      ("netdiffus", NetDiffusGenerator(preset="small", epochs=args.epochs, random_state=0,
                                                       num_inference_steps=args.steps, progress=True))):
        gen.fit(flows)
        n_params = sum(p.numel() for p in gen.model_.parameters())
        t0 = time.perf_counter()
        out = gen.sample(args.n_flows, random_state=1)
        dt = time.perf_counter() - t0
        result[name] = {"ms_per_flow": 1000 * dt / len(out), "seconds": dt, "parameters": n_params,
                        "mean_packets": float(out.n_packets.mean())}
        print(f"{name:10s} {result[name]['ms_per_flow']:10.3f} ms/flow  ({dt:.1f} s for {len(out)} flows, "
              f"{n_params / 1e6:.2f}M parameters)", flush=True)
    result["netdiffus_over_cvae"] = result["netdiffus"]["ms_per_flow"] / result["cvae"]["ms_per_flow"]
    print(f"netdiffus / cvae latency ratio: {result['netdiffus_over_cvae']:.0f}x")
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
