"""Wall time of the CVAE's training at its defaults on the nDPI 200/class training part of the
``lightweight_ntg`` split (32 packets, seed 0), and its sampling time per flow at batch 1000.

    python benchmarks/cvae_fit_time.py [THREADS] [KWARGS]

``THREADS`` torch threads (default 2: the issue's "2 cores"). Prints one JSON line: wall and
process CPU seconds of ``fit`` (on an idle machine wall ~ CPU / THREADS at best), the 1-minute load
average before and after. On a shared machine the figures are *contended*: say so wherever they
are quoted.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    import torch

    from trafficgen.generators.cvae import CVAEGenerator
    from trafficgen.recipes.lightweight_ntg import _load

    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    kwargs = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    torch.set_num_threads(threads)
    cfg = {"max_packets": 32, "max_flows_per_class": {"ndpi": 200, "cicdoh20": None}}
    train, test = _load("ndpi", cfg).train_test_split(0.3, random_state=0)
    t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    gen = CVAEGenerator(random_state=0, progress=False, **kwargs).fit(train)
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    gen.sample(1000, random_state=1)
    sample_s = time.perf_counter() - t0
    h = gen.history_
    print(json.dumps({"dataset": "ndpi", "n_train": len(train), "threads": threads, "kwargs": kwargs,
                      "fit_s": round(fit_s, 1), "fit_cpu_s": round(fit_cpu_s, 1),
                      "load_average_at_start": load0, "epochs_run": len(h["train_loss"]), "best_epoch": h["best_epoch"],
                      "steps": h["steps"], "sample_ms_per_flow_at_1000": round(sample_s, 3),
                      "load_average": os.getloadavg()[0], "contended": True}))


if __name__ == "__main__":
    main()
