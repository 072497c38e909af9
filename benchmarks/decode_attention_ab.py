"""LLaMA decode with SDPA vs :func:`trafficgen.generators.llama.one_query_attention`, in one process.

    python benchmarks/decode_attention_ab.py [--repeats 5]

The ~1.8M-parameter "small" preset with random weights (as in ``benchmarks/generate.py``) samples
10,000 10-packet flows in batches of 2000 on 2 threads, fp32, with a per-class support mask; the two
attention implementations alternate run by run, so both see the same machine (this VM's speed
drifts by up to 1.5x within minutes), and the ratio is the median of the paired runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def sdpa(q, k, v):
    """The previous step attention: q (B, H, hd), k / v (B, H, T, hd) -> (B, H, hd)."""
    return F.scaled_dot_product_attention(q[:, :, None], k, v)[:, :, 0]


def main(argv=None) -> None:
    import trafficgen.generators.llama as llama
    from benchmarks.generate import fitted_random, time_ours

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    gen = fitted_random(llama.LlamaGenerator, "small")
    impls = {"sdpa": sdpa, "one_query_attention": llama.one_query_attention}
    times: dict = {name: [] for name in impls}
    try:
        for _ in range(args.repeats):
            for name, fn in impls.items():
                llama.one_query_attention = fn
                times[name].append(time_ours(gen, 10000, 2000, "float32", 1))
    finally:
        llama.one_query_attention = impls["one_query_attention"]
    for name, ts in times.items():
        print(f"{name:20s} 10k flows fp32: median {np.median(ts):.2f} s  runs {', '.join(f'{x:.2f}' for x in ts)}")
    ratio = np.median(np.array(times["sdpa"]) / np.array(times["one_query_attention"]))
    print(f"sdpa / one_query_attention, median of paired runs: {ratio:.2f}x")


if __name__ == "__main__":
    main()
