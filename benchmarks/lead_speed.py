"""LEAD speed on CPU: training wall time per epoch (Abilene), ms per forecast (DDIM) and per sample.

    python benchmarks/lead_speed.py                       # timing only (short runs)
    python benchmarks/lead_speed.py --epochs 4 --save runs/lead_abilene   # full Abilene training

Model sizes are those of ``trafficgen/recipes/lead.yaml`` (its ``lead:`` block).
Baseline in the same process: the "no LLM" ablation (linear layer instead of the frozen LM), so
the printed ratios say what the language model costs. Timings depend on the machine's load; run
it with ``nice`` on a shared machine and say so when quoting numbers.
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


def main():
    from trafficgen.generators.lead import LeadForecaster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="folder with Abilene X01/X02_realOD.txt")
    ap.add_argument("--epochs", type=int, default=0, help="full training epochs (0: timing only)")
    ap.add_argument("--steps", type=int, default=10, help="training steps timed per variant")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", default=None, help="save the fully trained model here")
    ap.add_argument("--json", default=None, help="write the measurements here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from trafficgen.recipes.runner import load_recipe

    sizes = {k: v for k, v in load_recipe("lead")["lead"].items()
             if k in ("llm", "residual", "d_v", "n_res_blocks", "d_model", "adapter_rank", "unet_channels",
                      "layers_per_block")}
    sizes["unet_channels"] = tuple(sizes.get("unet_channels", (32, 64, 128)))
    values = load_abilene(args.data)
    n_train, n_val = int(0.7 * len(values)), int(0.15 * len(values))
    train, val = values[:n_train], values[n_train:n_train + n_val]
    out = {"sizes": sizes, "n_matrices": int(len(values)), "threads": args.threads, "batch_size": args.batch_size}
    for name, abl in (("lead", ()), ("no_llm", ("no_llm",))):
        windows = args.steps * args.batch_size
        m = LeadForecaster(epochs=1, batch_size=args.batch_size, lr=args.lr, max_train_windows=windows,
                           n_inference_steps=args.ddim_steps, ablations=abl, progress=False, **sizes)
        t0 = time.perf_counter()
        m.fit(train)
        step_s = m.history_["epoch_time_s"][0] / args.steps
        n_windows = n_train - m.t_in + 1 - max(m.horizons)
        t0 = time.perf_counter()
        m.predict_samples(values, [n_train + 100], [1, 10, 20], 1, random_state=0)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        m.predict_samples(values, [n_train + 100], [1, 10, 20], args.samples, random_state=0)
        many = time.perf_counter() - t0
        out[name] = {"train_step_s": step_s, "epoch_s_est": step_s * np.ceil(n_windows / args.batch_size),
                     "forecast_1_sample_3_horizons_ms": 1e3 * one,
                     f"forecast_{args.samples}_samples_3_horizons_ms": 1e3 * many,
                     "ms_per_sample_per_horizon": 1e3 * many / (3 * args.samples),
                     "trainable_params": sum(p.numel() for p in m.net_.parameters() if p.requires_grad)}
        print(name, json.dumps(out[name], indent=1))
    out["ratio_train_step_lead_over_no_llm"] = out["lead"]["train_step_s"] / out["no_llm"]["train_step_s"]
    print("LEAD / no-LLM train step time:", round(out["ratio_train_step_lead_over_no_llm"], 2))
    if args.epochs:
        m = LeadForecaster(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, progress=True, **sizes)
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
