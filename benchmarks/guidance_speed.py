"""Sampling time of the shipped default LLaMA (32 packets) with and without classifier-free
guidance (guidance runs a second, unconditional forward per decode step).

    python benchmarks/guidance_speed.py [--flows 10000] [--threads 2] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch

    from trafficgen.pretrained.default_model import get_default_model

    torch.set_num_threads(args.threads)
    g = get_default_model(progress=False)
    g.sample(500, random_state=0)  # warm-up
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    for scale in (1.0, 1.5):
        best = min(_timed(g, args.flows, r, scale) for r in range(args.repeat))
        print(f"default LLaMA ({g.max_packets_} packets), {args.flows:,} flows, guidance {scale}: "
              f"{best:.2f} s (best of {args.repeat}, {args.threads} threads)")


def _timed(g, n: int, seed: int, scale: float) -> float:
    t0 = time.perf_counter()
    g.sample(n, random_state=seed, guidance_scale=scale)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
