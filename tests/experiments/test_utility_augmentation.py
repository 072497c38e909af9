"""TSTR (+ train-on-real bound) and the low-data augmentation experiment, on a small separable set."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError
from trafficgen.evaluation.utility import tstr, tstr_markdown
from trafficgen.experiments.augmentation import (
    augmentation_experiment,
    augmentation_markdown,
    balance_counts,
    subsample_per_class,
)
from trafficgen.generators.fast_retransmit import FastRetransmitGenerator


def make_flows(rng, sizes, width=8):
    """Three classes with distinct length patterns (separable with noise)."""
    pats = {"a": [300, -1200, 300], "b": [80, -80, 80, -80], "c": [1000, 1000, -60]}
    seqs, labels = [], []
    for c, n in sizes.items():
        for _ in range(n):
            k = int(rng.integers(3, width + 1))
            seqs.append([int(pats[c][j % len(pats[c])] + rng.integers(-30, 30)) or 1 for j in range(k)])
            labels.append(c)
    seqs = [[abs(s[0])] + s[1:] for s in seqs]
    return FlowSet.from_sequences(seqs, labels=labels, max_packets=width)


def test_tstr_upper_bound_beats_noise(rng):
    real = make_flows(rng, {"a": 40, "b": 40, "c": 40})
    train, test = real.train_test_split(0.3, random_state=0)
    noise = FlowSet.from_sequences([rng.integers(1, 1500, 6).tolist() for _ in range(len(train))],
                                   labels=train.labels, max_packets=8)
    res = tstr({"noise": noise, "copy": train}, train, test, seeds=2, n_estimators=20)
    up = res["train_on_real"]
    assert up["macro_f1_mean"] > 0.9
    assert up["macro_f1_mean"] > res["noise"]["macro_f1_mean"] + 0.3
    assert res["copy"]["macro_f1"] == up["macro_f1"]  # same data, same seeds -> same scores
    assert set(up["per_class_f1"]) == {"a", "b", "c"} and len(up["macro_f1"]) == 2
    assert tstr(noise, train, test, seeds=[5], n_estimators=5)["synthetic"]["n_train"] == len(train)
    assert "| noise |" in tstr_markdown(res)


def test_subsample_and_balance(rng):
    real = make_flows(rng, {"a": 50, "b": 10, "c": 3})
    kept = subsample_per_class(real, 0.05, np.random.default_rng(0))
    assert kept.class_counts() == {"a": 3, "b": 1, "c": 1}  # ceil, at least one
    assert balance_counts(kept) == {"a": 0, "b": 2, "c": 2}
    assert len(subsample_per_class(real, 1.0, np.random.default_rng(0))) == len(real)
    with pytest.raises(ConfigError):
        subsample_per_class(real, 0.0, np.random.default_rng(0))


def test_augmentation_end_to_end(rng):
    real = make_flows(rng, {"a": 40, "b": 16, "c": 10})
    train, test = real.train_test_split(0.3, random_state=1)
    gen = FastRetransmitGenerator(p=0.5).fit(train.select(["a", "b"]))  # does not know "c"
    kw = dict(generators={"fr_full": gen}, fractions=[0.05, 0.5, 1.0], seeds=2, n_estimators=15)
    res = augmentation_experiment(train, test, **kw)
    assert list(res["methods"]) == ["none", "smote", "fast_retransmit", "fr_full"]
    for r in res["methods"].values():
        assert len(r["mean"]) == 3 and all(0.0 <= v <= 1.0 for v in r["mean"])
    assert res["skipped_classes"] == {"fr_full": ["c"]}
    assert res["kept_flows"][-1] == len(train)
    assert res["methods"]["none"]["mean"][-1] > 0.8  # separable: the full real data classifies well
    assert res == augmentation_experiment(train, test, **kw)  # same seeds -> same numbers
    assert "| fr_full |" in augmentation_markdown(res)
    with pytest.raises(ConfigError):
        augmentation_experiment(train, test, generators={"smote": gen}, fractions=[1.0], seeds=1)
