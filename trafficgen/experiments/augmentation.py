"""Augmentation in low-data regimes (the flow-generation papers' "augmentation" experiment).

For every seed and every fraction ``f`` of the real training data:

1. keep ``ceil(f * n_c)`` random flows of each class ``c`` (at least 1);
2. make the training set balanced by adding, for every class, ``max_c' kept(c') - kept(c)``
   flows with one method:

   * ``"none"``: no augmentation (the baseline: only the kept real flows, imbalanced);
   * ``"smote"``: :class:`SmoteGenerator` fitted on the kept flows (imblearn's SMOTE math on the
     fixed-length features; a class with ``n_c - 1 < k_neighbors`` uses ``k = n_c - 1``, a
     class with 1 flow falls back to random over-sampling, i.e. copies);
   * ``"fast_retransmit"``: :class:`FastRetransmitGenerator` fitted on the kept flows;
   * each given generator: prefitted on the **full** training data (as in the papers) and
     sampled per class (a class the generator does not know gets no new flows; counted in
     ``skipped_classes``);

3. train the random forest on it, test on the held-out real flows, record the macro F1.

Results: ``{"fractions": [...], "methods": {method: {"mean": [...], "std": [...]}}}`` (one value
per fraction), written as a table and a curves PNG by :mod:`trafficgen.evaluation.report` /
:mod:`trafficgen.evaluation.plots`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from trafficgen.augment import oversample_flows
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError
from trafficgen.evaluation.report import augmentation_markdown  # noqa: F401  (re-exported)
from trafficgen.evaluation.utility import fit_score

DEFAULT_FRACTIONS = (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)


def subsample_per_class(flows: FlowSet, fraction: float, rng: np.random.Generator) -> FlowSet:
    """``ceil(fraction * n_c)`` (>= 1) random flows of each class, in the original order."""
    if not 0.0 < float(fraction) <= 1.0:
        raise ConfigError(f"fractions must lie in (0, 1], got {fraction}")
    keep = []
    for c in flows.classes:
        idx = np.flatnonzero(flows.labels == c)
        k = max(1, math.ceil(fraction * idx.size))
        keep.append(rng.choice(idx, size=k, replace=False))
    return flows[np.sort(np.concatenate(keep))]


def balance_counts(flows: FlowSet) -> dict[str, int]:
    """New flows per class to reach the majority class count."""
    counts = flows.class_counts()
    top = max(counts.values())
    return {c: top - k for c, k in counts.items()}


def augmentation_experiment(real_train: FlowSet, real_test: FlowSet, *,
                            generators: dict | None = None,
                            fractions: Sequence[float] = DEFAULT_FRACTIONS, seeds: int | Sequence[int] = 3,
                            baselines: Sequence[str] = ("none", "smote", "fast_retransmit"),
                            n_packets: int | None = None, n_estimators: int = 100, n_jobs: int = 1,
                            progress: bool = False) -> dict:
    """Run the experiment (module docstring). ``generators``: ``{name: fitted FlowGenerator}``."""
    from trafficgen.generators.base import FlowGenerator

    seeds = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    n_packets = real_test.max_packets if n_packets is None else int(n_packets)
    generators = dict(generators or {})
    for name, g in generators.items():
        if not isinstance(g, FlowGenerator) or not hasattr(g, "classes_"):
            raise ConfigError(f"generator {name!r} must be a fitted FlowGenerator")
    clash = set(generators) & set(baselines)
    if clash:
        raise ConfigError(f"generator names clash with baseline methods: {sorted(clash)}")
    methods = list(baselines) + list(generators)
    scores = {m: np.zeros((len(seeds), len(fractions))) for m in methods}
    skipped: dict[str, list[str]] = {m: [] for m in generators}
    sizes = np.zeros((len(seeds), len(fractions)), dtype=np.int64)
    total = len(seeds) * len(fractions) * len(methods)
    with _progress(progress, total) as advance:
        for si, seed in enumerate(seeds):
            for fi, frac in enumerate(fractions):
                rng = np.random.default_rng([seed, fi])
                kept = subsample_per_class(real_train, frac, rng)
                sizes[si, fi] = len(kept)
                need = balance_counts(kept)
                for m in methods:
                    gen_seed = int(rng.integers(2**31))
                    if m == "none":
                        train = kept
                    else:
                        gen = generators.get(m, m)
                        counts = need
                        if m in generators:
                            known = set(gen.classes_)
                            counts = {c: k for c, k in need.items() if c in known}
                            skipped[m] = sorted(set(skipped[m]) | (set(need) - known))
                        new = oversample_flows(kept, gen, counts, random_state=gen_seed)
                        train = FlowSet.concat([_core(kept), new]) if len(new) else kept
                    scores[m][si, fi] = fit_score(train, real_test, seed=seed, n_packets=n_packets,
                                                  n_estimators=n_estimators, n_jobs=n_jobs)[0]
                    advance()
    return {
        "fractions": [float(f) for f in fractions],
        "seeds": seeds,
        "kept_flows": sizes.mean(axis=0).tolist(),
        "methods": {m: {"mean": s.mean(axis=0).tolist(), "std": s.std(axis=0).tolist()}
                    for m, s in scores.items()},
        "skipped_classes": skipped,
    }


def _core(flows: FlowSet) -> FlowSet:
    """Only the columns a generated FlowSet also has (so the two can be concatenated)."""
    return FlowSet(lengths=flows.lengths, n_packets=flows.n_packets, directions=flows.directions,
                   labels=flows.labels)


class _progress:
    """Progress over the experiment's fits (``trafficgen._progress``: a bar on a terminal, plain
    lines in a log), or nothing; yields an ``advance()`` callable."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total

    def __enter__(self):
        from trafficgen._progress import ProgressReporter

        self._p = ProgressReporter(self.total, "augmentation", unit="fits", enabled=self.enabled)
        self._p.__enter__()
        return lambda: self._p.update(1)

    def __exit__(self, *exc):
        self._p.__exit__(*exc)
        return False
