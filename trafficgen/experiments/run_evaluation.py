"""The full flow evaluation: split the real flows, sample every generator like the held-out part,
score fidelity and privacy, TSTR, and the low-data augmentation experiment.

This module fits and samples models (SMOTE and Fast Retransmit baselines, the augmentation
experiment's classifiers); the metrics it calls live in :mod:`trafficgen.evaluation`.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

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


def sample_seed(name: str, draw: int = 0, part: str = "test") -> int:
    """Sampling seed of generator ``name``'s ``draw``-th synthetic set shaped like the real
    ``part`` (``"test"``: fidelity and privacy, ``"train"``: TSTR). It depends on the name only,
    so adding, removing or reordering generators leaves every other row's samples unchanged."""
    return zlib.crc32(f"{name}/{part}/{int(draw)}".encode()) & 0x7FFFFFFF


#: Name of the real-vs-real floor row in the fidelity list.
FLOOR = "real_vs_real (floor)"

#: Name of the timing-only row: real lengths with the per-class empirical IATs export falls back to.
EMPIRICAL_TIMING = "empirical IAT (export fallback)"


def empirical_timing_sample(train: FlowSet, floor: FlowSet, *, random_state=0) -> FlowSet:
    """``floor``'s real lengths with IATs drawn as :func:`FlowSet.to_pcap` does for flows without
    timing (per class and condition, from ``train``): what a generator without timing gets."""
    from trafficgen._random import check_random_state
    from trafficgen.data.flows.pcap_timing import empirical_iats

    later = floor.valid_mask.copy()
    later[:, :1] = False
    change = np.zeros(later.shape, dtype=bool)
    change[:, 1:] = floor.directions[:, 1:] != floor.directions[:, :-1]
    out = floor[np.arange(len(floor))]
    out.iat = np.where(later, empirical_iats(train, floor.labels, later, change, check_random_state(random_state)), 0.0)
    return out


def real_floor_sample(train: FlowSet, test: FlowSet, *, random_state=0) -> FlowSet:
    """Real training flows with the test part's class counts (as many as the class has): the
    same-size, disjoint real sample whose fidelity against the test part is the floor every
    generator's number is read against."""
    from trafficgen._random import check_random_state

    rng = check_random_state(random_state)
    counts = test.class_counts()
    idx = []
    for c in sorted(counts):
        rows = np.flatnonzero(train.labels == c)
        idx.extend(rng.choice(rows, size=min(counts[c], len(rows)), replace=False).tolist())
    return train[np.sort(np.asarray(idx, dtype=np.int64))]


def reference_generators(train: FlowSet) -> dict:
    """The baselines every flow result sits beside, fitted on the real training part: SMOTE and
    Fast Retransmit (augmentation baselines), Markov order 2, copy-of-train, independent marginals."""
    import warnings

    from trafficgen.generators.copy_train import CopyGenerator
    from trafficgen.generators.fast_retransmit import FastRetransmitGenerator
    from trafficgen.generators.independent import IndependentGenerator
    from trafficgen.generators.markov import MarkovGenerator
    from trafficgen.generators.smote import SmoteGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # clipped-length counts: reported by the models
        return {"smote": SmoteGenerator().fit(train), "fast_retransmit": FastRetransmitGenerator().fit(train),
                "markov": MarkovGenerator(order=2).fit(train), "copy": CopyGenerator().fit(train),
                "independent": IndependentGenerator().fit(train)}


def score_draws(generator, name: str, train: FlowSet, test: FlowSet, *, draws: int = 1, seeds: Sequence[int],
                n_packets: int, n_estimators: int = 100) -> tuple[FidelityReport | None, dict | None, list[str]]:
    """(fidelity report, TSTR result, real classes the generator lacks) of ``draws`` synthetic
    sets of ``generator`` drawn with ``name``'s seeds (:func:`sample_seed`): shaped like ``test``
    for fidelity and privacy, like ``train`` for TSTR; with several draws their mean
    (:meth:`FidelityReport.mean`, :func:`~trafficgen.evaluation.utility.pool_scores`). A report
    or result is None when the generator knows none of the classes."""
    from trafficgen.evaluation.utility import pool_scores, repeated_score

    reports, scores, missing = [], [], []
    for d in range(int(draws)):
        syn, missing = sample_like(generator, test, random_state=sample_seed(name, d, "test"))
        if len(syn):
            reports.append(FidelityReport.compute(test, syn, name=name, train=train, missing_classes="worst"))
        syn_train, _ = sample_like(generator, train, random_state=sample_seed(name, d, "train"))
        if len(syn_train):
            scores.append(repeated_score(syn_train, test, seeds=seeds, n_packets=n_packets, n_estimators=n_estimators))
    report = None if not reports else reports[0] if len(reports) == 1 else FidelityReport.mean(reports)
    score = None if not scores else scores[0] if len(scores) == 1 else pool_scores(scores)
    return report, score, missing


