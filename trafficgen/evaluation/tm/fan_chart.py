"""Fan charts of probabilistic TM forecasts: truth, median and 50 % / 90 % sample intervals per
origin-destination pair (``trafficgen tm forecast --samples K`` and the LEAD recipe)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.errors import ConfigError


def parse_od_pairs(text: str, nodes: Sequence[str]) -> list[tuple[int, int]]:
    """``"0-1,ATLA-HSTN"`` -> ``[(0, 1), (i_ATLA, i_HSTN)]``: node names or 0-based indices."""
    names = [str(n) for n in nodes]

    def node(token: str) -> int:
        token = token.strip()
        if token in names:
            return names.index(token)
        if token.lstrip("-").isdigit() and 0 <= int(token) < len(names):
            return int(token)
        raise ConfigError(f"unknown node {token!r} in --fan-od; nodes are 0..{len(names) - 1} or "
                          f"{', '.join(names)}")

    pairs = []
    for item in (p for p in text.split(",") if p.strip()):
        parts = item.split("-") if item.count("-") == 1 else item.split(":")
        if len(parts) != 2:
            raise ConfigError(f"--fan-od entries look like ORIGIN-DEST (or ORIGIN:DEST), got {item!r}")
        pairs.append((node(parts[0]), node(parts[1])))
    if not pairs:
        raise ConfigError("--fan-od names no origin-destination pair")
    return pairs


def largest_od_pairs(values: np.ndarray, k: int = 3) -> list[tuple[int, int]]:
    """The ``k`` OD pairs with the largest mean volume of ``values`` (T, N, N)."""
    mean = values.mean(axis=0)  # (N, N)
    flat = np.argsort(mean, axis=None)[::-1][:k]
    return [tuple(int(v) for v in np.unravel_index(f, mean.shape)) for f in flat]


def fan_chart(values: np.ndarray, origins: np.ndarray, samples: np.ndarray, od_pairs, *, horizon_index: int,
              horizon: int, title: str, path: Path, unit: str = "", interval_s: float | None = None,
              nodes: Sequence[str] | None = None) -> Path:
    """PNG: truth (line) and the median, 50 % and 90 % sample intervals at ``origin + horizon``
    for each chosen (origin node, destination node) pair. ``values`` (T, N, N), ``origins`` (B,),
    ``samples`` (B, S, H, N, N).

    Values are drawn in Mbit/s (``unit`` per ``interval_s`` seconds; the data's own unit when the
    conversion is unknown). Median and bands break wherever consecutive targets are more than one
    interval apart, so forecasts far apart in time are never joined by a straight line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trafficgen.evaluation.tm._plotting import contiguous_runs, value_label, with_gaps

    factor, shown_unit = value_label(unit, interval_s)
    origins = np.asarray(origins)
    order = np.argsort(origins, kind="stable")
    origins, samples = origins[order], samples[order]
    tgt = origins + horizon  # (B,)
    lo_t, hi_t = max(int(tgt.min()) - 5, 0), min(int(tgt.max()) + 1, len(values))
    fig, axes = plt.subplots(len(od_pairs), 1, figsize=(9, 2.6 * len(od_pairs)), squeeze=False)
    for ax, (i, j) in zip(axes[:, 0], od_pairs, strict=True):
        s = samples[:, :, horizon_index, i, j] * factor  # (B, S)
        q = np.quantile(s, [0.05, 0.25, 0.5, 0.75, 0.95], axis=1)  # (5, B)
        ax.plot(np.arange(lo_t, hi_t), values[lo_t:hi_t, i, j] * factor, color="k", lw=0.8, label="truth")
        runs = contiguous_runs(tgt)
        for k, run in enumerate(r for r in runs if r.stop - r.start > 1):  # bands over consecutive targets
            ax.fill_between(tgt[run], q[0, run], q[4, run], color="C0", alpha=0.2, lw=0,
                            label="90 %" if k == 0 else None)
            ax.fill_between(tgt[run], q[1, run], q[3, run], color="C0", alpha=0.4, lw=0,
                            label="50 %" if k == 0 else None)
        lone = np.array([r.start for r in runs if r.stop - r.start == 1], dtype=int)
        if len(lone):  # isolated targets (evenly spaced origins): the intervals as vertical bars
            has_band = len(lone) < len(runs)
            ax.vlines(tgt[lone], q[0, lone], q[4, lone], color="C0", alpha=0.35, lw=1.0,
                      label=None if has_band else "90 %")
            ax.vlines(tgt[lone], q[1, lone], q[3, lone], color="C0", alpha=0.7, lw=3.0,
                      label=None if has_band else "50 %")
        ax.plot(*with_gaps(tgt, q[2]), "o-", color="C0", ms=2, lw=0.8, label="median")
        label = f"{nodes[i]}->{nodes[j]}" if nodes is not None else f"{i}->{j}"
        ax.set_ylabel(f"OD {label} ({shown_unit})")
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1, 0].set_xlabel("target interval index")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
