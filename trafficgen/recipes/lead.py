"""Recipe runner for LEAD (Tables 1-3 of the paper) on the shipped Abilene and GEANT data.

For every data set: chronological 70/15/15 split; baselines (persistence, seasonal naive,
historical average, and the neural TM baselines named in the YAML) and every LEAD variant
(the full model, the paper's non-residual setting, the Table 3 ablations) are fitted on the
training part (LEAD: early stopping on the validation part) and evaluated at the same test
origins (evenly spaced over the test part, every target inside it; the history may reach back
into train/val). Reported per horizon: LEAD's per-matrix-normalised RMSE/MAE and real-unit
RMSE (Mbit/s) / NMAE side by side, ratios to persistence, and for LEAD (K samples, median as point
forecast) and the probabilistic baselines CRPS (and its ratio to ``probabilistic_baseline``'s),
50/90 % interval coverage and interval width. The paper's own numbers sit in a separate
column where we know them (otherwise "n/a"). ``use_baselines`` / ``use_variants`` (lists) pick a
subset (the quick mode uses them, since recipe overrides merge dictionaries).

The fan-chart (main) variant's own anchor is scored alone as ``<variant>-anchor`` (the per-OD
or pooled blend it was trained on), so the table shows what the diffusion adds to it; every
variant's anchor choice (``anchor_selection``) and calibration (incl. the validation CRPS of
each spread mode) are in ``results.json``'s ``timings``.

``table3`` (list) names the variants of the ablation table (Table 3, with persistence beside
them); every other model goes into the data set's Table 1/2. ``eval.timing`` times the fan-chart
variant once more at ``timing.ddim_steps`` sampling steps for ms per forecast / per sample.

Writes ``table.csv``, ``table.md``, ``summary.md``, one fan chart PNG per data set and the
trained models under ``models/`` (reused on a re-run when ``reuse: true`` and the parameters
match).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.errors import ConfigError
from trafficgen.evaluation.tm.fan_chart import fan_chart
from trafficgen.recipes.runner import device_params
from trafficgen.registry import import_object

#: The recipe's top-level keys (the runner rejects any other: a typo is an error, never dropped).
CONFIG_KEYS = ("name", "runner", "seed", "datasets", "split", "t_in", "horizons", "reuse", "baselines", "lead", "small", "paper", "variants", "table", "table3", "variants_per_dataset", "use_baselines", "use_variants", "eval", "fan_chart", "progress", "quick", "quick_mode", "device",
               "probabilistic_baseline", "budget_note")

LEAD_SPEC = "trafficgen.generators.tm.lead.forecaster:LeadForecaster"


def _load(name: str):
    from trafficgen import datasets

    if name == "abilene":
        return datasets.load_abilene()
    if name == "geant":
        return datasets.load_geant()
    from trafficgen.data.tm import read_tm  # a path

    return read_tm(name)


def _paper(config: dict, ds: str, model: str, h: int) -> str:
    v = config.get("paper", {}).get(ds, {}).get(model, {}).get(h, config.get("paper", {}).get(ds, {})
                                                                 .get(model, {}).get(str(h)))
    return "n/a" if v is None else str(v)


def _fit_lead(params: dict, train, val, model_dir: Path, reuse: bool):
    cls = import_object(LEAD_SPEC)
    if reuse and (model_dir / "config.json").exists():
        saved = json.loads((model_dir / "config.json").read_text())["params"]
        model = cls(**params)
        wanted = json.loads(json.dumps(model.get_params()))
        # the device a model trained on does not make it another model (saved weights load on any
        # device; folders saved before LEAD took a device name none): reuse it, on this run's device
        saved.pop("device", None)
        device = wanted.pop("device", None)
        if wanted == saved:
            loaded = cls.from_pretrained(model_dir)
            if device is not None:
                loaded.set_params(device=device)
            return loaded, 0.0, True
    model = cls(**params)
    t0 = time.perf_counter()
    model.fit(train, val=val)
    fit_s = time.perf_counter() - t0
    model.save_pretrained(model_dir)
    return model, fit_s, False


def _timing_50(model, values, origins, horizons, cfg: dict, seed: int) -> dict:
    """ms per forecast (all horizons, K samples) and per sample at ``cfg['ddim_steps']`` (50)."""
    steps, k = int(cfg.get("ddim_steps", 50)), int(cfg.get("n_samples", 8))
    o = origins[: max(1, int(cfg.get("n_origins", 2)))]
    saved = model.n_inference_steps
    model.n_inference_steps = steps
    t0 = time.perf_counter()
    model.predict_samples(values, o, horizons, k, random_state=seed)
    dt = time.perf_counter() - t0
    model.n_inference_steps = saved
    return {"ddim_steps": steps, "n_samples": k, "n_origins": len(o), "n_horizons": len(horizons),
            "ms_per_forecast": 1e3 * dt / len(o), "ms_per_sample": 1e3 * dt / (len(o) * k * len(horizons))}


def _score_baseline(model, k: int, *, values, origins, horizons, y_true, unit, interval_s, seed) -> dict:
    """A baseline's metrics at ``origins``: its point forecast and, for a probabilistic one, K = k samples."""
    from trafficgen.evaluation.tm.forecast_metrics import evaluate_forecast

    smp = (model.predict_samples(values, origins, horizons, k, random_state=seed)
           if getattr(model, "probabilistic", False) else None)  # (B, K, H, N, N) or None
    return evaluate_forecast(y_true, model.predict(values, origins, horizons), horizons, unit=unit,
                             interval_s=interval_s, samples=smp)


