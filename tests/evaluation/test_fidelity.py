"""JSD fidelity metrics: identities, hand-computed cases, union support, ranking on real flows."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.fidelity import (
    BigramJSD,
    LengthJSD,
    MarkovJSD,
    PacketCountJSD,
    fidelity_metrics,
    histogram_jsd,
    jsd,
)
from trafficgen.evaluation.metric import ALL

# JSD([1, 0], [1/2, 1/2]) by hand: M = (3/4, 1/4); KL(P||M) = log2(4/3); KL(Q||M) = (log2(2/3) + 1) / 2
HAND = 0.5 * (math.log2(4 / 3) + 0.5 * (math.log2(2 / 3) + 1.0))


def fs(seqs, labels=None, width=None):
    return FlowSet.from_sequences(seqs, labels=labels, max_packets=width)


def test_jsd_identities_and_hand_case():
    assert jsd([3, 1, 0], [6, 2, 0]) == 0.0
    assert jsd([1, 0], [0, 5]) == 1.0
    assert jsd([1, 0], [1, 1]) == pytest.approx(HAND, abs=1e-12)
    assert HAND == pytest.approx(0.3112781244591328)
    assert jsd([0, 0], [0, 0]) == 0.0 and jsd([0], [2]) == 1.0


def test_every_metric_zero_on_identical_and_one_on_disjoint(rng):
    seqs = [rng.integers(1, 50, size=rng.integers(2, 6)).tolist() for _ in range(40)]
    a = fs(seqs, width=6)
    far = fs([[s[0] + 1000] + [-(x + 1000) for x in s[1:]] + [7777] * (7 - len(s)) for s in seqs], width=7)
    for m in fidelity_metrics():
        assert m.compute(a, a) == 0.0, m.name
    for m in (LengthJSD(), BigramJSD(), MarkovJSD()):
        assert m.compute(a, far) == 1.0, m.name
    # packet counts 2..5 vs always 6 (cut to the common width 6): disjoint
    assert PacketCountJSD().compute(a, far) == 1.0


def test_synthetic_mass_outside_real_range_counts():
    real = fs([[100, -100]] * 4)
    syn = fs([[100, -100], [100, -100], [5000, -9000], [5000, -9000]])
    assert LengthJSD().compute(real, syn) == pytest.approx(HAND)
    assert BigramJSD().compute(real, syn) == pytest.approx(HAND)


def test_markov_hand_computed():
    real = fs([[1, 2], [1, 3]])
    assert MarkovJSD().compute(real, fs([[1, 2]])) == pytest.approx(HAND)
    # synthetic-only row 5 (JSD 1) weighs (0 + 1/2) / 2; row 1 weighs (1 + 1/2) / 2
    assert MarkovJSD().compute(real, fs([[1, 2], [5, 6]])) == pytest.approx(0.75 * HAND + 0.25)
    # bigrams {(1,2),(1,3)} vs {(1,2),(5,6)}: P=(1/2,1/2,0), Q=(1/2,0,1/2) -> 1/2
    assert BigramJSD().compute(real, fs([[1, 2], [5, 6]])) == pytest.approx(0.5)
    # no transitions on one side only -> 1; on neither -> 0
    assert MarkovJSD().compute(real, fs([[1], [1]], width=2)) == 1.0
    assert MarkovJSD().compute(fs([[4]]), fs([[1]])) == 0.0


def test_packet_count_hand_case_and_width_alignment():
    real = fs([[1], [1, -2]])  # counts {1: 1/2, 2: 1/2}
    syn = fs([[1, -2, 3], [1, -2, 3, 4]], width=4)  # cut to width 2: both count 2
    assert PacketCountJSD().compute(real, syn) == pytest.approx(HAND)


def test_breakdown_per_class_and_missing_class():
    real = fs([[1, 2], [1, 2], [7, -7]], labels=["a", "a", "b"])
    syn = fs([[1, 2]], labels=["a"])
    br = LengthJSD().compute_breakdown(real, syn)
    assert br == {"a": 0.0, "b": 1.0}
    assert LengthJSD().compute(real, syn) == 0.5
    assert LengthJSD().compute_breakdown(real.with_labels(None), syn) == {ALL: histogram_jsd([1, 2, 1, 2, 7, -7], [1, 2])}


def test_vectorised_on_10k_flows_matches_loop(rng):
    n, w = 10_000, 16
    lens = rng.integers(1, 30, size=(n, w)) * rng.choice([-1, 1], size=(n, w))
    lens[:, 0] = np.abs(lens[:, 0])
    a = fs([r[: rng.integers(1, w + 1)].tolist() for r in lens], width=w)
    b = fs([r[: rng.integers(1, w + 1)].tolist() for r in lens[::-1]], width=w)
    # loop reference for the bigram histogram
    from collections import Counter

    def pairs(x):
        return Counter((s[j], s[j + 1]) for s in x.sequences() for j in range(len(s) - 1))

    ca, cb = pairs(a), pairs(b)
    keys = sorted(set(ca) | set(cb))
    ref = jsd([ca[k] for k in keys], [cb[k] for k in keys])
    assert BigramJSD().compute(a, b) == pytest.approx(ref, abs=1e-12)


def test_ranking_real_then_shuffled_then_noise():
    from trafficgen.datasets import load_cicdoh20

    width = 32
    # two halves of the shipped CICDOH20 flows: real vs real must beat shuffled and noise
    ref, real = load_cicdoh20().truncate(width).train_test_split(0.5, random_state=0)
    rng = np.random.default_rng(0)
    # shuffled: every signed length of every class pooled, permuted and refilled into flows with
    # permuted packet counts (1-grams/pairs lose their class and their order)
    counts = real.n_packets[rng.permutation(len(real))]
    pool = rng.permutation(real.lengths[real.valid_mask])
    shuffled = fs(np.split(pool, np.cumsum(counts)[:-1]), labels=real.labels, width=width)
    values = np.r_[-1500:0, 1:1501]
    noise = fs([rng.choice(values, k) for k in rng.integers(1, width + 1, len(real))], labels=real.labels, width=width)
    for m in fidelity_metrics():
        r, s, u = (m.compute(ref, x) for x in (real, shuffled, noise))
        assert r < s < u, (m.name, r, s, u)


# ---------------------------------------------------------------------- IAT JSD
def timed(seqs, iats, labels=None):
    return FlowSet.from_sequences(seqs, labels=labels, iat=iats)


def test_iat_jsd_identities_and_hand_case():
    from trafficgen.evaluation.fidelity import IATJSD

    m = IATJSD()
    # events (direction changed?, IAT): real same-direction 1 ms x2, changes 50 ms x2
    real = timed([[10, 20, -30], [10, 20, -30]], [[0, 1e-3, 0.05]] * 2)
    assert m.compute(real, real) == 0.0
    # same-direction events half at 1 ms, half at 10 s; changes unchanged: JSD_same = HAND, weight 1/2
    syn = timed([[10, 20, -30], [10, 20, -30]], [[0, 1e-3, 0.05], [0, 10.0, 0.05]])
    assert m.compute(real, syn) == pytest.approx(0.5 * HAND, abs=1e-12)
    far = timed([[10, 20, -30]], [[0, 100.0, 200.0]])
    assert m.compute(real, far) == 1.0
    # the same pooled IATs under swapped conditions are not the same timing
    swapped = timed([[10, 20, -30], [10, 20, -30]], [[0, 0.05, 1e-3]] * 2)
    assert m.compute(real, swapped) == 1.0
    # a condition on one side only: JSD 1 for it, weighted by its mean mass (1/2 + 0) / 2
    no_change = timed([[10, 20, 30]], [[0, 1e-3, 1e-3]])
    assert m.compute(real, no_change) == pytest.approx(0.75 * 0.0 + 0.25 * 1.0)
    # events on one side only: 1; on neither: 0
    single = FlowSet.from_sequences([[10]], iat=[[0.0]], max_packets=3)
    assert m.compute(single, single) == 0.0 and m.compute(real, single) == 1.0


def test_iat_jsd_bins():
    from trafficgen.evaluation.fidelity import IATJSD

    m = IATJSD(bins_per_decade=5)
    b = m.bin_index(np.array([0.0, 9.9e-7, 1e-6, 1.5e-6, 1.6e-6, 1e-5, 999.0, 1e3, 1e7, np.inf]))
    assert b.tolist() == [0, 0, 1, 1, 2, 6, 45, 46, 46, 46]
    coarse = IATJSD(bins_per_decade=1)
    # 2 ms and 5 ms share a decade: identical for the coarse grid, different for the fine one
    a, c = timed([[1, 2]], [[0, 2e-3]]), timed([[1, 2]], [[0, 5e-3]])
    assert coarse.compute(a, c) == 0.0 and m.compute(a, c) == 1.0
    assert m.describe() == {"name": "iat_jsd", "direction": "lower", "range": [0.0, 1.0], "bins_per_decade": 5,
                            "min_iat": 1e-6, "max_iat": 1e3}


def test_iat_jsd_is_nan_without_timing():
    from trafficgen.evaluation.fidelity import IATJSD

    real = timed([[10, -20], [5, 6]], [[0, 0.1], [0, 0.2]], labels=["a", "b"])
    untimed = FlowSet.from_sequences([[10, -20], [5, 6]], labels=["a", "b"])
    for x, y in ((real, untimed), (untimed, real), (untimed, untimed)):
        br = IATJSD().compute_breakdown(x, y)
        assert set(br) == {"a", "b"} and all(math.isnan(v) for v in br.values())
        assert math.isnan(IATJSD().compute(x, y))


def test_iat_jsd_ranks_real_floor_then_empirical_then_default_timing(tmp_path):
    """On nDPI (CICDOH20 as shipped has no timing): the real-vs-real floor beats Markov samples
    exported with IATs drawn from the training flows, which beat the default IATs; Markov's own
    timing (its IAT chain) beats the empirical fallback."""
    import warnings

    from trafficgen.data.flows.pcap_writer import write_pcap
    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.evaluation.fidelity import IATJSD
    from trafficgen.generators.markov import MarkovGenerator

    train, test = load_ndpi_apps().train_test_split(0.5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = MarkovGenerator(timing=False).fit(train).sample(len(test), random_state=0)
        timed_samples = MarkovGenerator().fit(train).sample(len(test), random_state=0)
        empirical = write_pcap(samples, tmp_path / "e.pcap", timing_from=train, random_state=0).flows
        default = write_pcap(samples, tmp_path / "d.pcap", random_state=0).flows
    m = IATJSD()
    floor, emp, dflt = m.compute(test, train), m.compute(test, empirical), m.compute(test, default)
    own = m.compute(test, timed_samples)
    assert floor < emp < dflt, (floor, emp, dflt)
    assert own < emp, (own, emp)
    assert 0.05 < floor < 0.3 and dflt > 0.4
