"""TrafficAugmenter: imbalanced-learn estimator checks, Pipeline fit-only resampling, inputs."""
from __future__ import annotations

import numpy as np
import pytest
from imblearn.pipeline import Pipeline
from imblearn.utils.estimator_checks import parametrize_with_checks
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks as sk_parametrize_with_checks

from trafficgen.augment import TrafficAugmenter
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError
from trafficgen.generators.fast_retransmit import FastRetransmitGenerator
from trafficgen.generators.smote import SmoteGenerator

#: Checks expected to fail, and why. None: every imblearn sampler check and every scikit-learn
#: estimator check passes (feature rows that are not flows, e.g. random floats, are rounded and
#: made valid by ``features_to_flows``). scikit-learn's ``check_array_api_input`` skips itself
#: unless SCIPY_ARRAY_API is set.
SKIPPED: dict[str, str] = {}


@sk_parametrize_with_checks([TrafficAugmenter(generator="smote", random_state=0)],
                            expected_failed_checks=lambda est: SKIPPED)
def test_sklearn_checks(estimator, check):
    check(estimator)


@parametrize_with_checks([TrafficAugmenter(generator="smote", random_state=0),
                          TrafficAugmenter(generator="fast_retransmit", random_state=0)],
                         expected_failed_checks=lambda est: SKIPPED)
def test_imblearn_checks(estimator, check):
    check(estimator)


def imbalanced(rng, width=6):
    seqs, labels = [], []
    for c, n, base in (("big", 30, 700), ("mid", 9, 90), ("tiny", 2, 1400)):
        for _ in range(n):
            k = int(rng.integers(2, width + 1))
            seqs.append([base + int(rng.integers(0, 40)) * (-1) ** j for j in range(k)])
            labels.append(c)
    return FlowSet.from_sequences(seqs, labels=labels, max_packets=width)


class SizeRecorder(ClassifierMixin, BaseEstimator):
    """Records the number of rows it sees in fit and in predict."""

    def fit(self, X, y):
        self.fit_sizes_ = [len(X)]
        self.predict_sizes_ = []
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        self.predict_sizes_.append(len(X))
        return np.full(len(X), self.classes_[0])


@pytest.mark.parametrize("generator", ["smote", "fast_retransmit"])
def test_pipeline_resamples_at_fit_only(rng, generator):
    flows = imbalanced(rng)
    X, y = flows.to_features(), flows.labels
    pipe = Pipeline([("aug", TrafficAugmenter(generator=generator, random_state=0)), ("clf", SizeRecorder())])
    pipe.fit(X, y)
    rec = pipe.named_steps["clf"]
    assert rec.fit_sizes_ == [3 * 30]  # balanced to the majority count
    pipe.predict(X[:7])
    pipe.score(X[:11], y[:11])
    assert rec.predict_sizes_ == [7, 11]  # test data passes through untouched


def test_resampled_rows_are_flows_of_the_right_class(rng):
    flows = imbalanced(rng)
    X, y = flows.to_features(), flows.labels
    Xr, yr = TrafficAugmenter(generator="smote", random_state=3).fit_resample(X, y)
    assert np.array_equal(Xr[: len(X)], X) and np.array_equal(yr[: len(y)], y)
    new = FlowSet.from_features(Xr[len(X):], labels=yr[len(X):])
    assert np.all(new.lengths[:, 0] > 0)
    tiny = new.select("tiny").lengths[:, 0]
    assert tiny.min() >= 1400 and tiny.max() < 1440  # interpolated inside the tiny class
    Xr2, yr2 = TrafficAugmenter(generator="smote", random_state=3).fit_resample(X, y)
    assert np.array_equal(Xr, Xr2) and np.array_equal(yr, yr2)
    Xi, yi = TrafficAugmenter(generator="smote", random_state=0).fit_resample(X, np.searchsorted(["big", "mid", "tiny"], y))
    assert yi.dtype.kind == "i" and np.bincount(yi).tolist() == [30, 30, 30]


def test_generator_kinds_flowset_input_and_prefitted_dir(rng, tmp_path):
    flows = imbalanced(rng)
    # FlowSet in, FlowSet out (y=None -> its labels)
    out, yo = TrafficAugmenter(generator=FastRetransmitGenerator(p=1.0), random_state=0).fit_resample(flows)
    assert isinstance(out, FlowSet) and out.class_counts() == {"big": 30, "mid": 30, "tiny": 30}
    assert np.array_equal(yo, out.labels)
    # an unfitted instance is cloned, not fitted in place
    proto = SmoteGenerator(k_neighbors=2)
    TrafficAugmenter(generator=proto, random_state=0).fit_resample(flows.to_features(), flows.labels)
    assert not hasattr(proto, "classes_")
    # a saved directory is prefitted: its flows are used even for classes X hardly shows
    FastRetransmitGenerator(p=0.0).fit(flows).save_pretrained(tmp_path / "fr")
    sub = flows[np.r_[0:30, 30, 39]]  # 30 big, 1 mid, 1 tiny
    Xr, yr = TrafficAugmenter(generator=str(tmp_path / "fr"), random_state=0).fit_resample(sub.to_features(), sub.labels)
    known = {tuple(r) for r in flows.to_features().tolist()}
    assert all(tuple(r) in known for r in Xr[32:].tolist())
    assert {tuple(r) for r in Xr[32:][yr[32:] == "mid"].tolist()} - {tuple(Xr[30])}  # other mid flows appear
    # sampling_strategy dict
    Xd, yd = TrafficAugmenter(generator="smote", sampling_strategy={"tiny": 5}, random_state=0).fit_resample(
        flows.to_features(), flows.labels)
    assert (yd == "tiny").sum() == 5 and len(yd) == len(flows) + 3
    with pytest.raises(ConfigError):
        TrafficAugmenter(generator=42).fit_resample(flows.to_features(), flows.labels)


def test_inside_pipeline_with_random_forest(rng):
    flows = imbalanced(rng)
    train, test = flows.train_test_split(0.3, random_state=0)
    pipe = Pipeline([("aug", TrafficAugmenter(generator="fast_retransmit", random_state=0)),
                     ("rf", RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1))])
    pipe.fit(train.to_features(), train.labels)
    assert pipe.score(test.to_features(), test.labels) > 0.8
