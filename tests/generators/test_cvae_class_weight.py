"""CVAEGenerator ``class_weight``: the per-flow weights ``n_class ** -alpha`` (mean 1), the weighted
training loss, off by default (the unweighted loss and saved config unchanged), save/load."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError
from trafficgen.generators.cvae import CVAEGenerator, class_balance_weights, training_loss

TINY = dict(preset="tiny", batch_size=16, learning_rate=3e-3, val_fraction=0.0, random_state=0, progress=False)


def unbalanced_flows(n_small: int = 48, n_large: int = 8, seed: int = 0) -> FlowSet:
    """'small' flows: lengths in [100, 200); 'large': [1000, 1400); signs + - + -, 4 packets."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for cls, k, (lo, hi) in (("small", n_small, (100, 200)), ("large", n_large, (1000, 1400))):
        for _ in range(k):
            seqs.append((rng.integers(lo, hi, 4) * np.array([1, -1, 1, -1])).tolist())
            labels.append(cls)
    return FlowSet.from_sequences(seqs, labels, max_packets=6)


def test_weights_of_a_toy_label_vector():
    y = np.array([0, 0, 0, 1, 2, 2])  # class sizes 3, 1, 2
    w1 = class_balance_weights(y, 1.0)
    raw = np.array([1 / 3, 1 / 3, 1 / 3, 1.0, 1 / 2, 1 / 2])
    np.testing.assert_allclose(w1, raw / raw.mean(), rtol=1e-12)
    np.testing.assert_allclose(w1, [2 / 3, 2 / 3, 2 / 3, 2.0, 1.0, 1.0], rtol=1e-12)  # raw mean 1 / 2
    assert w1.mean() == pytest.approx(1.0, abs=1e-12)
    # alpha = 1: every class carries the same total weight (here 6 flows / 3 classes = 2 each)
    np.testing.assert_allclose([w1[y == c].sum() for c in range(3)], [2.0, 2.0, 2.0], rtol=1e-12)
    w_half = class_balance_weights(y, 0.5)
    assert w_half.mean() == pytest.approx(1.0, abs=1e-12)
    assert w_half[3] / w_half[0] == pytest.approx(math.sqrt(3.0), rel=1e-12)  # (1 / 3) ** -0.5
    assert w_half[4] / w_half[0] == pytest.approx(math.sqrt(1.5), rel=1e-12)  # (2 / 3) ** -0.5
    np.testing.assert_array_equal(class_balance_weights(y, 0.0), np.ones(6))
    # labels need not be 0..C-1 nor sorted
    np.testing.assert_allclose(class_balance_weights(np.array([7, 3, 7, 7]), 1.0), [2 / 3, 2.0, 2 / 3, 2 / 3])


def test_training_loss_unweighted_is_the_plain_formula_and_weighted_the_weighted_one():
    g = torch.Generator().manual_seed(0)
    rec = torch.rand(5, generator=g) * 30  # (B,)
    kl = torch.rand(5, 3, generator=g) * 0.3  # (B, Z): some dimensions under the floor
    beta, free = 0.7, 0.1
    plain = rec.mean() + beta * kl.mean(0).clamp_min(free).sum()  # the loss before the option
    assert torch.equal(training_loss(rec, kl, beta, free), plain)
    assert training_loss(rec, kl, beta, free, torch.ones(5)).item() == pytest.approx(plain.item(), rel=1e-6)
    w = torch.tensor([0.5, 0.5, 1.0, 1.0, 2.0])
    expected = (sum(float(w[i] * rec[i]) for i in range(5)) / 5
                + beta * sum(max(sum(float(w[i] * kl[i, d]) for i in range(5)) / 5, free) for d in range(3)))
    assert training_loss(rec, kl, beta, free, w).item() == pytest.approx(expected, rel=1e-6)
    assert abs(training_loss(rec, kl, beta, free, w).item() - plain.item()) > 1e-3


def _state(gen):
    return {k: v.clone() for k, v in gen.model_.state_dict().items()}


def test_class_weight_zero_is_the_default_and_positive_changes_training():
    flows = unbalanced_flows()
    default = CVAEGenerator(epochs=3, **TINY).fit(flows)
    zero = CVAEGenerator(epochs=3, class_weight=0.0, **TINY).fit(flows)
    assert default.class_weight == 0.0
    assert zero.history_["train_loss"] == default.history_["train_loss"]
    s0, sd = _state(zero), _state(default)
    assert all(torch.equal(s0[k], sd[k]) for k in sd)
    weighted = CVAEGenerator(epochs=3, class_weight=1.0, **TINY).fit(flows)
    # 'large' (8 of 56 flows, lengths ~1000+) now weighs as much as 'small': the first-epoch loss differs
    assert abs(weighted.history_["train_loss"][0] - default.history_["train_loss"][0]) > 1e-3


