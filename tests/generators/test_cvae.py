"""CVAEGenerator: loss falls, same seed -> same flows, save/load, class conditioning."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import UnknownClassError
from trafficgen.generators.cvae import CVAEGenerator
from trafficgen.registry import get_generator


def toy_flows(n: int, seed: int = 0) -> FlowSet:
    """Two separable classes: 'small' lengths in [100, 200), 'large' in [1000, 1400), signs + - + - + -,
    6 packets in width 8 (2 padding positions)."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        lo, hi = ((100, 200), (1000, 1400))[i % 2]
        seqs.append((rng.integers(lo, hi, 6) * np.array([1, -1, 1, -1, 1, -1])).tolist())
        labels.append(("small", "large")[i % 2])
    return FlowSet.from_sequences(seqs, labels, max_packets=8)


def predicted_class(flows: FlowSet) -> np.ndarray:
    """Rule: mean |length| of the flow above 600 -> 'large'."""
    mean = np.abs(flows.lengths).sum(1) / np.maximum(flows.n_packets, 1)
    return np.where(mean > 600, "large", "small")


@pytest.fixture(scope="module")
def fitted():
    return CVAEGenerator(preset="tiny", epochs=40, batch_size=32, learning_rate=3e-3, val_fraction=0.0,
                         random_state=0, progress=False).fit(toy_flows(200))


def test_registry_and_params():
    assert get_generator("cvae") is CVAEGenerator
    assert {"preset", "epochs", "batch_size", "random_state", "max_packets", "progress"} <= set(
        CVAEGenerator().get_params())


def test_loss_falls_and_fitted_attributes(fitted):
    loss = fitted.history_["train_loss"]
    assert loss[-1] < loss[0] - 1.0
    assert fitted.classes_ == ["large", "small"]
    np.testing.assert_allclose(fitted.class_prior_, [0.5, 0.5])
    assert fitted.max_packets_ == 8 and 1000 <= fitted.mapper_.scale_ <= 1399


def test_same_seed_same_flows(fitted):
    a = fitted.sample(64, random_state=7)
    b = fitted.sample(64, random_state=7)
    c = fitted.sample(64, random_state=8)
    assert a == b
    assert not np.array_equal(a.lengths, c.lengths)
    assert len(a) == 64 and a.max_packets == 8 and set(a.labels) <= {"small", "large"}
    assert np.all(a.lengths[a.n_packets > 0, 0] > 0)


def test_same_seed_same_model():
    kw = dict(preset="tiny", epochs=2, batch_size=32, val_fraction=0.0, random_state=3, progress=False)
    a = CVAEGenerator(**kw).fit(toy_flows(40)).sample(16, random_state=1)
    b = CVAEGenerator(**kw).fit(toy_flows(40)).sample(16, random_state=1)
    assert a == b


def test_save_load_equal(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "cvae")
    assert {p.name for p in (tmp_path / "cvae").iterdir()} == {"config.json", "model.safetensors", "gasf.json"}
    loaded = CVAEGenerator.from_pretrained(tmp_path / "cvae")
    assert loaded.get_params() == fitted.get_params()
    assert loaded.sample(32, random_state=5) == fitted.sample(32, random_state=5)


def test_class_conditioning(fitted):
    out = fitted.sample(200, cls=["small", "large"], random_state=11)
    assert (predicted_class(out) == out.labels).mean() >= 0.9
    with pytest.raises(UnknownClassError):
        fitted.sample(2, cls="nope")
