"""PNG plots: fidelity radar (several generators on one radar) and augmentation curves.

Uses matplotlib's object API with the Agg canvas (no global backend switch, no display), and
writes atomically.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return path


def radar_axis_label(metric: str) -> str:
    """What a radar axis shows for a metric of :meth:`FidelityReport.scores`: ``1 - JSD`` for the
    divergences (lower is better, so the plot shows their complement), ``1 - leakage``, the metric
    itself for the bigger-is-better ones (novelty, UniqAlign)."""
    from trafficgen.evaluation.fidelity import fidelity_metrics
    from trafficgen.evaluation.privacy import PRIVACY_METRICS

    directions = {m.name: m.direction for m in fidelity_metrics() + [cls() for cls in PRIVACY_METRICS]}
    words = metric.replace("_", " ").replace(" jsd", " JSD")
    return f"1 - {words}" if directions.get(metric, "lower") == "lower" else words


def radar_plot(scores: dict[str, dict[str, float]], path: str | Path, *, title: str = "Fidelity") -> Path:
    """``scores[generator][axis]`` in [0, 1], bigger = better (e.g. ``FidelityReport.scores()``,
    which plots 1 - JSD). All generators share one radar; axes are the first generator's keys."""
    if not scores:
        from trafficgen.errors import ConfigError

        raise ConfigError("radar_plot needs at least one generator")
    # an axis some generator has no value for (NaN: e.g. IAT JSD without timing) is left out
    axes = [a for a in next(iter(scores.values())) if all(np.isfinite(float(sc.get(a, np.nan)))
                                                          for sc in scores.values())]
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig = _figure((6, 6))
    ax = fig.add_subplot(111, projection="polar")
    for name, sc in scores.items():
        vals = [float(sc.get(a, 0.0)) for a in axes]
        ax.plot(angles + angles[:1], vals + vals[:1], linewidth=1.5, label=name)
        ax.fill(angles + angles[:1], vals + vals[:1], alpha=0.12)
    ax.set_xticks(angles)
    ax.set_xticklabels([radar_axis_label(a) for a in axes], fontsize=8)
    ax.set_ylim(0, 1)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{title} (outer = better)", fontsize=10)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    return _save(fig, path)


def augmentation_plot(results: dict, path: str | Path, *, title: str = "Augmentation") -> Path:
    """Macro F1 vs fraction of real training data kept (log x), one curve per method with a
    +- std band (``results`` from :func:`augmentation_experiment`)."""
    fr = np.asarray(results["fractions"]) * 100
    fig = _figure((7, 4.5))
    ax = fig.add_subplot(111)
    for m, r in results["methods"].items():
        mean, std = np.asarray(r["mean"]), np.asarray(r["std"])
        ax.plot(fr, mean, marker="o", label=m, linestyle="--" if m == "none" else "-")
        ax.fill_between(fr, mean - std, mean + std, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(fr)
    ax.set_xticklabels([f"{f:g}%" for f in fr])
    ax.set_xlabel("real training data kept per class")
    ax.set_ylabel("macro F1 on held-out real flows")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def bar_plot(values: dict[str, float], errors: Sequence[float] | None, path: str | Path, *,
             ylabel: str, title: str) -> Path:
    """Simple bar chart (TSTR macro F1 per training set, with std error bars)."""
    fig = _figure((6, 4))
    ax = fig.add_subplot(111)
    names = list(values)
    ax.bar(range(len(names)), [values[n] for n in names], yerr=errors, capsize=4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(0, 1)
    return _save(fig, path)
