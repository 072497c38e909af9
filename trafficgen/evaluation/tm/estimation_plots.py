"""PNG figures of the DDPM-TME paper: real-vs-synthetic PCA / t-SNE overlap, TRE over time, SRE
per flow sorted by volume, CDF of absolute errors. Each function writes one PNG atomically and
returns its path (matplotlib with the Agg backend, imported lazily)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.evaluation.tm.estimation_metrics import error_cdf, sre, tre

__all__ = ["plot_overlap", "plot_tre_over_time", "plot_sre_per_flow", "plot_error_cdf"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_overlap(real, synth, path, *, method: str = "pca", title: str = "", random_state: int = 0,
                 max_points: int = 1000) -> Path:
    """2-D PCA or t-SNE embedding of log1p OD vectors, real vs synthetic."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(random_state)
    a = np.log1p(np.clip(np.asarray(real, dtype=np.float64).reshape(len(real), -1), 0, None))
    b = np.log1p(np.clip(np.asarray(synth, dtype=np.float64).reshape(len(synth), -1), 0, None))
    a = a[rng.choice(len(a), min(len(a), max_points), replace=False)]
    b = b[rng.choice(len(b), min(len(b), max_points), replace=False)]
    z = np.concatenate([a, b])
    z = (z - a.mean(0)) / np.where(a.std(0) > 1e-12, a.std(0), 1.0)
    if method == "pca":
        emb = PCA(n_components=2, random_state=random_state).fit_transform(z)
    else:
        emb = TSNE(n_components=2, random_state=random_state, init="pca",
                   perplexity=min(30.0, max(2.0, (len(z) - 1) / 4))).fit_transform(z)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(emb[:len(a), 0], emb[:len(a), 1], s=5, alpha=0.5, label="real")
    ax.scatter(emb[len(a):, 0], emb[len(a):, 1], s=5, alpha=0.5, label="synthetic")
    ax.set_title(title or f"{method.upper()}: real vs synthetic")
    ax.legend()
    return _save(fig, path)


def plot_tre_over_time(x, estimates: dict, path, *, title: str = "") -> Path:
    """TRE(t) of each method (name -> (T, n_od) estimate)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, xh in estimates.items():
        ax.plot(tre(x, xh), lw=0.8, label=name)
    ax.set_xlabel("time index (test set)")
    ax.set_ylabel("TRE")
    ax.set_yscale("log")
    ax.set_title(title or "temporal relative error")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_sre_per_flow(x, estimates: dict, path, *, title: str = "") -> Path:
    """SRE(i) of each method, flows sorted by total volume (largest left)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    tot = x.sum(0)
    keep = np.nonzero(tot > 0)[0]
    order = np.argsort(-tot[keep])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, xh in estimates.items():
        ax.plot(sre(x, xh)[order], lw=0.8, label=name)
    ax.set_xlabel("flow rank by volume")
    ax.set_ylabel("SRE")
    ax.set_yscale("log")
    ax.set_title(title or "spatial relative error")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_error_cdf(x, estimates: dict, path, *, title: str = "", unit: str | None = None,
                   interval_s: float | None = None) -> Path:
    """CDF of the absolute errors of each method, in Mbit/s when ``unit`` (per ``interval_s``
    seconds for bytes / 100bytes) is given, like every other TM plot."""
    from trafficgen.evaluation.tm._plotting import value_label

    factor, shown_unit = value_label(unit, interval_s)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, xh in estimates.items():
        thr, frac = error_cdf(x, xh)
        ax.plot(np.maximum(thr * factor, 1e-12), frac, label=name)
    ax.set_xscale("log")
    ax.set_xlabel(f"absolute error ({shown_unit})")
    ax.set_ylabel("CDF")
    ax.set_title(title or "CDF of absolute errors")
    ax.legend(fontsize=7)
    return _save(fig, path)