def run_evaluation(real: FlowSet, generators: dict, *, test_size: float = 0.3, split_seed: int = 0,
                   seeds: int = 3, fractions: Sequence[float] | None = None, n_estimators: int = 100,
                   baselines: bool = True, draws: int = 1, progress: bool = False) -> dict:
    """Fidelity (vs the held-out real part), TSTR (+ train-on-real), held-out likelihood and the
    augmentation experiment for ``{name: fitted FlowGenerator}``. With ``baselines``, the
    reference generators of :func:`reference_generators` fitted on the real training part are
    evaluated beside them; the fidelity list always ends with the real-vs-real floor
    (:func:`real_floor_sample` against the test part; its leakage is the share of those real
    training flows equal to a real test flow). When the real flows carry timing, the IAT JSD is
    among the metrics (n/a for generators without timing) and a last, timing-only row gives it
    for the empirical IATs export falls back to (:func:`empirical_timing_sample`).

    ``draws``: synthetic sets drawn per generator (seeds :func:`sample_seed`). Every
    sample-based number (fidelity, privacy, TSTR) is the mean over the draws, with the spread
    beside it (a metric's ``value_sd``, TSTR's ``draw_means``): one draw of a small test part
    moves a JSD by a few hundredths and TSTR by about 0.02."""
    from trafficgen.evaluation.likelihood import has_likelihood, likelihood_summary
    from trafficgen.evaluation.utility import repeated_score
    from trafficgen.experiments.augmentation import DEFAULT_FRACTIONS, augmentation_experiment

    if real.labels is None:
        from trafficgen.errors import InputFormatError

        raise InputFormatError("the evaluation needs labelled real flows")
    train, test = real.train_test_split(test_size, random_state=split_seed)
    gens = dict(generators)
    if baselines:
        for name, g in reference_generators(train).items():
            gens.setdefault(name, g)
    draws = int(draws)
    if draws < 1:
        from trafficgen.errors import ConfigError

        raise ConfigError(f"draws must be >= 1, got {draws}")
    score_kw = dict(seeds=list(range(seeds)), n_packets=test.max_packets, n_estimators=n_estimators)
    reports, utility, missing = [], {}, {}
    with _status(progress, "sampling, fidelity and TSTR" + (f" ({draws} draws per generator)" if draws > 1 else "")):
        utility["train_on_real"] = repeated_score(train, test, **score_kw)
        for name, g in gens.items():
            report, score, missing[name] = score_draws(g, name, train, test, draws=draws, **score_kw)
            if report is not None:
                reports.append(report)
            if score is not None:
                utility[name] = score
        floor = real_floor_sample(train, test, random_state=split_seed)
        reports.append(FidelityReport.compute(test, floor, name=FLOOR, info={"floor": True}))
        if test.iat is not None and train.iat is not None:
            from trafficgen.evaluation.fidelity import IATJSD

            reports.append(FidelityReport.compute(
                test, empirical_timing_sample(train, floor, random_state=split_seed), name=EMPIRICAL_TIMING,
                metrics=[IATJSD()], info={"timing_only": True}))
        nll = {name: likelihood_summary(g, test) for name, g in gens.items() if has_likelihood(g)}
    aug = augmentation_experiment(train, test, generators=generators,
                                  fractions=DEFAULT_FRACTIONS if fractions is None else fractions,
                                  seeds=seeds, n_estimators=n_estimators, progress=progress)
    return {
        "split": {"test_size": test_size, "split_seed": split_seed, "n_train": len(train),
                  "n_test": len(test), "classes": real.classes, "note": SPLIT_NOTE},
        "draws": draws,
        "unknown_classes": missing,
        "fidelity": [r.to_dict() for r in reports],
        "tstr": utility,
        "nll": nll,
        "augmentation": aug,
    }


def _status(enabled: bool, text: str):
    """A line when the stage starts and one when it ends (with its duration) on stderr, or nothing:
    visible on a terminal and in a log alike."""
    import contextlib
    import sys
    import time

    @contextlib.contextmanager
    def stage():
        t0 = time.perf_counter()
        print(f"evaluate: {text} ...", file=sys.stderr, flush=True)
        yield
        print(f"evaluate: {text} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    return stage() if enabled else contextlib.nullcontext()