def run(config: dict, out_dir: Path, quick: bool) -> dict:
    from trafficgen._progress import ProgressReporter
    from trafficgen.data.windows import chronological_split
    from trafficgen.evaluation.tm.forecast_metrics import evaluate_forecast

    out_dir = Path(out_dir)
    seed = int(config.get("seed", 0))
    horizons = [int(h) for h in config.get("horizons", [1, 10, 20])]
    t_in = int(config.get("t_in", 24))
    ev = config.get("eval", {})
    rows, timings, results = [], {}, {}
    for ds in config.get("datasets", ["abilene"]):
        t_ds = time.perf_counter()
        series = _load(ds)
        train, val, test = chronological_split(series, tuple(config.get("split", (0.7, 0.15, 0.15))))
        values = series.values
        first = len(train) + len(val) - 1
        all_origins = np.arange(first, len(values) - max(horizons))
        if len(all_origins) == 0:
            raise ConfigError(f"{ds}: test part too short for t_in={t_in}, horizons={horizons}")
        k = min(int(ev.get("max_origins") or len(all_origins)), len(all_origins))  # null / 0: every origin
        origins = all_origins[np.unique(np.linspace(0, len(all_origins) - 1, k).round().astype(int))]
        y_true = np.stack([values[origins + h] for h in horizons], axis=1)  # (B, H, N, N)
        y_all = np.stack([values[all_origins + h] for h in horizons], axis=1)  # (B_all, H, N, N)
        unit, dt = series.unit, series.interval_s
        metrics: dict[str, dict] = {}
        fit_times: dict[str, float] = {}
        k_main = int(ev.get("n_samples", 8))
        eval_k: dict[str, int] = {}  # K of every probabilistic model's scores
        prob_name = config.get("probabilistic_baseline", "persistence-prob")
        prob_model = None
        where = dict(values=values, origins=origins, horizons=horizons, y_true=y_true, unit=unit, interval_s=dt,
                     seed=seed)

        baselines = config.get("baselines", {})
        if config.get("use_baselines") is not None:
            baselines = {k2: v for k2, v in baselines.items() if k2 in config["use_baselines"]}
        for name, spec in baselines.items():
            cls = import_object(spec["class"])
            model = cls(**{"horizons": horizons, **spec.get("params", {}), **device_params(cls, config)})
            t0 = time.perf_counter()
            model.fit(train, val=val)
            fit_times[name] = time.perf_counter() - t0
            metrics[name] = _score_baseline(model, k_main, **where)
            if getattr(model, "probabilistic", False):
                eval_k[name] = k_main
            if name == prob_name:
                prob_model = model
            if name == "persistence":
                results.setdefault(ds, {})["persistence_all_test_origins"] = evaluate_forecast(
                    y_all, model.predict(values, all_origins, horizons), horizons, unit=unit, interval_s=dt)
        base = dict(config.get("lead", {}))
        variants = config.get("variants", {"lead": {}})
        only = config.get("use_variants") or config.get("variants_per_dataset", {}).get(ds)
        if only is not None:
            variants = {k2: v for k2, v in variants.items() if k2 in only}
        fan = config.get("fan_chart", {})
        main = fan.get("variant", next(iter(variants)))
        lead_samples = {}
        with ProgressReporter(len(variants), f"{ds}: LEAD variants", unit="variants",
                              enabled=bool(config.get("progress", True)), every_s=0.0, min_interval_s=0.0) as bar:
            for vname, over in variants.items():
                params = {**base, **over, "t_in": t_in, "horizons": tuple(horizons), "random_state": seed,
                          "progress": False, **device_params(import_object(LEAD_SPEC), config)}
                params["ablations"] = tuple(params.get("ablations", ()))
                params["unet_channels"] = tuple(params.get("unet_channels", (32, 64, 128)))
                model, fit_s, reused = _fit_lead(params, train, val, out_dir / "models" / f"{ds}_{vname}",
                                                 bool(config.get("reuse", True)))
                model.n_inference_steps = int(ev.get("ddim_steps", model.n_inference_steps))
                k_v = int(model.n_samples)  # scored at the K it was calibrated at
                eval_k[vname] = k_v
                t0 = time.perf_counter()
                samples = model.predict_samples(values, origins, horizons, k_v, random_state=seed)
                pred_s = time.perf_counter() - t0
                metrics[vname] = evaluate_forecast(y_true, np.median(samples, axis=1), horizons, unit=unit,
                                                   interval_s=dt, samples=samples)
                hist = model.history_
                timings[f"{ds}/{vname}"] = {
                    "fit_s": fit_s, "reused": reused, "epochs_run": len(hist.get("epoch_time_s", [])),
                    "epoch_s": hist.get("epoch_time_s", []), "train_windows": hist.get("n_train_windows"),
                    "train_loss": hist.get("train_loss", []), "val_loss": hist.get("val_loss", []),
                    "predict_s": pred_s, "ms_per_forecast": 1e3 * pred_s / len(origins),
                    "ms_per_sample": 1e3 * pred_s / (len(origins) * samples.shape[1] * len(horizons)),
                    "ddim_steps": model.n_inference_steps, "sampler": model.sampler,
                    "n_samples": int(samples.shape[1]), "optimizer_steps": hist.get("steps"),
                    "calibration": {k2: v for k2, v in (model.calibration_ or {}).items() if k2 != "val_rmse"}
                    or None}
                if vname == main and ev.get("timing"):
                    timings[f"{ds}/{vname}"]["timing"] = _timing_50(model, values, origins, horizons,
                                                                    ev["timing"], seed)
                timings[f"{ds}/{vname}"]["anchor_selection"] = getattr(model, "anchor_selection_", None)
                timings[f"{ds}/{vname}"]["anchor_features"] = getattr(model.anchor_model_, "features", "mean")
                timings[f"{ds}/{vname}"]["anchor_period"] = getattr(model.anchor_model_, "period", None)
                timings[f"{ds}/{vname}"]["anchor_refit"] = getattr(model, "anchor_refit_", None)
                if vname == main and model.residual and model.anchor == "linear":
                    # the main variant's own anchor alone (per-OD or pooled, as LEAD uses it)
                    metrics[f"{vname}-anchor"] = evaluate_forecast(
                        y_true, model.anchor_model_.predict(values, origins, horizons), horizons, unit=unit,
                        interval_s=dt)
                lead_samples[vname] = samples
                bar.update(1, variant=vname)
        pers = metrics.get("persistence")
        prob_by_k = {k_main: metrics.get(prob_name)}
        if prob_model is not None:  # the probabilistic bar at every K a variant used
            prob_by_k.update({kk: _score_baseline(prob_model, kk, **where)
                              for kk in sorted(set(eval_k.values()) - {k_main})})
        for name, per_h in metrics.items():
            for h in horizons:
                m = per_h[h]
                row = {"dataset": ds, "model": name, "horizon": h, "n_origins": len(origins), **{k2: m.get(k2) for k2 in (
                    "rmse", "mae", "nmae", "rmse_mbps", "crps_mbps", "coverage_50", "coverage_90",
                    "width_50_mbps", "width_90_mbps")}}
                if pers is not None:
                    row["rmse_vs_persistence"] = m["rmse"] / pers[h]["rmse"]
                    row["rmse_mbps_vs_persistence"] = m["rmse_mbps"] / pers[h]["rmse_mbps"]
                    row["nmae_vs_persistence"] = m["nmae"] / pers[h]["nmae"]
                row["n_samples"] = eval_k.get(name) if m.get("crps_mbps") is not None else None
                prob = prob_by_k.get(row["n_samples"])
                if prob is not None:
                    row["crps_vs_persistence_prob"] = m["crps_mbps"] / prob[h]["crps_mbps"]
                row["paper_rmse"] = _paper(config, ds, name, h)
                rows.append(row)
        if main in lead_samples:
            pairs = [tuple(p) for p in fan.get("od_pairs", [[0, 1]])]
            n = series.n_nodes
            pairs = [(i % n, j % n) for i, j in pairs]
            h0 = int(fan.get("horizon", horizons[0]))
            fan_chart(values, origins, lead_samples[main], pairs, horizon_index=horizons.index(h0), horizon=h0,
                      title=f"LEAD ({main}) on {ds}, horizon {h0}: median and 50/90 % intervals",
                      path=out_dir / f"fan_{ds}.png", unit=unit, interval_s=dt, nodes=list(series.nodes))
        results.setdefault(ds, {}).update({"n_test_origins_evaluated": len(origins),
                                           "n_test_origins_total": len(all_origins),
                                           "metrics": {k2: {str(h): v for h, v in m.items()} for k2, m in metrics.items()},
                                           "n_samples": eval_k,
                                           "probabilistic_baseline_by_k": {
                                               str(kk): {str(h): v for h, v in m.items()}
                                               for kk, m in prob_by_k.items() if m is not None},
                                           "baseline_fit_s": fit_times, "wall_s": time.perf_counter() - t_ds})
    results["timings"] = timings
    results["rows"] = rows
    _write_tables(rows, out_dir, config, results)
    return results


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


