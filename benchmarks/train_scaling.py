"""Data-parallel training throughput: 1 vs N processes (accelerate; gloo on the CPU, NCCL on GPUs).

    python benchmarks/train_scaling.py                       # CPU: 1 and 2 processes
    python benchmarks/train_scaling.py --device cuda --processes 1,2

Each run trains the LLaMA preset (``--preset``, default small) for ``--epochs`` on a synthetic
labelled FlowSet, in processes started by accelerate's launcher (``accelerate launch --multi_gpu
--num_processes N``, which is what ``trafficgen train --num-processes N`` does), and times
``fit`` inside the main process (start-up and data loading excluded). With N processes every
optimiser step consumes N batches, so the fair figure is rows/s (training rows per second); steps/s
is printed beside it. On the CPU the cores are split between the processes (1 process: all
``--threads``; N processes: ``--threads / N`` each), so on 2 cores two processes are expected to be
about as fast as one, not faster: data parallelism pays with more cores or more machines.
Ratios are against the 1-process run of the same invocation. Output: one JSON line per run and
a summary; ``--json FILE`` writes them.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def synthetic_flows(n: int, seed: int = 0):
    import numpy as np

    from trafficgen.data.flowset import FlowSet

    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        c = i % 4
        k = int(rng.integers(2, 17))
        seqs.append([int(rng.integers(40 + 300 * c, 340 + 300 * c)) * (-1) ** j for j in range(k)])
        labels.append(f"class{c}")
    return FlowSet.from_sequences(seqs, labels=labels)


def worker(args) -> None:
    """One process of a run (started by accelerate's launcher); the main one prints the timing."""
    import torch

    from trafficgen.generators.llama import LlamaGenerator
    from trafficgen.generators.training import is_main_process, launched_world_size

    torch.set_num_threads(max(1, args.threads // max(launched_world_size(), 1)))
    flows = synthetic_flows(args.flows)
    gen = LlamaGenerator(preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, random_state=0,
                         progress=False, device=args.device, val_fraction=0.0)
    t0 = time.perf_counter()
    gen.fit(flows)
    seconds = time.perf_counter() - t0
    if is_main_process():
        world = launched_world_size()
        steps = gen.history_["steps"]
        rows = args.epochs * len(flows)
        print("RESULT " + json.dumps({"processes": world, "device": args.device, "threads_per_process":
                                      torch.get_num_threads(), "steps": steps, "seconds": round(seconds, 3),
                                      "steps_per_s": round(steps / seconds, 2), "rows_per_s": round(rows / seconds, 1),
                                      "final_train_loss": round(gen.history_["train_loss"][-1], 4)}), flush=True)


def run(n: int, args) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    here = str(Path(__file__).resolve())
    passthrough = ["--worker", "--device", args.device, "--preset", args.preset, "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--flows", str(args.flows), "--threads", str(args.threads)]
    if n == 1:
        cmd = [sys.executable, here, *passthrough]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), here, *passthrough]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(max(1, args.threads // n))}
    with tempfile.TemporaryDirectory():
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{n} processes failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--processes", default="1,2")
    p.add_argument("--preset", default="small")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--flows", type=int, default=4096)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    results = []
    for n in [int(x) for x in args.processes.split(",")]:
        res = run(n, args)
        results.append(res)
        print(json.dumps(res), flush=True)
    base = results[0]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{args.device}, preset {args.preset}, {args.flows} flows x {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.threads} threads in all; load average {load:.1f} on {os.cpu_count()} cores"
          + (" (CONTENDED: other jobs share these cores)" if load > 0.5 * (os.cpu_count() or 1) else ""))
    for res in results:
        print(f"  {res['processes']} process(es): {res['steps_per_s']:7.2f} steps/s  {res['rows_per_s']:8.1f} rows/s  "
              f"x{res['rows_per_s'] / base['rows_per_s']:.2f} rows/s vs {base['processes']}  "
              f"(final loss {res['final_train_loss']})")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": results, "load_average": load, "config": vars(args) | {
            "json": str(args.json)}}, indent=2, default=str))


if __name__ == "__main__":
    main()
