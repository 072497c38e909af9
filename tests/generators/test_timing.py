"""Timing: IAT bins and their quantile decoding, the Markov IAT chain, the token models' timing
head; values by hand, samples that follow the training distribution, save/load."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.fidelity import IATJSD
from trafficgen.generators.iat_chain import IATChain
from trafficgen.generators.markov import MarkovGenerator
from trafficgen.registry import load_generator
from trafficgen.representations.iat_bins import IATBins


def test_iat_bins_encode_edges_and_metric_grid():
    b = IATBins()  # 10 per decade, 1 us .. 1000 s
    assert b.n_bins == 92
    got = b.encode(np.array([0.0, 5e-7, 1e-6, 1.5e-6, 1e-3, 0.5, 999.0, 1e3, 5e4]))
    assert got.tolist() == [0, 0, 1, 2, 31, 57, 90, 91, 91]
    # every bin of ours lies inside one bin of the IAT metric (5 per decade, same edges)
    x = 10.0 ** np.linspace(-7, 4, 2001)
    ours, metric = b.encode(x), IATJSD().bin_index(x)
    for k in np.unique(ours):
        assert len(np.unique(metric[ours == k])) == 1


def test_iat_bins_decode_follows_training_values(rng):
    values = np.concatenate([np.zeros(300), np.full(300, 0.0123), rng.uniform(0.2, 0.25, 400)])
    b = IATBins().fit(values)
    bins = b.encode(values)
    out = b.decode(bins, rng)
    assert np.array_equal(b.encode(out), bins)  # every draw stays in its bin
    assert (out[:300] == 0).all() and np.allclose(out[300:600], 0.0123)
    assert out[600:].min() >= 0.2 - 1e-12 and out[600:].max() <= 0.25 + 1e-12
    # a bin without training values: log-uniform between its edges
    empty = b.decode(np.full(2000, 40), rng)
    lo, hi = b.edges()[39], b.edges()[40]
    assert empty.min() >= lo and empty.max() <= hi
    assert np.median(np.log10(empty)) == pytest.approx((np.log10(lo) + np.log10(hi)) / 2, abs=0.01)


def _timed_flows(n=400, seed=0) -> FlowSet:
    """Class 'a': answers after ~10 ms, same-side packets 1 us apart; class 'b': everything ~1 s."""
    rng = np.random.default_rng(seed)
    seqs, iats, labels = [], [], []
    for i in range(n):
        c = "a" if i % 2 == 0 else "b"
        k = int(rng.integers(2, 7))
        lens = [int(v) for v in rng.choice([100, -100, 200, -900], size=k)]
        lens[0] = abs(lens[0])
        gaps = [0.0]
        for j in range(1, k):
            if c == "b":
                gaps.append(float(rng.uniform(0.9, 1.1)))
            else:
                gaps.append(0.01 * float(rng.uniform(0.9, 1.1)) if np.sign(lens[j]) != np.sign(lens[j - 1]) else 1e-6)
        seqs.append(lens)
        iats.append(gaps)
        labels.append(c)
    return FlowSet.from_sequences(seqs, labels=labels, iat=iats, max_packets=6)


def test_iat_chain_reproduces_conditional_timing(rng):
    flows = _timed_flows()
    chain = IATChain().fit(flows, flows.classes)
    iat = chain.sample(flows, flows.classes, rng)
    assert (iat[:, 0] == 0).all() and (iat[~flows.valid_mask] == 0).all()
    later = flows.valid_mask.copy()
    later[:, :1] = False
    change = np.zeros(later.shape, dtype=bool)
    change[:, 1:] = flows.directions[:, 1:] != flows.directions[:, :-1]
    a = (flows.labels == "a")[:, None] & later
    # class a: answers around 10 ms, bursts at 1 us; class b: about 1 s (>= 98 % inside the ranges)
    assert np.mean((iat[a & change] > 0.008) & (iat[a & change] < 0.012)) > 0.98
    assert np.mean(np.abs(iat[a & ~change] - 1e-6) < 1e-7) > 0.98
    b = (flows.labels == "b")[:, None] & later
    assert np.mean((iat[b] > 0.85) & (iat[b] < 1.15)) > 0.98
    # a proper distribution over the bins for a context seen in training and one never seen
    ctx = dict(cls=np.zeros(92, np.int64), change=np.ones(92, np.int64), prev=np.full(92, 92))
    for cls_id in (0, 5):
        keys = chain._keys(np.full(92, cls_id), ctx["change"], ctx["prev"])
        assert chain._level_probability(keys, np.arange(92)).sum() == pytest.approx(1.0, abs=1e-12)
    # the held-out likelihood prefers the real timing to shuffled timing
    ll, k = chain.log_likelihood_bins(flows, flows.classes)
    shuffled = flows[np.arange(len(flows))]
    shuffled.iat = flows.iat[rng.permutation(len(flows))] * flows.valid_mask
    ll_s, _ = chain.log_likelihood_bins(shuffled, flows.classes)
    assert k == int(later.sum()) and ll.sum() > ll_s.sum() + k * 0.5


def test_markov_timing_auto_off_and_save_load(tmp_path):
    flows = _timed_flows()
    m = MarkovGenerator(order=1).fit(flows)  # "auto": the flows carry IATs
    s = m.sample(300, random_state=4)
    assert s.iat is not None and IATJSD().compute(flows, s) < 0.1
    off = MarkovGenerator(order=1, timing=False).fit(flows).sample(300, random_state=4)
    assert off.iat is None and np.array_equal(off.lengths, s.lengths)  # lengths do not depend on timing
    m.save_pretrained(tmp_path / "m")
    back = load_generator(tmp_path / "m").sample(300, random_state=4)
    assert np.array_equal(back.lengths, s.lengths) and np.array_equal(back.iat, s.iat)
    no_iat = FlowSet.from_sequences([[100, -100]] * 10, labels=["a"] * 10, max_packets=4)
    assert MarkovGenerator(timing="auto").fit(no_iat).timing_ is None
    with pytest.raises(Exception, match="inter-arrival"):
        MarkovGenerator(timing=True).fit(no_iat)


@pytest.mark.parametrize("mode", [True, "head"])
def test_llama_timing_learns_and_round_trips(mode, tmp_path):
    from trafficgen.generators.llama import LlamaGenerator

    flows = _timed_flows(300)
    g = LlamaGenerator(preset="tiny", epochs=12, batch_size=32, learning_rate=1e-2, timing=mode,
                       random_state=0, progress=False).fit(flows)
    assert (g.timing_chain_ is not None) is (mode is True) and (g.timing_head_ is not None) is (mode == "head")
    s = g.sample(300, random_state=5)
    assert s.iat is not None and (s.iat[:, 0] == 0).all() and (s.iat[~s.valid_mask] == 0).all()
    assert IATJSD().compute(flows, s) < 0.15
    ll, k = g.timing_log_likelihood(flows)
    uniform_bits = np.log2(92)
    assert -ll.sum() / np.log(2) / k < 0.5 * uniform_bits  # learned well below the uniform's 6.5 bits
    plain = LlamaGenerator(preset="tiny", epochs=12, batch_size=32, learning_rate=1e-2, random_state=0,
                           progress=False).fit(flows)
    assert np.array_equal(plain.sample(300, random_state=5).lengths, s.lengths)  # the same length model
    assert plain.sample(300, random_state=5).iat is None
    g.save_pretrained(tmp_path / "g")
    back = load_generator(tmp_path / "g")
    s2 = back.sample(300, random_state=5)
    assert np.array_equal(s2.lengths, s.lengths) and np.array_equal(s2.iat, s.iat)
    with pytest.raises(Exception, match="inter-arrival"):
        LlamaGenerator(preset="tiny", epochs=1, timing=True, progress=False).fit(
            FlowSet.from_sequences([[100, -100]] * 10, labels=["a"] * 10, max_packets=4))
