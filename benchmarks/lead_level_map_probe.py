"""Issue 21 probe: recalibrate the quantile levels of LEAD's samples on validation PIT values, and
score at K = 8 and K = 32 samples per forecast (no default changed).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 5 python benchmarks/lead_level_map_probe.py \
        --datasets geant,abilene --k 8,32 -o benchmarks/results/lead_level_map_2026-12-03/probe.json

LEAD is fitted as in ``benchmarks/lead_spread_probe.py`` (the recipe's ``lead`` variant, seed 0),
with ``n_samples`` and the evaluation's K set to the largest ``--k``; the validation and test sample
sets are kept in target units before the spread. For a smaller K the first K samples of every
forecast are used (the samples are independent draws). Per K and horizon, ``qmap_rank`` samples
(``shrink * median + c (Q(u) - Q(0.5))``, u = (rank + 0.5) / K, Q the anchor's training-residual
quantiles of the OD pair) are scored under three rules, every choice made on validation only:

* ``bisect``: LEAD's rule, c bisected so that the validation 90 % intervals cover 90 %.
* ``levels``: c = 1 and the levels recalibrated (Kuleshov et al. 2018, "Accurate uncertainties for
  deep learning using calibrated regression"): the validation truths' levels v = Q^-1((y - centre)
  / c + Q(0.5)) under their own pair's map are pooled per horizon and u becomes G^-1(u), G the
  empirical distribution of v. Both the 50 % and the 90 % level are then right on validation in
  the continuous predictive; the ranks of the K samples are kept.
* ``levels_c``: the same, c from (0.75, 1, 1.25, 1.5, 2) by validation CRPS.

persistence-prob is scored at the same K (its error quantiles at (j + 0.5) / K), and the recipe's
metric (:func:`~trafficgen.evaluation.tm.forecast_metrics.evaluate_forecast`: CRPS, coverage from
the K samples' linear quantiles) is used throughout. Shrinkage is the fitted model's (chosen on
the median of ``n_samples`` samples).
"""
from __future__ import annotations

import json

import numpy as np
from lead_spread_probe import _scores, fitted_samples, probe_setup

C_GRID = (0.75, 1.0, 1.25, 1.5, 2.0)


def _centres(x, shrink, c):
    """Per horizon k, the calibrated point forecast shrink_k * median (B, N, N) and its spread c_k."""
    return [(shrink[k] * np.median(x[:, :, k], axis=1), c[k]) for k in range(x.shape[2])]


def pit_levels(x, truth_t, shrink, c, q_resid) -> list[np.ndarray]:
    """Per horizon, the validation truths' PIT values (B * N * N,) under their pair's map at spread c."""
    from trafficgen.generators.tm.lead.calibration import pit_values

    return [pit_values((truth_t[:, k] - centre) / ck, 0.0 * centre, q_resid[:, k])
            for k, (centre, ck) in enumerate(_centres(x, shrink, c))]


def level_maps(x, truth_t, shrink, c, q_resid) -> np.ndarray:
    """(H, L) level maps fitted at spread c: the library's fit_level_map on (truth - centre) / c."""
    from trafficgen.generators.tm.lead.calibration import fit_level_map

    return np.stack([fit_level_map((truth_t[:, k] - centre) / ck, 0.0 * centre, q_resid[:, k])
                     for k, (centre, ck) in enumerate(_centres(x, shrink, c))])


def mapped(x, shrink, c, q_resid, g=None) -> np.ndarray:
    """qmap_rank samples (B, S, H, N, N) of target-unit samples ``x``, levels through ``g`` (H, L) if given."""
    from trafficgen.generators.tm.lead.calibration import apply_quantile_map

    return apply_quantile_map(x, shrink, c, "qmap_rank" if g is None else "qmap_levels", q_resid, level_map=g)


