"""run_evaluation: sampling seeds fixed by the generator's name, and means over several draws."""
from __future__ import annotations

import numpy as np
import pytest

from tests.experiments.test_utility_augmentation import make_flows
from trafficgen.errors import ConfigError
from trafficgen.evaluation.report import FidelityReport
from trafficgen.evaluation.utility import repeated_score
from trafficgen.experiments.run_evaluation import run_evaluation, sample_like, sample_seed
from trafficgen.generators.markov import MarkovGenerator


@pytest.fixture(scope="module")
def real():
    return make_flows(np.random.default_rng(0), {"a": 30, "b": 30, "c": 30})


def _fidelity(res, name):
    return next(r for r in res["fidelity"] if r["name"] == name)["metrics"]


def test_a_row_does_not_depend_on_the_other_generators(real):
    train, _ = real.train_test_split(0.3, random_state=0)
    kw = dict(seeds=1, fractions=[0.5], n_estimators=10)
    alone = run_evaluation(real, {"m1": MarkovGenerator(order=1).fit(train)}, baselines=False, **kw)
    both = run_evaluation(real, {"m0": MarkovGenerator(order=2).fit(train), "m1": MarkovGenerator(order=1).fit(train)},
                          baselines=False, **kw)
    assert _fidelity(alone, "m1") == _fidelity(both, "m1")
    assert alone["tstr"]["m1"] == both["tstr"]["m1"]
    assert sample_seed("m1", 0, "test") != sample_seed("m1", 1, "test") != sample_seed("m1", 1, "train")


def test_draws_average_every_sample_based_number(real):
    train, test = real.train_test_split(0.3, random_state=0)
    gen = MarkovGenerator(order=1).fit(train)
    res = run_evaluation(real, {"m": gen}, baselines=False, seeds=2, fractions=[0.5], n_estimators=10, draws=3)
    assert res["draws"] == 3
    per_draw = [FidelityReport.compute(test, sample_like(gen, test, random_state=sample_seed("m", d, "test"))[0],
                                       name="m", train=train, missing_classes="worst") for d in range(3)]
    got = _fidelity(res, "m")
    for k in ("length_jsd", "leakage"):
        vals = [r.metrics[k]["value"] for r in per_draw]
        assert got[k]["value"] == pytest.approx(np.mean(vals))
        assert got[k]["value_sd"] == pytest.approx(np.std(vals))
        assert got[k]["draws"] == 3
    scores = [repeated_score(sample_like(gen, train, random_state=sample_seed("m", d, "train"))[0], test,
                             seeds=[0, 1], n_packets=test.max_packets, n_estimators=10)["macro_f1_mean"]
              for d in range(3)]
    t = res["tstr"]["m"]
    assert t["draw_means"] == pytest.approx(scores) and t["macro_f1_mean"] == pytest.approx(np.mean(scores))
    assert len(t["macro_f1"]) == 6
    assert "+- " in FidelityReport.from_dict(next(r for r in res["fidelity"] if r["name"] == "m")).to_markdown()
    with pytest.raises(ConfigError):
        run_evaluation(real, {"m": gen}, baselines=False, seeds=1, fractions=[0.5], n_estimators=10, draws=0)