def test_balanced_data_makes_the_weights_a_no_op():
    flows = unbalanced_flows(n_small=24, n_large=24)
    a = CVAEGenerator(epochs=2, **TINY).fit(flows)
    b = CVAEGenerator(epochs=2, class_weight=1.0, **TINY).fit(flows)
    np.testing.assert_allclose(b.history_["train_loss"], a.history_["train_loss"], rtol=1e-5)


def test_save_load_round_trips_class_weight(tmp_path):
    flows = unbalanced_flows()
    gen = CVAEGenerator(epochs=1, class_weight=0.5, **TINY).fit(flows)
    gen.save_pretrained(tmp_path / "w")
    assert json.loads((tmp_path / "w" / "config.json").read_text())["params"]["class_weight"] == 0.5
    loaded = CVAEGenerator.from_pretrained(tmp_path / "w")
    assert loaded.class_weight == 0.5
    a, b = gen.sample(20, random_state=3), loaded.sample(20, random_state=3)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    # off (the default): config.json is written as before the option existed, and loads as 0
    CVAEGenerator(epochs=1, **TINY).fit(flows).save_pretrained(tmp_path / "d")
    assert "class_weight" not in json.loads((tmp_path / "d" / "config.json").read_text())["params"]
    assert CVAEGenerator.from_pretrained(tmp_path / "d").class_weight == 0.0


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_bad_class_weight_is_refused(bad):
    with pytest.raises(ConfigError, match="class_weight"):
        CVAEGenerator(epochs=1, class_weight=bad, **TINY).fit(unbalanced_flows())


# ---------------------------------------------------------------- class_prior_mean (same issue, off by default)
def test_kl_against_a_class_prior_mean():
    from trafficgen.generators.cvae_network import CategoricalCVAE

    mu, logvar = torch.tensor([[1.0, -0.5]]), torch.tensor([[0.0, math.log(0.25)]])
    loc = torch.tensor([[1.0, 0.5]])
    # 0.5 (d^2 + var - 1 - log var) per dimension, d = mu - loc
    expected = [0.0, 0.5 * (1.0 + 0.25 - 1.0 - math.log(0.25))]
    np.testing.assert_allclose(CategoricalCVAE.kl_per_dim(mu, logvar, loc)[0].tolist(), expected, rtol=1e-6)
    assert torch.equal(CategoricalCVAE.kl_per_dim(mu, logvar, None), CategoricalCVAE.kl_per_dim(mu, logvar))
    np.testing.assert_allclose(CategoricalCVAE.kl_per_dim(mu, logvar)[0].tolist(),
                               [0.5, 0.5 * (0.25 + 0.25 - 1.0 - math.log(0.25))], rtol=1e-6)


def test_class_prior_mean_off_has_no_parameter_on_is_saved_and_used(tmp_path):
    flows = unbalanced_flows()
    off = CVAEGenerator(epochs=1, **TINY).fit(flows)
    assert "prior_mean" not in off.model_.state_dict() and off.model_.prior_loc(torch.tensor([0])) is None
    on = CVAEGenerator(epochs=2, class_prior_mean=True, free_bits=0.0, **TINY).fit(flows)
    m = on.model_.prior_mean
    assert tuple(m.shape) == (2, on.model_.config.latent_dim)
    assert float(m.detach().abs().max()) > 0  # learned (it starts at 0; no free-bits floor here)
    with torch.no_grad():  # ... and sampling draws around it: pretend the means are far apart
        m.copy_(torch.tensor([[4.0] * m.shape[1], [-4.0] * m.shape[1]]))
    on.save_pretrained(tmp_path / "pm")
    config = json.loads((tmp_path / "pm" / "config.json").read_text())["params"]
    assert config["class_prior_mean"] is True and "class_weight" not in config
    loaded = CVAEGenerator.from_pretrained(tmp_path / "pm")
    assert torch.equal(loaded.model_.prior_mean, m.detach())
    a = loaded.sample(30, cls="large", random_state=1, latent="prior")  # the prior (not the aggregate posterior)
    np.testing.assert_array_equal(a.lengths, on.sample(30, cls="large", random_state=1, latent="prior").lengths)
    with torch.no_grad():
        loaded.model_.prior_mean.zero_()
    assert not np.array_equal(a.lengths, loaded.sample(30, cls="large", random_state=1, latent="prior").lengths)
