"""NetDiffus sampling latency of saved (trained) models by sampler steps and U-Net precision.

    python benchmarks/netdiffus_precision_latency.py DIR [DIR ...] [--threads 2] [--repeats 2]
        [--settings 10:fp32,10:bf16,15:bf16,20:bf16,20:fp32] [--n-flows 1000]

For each saved model and each ``steps:precision`` setting, ``sample(n_flows)`` wall time per flow
(batches of 250, decoding included), every setting ``--repeats`` times in turn; prints each run
with the 1-minute load average and, at the end, the best run per setting as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch


def main(argv=None) -> dict:
    from trafficgen.generators.netdiffus import NetDiffusGenerator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--n-flows", type=int, default=1000)
    ap.add_argument("--settings", default="10:fp32,10:bf16,15:bf16,20:bf16,20:fp32")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [(int(s.split(":")[0]), s.split(":")[1]) for s in args.settings.split(",")]
    runs: dict[str, list[float]] = {}
    for path in args.models:
        gen = NetDiffusGenerator.from_pretrained(path)
        gen.sample(50, random_state=0)  # warm-up
        for rep in range(args.repeats):
            for steps, precision in settings:
                gen.num_inference_steps, gen.sample_precision = steps, precision
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                flows = gen.sample(args.n_flows, random_state=1)
                ms = 1000 * (time.perf_counter() - t0) / len(flows)
                key = f"{os.path.basename(os.path.normpath(path))} {steps} {precision}"
                runs.setdefault(key, []).append(ms)
                print(f"{key} rep {rep}: {ms:.2f} ms/flow (load {load:.2f})", flush=True)
    best = {k: min(v) for k, v in runs.items()}
    print(json.dumps(best, indent=1))
    return best


if __name__ == "__main__":
    main()
