"""Tables and plots of traffic-matrix forecasts (the protocol that produces them is
:func:`trafficgen.experiments.tm_forecast.evaluate_forecaster`).

Protocol: split the series chronologically (70/15/15 by default);
fit on train with val for early stopping; forecast from every origin ``o`` of the test part with
the full series as history (``o >= len(train) + len(val)``, ``o >= min_history - 1``,
``o + max(horizons) < T``, the same origins for every horizon); report per horizon LEAD's
per-matrix-normalised RMSE / MAE and real-unit RMSE / MAE (Mbit/s) and NMAE
(:func:`trafficgen.evaluation.tm.forecast_metrics.evaluate_forecast`), plus CRPS and interval coverage
when samples are asked for.

:func:`results_table_markdown` puts several results side by side with the ratio of each real-unit
RMSE to persistence's on the same split; :func:`plot_od_pairs` and :func:`plot_error_heatmap` write
PNGs; :func:`write_results` writes ``metrics.json`` + ``table.md`` + both PNGs.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path

__all__ = ["results_table_markdown", "plot_od_pairs",
           "plot_error_heatmap", "write_results", "results_json"]

_METRICS = ("rmse", "mae", "rmse_mbps", "mae_mbps", "nmae")


def results_json(results: dict) -> dict:
    """``results`` without the arrays (what ``metrics.json`` holds)."""
    return {k: v for k, v in results.items() if k != "forecast"}


def results_table_markdown(results: Sequence[dict] | dict, *, baseline: str = "persistence",
                           probabilistic_baseline: str = "persistence-prob") -> str:
    """One row per (model, horizon): LEAD RMSE / MAE, RMSE / MAE in Mbit/s, NMAE, the real-unit RMSE
    over ``baseline``'s on the same horizon, and, where a result has samples, CRPS (Mbit/s), its
    ratio to ``probabilistic_baseline``'s, 50 / 90 % coverage and 90 % interval width (blank where
    unknown)."""
    results = [results] if isinstance(results, dict) else list(results)
    ref, ref_crps = {}, {}
    for res in results:
        if res["model"] == baseline:
            ref = {h: m["rmse_mbps"] for h, m in res["metrics"].items()}
        if res["model"] == probabilistic_baseline:
            ref_crps = {h: m.get("crps_mbps") for h, m in res["metrics"].items()}
    lines = ["| model | dataset | h | LEAD RMSE | LEAD MAE | RMSE (Mbit/s) | MAE (Mbit/s) | NMAE "
             f"| RMSE / {baseline} | CRPS (Mbit/s) | CRPS / {probabilistic_baseline} | 50 % cov. | 90 % cov. "
             "| 90 % width (Mbit/s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def num(v, fmt=".3f"):
        return "" if v is None else format(v, fmt)

    for res in results:
        for h, m in res["metrics"].items():
            ratio = f"{m['rmse_mbps'] / ref[h]:.3f}" if h in ref and ref[h] > 0 else ""
            crps = m.get("crps_mbps")
            cr = f"{crps / ref_crps[h]:.3f}" if crps is not None and ref_crps.get(h) else ""
            lines.append(f"| {res['model']} | {res.get('dataset') or ''} | {h} | {m['rmse']:.4f} | {m['mae']:.4f} "
                         f"| {m['rmse_mbps']:.3f} | {m['mae_mbps']:.3f} | {m['nmae']:.4f} | {ratio} | {num(crps)} | {cr} "
                         f"| {num(m.get('coverage_50'))} | {num(m.get('coverage_90'))} | {num(m.get('width_90_mbps'))} |")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _to_mbps(values: np.ndarray, results: dict) -> np.ndarray:
    from trafficgen.data.tmseries import TMSeries

    one = TMSeries(np.ones((1, 1, 1)), ["x"], results["interval_s"], results["unit"])
    return values * float(one.to_unit("Mbit/s").values[0, 0, 0])


def plot_od_pairs(results: dict, path, *, horizon: int | None = None, n_pairs: int = 4) -> Path:
    """True vs predicted (Mbit/s) over the test targets for the ``n_pairs`` busiest OD pairs."""
    plt = _pyplot()
    fc = results["forecast"]
    horizons = [int(h) for h in fc["horizons"]]
    k = horizons.index(int(horizon)) if horizon is not None else 0
    true = _to_mbps(fc["y_true"][:, k], results)  # (B, N, N)
    pred = _to_mbps(fc["point"][:, k], results)  # (B, N, N)
    n = true.shape[1]
    busiest = np.argsort(-true.reshape(len(true), -1).mean(axis=0), kind="stable")[:n_pairs]
    nodes = results.get("nodes") or [str(i) for i in range(n)]
    from trafficgen.evaluation.tm._plotting import with_gaps

    order = np.argsort(fc["origins"], kind="stable")
    t = fc["origins"][order] + horizons[k]
    true, pred = true[order], pred[order]
    gaps = np.diff(t) > 1
    isolated = len(t) == 1 or bool(np.any(np.r_[True, gaps] & np.r_[gaps, True]))
    marker = dict(marker="o", ms=2.5) if isolated else {}  # a point between two gaps is drawn as a dot
    fig, axes = plt.subplots(len(busiest), 1, figsize=(9, 2.2 * len(busiest)), sharex=True, squeeze=False)
    for ax, od in zip(axes[:, 0], busiest, strict=False):
        i, j = divmod(int(od), n)
        tt, yt, yp = with_gaps(t, true[:, i, j], pred[:, i, j])  # broken where targets are > 1 apart
        ax.plot(tt, yt, color="black", lw=1.0, label="true", **marker)
        ax.plot(tt, yp, color="tab:red", lw=1.0, alpha=0.8, label=results["model"], **marker)
        ax.set_ylabel("Mbit/s")
        ax.set_title(f"{nodes[i]} -> {nodes[j]}", fontsize=9)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("target interval index")
    fig.suptitle(f"{results['model']} on {results.get('dataset') or 'series'}, horizon {horizons[k]}")
    return _save(fig, path)


def plot_error_heatmap(results: dict, path) -> Path:
    """Mean absolute error (Mbit/s) per OD pair, one panel per horizon."""
    plt = _pyplot()
    fc = results["forecast"]
    horizons = [int(h) for h in fc["horizons"]]
    err = np.abs(_to_mbps(fc["point"] - fc["y_true"], results)).mean(axis=0)  # (H, N, N)
    n = err.shape[-1]
    nodes = [str(v) for v in (results.get("nodes") or range(n))]
    side = max(3.8, 0.22 * n + 1.5)  # room for one tick label per node
    fig, axes = plt.subplots(1, len(horizons), figsize=(side * 1.1 * len(horizons), side), squeeze=False)
    vmax = float(err.max()) or 1.0
    fontsize = 8 if n <= 12 else 6
    for k, (ax, h, e) in enumerate(zip(axes[0], horizons, err, strict=False)):
        im = ax.imshow(e, cmap="magma", vmin=0.0, vmax=vmax)
        ax.set_title(f"h = {h}")
        ax.set_xticks(range(n), nodes, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), nodes, fontsize=fontsize)
        ax.set_xlabel("destination")
        if k == 0:
            ax.set_ylabel("origin")
        else:  # same rows as the first panel: its labels serve all
            ax.tick_params(labelleft=False)
    fig.colorbar(im, ax=axes[0].tolist(), label="MAE (Mbit/s)")
    fig.suptitle(f"{results['model']}: mean absolute error per OD pair")
    return _save(fig, path)


def write_results(results: dict, out_dir, *, baseline_results: dict | Sequence[dict] | None = None) -> dict:
    """Write ``metrics.json``, ``table.md`` (beside ``baseline_results``, one result or several,
    when given), ``od_pairs.png`` and ``error_heatmap.png`` into ``out_dir``; returns the paths.
    ``metrics.json`` holds the first baseline under ``"baseline"`` and all of them under
    ``"baselines"``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(baseline_results, dict):
        baseline_results = [baseline_results]
    baseline_results = list(baseline_results or [])
    rows = [results] + baseline_results
    paths = {"metrics": out / "metrics.json", "table": out / "table.md",
             "od_pairs": out / "od_pairs.png", "error_heatmap": out / "error_heatmap.png"}
    payload = results_json(results)
    if baseline_results:
        payload["baseline"] = results_json(baseline_results[0])
        payload["baselines"] = [results_json(b) for b in baseline_results]
    with atomic_path(paths["metrics"]) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
    with atomic_path(paths["table"]) as tmp:
        tmp.write_text(results_table_markdown(rows))
    plot_od_pairs(results, paths["od_pairs"])
    plot_error_heatmap(results, paths["error_heatmap"])
    return paths
