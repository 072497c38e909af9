"""Issue 21 probe: is LEAD's coverage-bisected spread c CRPS-optimal? (no default changed)

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python benchmarks/lead_spread_probe.py \
        --datasets geant,abilene -o benchmarks/results/lead_spread_2026-12-03/probe.json

LEAD is fitted once per data set at the recipe's settings (``trafficgen/recipes/lead.yaml``: the
``lead`` variant, seed 0, 70/15/15 split) with K = 8 samples per forecast, the recipe's K when it
was recorded (since 2026-12-03c the recipe uses 32); nothing in the library is changed. Two sample sets are
then kept in *target units before the spread*, so that the spread can be varied without
refitting:

* validation: exactly what :meth:`LeadForecaster.calibrate_on` sees (the same ``calib_origins``
  origins, the same sampler seed, the anchor as it was *before* the train + validation refit: the
  refit is intercepted and a copy of the anchor kept). Checked: ``fit_quantile_map`` /
  ``fit_calibration`` on these samples give the model's fitted spreads again.
* test: the recipe's test origins, K and seed, the refitted anchor (as ``predict_samples``).
  Checked: the first batch equals ``predict_samples``.

Per mode (the model's chosen one per horizon, and every candidate of ``spread_mode="auto"``) and
multiplier m of the bisection's c, the calibrated samples are ``shrink * median + m c dev`` (the
map is linear in c at power 1, the default), mapped to real units and scored with the recipe's
metrics (:func:`~trafficgen.evaluation.tm.forecast_metrics.evaluate_forecast`: CRPS, 50/90 %
coverage and width in Mbit/s). Rules applied per horizon on *validation only*: ``current``
(m = 1, coverage bisection), ``crps`` (argmin validation CRPS with validation 90 % coverage in
[0.85, 0.95]) and ``crps87`` (the same with coverage >= 0.87); their test numbers are then
scored beside persistence-prob's (the recipe's CRPS bar).
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

MULTIPLIERS = np.round(np.arange(0.40, 1.5001, 0.01), 2)
RULES = {"current": None, "crps": (0.85, 0.95), "crps87": (0.87, 0.95)}
#: The modes whose spread c this probe scales (``qmap_levels``, added after it, has c = 1).
SPREAD_MODES = ("factor", "qmap_rank", "qmap_cdf")
#: Samples per forecast of the recorded run (the recipe's K before 2026-12-03c).
K_RECORDED = 8


def _recipe_config() -> dict:
    import yaml

    import trafficgen.recipes as rec

    return yaml.safe_load((Path(rec.__file__).parent / "lead.yaml").read_text())


def _scores(y, samples, horizons, kw) -> dict:
    """{h: {crps_mbps, coverage_50, coverage_90, width_90_mbps, rmse_mbps}} of samples (B, S, H, N, N)."""
    from trafficgen.evaluation.tm.forecast_metrics import evaluate_forecast

    m = evaluate_forecast(y, np.median(samples, axis=1), horizons, samples=samples, **kw)
    keys = ("crps_mbps", "coverage_50", "coverage_90", "width_90_mbps", "rmse_mbps")
    return {h: {k: float(m[h][k]) for k in keys} for h in horizons}


def _pick(rows: list[dict], bounds) -> dict:
    """The row with the lowest validation CRPS whose validation 90 % coverage lies in ``bounds``
    (rows of one mode and horizon); None bounds: m = 1."""
    if bounds is None:
        return next(r for r in rows if r["m"] == 1.0)
    ok = [r for r in rows if bounds[0] <= r["val"]["coverage_90"] <= bounds[1]]
    return min(ok, key=lambda r: r["val"]["crps_mbps"]) if ok else next(r for r in rows if r["m"] == 1.0)


def fitted_samples(ds: str, config: dict) -> dict:
    """LEAD fitted at ``config`` on ``ds``; its validation samples as ``calibrate_on`` saw them and its
    test samples as ``predict_samples`` gives them, both in target units before the spread, with
    what is needed to score them (see the module docstring; the checks are in the result)."""
    from trafficgen._random import seed_from
    from trafficgen.data.windows import chronological_split, target_index, window_origins
    from trafficgen.generators.tm.lead import calibration as cal_mod
    from trafficgen.generators.tm.lead.anchor import LinearAnchor
    from trafficgen.generators.tm.lead.forecaster import LeadForecaster
    from trafficgen.generators.tm.probabilistic_naive import ProbabilisticPersistenceForecaster
    from trafficgen.recipes.lead import _load

    seed = int(config.get("seed", 0))
    horizons = [int(h) for h in config["horizons"]]
    t_in = int(config["t_in"])
    ev = config["eval"]
    k_eval = int(ev["n_samples"])
    series = _load(ds)
    train, val, _ = chronological_split(series, tuple(config["split"]))
    values = series.values
    kw = dict(unit=series.unit, interval_s=series.interval_s)
    # the recipe's test origins
    all_origins = np.arange(len(train) + len(val) - 1, len(values) - max(horizons))
    n = min(int(ev.get("max_origins") or len(all_origins)), len(all_origins))
    origins = all_origins[np.unique(np.linspace(0, len(all_origins) - 1, n).round().astype(int))]
    y_test = np.stack([values[origins + h] for h in horizons], axis=1)

    params = {**config["lead"], **config["variants"]["lead"], "t_in": t_in, "horizons": tuple(horizons),
              "random_state": seed, "progress": False}
    params["ablations"] = tuple(params.get("ablations", ()))
    params["unet_channels"] = tuple(params["unet_channels"])
    model = LeadForecaster(**params)

    # keep the anchor as it was before fit() refits it on train + validation (calibration saw that one)
    kept = {}
    refit = LinearAnchor.refit

    def keeping_refit(self, v):
        kept["pre"] = copy.deepcopy(self)
        return refit(self, v)

    LinearAnchor.refit = keeping_refit
    t0 = time.perf_counter()
    try:
        model.fit(train, val=val)
    finally:
        LinearAnchor.refit = refit
    fit_s = time.perf_counter() - t0
    cal = model.calibration_
    hidx = list(range(len(horizons)))
    scale = model.target_scale_t_.numpy()  # (H, N, N)

    def real(x, anchors):  # (B, S, H, N, N) target units -> series units
        return model._unscale(x * scale[None, None] + anchors[:, None])

    # ---- validation: calibrate_on's origins, seed and (pre-refit) anchor
    tv, vv = np.asarray(train.values, dtype=np.float64), np.asarray(val.values, dtype=np.float64)
    vseries, start = np.concatenate([tv, vv]), len(tv) - 1
    vo = window_origins(len(vseries), t_in, horizons)
    vo = vo[vo >= start]
    keep = np.unique(np.linspace(0, len(vo) - 1, min(len(vo), int(model.calib_origins))).round()).astype(int)
    vo = vo[keep]
    post = model.anchor_model_
    model.anchor_model_ = kept["pre"]
    t0 = time.perf_counter()
    xv, av = model._target_samples(vseries, vo, hidx, int(model.n_samples), seed_from(model.random_state) + 3,
                                   "validation")
    model.anchor_model_ = post
    y_val = vseries[target_index(vo, horizons)]
    truth_t = (model._scale(vseries)[target_index(vo, horizons)].numpy() - av) / scale
    qm = cal_mod.fit_quantile_map(xv, truth_t, cal["shrink"], model.qmap_resid_)
    check_val = {m: float(np.max(np.abs(np.asarray(qm[m]["spread"]) - np.asarray(cal["spread_by_mode"][m]))))
                 for m in cal_mod.QMAP_MODES}
    check_val["q_dev"] = float(np.max(np.abs(qm["q_dev"] - model.qmap_dev_)))
    check_val["level_map"] = float(np.max(np.abs(qm["level_map"] - model.qmap_levels_)))
    # ---- test: the recipe's origins, K and seed, the refitted anchor
    model.n_inference_steps = int(ev.get("ddim_steps", model.n_inference_steps))
    xt, at = model._target_samples(values, origins, hidx, k_eval, seed_from(seed), "test")
    sample_s = time.perf_counter() - t0
    first = origins[:16]
    ref = model.predict_samples(values, first, horizons, k_eval, random_state=seed)
    mine = real(cal_mod.apply_quantile_map(xt[:16], cal["shrink"], cal["spread"], cal["mode"], model.qmap_resid_,
                                           model.qmap_dev_, cal["power"], model.qmap_levels_), at[:16])
    check_test = float(np.max(np.abs(ref - mine)) / max(np.max(np.abs(ref)), 1e-300))

    # ---- persistence-prob as the recipe fits it
    pp = ProbabilisticPersistenceForecaster(horizons=horizons).fit(train, val=val)
    pp_test = _scores(y_test, pp.predict_samples(values, origins, horizons, k_eval, random_state=seed), horizons, kw)
    pp_val = _scores(y_val, pp.predict_samples(vseries, vo, horizons, int(model.n_samples), random_state=seed),
                     horizons, kw)

    return {"ds": ds, "model": model, "cal": cal, "horizons": horizons, "kw": kw, "real": real,
            "train": train, "val": val, "seed": seed,
            "xv": xv, "av": av, "y_val": y_val, "truth_t": truth_t, "vo": vo, "vseries": vseries,
            "xt": xt, "at": at, "y_test": y_test, "origins": origins, "values": values,
            "pp_val": pp_val, "pp_test": pp_test, "fit_s": fit_s, "sample_s": sample_s,
            "check_val": check_val, "check_test": check_test}


def probe(ds: str, config: dict) -> dict:
    ctx = fitted_samples(ds, config)
    model, cal, horizons, kw, real = ctx["model"], ctx["cal"], ctx["horizons"], ctx["kw"], ctx["real"]
    xv, av, y_val, xt, at, y_test = ctx["xv"], ctx["av"], ctx["y_val"], ctx["xt"], ctx["at"], ctx["y_test"]
    pp_val, pp_test = ctx["pp_val"], ctx["pp_test"]
    from trafficgen.generators.tm.lead import calibration as cal_mod

    # ---- the spread grid: calibrated = centre + m * c * dev (linear in c at power 1)
    def calibrated(x, mode, spread):
        if mode == "factor":
            return cal_mod.apply_calibration(x, cal["shrink"], spread, cal["power"])
        return cal_mod.apply_quantile_map(x, cal["shrink"], spread, mode, model.qmap_resid_, model.qmap_dev_)

    if any(float(p) != 1.0 for p in cal["power"]):
        raise SystemExit("power != 1: the spread map is not linear in c (not the default calibrate setting)")
    grid = {}
    for mode in SPREAD_MODES:
        c = np.asarray(cal["spread_by_mode"][mode], dtype=np.float64)
        parts = {}
        for name, x, a in (("val", xv, av), ("test", xt, at)):
            zero = calibrated(x, mode, np.zeros_like(c))
            dev = calibrated(x, mode, c) - zero  # c * dev
            parts[name] = (zero, dev, a)
        rows = {h: [] for h in horizons}
        for m in MULTIPLIERS:
            sv = _scores(y_val, real(parts["val"][0] + m * parts["val"][1], av), horizons, kw)
            st = _scores(y_test, real(parts["test"][0] + m * parts["test"][1], at), horizons, kw)
            for k, h in enumerate(horizons):
                rows[h].append({"m": float(m), "c": float(m * c[k]), "val": sv[h],
                                "val_crps_vs_pp": sv[h]["crps_mbps"] / pp_val[h]["crps_mbps"], "test": st[h],
                                "test_crps_vs_pp": st[h]["crps_mbps"] / pp_test[h]["crps_mbps"]})
        grid[mode] = {str(h): r for h, r in rows.items()}
    chosen = {}
    for rule, bounds in RULES.items():
        chosen[rule] = {}
        for k, h in enumerate(horizons):
            own = _pick(grid[cal["mode"][k]][str(h)], bounds)
            # the same rule over every mode of spread_mode="auto" (mode and c jointly, by validation CRPS)
            best = min(((mode, _pick(grid[mode][str(h)], bounds)) for mode in grid),
                       key=lambda t: t[1]["val"]["crps_mbps"])
            chosen[rule][str(h)] = {"mode": cal["mode"][k], **own, "any_mode": {"mode": best[0], **best[1]}}
    return {"dataset": ds, "fit_s_contended": ctx["fit_s"], "sample_s_contended": ctx["sample_s"],
            "n_val_origins": int(len(ctx["vo"])), "n_test_origins": int(len(ctx["origins"])),
            "calibration": {k: cal[k] for k in ("shrink", "spread", "mode", "spread_by_mode", "val_crps",
                                                 "val_coverage_90_by_mode")},
            "check_val_spread_maxdiff": ctx["check_val"], "check_test_first_batch_reldiff": ctx["check_test"],
            "persistence_prob": {"val": {str(h): v for h, v in pp_val.items()},
                                 "test": {str(h): v for h, v in pp_test.items()}},
            "chosen": chosen, "grid": grid}


def report(res: dict) -> str:
    ds, lines = res["dataset"], []
    cal = res["calibration"]
    lines.append(f"== {ds}: {res['n_val_origins']} validation / {res['n_test_origins']} test origins; "
                 f"fit {res['fit_s_contended']:.0f} s, sampling {res['sample_s_contended']:.0f} s (contended)")
    lines.append(f"modes {cal['mode']}, shrink {cal['shrink']}, bisection c {[round(c, 4) for c in cal['spread']]}")
    lines.append(f"checks: val spreads/q_dev max |diff| {res['check_val_spread_maxdiff']}, "
                 f"test first batch rel. diff {res['check_test_first_batch_reldiff']:.2e}")
    pp = res["persistence_prob"]
    for h in pp["test"]:
        lines.append(f"persistence-prob h={h}: val CRPS {pp['val'][h]['crps_mbps']:.4f} cov90 "
                     f"{pp['val'][h]['coverage_90']:.3f}; test CRPS {pp['test'][h]['crps_mbps']:.4f} "
                     f"cov90 {pp['test'][h]['coverage_90']:.3f} width90 {pp['test'][h]['width_90_mbps']:.2f}")
    hdr = ("  m      c | val CRPS  /pp   cov50 cov90 | test CRPS /pp    cov50 cov90 width90")
    for k, h in enumerate(pp["test"]):
        mode = cal["mode"][k]
        lines.append(f"-- {ds} h={h}, mode {mode} (chosen)")
        lines.append(hdr)
        for r in res["grid"][mode][h]:
            if round(r["m"] * 100) % 5:
                continue
            v, t = r["val"], r["test"]
            lines.append(f"{r['m']:4.2f} {r['c']:6.3f} | {v['crps_mbps']:8.4f} {r['val_crps_vs_pp']:.3f} "
                         f"{v['coverage_50']:.3f} {v['coverage_90']:.3f} | {t['crps_mbps']:8.4f} "
                         f"{r['test_crps_vs_pp']:.3f} {t['coverage_50']:.3f} {t['coverage_90']:.3f} "
                         f"{t['width_90_mbps']:7.2f}")
    lines.append(f"-- {ds} rules (chosen on validation; test scored)")
    lines.append("rule    h  mode        m     c     | val CRPS cov90 | test CRPS/pp cov50 cov90 width90 "
                 "|| any mode: mode m test CRPS/pp cov90")
    for rule, per_h in res["chosen"].items():
        for h, r in per_h.items():
            a = r["any_mode"]
            lines.append(f"{rule:7s} {h:>2s} {r['mode']:10s} {r['m']:4.2f} {r['c']:6.3f} | "
                         f"{r['val']['crps_mbps']:8.4f} {r['val']['coverage_90']:.3f} | "
                         f"{r['test_crps_vs_pp']:.4f} {r['test']['coverage_50']:.3f} {r['test']['coverage_90']:.3f} "
                         f"{r['test']['width_90_mbps']:7.2f} || {a['mode']} {a['m']:4.2f} "
                         f"{a['test_crps_vs_pp']:.4f} {a['test']['coverage_90']:.3f}")
    return "\n".join(lines)


def probe_setup(description: str, argv=None, add_args=None):
    """(args, config) of a LEAD probe: ``--datasets``, ``-o/--out``, ``--smoke`` (and what
    ``add_args(parser)`` adds), the recipe's config (shrunk under ``--smoke``); one torch thread."""
    import torch

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--datasets", default="geant,abilene")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--smoke", action="store_true", help="a few steps and origins: checks the script runs, no results")
    if add_args is not None:
        add_args(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    config = _recipe_config()
    if args.smoke:
        config["lead"].update(max_steps=2, calib_origins=6, max_train_windows=32, max_val_windows=8)
        config["eval"]["max_origins"] = 6
    return args, config


def main(argv=None) -> int:
    args, config = probe_setup(__doc__.splitlines()[0], argv)
    config["lead"]["n_samples"] = config["eval"]["n_samples"] = K_RECORDED
    out = {}
    for ds in args.datasets.split(","):
        res = probe(ds, config)
        out[ds] = res
        print(report(res), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
