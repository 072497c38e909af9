"""Reference generators (markov, copy, independent): values by hand, a proper distribution,
sampling that follows it, valid flows by construction."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.generators.copy_train import CopyGenerator
from trafficgen.generators.independent import IndependentGenerator
from trafficgen.generators.markov import MarkovGenerator
from trafficgen.representations.tokenizer import EOS_ID


def _two_classes(n: int = 50) -> FlowSet:
    return FlowSet.from_sequences([[100, -200]] * n + [[300]] * n, labels=["a"] * n + ["b"] * n, max_packets=4)


def test_markov_order0_likelihood_by_hand():
    n = 50
    m = MarkovGenerator(order=0).fit(_two_classes(n))
    u = 1.0 / 3001  # every signed length in +-1500 and <EOS>
    # all-class unigram: events 100, -200, EOS (class a) and 300, EOS (class b): 5n events, 4 types
    p_glob = {w: (c + 4 * u) / (5 * n + 4) for w, c in {100: n, -200: n, "eos": 2 * n, 300: n}.items()}
    # class a unigram: 3n events, 3 types
    p_a = {w: (n + 3 * p_glob[w]) / (3 * n + 3) for w in (100, -200, "eos")}
    # step 0 is restricted to positive lengths: renormalise over them
    others = (1500 - 2) * (3 * (4 * u / (5 * n + 4))) / (3 * n + 3)  # positive lengths never seen (not 100, 300)
    p300 = (0 + 3 * p_glob[300]) / (3 * n + 3)
    z = p_a[100] + p300 + others
    expected = np.log(p_a[100] / z) + np.log(p_a[-200]) + np.log(p_a["eos"])
    got = m.log_likelihood(FlowSet.from_sequences([[100, -200]], labels=["a"], max_packets=4))
    assert got[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_markov_is_a_distribution(order, rng):
    flows = FlowSet.from_sequences([list(rng.choice([60, -60, 1400, -1400, 517], size=rng.integers(1, 7)))
                                    for _ in range(200)], labels=list(rng.choice(["x", "y"], size=200)),
                                   max_packets=6)
    flows.lengths[:, 0] = np.abs(flows.lengths[:, 0])
    m = MarkovGenerator(order=order).fit(flows)
    tok = m.tokenizer_
    outcomes = np.concatenate([[EOS_ID], tok.length_to_id(np.concatenate([np.arange(-1500, 0), np.arange(1, 1501)]))])
    sym = m._symbols(np.array([tok.length_to_id(np.array([60]))[0], tok.length_to_id(np.array([-777]))[0], 0]))
    for context in ([sym[0]] * order, [sym[1]] * order, [sym[2]] * order):  # seen, unseen, BOS contexts
        ctx = np.tile(np.asarray(context, dtype=np.int64), (len(outcomes), 1)).reshape(len(outcomes), order)
        p = m._interpolated(np.zeros(len(outcomes), dtype=np.int64), ctx, outcomes)
        assert p.sum() == pytest.approx(1.0, abs=1e-9) and np.all(p > 0)
    assert np.allclose(m.first_step_.sum(axis=1), 1.0)
    negative = tok.length_to_id(np.arange(-1500, 0))
    assert np.all(m.first_step_[:, negative] == 0) and np.all(m.first_step_[:, EOS_ID] == 0)


def test_markov_samples_follow_the_model_and_are_valid():
    flows = FlowSet.from_sequences([[100, -200, 300]] * 30 + [[100, 50]] * 10 + [[40]] * 20,
                                   labels=["a"] * 40 + ["b"] * 20, max_packets=5)
    m = MarkovGenerator(order=1).fit(flows)
    s = m.sample(20000, cls="a", random_state=0)
    assert np.all(s.lengths[:, 0] > 0) and np.all(s.n_packets >= 1)
    first = m.tokenizer_.length_to_id(s.lengths[:, 0])
    freq = np.bincount(first, minlength=m.first_step_.shape[1]) / len(first)
    assert np.abs(freq - m.first_step_[0]).max() < 0.01
    # P(-200 | a, 100) = (30 + T * lower) / (40 + T) with T = 2 followers: close to 0.73
    after_100 = s.lengths[(s.lengths[:, 0] == 100) & (s.n_packets >= 2), 1]
    assert np.mean(after_100 == -200) == pytest.approx(0.73, abs=0.02)
    assert np.array_equal(m.sample(50, random_state=3).lengths, m.sample(50, random_state=3).lengths)


def test_markov_counts_clipped_lengths():
    flows = FlowSet.from_sequences([[100, -37440, 200]] * 4, labels=["a"] * 4, max_packets=3)
    with pytest.warns(UserWarning, match="clipped"):
        m = MarkovGenerator(order=1).fit(flows)
    assert m.n_clipped_ == 4


def test_markov_order2_beats_order0_on_ordered_data():
    flows = FlowSet.from_sequences([[10, -20, 30, -40]] * 40 + [[30, -40, 10, -20]] * 40,
                                   labels=["a"] * 80, max_packets=4)
    tr, te = flows[::2], flows[1::2]
    nll = {k: -MarkovGenerator(order=k).fit(tr).log_likelihood(te).mean() for k in (0, 2)}
    assert nll[2] < nll[0] - 3.0


def test_copy_returns_training_flows_of_the_class():
    flows = _two_classes(5)
    g = CopyGenerator().fit(flows)
    s = g.sample(30, cls="b", random_state=0)
    assert s.labels.tolist() == ["b"] * 30 and np.all(s.lengths[:, 0] == 300) and np.all(s.n_packets == 1)
    mixed = g.sample(200, random_state=1)
    assert 60 < (mixed.labels == "a").sum() < 140


def test_independent_keeps_marginals_not_order():
    flows = FlowSet.from_sequences([[10, -20]] * 50 + [[30, -40, 50]] * 50, labels=["a"] * 100, max_packets=3)
    s = IndependentGenerator().fit(flows).sample(4000, random_state=0)
    assert np.mean(s.n_packets == 3) == pytest.approx(0.5, abs=0.03)
    assert set(np.unique(s.lengths[:, 0])) == {10, 30}
    mixed = (s.lengths[:, 0] == 10) & (s.lengths[:, 1] == -40)  # a pair no real flow has
    assert 0.15 < mixed.mean() < 0.35
    assert np.all(s.lengths[s.n_packets == 3, 2] == 50)
