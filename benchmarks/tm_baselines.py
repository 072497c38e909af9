"""Benchmark every TM forecasting baseline on Abilene and GEANT (same protocol, same process).

    python benchmarks/tm_baselines.py -o runs/bench-tm [--epochs-scale 1.0] [--datasets abilene,geant]
        [--models persistence,seasonal,...]

Protocol: :func:`trafficgen.experiments.tm_forecast.evaluate_forecaster` (chronological
70/15/15 split, fit on train, early stopping on val, forecast every test origin with the full
history; horizons 1, 10, 20). Prints one markdown table (LEAD's normalised RMSE/MAE, Mbit/s
RMSE/MAE, NMAE, RMSE ratio to persistence on the same split; for the probabilistic baselines
CRPS, its ratio to probabilistic persistence, 50/90 % coverage and 90 % width from ``--samples``) and writes it with the fit/predict
times to ``OUT/tm_baselines.md`` and ``OUT/tm_baselines.json``. Learned models run modest epochs
so the whole run takes ~10-15 min on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: Epochs per dataset and learned model (multiplied by --epochs-scale). GEANT has ~6x fewer
#: training windows than Abilene (430 vs 2778), so it gets more epochs for similar time.
EPOCHS = {"abilene": {"lstm": 8, "gru": 8, "vit-lstm": 4, "stgcn": 4},
          "geant": {"lstm": 20, "gru": 20, "vit-lstm": 8, "stgcn": 10}}
MODELS = ["persistence", "seasonal", "historical-average", "persistence-prob", "historical-average-prob",
          "linear-anchor", "lstm", "gru", "vit-lstm", "stgcn"]


def main(argv=None) -> int:
    import torch

    from trafficgen._io import atomic_path
    from trafficgen.cli.tm import build_model, load_series
    from trafficgen.evaluation.tm.forecast_report import results_json, results_table_markdown
    from trafficgen.experiments.tm_forecast import evaluate_forecaster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--datasets", default="abilene,geant")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8, help="samples per forecast of the probabilistic "
                        "models (CRPS, coverage, interval width)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    all_results, start = [], time.perf_counter()
    for data in args.datasets.split(","):
        series = load_series(data)
        for name in args.models.split(","):
            per_model = EPOCHS.get(data, EPOCHS["abilene"])
            epochs = max(1, round(per_model[name] * args.epochs_scale)) if name in per_model else None
            model = build_model(name, epochs=epochs, seed=args.seed)
            k = args.samples if getattr(model, "probabilistic", False) else None
            res = evaluate_forecaster(model, series, horizons=(1, 10, 20), t_in=24, n_samples=k)
            res["epochs"] = epochs
            res["best_epoch"] = getattr(model, "history_", {}).get("best_epoch")
            all_results.append(res)
            h1 = res["metrics"]["1"]
            print(f"{data:8s} {name:18s} fit {res['fit_time_s']:7.1f}s  h1 LEAD RMSE {h1['rmse']:.4f} "
                  f"RMSE {h1['rmse_mbps']:.3f} Mbit/s", flush=True)

    tables = []
    for data in args.datasets.split(","):
        rows = [r for r in all_results if r["dataset"] == data]
        tables.append(f"### {data}\n\n" + results_table_markdown(rows))
    timing = ["| dataset | model | epochs (best) | fit s | predict s |", "|---|---|---:|---:|---:|"]
    for r in all_results:
        ep = "" if r["epochs"] is None else f"{r['epochs']} ({r['best_epoch'] + 1})"
        timing.append(f"| {r['dataset']} | {r['model']} | {ep} | {r['fit_time_s']:.1f} | {r['predict_time_s']:.2f} |")
    text = ("# TM forecasting baselines\n\nChronological 70/15/15 split, test origins with full history, "
            f"t_in = 24, seed {args.seed}, torch threads {args.threads}. "
            f"Total wall time {time.perf_counter() - start:.0f} s.\n\n" + "\n".join(tables)
            + "\n### timings\n\n" + "\n".join(timing) + "\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "tm_baselines.md") as tmp:
        tmp.write_text(text)
    with atomic_path(args.out / "tm_baselines.json") as tmp:
        tmp.write_text(json.dumps([{**results_json(r)} for r in all_results], indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
