"""Refit the sample calibration of saved LEAD models on the validation part and score them again
on the recipe's test origins, beside persistence and probabilistic persistence (same process).

    python benchmarks/lead_recalibrate.py --run runs/lead --variants lead,no_llm -o OUT.json
        [--levels 0.5,0.9]

``--keep-calibration`` scores the saved calibration as it is (no refit). ``--joint`` adds, per
horizon, the CRPS of aggregates of the OD matrix (the network total and each node's outgoing
total) for the model's samples as they are and for the same per-entry samples re-paired two ways:
independently shuffled per entry (no dependence between OD pairs and horizons) and sorted per
entry (every pair takes the same rank: comonotone). Marginal scores (RMSE, CRPS per entry,
coverage) cannot tell these apart; the aggregates show what the diffusion's joint ordering adds
once a quantile map has fixed the marginals (``calibration_["mode"]`` ``qmap_*``).

``--run`` is a ``trafficgen recipe run lead`` output folder (its ``resolved_config.yaml`` and
``models/<dataset>_<variant>``). Nothing is retrained: :meth:`LeadForecaster.calibrate_on` refits
the median shrinkage, spread and (with two levels) tail power on the validation origins, and the
test origins, K and sampling steps are the recipe's. Rows have the recipe's ``results.json`` layout.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    import torch
    import yaml

    from trafficgen.data.windows import chronological_split
    from trafficgen.evaluation.tm.forecast_metrics import evaluate_forecast
    from trafficgen.generators.tm.lead import LeadForecaster
    from trafficgen.generators.tm.naive import PersistenceForecaster
    from trafficgen.generators.tm.probabilistic_naive import ProbabilisticPersistenceForecaster
    from trafficgen.recipes.lead import _load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--variants", default="lead")
    ap.add_argument("--datasets", default=None, help="default: the recipe's")
    ap.add_argument("--levels", default="0.5,0.9")
    ap.add_argument("--keep-calibration", action="store_true", help="score the saved calibration, no refit")
    ap.add_argument("--joint", action="store_true", help="also CRPS of network / node totals, re-paired samples")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = yaml.safe_load((args.run / "resolved_config.yaml").read_text())
    horizons = [int(h) for h in config["horizons"]]
    ev, seed = config["eval"], int(config.get("seed", 0))
    k = int(ev["n_samples"])
    levels = tuple(float(v) for v in args.levels.split(","))
    rows, calib, joint = [], {}, {}
    for ds in (args.datasets.split(",") if args.datasets else config["datasets"]):
        series = _load(ds)
        train, val, _ = chronological_split(series, tuple(config["split"]))
        values = series.values
        all_origins = np.arange(len(train) + len(val) - 1, len(values) - max(horizons))
        n = min(int(ev.get("max_origins") or len(all_origins)), len(all_origins))
        origins = all_origins[np.unique(np.linspace(0, len(all_origins) - 1, n).round().astype(int))]
        y = np.stack([values[origins + h] for h in horizons], axis=1)  # (B, H, N, N)
        kw = dict(unit=series.unit, interval_s=series.interval_s)
        pers = evaluate_forecast(y, PersistenceForecaster(horizons=horizons).fit(train).predict(values, origins, horizons),
                                 horizons, **kw)
        pp = ProbabilisticPersistenceForecaster(horizons=horizons).fit(train)
        metrics = {"persistence": pers, "persistence-prob": evaluate_forecast(
            y, pp.predict(values, origins, horizons), horizons, samples=pp.predict_samples(values, origins, horizons, k), **kw)}
        for variant in [v for v in args.variants.split(",") if v in (config["variants_per_dataset"].get(ds) or [])]:
            model = LeadForecaster.from_pretrained(args.run / "models" / f"{ds}_{variant}")
            model.progress = False
            t0 = time.perf_counter()
            if not args.keep_calibration:
                model.calib_levels = levels
                model.calibrate_on(val)
            t1 = time.perf_counter()
            samples = model.predict_samples(values, origins, horizons, k, random_state=seed)
            t2 = time.perf_counter()
            name = variant if args.keep_calibration else f"{variant} (recalibrated {args.levels})"
            if args.joint:
                joint[f"{ds}/{name}"] = _joint_scores(y, samples, horizons, seed)
                joint[f"{ds}/persistence-prob"] = _joint_scores(
                    y, pp.predict_samples(values, origins, horizons, k), horizons, seed, repair=False)
                print(ds, name, json.dumps(joint[f"{ds}/{name}"]), flush=True)
            metrics[name] = evaluate_forecast(y, np.median(samples, axis=1), horizons, samples=samples, **kw)
            calib[f"{ds}/{variant}"] = {**{k2: v for k2, v in model.calibration_.items() if k2 != "val_rmse"},
                                        "calibrate_s": t1 - t0, "predict_s": t2 - t1}
            print(ds, variant, json.dumps(calib[f"{ds}/{variant}"]), flush=True)
        for name, per_h in metrics.items():
            for h in horizons:
                m = per_h[h]
                row = {"dataset": ds, "model": name, "horizon": h, "n_origins": len(origins),
                       **{c: m.get(c) for c in ("rmse", "mae", "nmae", "rmse_mbps", "crps_mbps", "coverage_50",
                                                "coverage_90", "width_50_mbps", "width_90_mbps")},
                       "rmse_mbps_vs_persistence": m["rmse_mbps"] / pers[h]["rmse_mbps"],
                       "nmae_vs_persistence": m["nmae"] / pers[h]["nmae"]}
                if m.get("crps_mbps") is not None:
                    row["crps_vs_persistence_prob"] = m["crps_mbps"] / metrics["persistence-prob"][h]["crps_mbps"]
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = {"levels": None if args.keep_calibration else levels, "calibration": calib, "rows": rows}
    if args.joint:
        out["joint"] = joint
    args.out.write_text(json.dumps(out, indent=2))
    return 0


def _joint_scores(y: np.ndarray, samples: np.ndarray, horizons, seed: int, repair: bool = True) -> dict:
    """Per horizon, CRPS (series units) of the network total and the mean over nodes of each node's
    outgoing total, for ``samples`` (B, S, H, N, N) as they are and (``repair``) re-paired
    independently (shuffled per entry) and comonotonically (sorted per entry)."""
    from trafficgen.evaluation.tm.probabilistic_metrics import crps_ensemble

    rng = np.random.default_rng(seed)
    variants = {"as_is": samples}
    if repair:
        flat = samples.reshape(samples.shape[0], samples.shape[1], -1)  # (B, S, H*N*N)
        perm = np.argsort(rng.random(flat.shape), axis=1)
        variants["independent"] = np.take_along_axis(flat, perm, axis=1).reshape(samples.shape)
        variants["comonotone"] = np.sort(samples, axis=1)
    out = {}
    for name, smp in variants.items():
        out[name] = {"total": [crps_ensemble(y[:, k].sum(axis=(1, 2)), smp[:, :, k].sum(axis=(2, 3)))
                               for k in range(len(horizons))],
                     "node_out": [crps_ensemble(y[:, k].sum(axis=2), smp[:, :, k].sum(axis=3))
                                  for k in range(len(horizons))]}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
