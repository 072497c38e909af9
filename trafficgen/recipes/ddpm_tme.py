"""Recipe runner for DDPM-TME (Tables II-III and the figures of the paper) on the shipped Abilene
and GEANT data.

Splits are chronological: Abilene trains on week 1 (2016 matrices) and tests on week 2; GEANT
(one week, 677 matrices) trains on the first ``train_fraction`` (80%: 541) and tests on the rest.
Routing: Abilene's shipped 144 x 54 matrix (30 backbone + 24 access links); GEANT's is derived from
the topology (hop-count shortest paths, ECMP) plus 44 access links (node egress / ingress totals),
so that every method, like on Abilene, sees the node totals tomogravity assumes.

Every method is scored on the same test link loads: pinv, gravity, tomogravity, the training mean
projected like DDPM-TME ("mean_prior", the naive baseline), VAE-TME, WGAN-GP-TME and DDPM-TME
(also its raw diffusion fit before the link projection, "ddpm_tme_raw", and the estimation variants
of ``ddpm_variants``, e.g. the paper's single start). RMSE is reported in Mbit/s.

With ``ddpm_cond`` (overrides of ``ddpm``, e.g. ``{condition: projected_mean}``) a second DDPM-TME
is trained on p(x | link loads) and scored as "ddpm_tme_cond" (estimation: ``estimation`` updated
with ``cond_estimation``). Beside it, the cheap equivalents of that conditioning, all with the same
projection: "tod_mean_prior" (the training mean of the same time of day, ``rivals.tod_hours`` bins)
and "ridge_prior" (ridge regression from ``log1p(y / mean y)`` to ``log1p(x / mean x)`` per flow,
its penalty picked from ``rivals.ridge_alphas`` on the last ``rivals.val_fraction`` of the training
period, then refitted on all of it).

Sequential estimation (issue 21: adapt to the test period's drift with what is observed then): with
``ddpm_seq`` (overrides of ``ddpm``, ``{condition: previous}``) a DDPM-TME trained on
p(x_t | y_t, x_{t-1}) estimates the test intervals one after the other, each conditioned on its
link loads and on its own previous estimate ("ddpm_tme_seq"; estimation: ``estimation`` updated with
``seq_estimation``). Its training-free rival "seq_mean_prior" projects a running mean of the earlier
estimates onto each interval's loads (:func:`~trafficgen.estimation.sequential.sequential_kl_estimate`),
its weight ``beta`` picked from ``rivals.seq_betas`` on the last ``rivals.val_fraction`` of the
training period. ``init: ridge_prior`` in ``seq_estimation`` or in an entry of ``cond_variants``
(extra estimation settings for the conditional model, one row each) refines the ridge rival's prior
instead of the training mean (``estimate(init=...)``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from trafficgen.errors import ConfigError
from trafficgen.recipes.runner import device_params

#: Numbers the paper reports (TRE mean of DDPM-TME); everything else is "n/a".

#: The recipe's top-level keys (the runner rejects any other: a typo is an error, never dropped).
CONFIG_KEYS = ("name", "runner", "seed", "threads", "datasets", "abilene", "geant", "ddpm", "ddpm_variants", "vae", "wgan",
               "estimation", "synthesis", "progress", "quick", "quick_mode", "device", "ddpm_cond", "cond_estimation", "rivals",
               "ddpm_seq", "seq_estimation", "cond_variants")

PAPER_TRE_MEAN = {("abilene", "ddpm_tme"): 0.196, ("geant", "ddpm_tme"): 0.359}


def _load(name: str, cfg: dict):
    """(train TMSeries, test OD vectors (T, n_od), routing (n_od, L))."""
    train, X, A, _, _ = _load_timed(name, cfg)
    return train, X, A


def _load_timed(name: str, cfg: dict):
    """:func:`_load` plus the training and test matrices' positions in the whole series (time of day =
    position mod intervals per day; both series start at a day boundary of their own clock)."""
    from trafficgen.datasets import load_abilene, load_abilene_routing, load_geant, load_geant_topology

    if name == "abilene":
        series = load_abilene()
        n_train = int(cfg.get("n_train", 2016))
        A = load_abilene_routing()
    elif name == "geant":
        from trafficgen.data.routing import routing_from_topology
        from trafficgen.estimation.classic import add_access_links

        series = load_geant()
        n_train = int(round(float(cfg.get("train_fraction", 0.8)) * len(series)))
        A = add_access_links(routing_from_topology(load_geant_topology(), series.nodes)[0])
    else:
        raise ConfigError(f"unknown dataset {name!r}; expected abilene or geant")
    train, test = series[:n_train], series[n_train:]
    train_pos = np.arange(n_train)
    if cfg.get("max_train"):
        train = train[-int(cfg["max_train"]):]
        train_pos = train_pos[-int(cfg["max_train"]):]
    idx = np.arange(0, len(test), int(cfg.get("test_stride", 1)))
    if cfg.get("max_test"):
        idx = idx[: int(cfg["max_test"])]
    return train, test.flat[idx], A, train_pos, n_train + idx


def tod_mean_prior(train_flat, train_pos, test_pos, per_day: int, hours: float = 1.0) -> np.ndarray:
    """The training mean of each test matrix's time-of-day bin (``hours`` wide): (T, n_od). A bin
    without training matrices falls back to the overall training mean."""
    n_bins = max(1, int(round(24 / float(hours))))
    b_tr = (np.asarray(train_pos) % per_day) * n_bins // per_day
    b_te = (np.asarray(test_pos) % per_day) * n_bins // per_day
    overall = train_flat.mean(0)
    means = np.stack([train_flat[b_tr == k].mean(0) if np.any(b_tr == k) else overall for k in range(n_bins)])
    return means[b_te]


def ridge_prior(train_flat, A, Y, *, alphas=(1.0, 10.0, 100.0), val_fraction: float = 0.25,
                projection: str = "kl", project_iters: int = 3, random_state: int = 0) -> tuple[np.ndarray, float]:
    """Ridge regression from ``log1p(y / mean y)`` (T, L) to ``log1p(x / mean x)`` per flow, the
    penalty chosen by the projected TRE mean on the chronologically last ``val_fraction`` of the
    training matrices, refitted on all of them. Returns (prior (T, n_od) for the link loads ``Y``,
    the chosen penalty); the caller projects the prior."""
    from sklearn.linear_model import Ridge

    from trafficgen.evaluation.tm.estimation_metrics import tre
    from trafficgen.generators.tm.ddpm_tme.estimate import refine_to_link_loads

    def fit_predict(x_fit, y_new, alpha):
        y_fit = x_fit @ A
        ybar = np.maximum(y_fit.mean(0), 1e-300)
        s = np.maximum(x_fit.mean(0), 1e-300)
        model = Ridge(alpha=alpha, random_state=random_state).fit(np.log1p(y_fit / ybar), np.log1p(x_fit / s))
        return np.expm1(np.clip(model.predict(np.log1p(np.clip(y_new, 0.0, None) / ybar)), 0.0, None)) * s

    n_fit = int(round((1 - float(val_fraction)) * len(train_flat)))
    alphas = [float(a) for a in alphas]
    best = alphas[0]
    if len(alphas) > 1 and 1 < n_fit < len(train_flat):
        x_val = train_flat[n_fit:]
        scores = []
        for a in alphas:
            est = refine_to_link_loads(fit_predict(train_flat[:n_fit], x_val @ A, a), x_val @ A, A,
                                       projection=projection, project_iters=project_iters)
            scores.append(float(np.nanmean(tre(x_val, est))))
        best = alphas[int(np.argmin(scores))]
    return fit_predict(train_flat, Y, best), best


def sequential_prior(train_flat, A, Y, *, betas=(0.0, 0.9, 0.99), val_fraction: float = 0.25) -> tuple[np.ndarray, float]:
    """The training-free sequential rival: running mean of the earlier estimates, projected onto each
    interval's loads (started at the training mean), ``beta`` chosen by the TRE mean on the
    chronologically last ``val_fraction`` of the training matrices (the mean taken over the rest).
    Returns (estimates (T, n_od) for the link loads ``Y``, the chosen beta); already projected."""
    from trafficgen.estimation.sequential import sequential_kl_estimate
    from trafficgen.evaluation.tm.estimation_metrics import tre

    betas = [float(b) for b in betas]
    n_fit = int(round((1 - float(val_fraction)) * len(train_flat)))
    best = betas[0]
    if len(betas) > 1 and 1 < n_fit < len(train_flat):
        x_val = train_flat[n_fit:]
        scores = [float(np.nanmean(tre(x_val, sequential_kl_estimate(x_val @ A, A, train_flat[:n_fit].mean(0), beta=b))))
                  for b in betas]
        best = betas[int(np.argmin(scores))]
    return sequential_kl_estimate(Y, A, train_flat.mean(0), beta=best), best


def _mbit_factor(series) -> float:
    """Multiplier from the series' unit to Mbit/s."""
    from trafficgen.data.tmseries import TMSeries

    n = series.n_nodes
    one = TMSeries(np.ones((1, n, n)), series.nodes, series.interval_s, series.unit)
    return float(one.to_unit("Mbit/s").values[0, 0, 0])


