"""SmoteGenerator and FastRetransmitGenerator (baselines of the augmentation experiment)."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, UnknownClassError
from trafficgen.generators.fast_retransmit import FastRetransmitGenerator, retransmit
from trafficgen.generators.smote import SmoteGenerator
from trafficgen.registry import get_generator, load_generator
from trafficgen.representations.features import features_to_flows, flow_features


@pytest.fixture
def flows(rng):
    seqs, labels = [], []
    for c, base in (("web", 500), ("dns", 60)):
        for _ in range(12):
            k = int(rng.integers(2, 7))
            seqs.append([base + int(rng.integers(0, 20)) * (1 if j % 2 == 0 else -1) for j in range(k)])
            labels.append(c)
    seqs.append([1400])  # a class with a single flow
    labels.append("solo")
    return FlowSet.from_sequences(seqs, labels=labels, max_packets=8)


def test_features_padding_and_validation():
    f = FlowSet.from_sequences([[5, -3], [7]], max_packets=3)
    X = flow_features(f, 4)
    assert X.tolist() == [[5, -3, 0, 0], [7, 0, 0, 0]]
    back = features_to_flows([[-4.6, 2.2, 0.3, 9.0], [0.2, -3.0, 0.0, 0.0], [1e6, -1e6, 5, 6]])
    assert back.sequences() == [[5, 2], [1, -3], [65535, -65535, 5, 6]]
    assert back.max_packets == 4


def test_retransmit_hand_cases():
    f = FlowSet.from_sequences([[10, -20, 30], [5, -6, 7, -8], [1]], labels=list("aab"), max_packets=4)
    out = retransmit(f, p=1.0, random_state=0)
    assert out.labels.tolist() == list("aab")
    for before, after in zip(f.sequences(), out.sequences(), strict=True):
        # one packet duplicated right after itself, cut to 4 packets
        j = next((i for i in range(len(after) - 1) if after[i] == after[i + 1]), None)
        assert j is not None or len(before) == 4
        if j is not None:
            assert (before[: j + 1] + [before[j]] + before[j + 1:])[:4] == after
    assert retransmit(f, p=0.0, random_state=0) == FlowSet(lengths=f.lengths, n_packets=f.n_packets, labels=f.labels)
    cl = retransmit(FlowSet.from_sequences([[3, -4, -5, 0][:3]], max_packets=5), p=1.0, target="client",
                    random_state=3)
    assert cl.sequences() == [[3, 3, -4, -5]]  # only the client->server packet can be duplicated
    with pytest.raises(ConfigError):
        retransmit(f, p=1.5)
    with pytest.raises(ConfigError):
        retransmit(f, target="server")


def test_fast_retransmit_generator(flows, tmp_path):
    g = FastRetransmitGenerator(p=0.7).fit(flows)
    s = g.sample(50, cls="web", random_state=1)
    assert set(s.labels) == {"web"} and len(s) == 50
    assert s == g.sample(50, cls="web", random_state=1)
    web = flows.select("web").sequences()
    allowed = {tuple(r) for r in web} | {tuple((r[: j + 1] + [r[j]] + r[j + 1:])[:8]) for r in web
                                         for j in range(len(r))}
    assert all(tuple(seq) in allowed for seq in s.sequences())
    assert sum(tuple(seq) not in {tuple(r) for r in web} for seq in s.sequences()) > 20  # p=0.7 of 50
    g.save_pretrained(tmp_path / "fr")
    g2 = load_generator(tmp_path / "fr")
    assert isinstance(g2, FastRetransmitGenerator) and g2.get_params() == g.get_params()
    assert g2.sample(30, random_state=4) == g.sample(30, random_state=4)
    with pytest.raises(UnknownClassError):
        g.sample(2, cls="ftp")
    assert get_generator("fast_retransmit") is FastRetransmitGenerator


def test_smote_generator_interpolates_same_class_neighbours(flows, tmp_path):
    g = SmoteGenerator(k_neighbors=3).fit(flows)
    s = g.sample(200, cls=["web", "dns", "solo"], random_state=0)
    assert s.class_counts() == {"dns": 67, "solo": 66, "web": 67}
    assert s == g.sample(200, cls=["web", "dns", "solo"], random_state=0)
    assert all(seq == [1400] for seq in s.select("solo").sequences())  # 1 flow: copies
    assert np.all(s.lengths[:, 0] > 0)
    for c, base in (("web", 500), ("dns", 60)):
        first = s.select(c).lengths[:, 0]
        assert first.min() >= base and first.max() <= base + 19  # inside the class's hull
    # the neighbour lists are same-class and exclude the point itself
    for i, nb in enumerate(g.neighbors_):
        nb = nb[nb >= 0]
        assert i not in nb and np.all(g.y_[nb] == g.y_[i])
    g.save_pretrained(tmp_path / "sm")
    g2 = load_generator(tmp_path / "sm")
    assert g2.sample(40, random_state=2) == g.sample(40, random_state=2)
    assert get_generator("smote") is SmoteGenerator
