"""LEAD speed on CPU: where one optimiser step goes, training wall time per epoch (Abilene), ms per
forecast and per sample for DDIM and DPM-Solver++, one origin at a time and 16 origins batched.

    python benchmarks/lead_speed.py --profile             # per-component profile of one step
    python benchmarks/lead_speed.py                       # step / epoch / forecast timings
    python benchmarks/lead_speed.py --epochs 4 --save runs/lead_abilene   # full Abilene training

Model sizes are those of ``trafficgen/recipes/lead.yaml`` (its ``lead:`` block).
Baseline in the same process: the "no LLM" ablation (linear layer instead of the frozen LM), so
the printed ratios say what the language model costs. Timings depend on the machine's load; run
it with ``nice`` on a shared machine and say so when quoting numbers. On an oversubscribed machine
(more busy processes than cores) use ``--threads 1``: with 2 OpenMP threads each op waits for the
slower thread, and the same step took 3-10x longer in our measurements.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def load_abilene(path: str | None):
    try:
        from trafficgen.datasets import load_abilene as loader
    except ImportError:
        loader = None
    if path is None and loader is not None:
        return loader().values
    root = Path(path or Path(__file__).resolve().parents[2] / "shared" / "data" / "abilene")
    return np.concatenate([np.loadtxt(root / f).reshape(-1, 12, 12) for f in ("X01_realOD.txt", "X02_realOD.txt")])


def _timeit(fn, repeat: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def profile_step(values: np.ndarray, sizes: dict, *, batch_size: int, chunk: int, repeat: int) -> dict:
    """Seconds per forward+backward of each LEAD component for one training batch."""
    from trafficgen.generators.tm.lead import LeadForecaster

    m = LeadForecaster(epochs=1, batch_size=batch_size, max_train_windows=batch_size, progress=False, **sizes)
    m.fit(values)
    net, n_h = m.net_.train(), len(m.horizons)
    z = m._scale(values)  # (T, N, N)
    frames = m._frames(z)  # (T, C, N, N)
    n_chunks = max(1, batch_size // chunk)
    starts = np.linspace(100, len(values) - 100, n_chunks).astype(int)
    origins = np.concatenate([s + np.arange(chunk) for s in starts])[:batch_size]
    index, anchors, targets = m._windows(z, origins)
    gen = torch.Generator().manual_seed(0)

    def backward(out):
        sum(o.float().pow(2).mean() for o in (out if isinstance(out, tuple) else (out,)) if o is not None).backward()

    feats = net.vision(frames[index]).detach().requires_grad_(True)  # (B, T, D)
    z_st = net.aggregator(feats).detach().requires_grad_(True)  # (B, T, D)
    hid = net.backbone(z_st).detach().requires_grad_(True)  # (B, T, H)
    c_global, c_seq = (c.detach() if c is not None else None for c in net.conditioning(hid))
    rep = n_h
    b = len(origins)
    n = values.shape[1]
    x = torch.randn(b * rep, 1, n, n, generator=gen)  # (B', 1, N, N)
    t = torch.randint(0, 1000, (b * rep,), generator=gen)
    hidx = torch.arange(n_h).repeat(b)
    anc = anchors[:, None].repeat_interleave(rep, 0) if m.residual else None
    cg = None if c_global is None else c_global.repeat_interleave(rep, 0)
    cs = None if c_seq is None else c_seq.repeat_interleave(rep, 0)
    uniq = len(torch.unique(index))
    res = {
        "batch_windows": b, "window_chunk": chunk, "frames_per_batch": int(index.numel()), "distinct_frames": uniq,
        "unet_samples": b * rep,
        "vision_all_frames_s": _timeit(lambda: backward(net.vision(frames[index])), repeat),
        "vision_distinct_frames_s": _timeit(lambda: backward(net.vision(frames[torch.unique(index)][None])), repeat),
        "aggregator_s": _timeit(lambda: backward(net.aggregator(feats)), repeat),
        "backbone_s": _timeit(lambda: backward(net.backbone(z_st)), repeat),
        "conditioning_s": _timeit(lambda: backward(net.conditioning(hid)), repeat),
        "unet_s": _timeit(lambda: backward(net.denoise(x, t, hidx, cg, cs, anc)), repeat),
    }
    with torch.no_grad():
        res["backbone_forward_no_grad_s"] = _timeit(lambda: net.backbone(z_st), repeat)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)

    def step():
        loss = m._loss(frames, index, anchors, targets, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()

    res["full_step_s"] = _timeit(step, repeat)
    res["trainable_params"] = sum(p.numel() for p in net.parameters() if p.requires_grad)
    res["frozen_params"] = sum(p.numel() for p in net.parameters() if not p.requires_grad)
    return res


def main():
    from trafficgen.generators.tm.lead import LeadForecaster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder with Abilene X01/X02_realOD.txt")
    ap.add_argument("--profile", action="store_true", help="per-component profile of one optimiser step")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions per profiled component")
    ap.add_argument("--epochs", type=int, default=0, help="full training epochs (0: timing only)")
    ap.add_argument("--steps", type=int, default=10, help="training steps timed per variant")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--window-chunk", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ddim-steps", type=int, default=5, help="sampling steps (both samplers)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", default=None, help="save the fully trained model here")
    ap.add_argument("--json", default=None, help="write the measurements here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from trafficgen.recipes.runner import load_recipe

    sizes = {k: v for k, v in load_recipe("lead")["lead"].items()
             if k in ("llm", "residual", "d_v", "n_res_blocks", "d_model", "adapter_rank", "unet_channels",
                      "layers_per_block", "anchor", "target_scaling", "prediction_type")}
    sizes["unet_channels"] = tuple(sizes.get("unet_channels", (32, 64, 128)))
    values = load_abilene(args.data)
    n_train, n_val = int(0.7 * len(values)), int(0.15 * len(values))
    train, val = values[:n_train], values[n_train:n_train + n_val]
    out = {"sizes": sizes, "n_matrices": int(len(values)), "threads": args.threads, "batch_size": args.batch_size,
           "window_chunk": args.window_chunk}
    if args.profile:
        for name, abl in (("lead", ()), ("no_llm", ("no_llm",))):
            out[f"profile_{name}"] = p = profile_step(train, {**sizes, "ablations": abl}, batch_size=args.batch_size,
                                                      chunk=args.window_chunk, repeat=args.repeat)
            print(f"profile {name}", json.dumps(p, indent=1), flush=True)
    else:
        for name, abl in (("lead", ()), ("no_llm", ("no_llm",))):
            windows = args.steps * args.batch_size
            m = LeadForecaster(epochs=1, batch_size=args.batch_size, lr=args.lr, max_train_windows=windows,
                               window_chunk=args.window_chunk, n_inference_steps=args.ddim_steps, ablations=abl,
                               progress=False, **sizes)
            m.fit(train)
            step_s = m.history_["epoch_time_s"][0] / args.steps
            n_windows = n_train - m.t_in + 1 - max(m.horizons)
            t0 = time.perf_counter()
            m.predict_samples(values, [n_train + 100], [1, 10, 20], 1, random_state=0)
            one = time.perf_counter() - t0
            t0 = time.perf_counter()
            m.predict_samples(values, [n_train + 100], [1, 10, 20], args.samples, random_state=0)
            many = time.perf_counter() - t0
            per_sampler = {}
            for sampler in ("ddim", "dpm"):  # 16 origins in one batch: what scoring the test part costs
                m.sampler = sampler
                t0 = time.perf_counter()
                m.predict_samples(values, np.arange(n_train + 100, n_train + 116), [1, 10, 20], args.samples,
                                  random_state=0, batch_size=16)
                per_sampler[f"{sampler}_ms_per_forecast_batched_16"] = 1e3 * (time.perf_counter() - t0) / 16
            out[name] = {"train_step_s": step_s, "epoch_s_est": step_s * np.ceil(n_windows / args.batch_size),
                         "forecast_1_sample_3_horizons_ms": 1e3 * one,
                         f"forecast_{args.samples}_samples_3_horizons_ms": 1e3 * many,
                         "ms_per_sample_per_horizon": 1e3 * many / (3 * args.samples), **per_sampler,
                         "trainable_params": sum(p.numel() for p in m.net_.parameters() if p.requires_grad)}
            print(name, json.dumps(out[name], indent=1), flush=True)
        out["ratio_train_step_lead_over_no_llm"] = out["lead"]["train_step_s"] / out["no_llm"]["train_step_s"]
        print("LEAD / no-LLM train step time:", round(out["ratio_train_step_lead_over_no_llm"], 2))
    if args.epochs:
        m = LeadForecaster(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, window_chunk=args.window_chunk,
                           progress=True, **sizes)
        t0 = time.perf_counter()
        m.fit(train, val=val)
        out["full_training"] = {"epochs_run": len(m.history_["epoch_time_s"]), "total_s": time.perf_counter() - t0,
                                **m.history_}
        print(json.dumps(out["full_training"], indent=1))
        if args.save:
            m.save_pretrained(args.save)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