def _table_row(method, dataset, x, xh, Y, A, seconds, mbit):
    from trafficgen.evaluation.tm.estimation_metrics import estimation_report

    rep = estimation_report(x, xh, Y, A)
    row = {"dataset": dataset, "method": method, "rmse_all_mbit": rep["rmse"] * mbit}
    for k, v in rep["rmse_t"].items():
        row[f"rmse_{k}"] = v * mbit  # RMSE(t) in Mbit/s
    for m in ("sre", "tre"):
        for k, v in rep[m].items():
            row[f"{m}_{k}"] = v
    row["link_residual_mean"] = rep["link_residual"]["mean"]
    row["seconds"] = seconds
    row["tms_per_s"] = len(x) / max(seconds, 1e-9)
    paper = PAPER_TRE_MEAN.get((dataset, method))
    row["paper_tre_mean"] = "n/a" if paper is None else paper
    return row


_LATENT_KEYS = ("n_init", "n_starts", "n_opt", "lr", "loss", "batch_size", "projection", "project_iters")


def _run_dataset(name: str, config: dict, out_dir: Path, seed: int) -> tuple[list[dict], dict]:
    from trafficgen.estimation import classic
    from trafficgen.evaluation.tm import estimation_plots as tme_plots
    from trafficgen.evaluation.tm.estimation_metrics import discriminator_score, mmd_rbf
    from trafficgen.generators.tm.ddpm_tme.estimate import refine_to_link_loads
    from trafficgen.generators.tm.ddpm_tme.model import DDPMTME
    from trafficgen.generators.tm.latent_fit import VAETME, WGANGPTME

    train, X, A, train_pos, test_pos = _load_timed(name, config.get(name, {}))
    mbit = _mbit_factor(train)
    Y = X @ A  # (T, L)
    est_cfg = dict(config.get("estimation", {}))
    projection = est_cfg.get("projection", "kl")
    rows, estimates, priors = [], {}, {}
    info = {"n_train": len(train), "n_test": len(X), "n_links": A.shape[1], "routing_rank": int(np.linalg.matrix_rank(A)),
            "unit": train.unit, "rmse_unit": "Mbit/s"}

    def add(method, xh, seconds):
        estimates[method] = xh
        rows.append(_table_row(method, name, X, xh, Y, A, seconds, mbit))

    for method, fn in (("pinv", classic.pinv_estimate), ("gravity", classic.gravity_estimate),
                       ("tomogravity", classic.tomogravity_estimate)):
        t0 = time.perf_counter()
        add(method, fn(Y, A), time.perf_counter() - t0)
    def project(prior):  # every training-free prior gets the projection DDPM-TME's estimates get
        return refine_to_link_loads(prior, Y, A, projection=projection, project_iters=est_cfg.get("project_iters", 3))

    # naive baseline: a constant prior (training mean) with DDPM-TME's projection
    t0 = time.perf_counter()
    mean_prior = np.tile(train.flat.mean(0), (len(X), 1))  # (T, n_od)
    add("mean_prior", project(mean_prior), time.perf_counter() - t0)
    rivals = dict(config.get("rivals", {}))
    if rivals:  # the cheap equivalents of conditioning on time of day / on the link loads
        per_day = int(round(86400 / train.interval_s))
        t0 = time.perf_counter()
        prior = tod_mean_prior(train.flat, train_pos, test_pos, per_day, rivals.get("tod_hours", 1.0))
        add("tod_mean_prior", project(prior), time.perf_counter() - t0)
        t0 = time.perf_counter()
        prior, info["ridge_alpha"] = ridge_prior(train.flat, A, Y, alphas=rivals.get("ridge_alphas", (1.0, 10.0, 100.0)),
                                                 val_fraction=rivals.get("val_fraction", 0.25), projection=projection,
                                                 project_iters=est_cfg.get("project_iters", 3), random_state=seed)
        add("ridge_prior", project(prior), time.perf_counter() - t0)
        priors["ridge_prior"] = prior  # before the projection: a start for the refinements (init)
        if rivals.get("seq_betas"):
            t0 = time.perf_counter()
            est, info["seq_beta"] = sequential_prior(train.flat, A, Y, betas=rivals["seq_betas"],
                                                     val_fraction=rivals.get("val_fraction", 0.25))
            add("seq_mean_prior", est, time.perf_counter() - t0)
    def with_init(kw: dict) -> dict:  # init: a rival's name -> its prior (T, n_od)
        if isinstance(kw.get("init"), str):
            if kw["init"] not in priors:
                raise ConfigError(f"init {kw['init']!r} names no prior of this run (known: {sorted(priors)})")
            kw = {**kw, "init": priors[kw["init"]]}
        return kw

    fitted = {}
    latent_cfg = {k: v for k, v in est_cfg.items() if k in _LATENT_KEYS}
    for method, cls, key in (("vae_tme", VAETME, "vae"), ("wgan_gp_tme", WGANGPTME, "wgan")):
        cfg = dict(config.get(key, {}))
        cfg.update(config.get(name, {}).get(key, {}))
        t0 = time.perf_counter()
        model = cls(**cfg, random_state=seed, progress=True, **device_params(cls, config)).fit(train)
        info[f"{method}_fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        add(method, model.estimate(Y, A, random_state=seed, **latent_cfg), time.perf_counter() - t0)
        fitted[method] = model
    ddpm_cfg = dict(config.get("ddpm", {}))
    ddpm_cfg.update(config.get(name, {}).get("ddpm", {}))
    t0 = time.perf_counter()
    ddpm = DDPMTME(**ddpm_cfg, random_state=seed, progress=True, **device_params(DDPMTME, config)).fit(train)
    info["ddpm_tme_fit_s"] = time.perf_counter() - t0
    info["ddpm_tme_final_losses"] = {k: v[-1] for k, v in ddpm.history_.items() if isinstance(v, list) and v}
    info["ddpm_tme_steps"] = {k: ddpm.history_[k] for k in ("pretrain_steps", "steps")}
    ddpm.save_pretrained(out_dir / f"ddpm_tme_{name}")
    def estimate_into(model, method: str, kw: dict) -> None:  # the estimate and its raw (unprojected) form, timed
        t0 = time.perf_counter()
        est, raw = model.estimate(Y, A, random_state=seed, progress=True, return_raw=True, **kw)
        dt = time.perf_counter() - t0  # whole call: pool, noise optimisation, projection
        add(method, est, dt)
        add(f"{method}_raw", raw, dt)

    def fit_with_routing(key: str, tag: str):  # a DDPM-TME that trains with the routing (timed, saved)
        cfg = {**ddpm_cfg, **config[key], **config.get(name, {}).get(key, {})}
        t0 = time.perf_counter()
        model = DDPMTME(**cfg, random_state=seed, progress=True, **device_params(DDPMTME, config)).fit(train, routing=A)
        info[f"ddpm_tme_{tag}_fit_s"] = time.perf_counter() - t0
        info[f"ddpm_tme_{tag}_final_losses"] = {k: v[-1] for k, v in model.history_.items() if isinstance(v, list) and v}
        model.save_pretrained(out_dir / f"ddpm_tme_{tag}_{name}")
        return model

    variants = {"ddpm_tme": {}, **config.get("ddpm_variants", {})}
    for method, over in variants.items():
        estimate_into(ddpm, method, {**est_cfg, **over})
    if config.get("ddpm_cond"):  # the link-load-conditional prior p(x | y)
        cond = fit_with_routing("ddpm_cond", "cond")
        cond_est = {**est_cfg, **config.get("cond_estimation", {}), **config.get(name, {}).get("cond_estimation", {})}
        estimate_into(cond, "ddpm_tme_cond", with_init(cond_est))
        for method, over in config.get("cond_variants", {}).items():
            over = {**over, **config.get(name, {}).get("cond_variants", {}).get(method, {})}
            estimate_into(cond, method, with_init({**cond_est, **over}))
    if config.get("ddpm_seq"):  # sequential: p(x_t | y_t, x_{t-1}), each interval given the previous estimate
        seq = fit_with_routing("ddpm_seq", "seq")
        estimate_into(seq, "ddpm_tme_seq", with_init({**est_cfg, **config.get("seq_estimation", {}),
                                                      **config.get(name, {}).get("seq_estimation", {})}))
    # synthesis quality. Against the training matrices (the distribution the generators learned)
    # and against the test period; the real-vs-real rows are the floor each number has to be read
    # against (halves of the training set interleaved in time; the test period vs training).
    syn_cfg = config.get("synthesis", {})
    n_syn = int(syn_cfg.get("n_samples", 1000))
    rng = np.random.default_rng(seed)
    ref = train.flat[rng.choice(len(train), min(n_syn, len(train)), replace=False)]  # (n, n_od)
    synth = {"ddpm_tme": ddpm.sample(n_syn, random_state=seed).flat,
             "vae_tme": fitted["vae_tme"].sample(n_syn, random_state=seed),
             "wgan_gp_tme": fitted["wgan_gp_tme"].sample(n_syn, random_state=seed)}

    def scores(a, b):
        return {"mmd_rbf": mmd_rbf(a, b, random_state=seed), "discriminator_score": discriminator_score(a, b, random_state=seed)}

    info["synthesis"] = {"vs_train": {**{k: scores(ref, v) for k, v in synth.items()},
                                      "real: train even vs odd steps": scores(train.flat[0::2], train.flat[1::2]),
                                      "real: test period": scores(ref, X)},
                         "vs_test": {k: scores(X, v) for k, v in synth.items()}}
    real = ref
    tme_plots.plot_overlap(real, synth["ddpm_tme"], out_dir / f"{name}_pca.png", method="pca",
                           title=f"{name}: PCA, training TMs vs DDPM-TME samples")
    if syn_cfg.get("tsne", True):
        tme_plots.plot_overlap(real, synth["ddpm_tme"], out_dir / f"{name}_tsne.png", method="tsne",
                               title=f"{name}: t-SNE, training TMs vs DDPM-TME samples", max_points=int(syn_cfg.get("tsne_points", 600)))
    shown = {k: estimates[k] for k in ("tomogravity", "mean_prior", "vae_tme", "wgan_gp_tme", "ddpm_tme", "ddpm_tme_cond",
                                   "ddpm_tme_seq")
             if k in estimates}
    tme_plots.plot_tre_over_time(X, shown, out_dir / f"{name}_tre_time.png", title=f"{name}: TRE over time")
    tme_plots.plot_sre_per_flow(X, shown, out_dir / f"{name}_sre_flow.png", title=f"{name}: SRE per flow")
    tme_plots.plot_error_cdf(X, shown, out_dir / f"{name}_error_cdf.png", title=f"{name}: absolute-error CDF",
                             unit=train.unit, interval_s=train.interval_s)
    return rows, info


_STATS = ("mean", "median", "std", "max")


def _markdown(rows: list[dict], infos: dict, config: dict) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    head = (["dataset", "method"] + [f"RMSE {k}" for k in _STATS] + [f"SRE {k}" for k in _STATS] + [f"TRE {k}" for k in _STATS]
            + ["link resid.", "TMs/s", "paper TRE mean"])
    cols = ([f"rmse_{k}" for k in _STATS] + [f"sre_{k}" for k in _STATS] + [f"tre_{k}" for k in _STATS]
            + ["link_residual_mean", "tms_per_s", "paper_tre_mean"])
    lines = ["# DDPM-TME recipe", ""]
    for number, ds in zip(("II", "III", "IV", "V"), infos, strict=False):
        info = infos[ds]
        lines += [f"## Table {number}: {ds} (train {info['n_train']} TMs, test {info['n_test']} TMs, "
                  f"{info['n_links']} links, routing rank {info['routing_rank']})", "",
                  "| " + " | ".join(head) + " |", "|---|---" + "|---:" * (len(head) - 2) + "|"]
        lines += ["| " + " | ".join([ds, r["method"]] + [fmt(r[c]) for c in cols]) + " |" for r in rows if r["dataset"] == ds]
        lines.append("")
    est = config.get("estimation", {})
    lines += ["RMSE(t) in Mbit/s (stats over test time points); SRE over flows with non-zero test volume; "
              "TRE over test time points. TMs/s = test matrices / wall seconds of the whole estimation call "
              f"(torch threads: {config.get('threads', 2)}). `*_raw` = the generative fit before the projection "
              "onto the link loads (the paper's output form), timed with its call. `mean_prior` = the training "
              f"mean with the same `{est.get('projection', 'kl')}` projection (naive baseline). Paper column: the "
              "paper's DDPM-TME TRE mean on its own split (16 / 11 training weeks for Abilene / GEANT); other paper values n/a here.", "",
              "## Synthesis (MMD: lower better; discriminator: RandomForest real-vs-synthetic held-out "
              "accuracy, 0.5 = indistinguishable)", "",
              "Against the training matrices (the learned distribution) and the test period. `real: ...` rows "
              "compare real matrices with real matrices: the floor a perfect generator would score.", "",
              "| dataset | reference | generator | MMD (RBF) | discriminator accuracy |", "|---|---|---|---:|---:|"]
    for ds, info in infos.items():
        for refname, block in info["synthesis"].items():
            for k, v in block.items():
                lines.append(f"| {ds} | {refname.replace('vs_', '')} | {k} | {v['mmd_rbf']:.4g} | "
                             f"{v['discriminator_score']:.3f} |")
    lines += ["", "## Data / timing", "", "```", json.dumps({d: {k: v for k, v in i.items() if k != "synthesis"}
                                                           for d, i in infos.items()}, indent=1), "```"]
    return "\n".join(lines) + "\n"


def run(config: dict, out_dir: Path, quick: bool) -> dict:
    import torch

    seed = int(config.get("seed", 0))
    torch.set_num_threads(int(config.get("threads", 2)))
    out_dir = Path(out_dir)
    rows, infos = [], {}
    t_all = time.perf_counter()
    for name in config.get("datasets", ["abilene", "geant"]):
        t0 = time.perf_counter()
        r, info = _run_dataset(name, config, out_dir, seed)
        info["dataset_wall_s"] = time.perf_counter() - t0
        rows += r
        infos[name] = info
    import pandas as pd

    from trafficgen._io import atomic_path

    with atomic_path(out_dir / "table.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(_markdown(rows, infos, config))
    return {"table": rows, "datasets": infos, "wall_time_s": time.perf_counter() - t_all}
