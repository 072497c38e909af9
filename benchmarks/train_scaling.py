"""Data-parallel training throughput: 1 vs N processes (accelerate; gloo on the CPU, NCCL on GPUs).

    python benchmarks/train_scaling.py                       # CPU: 1 and 2 processes, LLaMA and LSTM
    python benchmarks/train_scaling.py --device cuda --processes 1,2
    python benchmarks/train_scaling.py --models lstm --tm-model stgcn   # a TM model only

Each run trains one model for ``--epochs`` in processes started by accelerate's launcher
(``accelerate launch --multi_gpu --num_processes N``, which is what ``trafficgen train
--num-processes N`` and ``trafficgen tm train --num-processes N`` do), and times ``fit`` inside the
main process (start-up and data loading excluded). ``--models`` picks them: ``llama`` (the LLaMA
preset ``--preset``, default small, on a synthetic labelled FlowSet of ``--flows`` flows) and/or
``tm`` (the TM forecaster ``--tm-model``, default lstm, at its defaults on a synthetic
``--tm-nodes``-node series of ``--tm-steps`` matrices, every window of ``t_in`` 24 matrices and
horizons 1, 10, 20 a training row; no validation series). With N processes every
optimiser step consumes N batches, so the fair figure is rows/s (training rows per second); steps/s
is printed beside it. On the CPU the cores are split between the processes (1 process: all
``--threads``; N processes: ``--threads / N`` each), so on 2 cores two processes are expected to be
about as fast as one, not faster: data parallelism pays with more cores or more machines.
Ratios are against the 1-process run of the same invocation; ``main_process_cpu_s`` is the main
process's CPU time in ``fit`` (less sensitive to other jobs on the machine than the wall clock).
Output: one JSON line per run and a summary; ``--json FILE`` writes them.
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


def synthetic_series(t: int, n: int, seed: int = 0):
    """A daily-periodic (24 steps) OD series with noise, (t, n, n)."""
    import numpy as np

    from trafficgen.data.tmseries import TMSeries

    rng = np.random.default_rng(seed)
    tt = np.arange(t)[:, None, None]
    values = rng.uniform(1e3, 1e5, size=(n, n)) * (1.5 + np.sin(2 * np.pi * tt / 24 + rng.uniform(0, 6, size=(n, n))))
    values = values + rng.uniform(0, 100, size=(t, n, n))
    return TMSeries(values, [f"n{i}" for i in range(n)], 300.0, "bytes")


def worker(args) -> None:
    """One process of a run (started by accelerate's launcher); the main one prints the timing."""
    import torch

    from trafficgen.generators.training import is_main_process, launched_world_size

    torch.set_num_threads(max(1, args.threads // max(launched_world_size(), 1)))
    if args.model == "llama":
        from trafficgen.generators.llama import LlamaGenerator

        data = synthetic_flows(args.flows)
        gen = LlamaGenerator(preset=args.preset, epochs=args.epochs, batch_size=args.batch_size, random_state=0,
                             progress=False, device=args.device, val_fraction=0.0)
        name = f"llama-{args.preset}"
    else:
        from trafficgen.generators.tm import get_tm_model

        data = synthetic_series(args.tm_steps, args.tm_nodes)
        gen = get_tm_model(args.tm_model)(epochs=args.epochs, batch_size=args.batch_size, random_state=0,
                                          progress=False, device=args.device)
        name = args.tm_model
    t0, c0 = time.perf_counter(), time.process_time()
    gen.fit(data)
    seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    if is_main_process():
        world = launched_world_size()
        steps = gen.history_["steps"]
        n_rows = len(data) if args.model == "llama" else len(data) - int(gen.t_in) - max(gen.horizons) + 1
        rows = len(gen.history_["train_loss"]) * n_rows
        print("RESULT " + json.dumps({"model": name, "processes": world, "device": args.device,
                                      "threads_per_process":
                                      torch.get_num_threads(), "steps": steps, "seconds": round(seconds, 3),
                                      "main_process_cpu_s": round(cpu_s, 3),
                                      "steps_per_s": round(steps / seconds, 2), "rows_per_s": round(rows / seconds, 1),
                                      "final_train_loss": round(gen.history_["train_loss"][-1], 4)}), flush=True)


def run(n: int, model: str, args) -> dict:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    here = str(Path(__file__).resolve())
    batch = args.batch_size if model == "llama" else args.tm_batch_size
    passthrough = ["--worker", "--model", model, "--device", args.device, "--preset", args.preset,
                   "--epochs", str(args.epochs), "--batch-size", str(batch), "--flows", str(args.flows),
                   "--threads", str(args.threads), "--tm-model", args.tm_model, "--tm-nodes", str(args.tm_nodes),
                   "--tm-steps", str(args.tm_steps)]
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
    p.add_argument("--models", default="llama,tm", help="llama and/or tm (the TM forecaster --tm-model)")
    p.add_argument("--tm-model", default="lstm", help="lstm, gru, vit-lstm, stgcn (at their defaults)")
    p.add_argument("--tm-nodes", type=int, default=12)
    p.add_argument("--tm-steps", type=int, default=4032)
    p.add_argument("--tm-batch-size", type=int, default=32)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default="llama", help=argparse.SUPPRESS)  # the worker's
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    results = []
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or set(models) - {"llama", "tm"}:
        raise SystemExit(f"--models takes llama and/or tm, got {args.models!r}")
    for model in models:
        for n in [int(x) for x in args.processes.split(",")]:
            res = run(n, model, args)
            results.append(res)
            print(json.dumps(res), flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{args.device}, {args.epochs} epochs, {args.threads} threads in all; load average {load:.1f} on "
          f"{os.cpu_count()} cores" + (" (CONTENDED: other jobs share these cores)"
                                       if load > 0.5 * (os.cpu_count() or 1) else ""))
    for model in models:
        runs = [r for r in results if r["model"] == (f"llama-{args.preset}" if model == "llama" else args.tm_model)]
        what = (f"{args.flows} flows, batch {args.batch_size}" if model == "llama" else
                f"{args.tm_nodes} nodes x {args.tm_steps} matrices, batch {args.tm_batch_size}")
        print(f"{runs[0]['model']} ({what}):")
        for res in runs:
            print(f"  {res['processes']} process(es): {res['steps_per_s']:7.2f} steps/s  {res['rows_per_s']:8.1f} "
                  f"rows/s  x{res['rows_per_s'] / runs[0]['rows_per_s']:.2f} rows/s vs {runs[0]['processes']}  "
                  f"(final loss {res['final_train_loss']})")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": results, "load_average": load, "config": vars(args) | {
            "json": str(args.json)}}, indent=2, default=str))

if __name__ == "__main__":
    main()
