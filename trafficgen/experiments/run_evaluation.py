"""The full flow evaluation: split the real flows, sample every generator like the held-out part,
score fidelity and privacy, TSTR, and the low-data augmentation experiment.

This module fits and samples models (SMOTE and Fast Retransmit baselines, the augmentation
experiment's classifiers); the metrics it calls live in :mod:`trafficgen.evaluation`.
"""
from __future__ import annotations

from collections.abc import Sequence

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.report import FidelityReport

SPLIT_NOTE = (
    "The real flows were split here (stratified, `test_size`, `split_seed`). Fidelity and TSTR "
    "use the held-out test part; Leakage is computed against the real *training* part of this "
    "split. Models loaded from directories were trained elsewhere: if their training data "
    "included flows of this test part, fidelity, TSTR and leakage-vs-test are optimistic, and "
    "leakage vs this training part is only a proxy for leakage vs their true training set.")


def sample_like(generator, like: FlowSet, *, random_state=None) -> tuple[FlowSet, list[str]]:
    """``len(like)`` flows with ``like``'s class of each flow, restricted to the classes the
    generator knows; returns (flows, classes it does not know)."""
    known = set(getattr(generator, "classes_", []))
    labels = [c for c in like.labels.tolist() if c in known]
    missing = sorted(set(like.labels.tolist()) - known)
    if not labels:
        return FlowSet.from_sequences([], labels=[], max_packets=like.max_packets), missing
    return generator.sample(len(labels), cls=labels, random_state=random_state), missing


def run_evaluation(real: FlowSet, generators: dict, *, test_size: float = 0.3, split_seed: int = 0,
                   seeds: int = 3, fractions: Sequence[float] | None = None, n_estimators: int = 100,
                   baselines: bool = True, progress: bool = False) -> dict:
    """Fidelity (vs the held-out real part), TSTR (+ train-on-real) and the augmentation
    experiment for ``{name: fitted FlowGenerator}``. With ``baselines``, SMOTE and Fast
    Retransmit fitted on the real training part are evaluated beside them."""
    from trafficgen.evaluation.utility import tstr
    from trafficgen.experiments.augmentation import DEFAULT_FRACTIONS, augmentation_experiment
    from trafficgen.generators.fast_retransmit import FastRetransmitGenerator
    from trafficgen.generators.smote import SmoteGenerator

    if real.labels is None:
        from trafficgen.errors import InputFormatError

        raise InputFormatError("the evaluation needs labelled real flows")
    train, test = real.train_test_split(test_size, random_state=split_seed)
    gens = dict(generators)
    if baselines:
        gens.setdefault("smote", SmoteGenerator().fit(train))
        gens.setdefault("fast_retransmit", FastRetransmitGenerator().fit(train))
    reports, tstr_sets, missing = [], {}, {}
    with _status(progress, "sampling, fidelity and TSTR"):
        for i, (name, g) in enumerate(gens.items()):
            syn, miss = sample_like(g, test, random_state=1000 + i)
            missing[name] = miss
            if len(syn):
                reports.append(FidelityReport.compute(test, syn, name=name, train=train))
            syn_train, _ = sample_like(g, train, random_state=2000 + i)
            if len(syn_train):
                tstr_sets[name] = syn_train
        utility = tstr(tstr_sets, train, test, seeds=seeds, n_estimators=n_estimators)
    aug = augmentation_experiment(train, test, generators=generators,
                                  fractions=DEFAULT_FRACTIONS if fractions is None else fractions,
                                  seeds=seeds, n_estimators=n_estimators, progress=progress)
    return {
        "split": {"test_size": test_size, "split_seed": split_seed, "n_train": len(train),
                  "n_test": len(test), "classes": real.classes, "note": SPLIT_NOTE},
        "unknown_classes": missing,
        "fidelity": [r.to_dict() for r in reports],
        "tstr": utility,
        "augmentation": aug,
    }


def _status(enabled: bool, text: str):
    """A rich spinner on stderr (or a no-op context)."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(text)
