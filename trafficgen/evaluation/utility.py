"""Utility: TSTR (train on synthetic, test on real) and its train-on-real upper bound.

A scikit-learn ``RandomForestClassifier`` is trained on fixed-length features (the first
``n_packets`` signed lengths, zero-padded: :mod:`trafficgen.representations.features`) and tested on
held-out real flows. The same classifier trained on the real training part of the same split
is the naive upper bound every TSTR figure is shown beside. Each figure is repeated over
``seeds`` (the classifier's seed) and reported as mean and standard deviation of the macro F1,
plus the mean per-class F1 over the real test classes.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError
from trafficgen.representations.features import flow_features


def make_classifier(seed: int, *, n_estimators: int = 100, n_jobs: int = 1):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)


def fit_score(train: FlowSet, test: FlowSet, *, seed: int, n_packets: int, n_estimators: int = 100,
              n_jobs: int = 1) -> tuple[float, dict[str, float]]:
    """Train the classifier on ``train``, test on ``test``: (macro F1, {class: F1}) over the
    test classes (a test class the training set lacks scores F1 = 0 and stays in the macro mean)."""
    from sklearn.metrics import f1_score

    if train.labels is None or test.labels is None or len(train) == 0 or len(test) == 0:
        raise InputFormatError("train and test must be non-empty labelled FlowSets")
    clf = make_classifier(seed, n_estimators=n_estimators, n_jobs=n_jobs)
    with warnings.catch_warnings():  # tiny low-data training sets: "classes > 50% of samples"
        warnings.filterwarnings("ignore", message="The number of unique classes", category=UserWarning)
        clf.fit(flow_features(train, n_packets), train.labels.astype(str))
    pred = clf.predict(flow_features(test, n_packets))
    classes = test.classes
    per = f1_score(test.labels.astype(str), pred, labels=classes, average=None, zero_division=0)
    return float(np.mean(per)), {c: float(v) for c, v in zip(classes, per, strict=True)}


def repeated_score(train: FlowSet, test: FlowSet, *, seeds: Sequence[int], n_packets: int,
                   n_estimators: int = 100, n_jobs: int = 1) -> dict:
    """:func:`fit_score` over several classifier seeds -> mean/std macro F1, mean per-class F1."""
    macro, per = [], []
    for s in seeds:
        m, p = fit_score(train, test, seed=int(s), n_packets=n_packets, n_estimators=n_estimators, n_jobs=n_jobs)
        macro.append(m)
        per.append(p)
    classes = list(per[0])
    return {
        "macro_f1_mean": float(np.mean(macro)),
        "macro_f1_std": float(np.std(macro)),
        "macro_f1": [float(v) for v in macro],
        "per_class_f1": {c: float(np.mean([p[c] for p in per])) for c in classes},
        "n_train": len(train),
        "n_test": len(test),
    }


def pool_scores(results: Sequence[dict]) -> dict:
    """:func:`repeated_score` results of several synthetic draws pooled into one: mean / std over
    every (draw, classifier seed) pair, per-class F1 averaged, each draw's mean in ``draw_means``."""
    macro = [v for r in results for v in r["macro_f1"]]
    classes = list(results[0]["per_class_f1"])
    return {
        "macro_f1_mean": float(np.mean(macro)),
        "macro_f1_std": float(np.std(macro)),
        "macro_f1": [float(v) for v in macro],
        "draw_means": [float(r["macro_f1_mean"]) for r in results],
        "per_class_f1": {c: float(np.mean([r["per_class_f1"][c] for r in results])) for c in classes},
        "n_train": int(results[0]["n_train"]),
        "n_test": int(results[0]["n_test"]),
    }


def tstr(synthetic: dict[str, FlowSet] | FlowSet, real_train: FlowSet, real_test: FlowSet, *,
         seeds: int | Sequence[int] = 3, n_packets: int | None = None, n_estimators: int = 100,
         n_jobs: int = 1) -> dict:
    """TSTR of each synthetic set plus ``"train_on_real"`` (the upper bound, same split).

    ``synthetic`` is one FlowSet or ``{name: FlowSet}``; ``seeds`` an int (``range(seeds)``) or a
    list. ``n_packets`` defaults to ``real_test.max_packets``. Returns ``{name: result}`` with the
    fields of :func:`repeated_score`.
    """
    seeds = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    n_packets = real_test.max_packets if n_packets is None else int(n_packets)
    if isinstance(synthetic, FlowSet):
        synthetic = {"synthetic": synthetic}
    kw = dict(seeds=seeds, n_packets=n_packets, n_estimators=n_estimators, n_jobs=n_jobs)
    out = {"train_on_real": repeated_score(real_train, real_test, **kw)}
    for name, syn in synthetic.items():
        out[name] = repeated_score(syn, real_test, **kw)
    return out


def tstr_markdown(results: dict) -> str:
    """Markdown table of :func:`tstr` results (macro F1 mean +- std)."""
    lines = ["| training data | macro F1 (mean +- std) | n train |", "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['macro_f1_mean']:.4f} +- {r['macro_f1_std']:.4f} | {r['n_train']} |")
    return "\n".join(lines)
