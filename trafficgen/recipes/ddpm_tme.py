"""Recipe runner for DDPM-TME (Tables II-III and the figures of the paper) on the shipped Abilene
and GEANT data.

Splits are chronological: Abilene trains on week 1 (2016 matrices) and tests on week 2; GEANT
(one week, 677 matrices) trains on the first ``train_fraction`` (80%: 541) and tests on the rest.
Routing: Abilene's shipped 144 x 54 matrix (30 backbone + 24 access links); GEANT's is derived from
the topology (hop-count shortest paths, ECMP) plus 44 access links (node egress / ingress totals),
so that every method, like on Abilene, sees the node totals tomogravity assumes.

Every method is scored on the same test link loads: pinv, gravity, tomogravity, VAE-TME,
WGAN-GP-TME and DDPM-TME (also its raw diffusion fit before the link projection, "ddpm_tme_raw").
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from trafficgen.errors import ConfigError

#: Numbers the paper reports (TRE mean of DDPM-TME); everything else is "n/a".
PAPER_TRE_MEAN = {("abilene", "ddpm_tme"): 0.196, ("geant", "ddpm_tme"): 0.359}


def _load(name: str, cfg: dict):
    from trafficgen.datasets import load_abilene, load_abilene_routing, load_geant, load_geant_topology

    if name == "abilene":
        series = load_abilene()
        n_train = int(cfg.get("n_train", 2016))
        A = load_abilene_routing()
    elif name == "geant":
        from trafficgen.data.routing import routing_from_topology
        from trafficgen.generators.tm_estimation.classic import add_access_links

        series = load_geant()
        n_train = int(round(float(cfg.get("train_fraction", 0.8)) * len(series)))
        A = add_access_links(routing_from_topology(load_geant_topology(), series.nodes)[0])
    else:
        raise ConfigError(f"unknown dataset {name!r}; expected abilene or geant")
    train, test = series[:n_train], series[n_train:]
    if cfg.get("max_train"):
        train = train[-int(cfg["max_train"]):]
    idx = np.arange(0, len(test), int(cfg.get("test_stride", 1)))
    if cfg.get("max_test"):
        idx = idx[: int(cfg["max_test"])]
    return train, test.flat[idx], A


def _table_row(method, dataset, x, xh, Y, A, seconds):
    from trafficgen.evaluation.tme_metrics import estimation_report

    rep = estimation_report(x, xh, Y, A)
    row = {"dataset": dataset, "method": method, "rmse": rep["rmse"]}
    for m in ("tre", "sre"):
        for k, v in rep[m].items():
            row[f"{m}_{k}"] = v
    row["link_residual_mean"] = rep["link_residual"]["mean"]
    row["seconds"] = seconds
    row["tms_per_s"] = len(x) / max(seconds, 1e-9)
    paper = PAPER_TRE_MEAN.get((dataset, method))
    row["paper_tre_mean"] = "n/a" if paper is None else paper
    return row


def _run_dataset(name: str, config: dict, out_dir: Path, seed: int) -> tuple[list[dict], dict]:
    from trafficgen.evaluation import tme_plots
    from trafficgen.evaluation.tme_metrics import discriminator_score, mmd_rbf
    from trafficgen.generators.ddpm_tme.model import DDPMTME
    from trafficgen.generators.tm_estimation import classic
    from trafficgen.generators.tm_estimation.latent_fit import VAETME, WGANGPTME

    train, X, A = _load(name, config.get(name, {}))
    Y = X @ A  # (T, L)
    est_cfg = dict(config.get("estimation", {}))
    rows, estimates, info = [], {}, {"n_train": len(train), "n_test": len(X), "n_links": A.shape[1]}
    for method, fn in (("pinv", classic.pinv_estimate), ("gravity", classic.gravity_estimate),
                       ("tomogravity", classic.tomogravity_estimate)):
        t0 = time.perf_counter()
        estimates[method] = fn(Y, A)
        rows.append(_table_row(method, name, X, estimates[method], Y, A, time.perf_counter() - t0))
    fitted = {}
    for method, cls, key in (("vae_tme", VAETME, "vae"), ("wgan_gp_tme", WGANGPTME, "wgan")):
        t0 = time.perf_counter()
        model = cls(**config.get(key, {}), random_state=seed, progress=True).fit(train)
        info[f"{method}_fit_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        estimates[method] = model.estimate(Y, A, random_state=seed, **{k: v for k, v in est_cfg.items() if k != "steps"})
        rows.append(_table_row(method, name, X, estimates[method], Y, A, time.perf_counter() - t0))
        fitted[method] = model
    ddpm_cfg = dict(config.get("ddpm", {}))
    ddpm_cfg.update(config.get(name, {}).get("ddpm", {}))
    t0 = time.perf_counter()
    ddpm = DDPMTME(**ddpm_cfg, random_state=seed, progress=True).fit(train)
    info["ddpm_tme_fit_s"] = time.perf_counter() - t0
    ddpm.save_pretrained(out_dir / f"ddpm_tme_{name}")
    t0 = time.perf_counter()
    est, raw = ddpm.estimate(Y, A, random_state=seed, progress=True, return_raw=True, **est_cfg)
    dt = time.perf_counter() - t0
    estimates["ddpm_tme"], estimates["ddpm_tme_raw"] = est, raw
    rows.append(_table_row("ddpm_tme", name, X, est, Y, A, dt))
    rows.append(_table_row("ddpm_tme_raw", name, X, raw, Y, A, dt))
    # synthesis quality against the real test matrices
    syn_cfg = config.get("synthesis", {})
    n_syn = int(syn_cfg.get("n_samples", 1000))
    real = np.concatenate([train.flat, X])[-max(n_syn, len(X)):]
    synth = {"ddpm_tme": ddpm.sample(n_syn, random_state=seed).flat,
             "vae_tme": fitted["vae_tme"].sample(n_syn, random_state=seed),
             "wgan_gp_tme": fitted["wgan_gp_tme"].sample(n_syn, random_state=seed)}
    info["synthesis"] = {k: {"mmd_rbf": mmd_rbf(real, s, random_state=seed),
                             "discriminator_score": discriminator_score(real, s, random_state=seed)}
                         for k, s in synth.items()}
    tme_plots.plot_overlap(real, synth["ddpm_tme"], out_dir / f"{name}_pca.png", method="pca",
                           title=f"{name}: PCA, real vs DDPM-TME")
    if syn_cfg.get("tsne", True):
        tme_plots.plot_overlap(real, synth["ddpm_tme"], out_dir / f"{name}_tsne.png", method="tsne",
                               title=f"{name}: t-SNE, real vs DDPM-TME", max_points=int(syn_cfg.get("tsne_points", 600)))
    shown = {k: estimates[k] for k in ("tomogravity", "vae_tme", "wgan_gp_tme", "ddpm_tme")}
    tme_plots.plot_tre_over_time(X, shown, out_dir / f"{name}_tre_time.png", title=f"{name}: TRE over time")
    tme_plots.plot_sre_per_flow(X, shown, out_dir / f"{name}_sre_flow.png", title=f"{name}: SRE per flow")
    tme_plots.plot_error_cdf(X, shown, out_dir / f"{name}_error_cdf.png", title=f"{name}: absolute-error CDF")
    return rows, info


def _markdown(rows: list[dict], infos: dict) -> str:
    cols = ["dataset", "method", "rmse", "tre_mean", "tre_median", "tre_std", "tre_max", "sre_mean",
            "sre_median", "sre_std", "sre_max", "link_residual_mean", "tms_per_s", "paper_tre_mean"]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["# DDPM-TME recipe", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "RMSE in the dataset's unit (Abilene: 100 bytes / 5 min; GEANT: bit/s).", "",
              "## Synthesis (real = last matrices of the data; MMD lower better; discriminator 0.5 best)", ""]
    for ds, info in infos.items():
        for k, v in info["synthesis"].items():
            lines.append(f"- {ds} {k}: MMD {v['mmd_rbf']:.4g}, discriminator {v['discriminator_score']:.3f}")
    lines += ["", "## Data / timing", "", "```", json.dumps({d: {k: v for k, v in i.items() if k != 'synthesis'}
                                                           for d, i in infos.items()}, indent=1), "```"]
    return "\n".join(lines) + "\n"


def run(config: dict, out_dir: Path, quick: bool) -> dict:
    import torch

    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    rows, infos = [], {}
    for name in config.get("datasets", ["abilene", "geant"]):
        r, info = _run_dataset(name, config, out_dir, seed)
        rows += r
        infos[name] = info
    import pandas as pd

    from trafficgen._io import atomic_path

    with atomic_path(out_dir / "table.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(_markdown(rows, infos))
    return {"table": rows, "datasets": infos}