_COLS = [("model", "model"), ("horizon", "h"), ("rmse", "RMSE (LEAD metric)"), ("nmae", "NMAE (real units)"),
         ("rmse_mbps", "RMSE Mbit/s"), ("rmse_mbps_vs_persistence", "RMSE Mbit/s / pers."),
         ("nmae_vs_persistence", "NMAE / pers."), ("crps_mbps", "CRPS Mbit/s"),
         ("crps_vs_persistence_prob", "CRPS / pers.-prob (same K)"), ("n_samples", "K"), ("coverage_50", "50 % cov."),
         ("coverage_90", "90 % cov."), ("width_90_mbps", "90 % width Mbit/s"), ("paper_rmse", "paper RMSE")]


def _md_table(rows: list[dict]) -> list[str]:
    lines = ["| " + " | ".join(c[1] for c in _COLS) + " |", "|" + "---|" * len(_COLS)]
    lines += ["| " + " | ".join(_fmt(r.get(c[0])) for c in _COLS) + " |" for r in rows]
    return lines


def _write_tables(rows: list[dict], out_dir: Path, config: dict, results: dict) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    with atomic_path(out_dir / "table.csv") as tmp:
        df.to_csv(tmp, index=False)
    table3 = list(config.get("table3", []))
    ev = config.get("eval", {})
    out = ["# LEAD recipe: Tables 1-3", "",
           "RMSE/MAE (LEAD metric): every matrix min-max normalised by its own min and max (the paper's metric); "
           "NMAE = sum|error| / sum|truth| and RMSE in Mbit/s: real units. `/ pers.` < 1 beats persistence. "
           f"LEAD: median of K samples ({ev.get('ddim_steps', 50)} sampling steps; DPM-Solver++ "
           "unless the variant says DDIM) as the point forecast, each variant at the K it was calibrated at (column K); "
           "CRPS, 50/90 % interval coverage and 90 % interval width from the K samples; the probabilistic baselines "
           f"(`-prob`) give K = {ev.get('n_samples', 8)} quantiles of their training errors; deterministic baselines: '-'. "
           "`CRPS / pers.-prob` < 1 beats probabilistic persistence scored at the same K. "
           "`paper RMSE`: the LEAD paper's reported number (its own split and preprocessing), n/a where not known.", ""]
    n_table = 1
    for ds in config.get("datasets", ["abilene"]):
        ds_rows = [r for r in rows if r["dataset"] == ds]
        if not ds_rows:
            continue
        info = results.get(ds, {})
        main = [r for r in ds_rows if r["model"] not in table3]
        out += [f"## Table {n_table}: {ds}, horizons {', '.join(str(h) for h in config.get('horizons', [1, 10, 20]))}",
                "", f"{info.get('n_test_origins_evaluated')} test origins evenly spaced over "
                f"{info.get('n_test_origins_total')}.", ""] + _md_table(main) + [""]
        n_table += 1
    abl = [r for r in rows if r["model"] in table3 or r["model"] == "persistence"]
    abl_ds = sorted({r["dataset"] for r in rows if r["model"] in table3})
    for ds in abl_ds:
        out += [f"## Table 3: ablations on {ds}", ""] + _md_table([r for r in abl if r["dataset"] == ds]) + [""]
    out += ["## Training and inference time", "",
            "| variant | train windows | epochs run | s / epoch (mean) | fit s | val loss per epoch | "
            "ms / forecast (table) | ms / sample (table) | ms / forecast (timing) | ms / sample (timing) |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for key, t in results.get("timings", {}).items():
        ep = t.get("epoch_s") or []
        tm = t.get("timing", {})
        out.append(f"| {key} | {t.get('train_windows')} | {t.get('epochs_run')} | "
                   f"{(sum(ep) / len(ep)) if ep else float('nan'):.1f} | {t.get('fit_s', 0):.0f}"
                   f"{' (reused)' if t.get('reused') else ''} | {', '.join(f'{v:.4f}' for v in t.get('val_loss', []))} | "
                   f"{t['ms_per_forecast']:.0f} ({t['ddim_steps']} steps, K={t.get('n_samples')}) | {t['ms_per_sample']:.1f} | "
                   + (f"{tm['ms_per_forecast']:.0f} ({tm['ddim_steps']} steps, K={tm['n_samples']}) | {tm['ms_per_sample']:.1f} |"
                      if tm else "- | - |"))
    text = "\n".join(out) + "\n"
    with atomic_path(out_dir / "table.md") as tmp:
        tmp.write_text(text)
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(text)