def probe(ds: str, config: dict, ks: list[int]) -> dict:
    from trafficgen.generators.tm.lead import calibration as cal_mod
    from trafficgen.generators.tm.probabilistic_naive import ProbabilisticPersistenceForecaster

    kmax = max(ks)
    config = json.loads(json.dumps(config))
    config["lead"]["n_samples"] = kmax
    config["eval"]["n_samples"] = kmax
    ctx = fitted_samples(ds, config)
    model, cal, horizons, kw, real = ctx["model"], ctx["cal"], ctx["horizons"], ctx["kw"], ctx["real"]
    q_resid, shrink = model.qmap_resid_, np.asarray(cal["shrink"], dtype=np.float64)
    n_h = len(horizons)
    pp = ProbabilisticPersistenceForecaster(horizons=horizons).fit(ctx["train"], val=ctx["val"])
    res = {"dataset": ds, "n_val_origins": int(len(ctx["vo"])), "n_test_origins": int(len(ctx["origins"])),
           "shrink": shrink.tolist(), "fit_s_contended": ctx["fit_s"], "checks": [ctx["check_val"], ctx["check_test"]],
           "by_k": {}}
    for kk in ks:
        xv, xt = ctx["xv"][:, :kk], ctx["xt"][:, :kk]
        ppv = _scores(ctx["y_val"], pp.predict_samples(ctx["vseries"], ctx["vo"], horizons, kk), horizons, kw)
        ppt = _scores(ctx["y_test"], pp.predict_samples(ctx["values"], ctx["origins"], horizons, kk), horizons, kw)

        def score(c, g=None, xv=xv, xt=xt, ppv=ppv, ppt=ppt):
            sv = _scores(ctx["y_val"], real(mapped(xv, shrink, c, q_resid, g), ctx["av"]), horizons, kw)
            st = _scores(ctx["y_test"], real(mapped(xt, shrink, c, q_resid, g), ctx["at"]), horizons, kw)
            return {str(h): {"val": sv[h], "test": st[h], "val_crps_vs_pp": sv[h]["crps_mbps"] / ppv[h]["crps_mbps"],
                             "test_crps_vs_pp": st[h]["crps_mbps"] / ppt[h]["crps_mbps"]} for h in horizons}

        c_bis = np.asarray(cal_mod.fit_quantile_map(xv, ctx["truth_t"], shrink, q_resid,
                                                    modes=("qmap_rank",))["qmap_rank"]["spread"])
        rules = {"bisect": {"c": c_bis.tolist(), **score(c_bis)}}
        pits = {}
        by_c = {}
        for c0 in C_GRID:
            c = np.full(n_h, c0)
            v = pit_levels(xv, ctx["truth_t"], shrink, c, q_resid)
            g = level_maps(xv, ctx["truth_t"], shrink, c, q_resid)  # (H, L)
            by_c[c0] = (g, score(c, g))
            pits[str(c0)] = [{"below_0.05": float(np.mean(vk < 0.05)), "above_0.95": float(np.mean(vk > 0.95)),
                              "in_0.25_0.75": float(np.mean((vk >= 0.25) & (vk <= 0.75))),
                              "at_0_or_1": float(np.mean((vk <= 0.0) | (vk >= 1.0)))} for vk in v]
        g1, s1 = by_c[1.0]
        rules["levels"] = {"c": [1.0] * n_h, "g_at_0.05_0.25_0.75_0.95": g1[:, [5, 25, 75, 95]].tolist(), **s1}
        best = {}
        for h in horizons:
            c0 = min(C_GRID, key=lambda c0, h=h: by_c[c0][1][str(h)]["val"]["crps_mbps"])
            best[str(h)] = {"c": c0, **by_c[c0][1][str(h)]}
        rules["levels_c"] = best
        res["by_k"][str(kk)] = {"persistence_prob": {"val": {str(h): ppv[h] for h in horizons},
                                                     "test": {str(h): ppt[h] for h in horizons}},
                                "pit": pits, "rules": rules}
    return res


def report(res: dict) -> str:
    lines = [f"== {res['dataset']}: {res['n_val_origins']} validation / {res['n_test_origins']} test origins, "
             f"shrink {res['shrink']}, fit {res['fit_s_contended']:.0f} s (contended)"]
    for kk, r in res["by_k"].items():
        pp = r["persistence_prob"]
        lines.append(f"-- K = {kk}")
        for h in pp["test"]:
            t = pp["test"][h]
            lines.append(f"persistence-prob h={h:>2}: test CRPS {t['crps_mbps']:.4f} cov50 {t['coverage_50']:.3f} "
                         f"cov90 {t['coverage_90']:.3f} width90 {t['width_90_mbps']:.2f}")
        for c0, per_h in r["pit"].items():
            lines.append(f"PIT at c={c0}: " + "; ".join(
                f"<.05 {p['below_0.05']:.3f} >.95 {p['above_0.95']:.3f} in[.25,.75] {p['in_0.25_0.75']:.3f} "
                f"at 0/1 {p['at_0_or_1']:.3f}" for p in per_h))
        lines.append("rule      h   c     | val CRPS/pp cov50 cov90 | test CRPS/pp cov50 cov90 width90  RMSE")
        for rule, rr in r["rules"].items():
            for h in pp["test"]:
                e = rr[h]
                c = e["c"] if "c" in e else rr["c"][list(pp["test"]).index(h)]
                v, t = e["val"], e["test"]
                lines.append(f"{rule:9s} {h:>2} {c:6.3f} | {e['val_crps_vs_pp']:.4f} {v['coverage_50']:.3f} "
                             f"{v['coverage_90']:.3f} | {e['test_crps_vs_pp']:.4f} {t['coverage_50']:.3f} "
                             f"{t['coverage_90']:.3f} {t['width_90_mbps']:7.2f} {t['rmse_mbps']:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args, config = probe_setup(__doc__.splitlines()[0], argv, lambda ap: ap.add_argument(
        "--k", default="8,32", help="samples per forecast, comma-separated"))
    ks = [int(k) for k in args.k.split(",")]
    out = {}
    for ds in args.datasets.split(","):
        out[ds] = probe(ds, config, ks)
        print(report(out[ds]), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
