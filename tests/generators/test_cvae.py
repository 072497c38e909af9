"""CVAEGenerator: loss falls, valid flows by construction, same seed -> same flows, save/load,
class conditioning, the likelihood bound, devices."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, UnknownClassError
from trafficgen.evaluation.likelihood import likelihood_summary
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


def ragged_flows(n: int, seed: int = 0) -> FlowSet:
    """Two classes with different flow lengths and a flow-level mode: an 'a' flow repeats one of
    two exchanges, (+100, -1400) or (+120, -800), 1-3 times; a 'b' flow one of (+300, -60) or
    (+320, -90), 4-6 times. Which exchange and how many is not given by the class: a decoder
    gets them right together only through z."""
    rng = np.random.default_rng(seed)
    modes = {"a": [[100, -1400], [120, -800]], "b": [[300, -60], [320, -90]]}
    seqs, labels = [], []
    for i in range(n):
        cls = "ab"[i % 2]
        k = int(rng.integers(1, 4) if cls == "a" else rng.integers(4, 7))
        seqs.append(modes[cls][int(rng.integers(2))] * k)
        labels.append(cls)
    return FlowSet.from_sequences(seqs, labels, max_packets=12)


TINY = dict(preset="tiny", batch_size=32, learning_rate=3e-3, val_fraction=0.0, random_state=0, progress=False)


@pytest.fixture(scope="module")
def fitted():  # ~5 s of CPU: 30 epochs x 7 batches
    return CVAEGenerator(epochs=30, **TINY).fit(toy_flows(200))


@pytest.fixture(scope="module")
def ragged():
    return CVAEGenerator(epochs=60, **TINY).fit(ragged_flows(200))


def test_registry_and_params():
    assert get_generator("cvae") is CVAEGenerator
    params = CVAEGenerator().get_params()
    assert {"preset", "epochs", "batch_size", "random_state", "max_packets", "progress", "device",
            "kl_warmup", "free_bits", "temperature", "z_temperature", "patience"} <= set(params)
    assert params["device"] == "auto"
    assert CVAEGenerator.likelihood_kind.startswith("elbo")


def test_loss_falls_and_fitted_attributes(fitted):
    loss = fitted.history_["train_loss"]  # nats per flow; the class-bias start is the class marginal
    # the toy's entropy given the class: 6 log 100 ('small') and 6 log 400 ('large'), mean 31.8 nats
    assert loss[-1] < loss[0] - 5.0 and loss[-1] < 33.0
    assert fitted.classes_ == ["large", "small"]
    np.testing.assert_allclose(fitted.class_prior_, [0.5, 0.5])
    assert fitted.max_packets_ == 8 and fitted.tokenizer_.classes == ["large", "small"]
    seen = set(np.unique(toy_flows(200).lengths[toy_flows(200).valid_mask]).tolist())
    vocab = fitted.tokenizer_.id_to_length(np.flatnonzero(fitted.model_.class_vocab.any(0).numpy()) + 2)
    assert set(vocab.tolist()) == seen


def test_samples_valid_by_construction(fitted, ragged):
    train = toy_flows(200)
    seen = set(np.unique(train.lengths[train.valid_mask]).tolist())
    for gen, t in ((fitted, 1.0), (fitted, 3.0), (ragged, 1.0)):
        out = gen.sample(300, random_state=4, temperature=t, z_temperature=t)
        assert np.all(out.n_packets >= 1) and np.all(out.n_packets <= gen.max_packets_)
        assert np.all(out.lengths[:, 0] > 0)  # the client sends first
        assert np.all(out.lengths[~out.valid_mask] == 0)
        if gen is fitted:
            assert set(np.unique(out.lengths[out.valid_mask]).tolist()) <= seen
    assert np.all(fitted.sample(50, random_state=1).n_packets == 6)


def _consistent(out: FlowSet) -> float:
    """Share of flows whose exchanges are all one real exchange."""
    real = {(100, -1400), (120, -800), (300, -60), (320, -90)}
    ok = []
    for row, k in zip(out.lengths, out.n_packets, strict=True):
        pairs = {(int(row[j]), int(row[j + 1])) for j in range(0, k - 1, 2)}
        ok.append(k % 2 == 0 and len(pairs) == 1 and pairs <= real)
    return float(np.mean(ok))


def test_flow_length_and_mode_learned(ragged):
    """The count head learns each class's flow lengths; the exchanges of a flow agree with each
    other (the first-order decoder sees the previous length)."""
    out = ragged.sample(400, cls=["a", "b"], random_state=3)
    a, b = out.n_packets[out.labels == "a"], out.n_packets[out.labels == "b"]
    assert np.mean(np.isin(a, [2, 4, 6])) > 0.9 and np.mean(np.isin(b, [8, 10, 12])) > 0.9
    assert _consistent(out) > 0.9


def test_latent_in_use_when_the_decoder_needs_it():
    """With ``context=0`` and no GRU the positions are independent given z, so only z can tie a
    flow's exchanges together: the KL stays above the mode's log 2 = 0.69 nats (no posterior collapse)."""
    gen = CVAEGenerator(epochs=60, context=0, recurrent=0, **TINY).fit(ragged_flows(200))
    assert gen.history_["kl"][-1] > 0.5


def test_same_seed_same_flows(fitted):
    a = fitted.sample(64, random_state=7)
    b = fitted.sample(64, random_state=7)
    c = fitted.sample(64, random_state=8)
    assert a == b
    assert not np.array_equal(a.lengths, c.lengths)
    assert len(a) == 64 and a.max_packets == 8 and set(a.labels) <= {"small", "large"}
    greedy = fitted.sample(8, cls="small", temperature=0, z_temperature=0, random_state=1)
    assert np.all(greedy.lengths == greedy.lengths[0])  # z = prior mean, argmax everywhere


def test_same_seed_same_model():
    kw = dict(preset="tiny", epochs=2, batch_size=32, val_fraction=0.0, random_state=3, progress=False)
    a = CVAEGenerator(**kw).fit(toy_flows(40)).sample(16, random_state=1)
    b = CVAEGenerator(**kw).fit(toy_flows(40)).sample(16, random_state=1)
    assert a == b


def test_save_load_equal(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "cvae")
    assert {p.name for p in (tmp_path / "cvae").iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    loaded = CVAEGenerator.from_pretrained(tmp_path / "cvae")
    assert loaded.get_params() == fitted.get_params()
    assert loaded.sample(32, random_state=5) == fitted.sample(32, random_state=5)
    np.testing.assert_array_equal(loaded.log_likelihood(toy_flows(8, seed=3)), fitted.log_likelihood(toy_flows(8, seed=3)))


def test_class_conditioning(fitted):
    out = fitted.sample(200, cls=["small", "large"], random_state=11)
    assert (predicted_class(out) == out.labels).mean() >= 0.9
    with pytest.raises(UnknownClassError):
        fitted.sample(2, cls="nope")


def test_log_likelihood_is_a_bound(ragged):
    """ELBO <= importance-weighted bound <= log p(x | c) (estimated with many prior draws), each up
    to Monte Carlo noise, and the ELBO's gap is small (a posterior close to the true one); a
    likelier flow scores higher; the summary labels it a bound."""
    flows = ragged_flows(6, seed=9)
    elbo = ragged.log_likelihood(flows, n_samples=32)
    iwae = ragged.log_likelihood(flows, n_samples=64, importance=True)
    m = ragged.model_
    tok, n_pk = ragged._tokens(flows)
    y = torch.from_numpy(ragged._class_index(flows.labels))
    z = torch.randn(3000, m.config.latent_dim, generator=torch.Generator().manual_seed(0))  # (K, Z)
    exact = []
    with torch.inference_mode():
        for i in range(len(flows)):
            rep = lambda a, i=i: torch.from_numpy(np.repeat(a[i:i + 1], len(z), axis=0))  # noqa: E731
            rec = m.reconstruction_nll(z, rep(tok), rep(n_pk), y[i].repeat(len(z))).double()  # (K,)
            exact.append(float(torch.logsumexp(-rec, 0) - math.log(len(z))))
    exact = np.array(exact)
    assert np.all(elbo <= exact + 0.3) and np.all(iwae <= exact + 0.3)  # Monte Carlo noise: ~0.1 nats
    assert elbo.mean() <= iwae.mean() + 0.02 and np.all(exact - elbo < 2.0)
    assert np.all(elbo > -40)  # these flows are typical: a few nats each
    odd = FlowSet.from_sequences([[100, -1400, 120, -800]], ["a"], max_packets=12)  # two modes mixed
    assert ragged.log_likelihood(odd)[0] < elbo.min() - 5
    empty = FlowSet(lengths=np.zeros((1, 12), np.int32), n_packets=np.zeros(1, np.int32), labels=["a"])
    assert ragged.log_likelihood(empty)[0] == -np.inf
    with pytest.raises(UnknownClassError):
        ragged.log_likelihood(FlowSet.from_sequences([[100]], ["zzz"]))
    summary = likelihood_summary(ragged, flows)
    default = ragged.log_likelihood(flows)  # 16 draws
    assert summary["kind"].startswith("elbo") and summary["bits_per_flow"] == pytest.approx(-default.mean() / math.log(2))


def test_devices(fitted, tmp_path):
    data = toy_flows(40)
    kw = dict(preset="tiny", epochs=2, batch_size=32, val_fraction=0.0, random_state=3, progress=False)
    cpu = CVAEGenerator(device="cpu", **kw).fit(data)
    with pytest.raises(ConfigError, match="unknown device"):
        CVAEGenerator(device="tpu", **kw).fit(data)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            CVAEGenerator(device="cuda", **kw).fit(data)
        with pytest.raises(ConfigError, match="CUDA is not available"):
            CVAEGenerator(device="cuda:1", **kw).fit(data)
        auto = CVAEGenerator(device="auto", **kw).fit(data)
        assert auto.sample(16, random_state=1) == cpu.sample(16, random_state=1)
    # a model saved with device="cuda" loads anywhere; it samples where it is told to
    cpu.set_params(device="cuda").save_pretrained(tmp_path / "m")
    loaded = CVAEGenerator.from_pretrained(tmp_path / "m").set_params(device="cpu")
    assert loaded.sample(16, random_state=1) == cpu.set_params(device="cpu").sample(16, random_state=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_distributionally(fitted):
    fitted.set_params(device="cuda")  # the same weights, moved on first use
    try:
        out = fitted.sample(400, cls=["small", "large"], random_state=2)
        assert (predicted_class(out) == out.labels).mean() >= 0.9
        ll = fitted.log_likelihood(toy_flows(8, seed=3))
    finally:
        fitted.set_params(device="cpu")
    np.testing.assert_allclose(ll, fitted.log_likelihood(toy_flows(8, seed=3)), rtol=1e-4, atol=1e-3)


def test_count_mix_is_part_of_the_model(tmp_path):
    """``count_mix=a``: p(n | z, c) = (1 - a) head + a p_train(n | c), in sampling and in the
    likelihood; an untrained head (1 epoch) then still draws mostly the class's training counts.
    The mixture survives save/load; a model saved without the mix buffers loads without a mix."""
    data = ragged_flows(200)  # class 'a': 2, 4 or 6 packets
    kw = {**TINY, "epochs": 1}
    plain = CVAEGenerator(**kw).fit(data)
    mixed = CVAEGenerator(count_mix=0.9, **kw).fit(data)
    m = mixed.model_
    z = torch.zeros(1, m.config.latent_dim)
    y = torch.tensor([mixed.classes_.index("a")])
    with torch.inference_mode():
        logits, _ = m.decode(z, y)
        got = m.count_log_probs(logits, y).exp()[0].numpy()
    emp = np.bincount(data.n_packets[data.labels == "a"] - 1, minlength=12) / np.sum(data.labels == "a")
    assert set(np.flatnonzero(emp)) == {1, 3, 5}
    np.testing.assert_allclose(got, 0.1 * torch.softmax(logits, -1)[0].numpy() + 0.9 * emp, rtol=1e-5, atol=1e-7)
    share = lambda g: np.isin(g.sample(400, cls="a", random_state=1).n_packets, [2, 4, 6]).mean()  # noqa: E731
    assert share(mixed) > 0.85 and share(plain) < 0.6
    mixed.save_pretrained(tmp_path / "mix")
    loaded = CVAEGenerator.from_pretrained(tmp_path / "mix")
    assert loaded.sample(32, random_state=2) == mixed.sample(32, random_state=2)
    np.testing.assert_allclose(loaded.log_likelihood(data[:8]), mixed.log_likelihood(data[:8]))
    plain.save_pretrained(tmp_path / "plain")
    from safetensors.torch import load_file, save_file

    tensors = load_file(tmp_path / "plain" / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if not k.startswith("count_")}, tmp_path / "plain" / "model.safetensors")
    assert CVAEGenerator.from_pretrained(tmp_path / "plain").sample(32, random_state=2) == plain.sample(32, random_state=2)
    with pytest.raises(ConfigError):
        CVAEGenerator(count_mix=1.0, **kw).fit(data)


def test_longer_context_and_label_smoothing():
    """``context`` up to 4: position t sees the lengths t-1 .. t-4 (-1 before the start); 5 is
    refused. ``label_smoothing`` changes the training loss only (the eval-mode NLL is the plain one)."""
    gen = CVAEGenerator(epochs=5, context=4, label_smoothing=0.1, **TINY).fit(toy_flows(100))
    m = gen.model_
    prev = m.previous(torch.arange(10, 16)[None, :])[0]  # (6, 4)
    assert prev.tolist() == [[-1, -1, -1, -1], [10, -1, -1, -1], [11, 10, -1, -1], [12, 11, 10, -1],
                             [13, 12, 11, 10], [14, 13, 12, 11]]
    assert gen.history_["train_loss"][-1] < gen.history_["train_loss"][0]
    out = gen.sample(50, random_state=0)
    assert np.all(out.lengths[:, 0] > 0) and np.all(out.n_packets >= 1)
    tok, n_pk = gen._tokens(toy_flows(16, seed=2))
    tok, n_pk = torch.from_numpy(tok), torch.from_numpy(n_pk)
    y = torch.from_numpy(gen._class_index(toy_flows(16, seed=2).labels))
    z = torch.zeros(16, m.config.latent_dim)
    with torch.no_grad():
        eval_nll = m.reconstruction_nll(z, tok, n_pk, y)
        m.train()
        train_nll = m.reconstruction_nll(z, tok, n_pk, y)
        m.label_smoothing = 0.0
        plain_nll = m.reconstruction_nll(z, tok, n_pk, y)
        m.eval()
    torch.testing.assert_close(plain_nll, eval_nll)
    assert torch.all(train_nll > eval_nll)  # the mean NLL over the allowed lengths is larger than the target's
    with pytest.raises(ConfigError, match="context"):
        CVAEGenerator(context=5, **TINY).fit(toy_flows(20))


def test_aggregate_posterior_latents(fitted, tmp_path):
    """latent="aggregate" (the default) draws z around the posterior of a random training flow of the
    requested class; "prior" draws N(0, I); both are saved and reloaded exactly, and a model saved
    without the posteriors samples from the prior."""
    from safetensors.torch import load_file, save_file

    post = fitted.posterior_
    assert post["mu"].shape == post["sd"].shape == (200, fitted.model_.config.latent_dim)
    assert post["cls"].shape == (200,) and set(post["cls"].tolist()) == set(range(len(fitted.classes_)))
    assert fitted.latent == "aggregate" and bool((post["sd"] > 0).all())
    agg = fitted.sample(400, random_state=3)
    prior = fitted.sample(400, random_state=3, latent="prior")
    assert agg != prior and len(agg) == len(prior) == 400
    # the posterior draw is the stored mean and sd of the picked training rows: with sd 0 and the
    # means moved far away, the decoded flows change; with the stored ones they are the default's
    keep = dict(post)
    try:
        fitted.posterior_ = {**post, "mu": post["mu"] + 50.0, "sd": torch.zeros_like(post["sd"])}
        assert fitted.sample(400, random_state=3) != agg
    finally:
        fitted.posterior_ = keep
    assert fitted.sample(400, random_state=3) == agg
    for c in fitted.classes_:  # classes stay what was asked
        got = fitted.sample(50, cls=c, random_state=1)
        assert set(got.labels) == {c}
    fitted.save_pretrained(tmp_path / "agg")
    tensors = load_file(str(tmp_path / "agg" / "model.safetensors"))
    assert {"posterior.mu", "posterior.sd", "posterior.cls"} <= set(tensors)
    loaded = CVAEGenerator.from_pretrained(tmp_path / "agg")
    assert loaded.sample(64, random_state=4) == fitted.sample(64, random_state=4)
    assert loaded.sample(64, random_state=4, latent="prior") == fitted.sample(64, random_state=4, latent="prior")
    # saved before the posteriors were stored: loads and samples from the prior, as it did
    save_file({k: v for k, v in tensors.items() if not k.startswith("posterior.")},
              str(tmp_path / "agg" / "model.safetensors"))
    old = CVAEGenerator.from_pretrained(tmp_path / "agg")
    assert old.latent == "prior" and old.posterior_ is None
    assert old.sample(64, random_state=4) == fitted.sample(64, random_state=4, latent="prior")
    with pytest.raises(ConfigError, match="posteriors"):
        old.sample(4, latent="aggregate")
    with pytest.raises(ConfigError, match="latent"):
        fitted.sample(4, latent="nope")


def test_recurrent_decoder_steps_as_it_trains(tmp_path):
    """``recurrent=R``: a GRU over the whole prefix. Its teacher-forced pass (training, the
    likelihood) and the one-step-at-a-time pass of sampling give the same position states; the
    model saves, loads and samples valid flows; a config.json without the field loads as R = 0."""
    gen = CVAEGenerator(epochs=4, recurrent=16, context=1, **TINY).fit(ragged_flows(60))
    m = gen.model_
    assert m.config.recurrent == 16 and m.rnn.hidden_size == 16 and gen._architecture()["recurrent"] == 16
    tok, n_pk = (torch.from_numpy(a) for a in gen._tokens(ragged_flows(8, seed=4)))
    y = torch.from_numpy(gen._class_index(ragged_flows(8, seed=4).labels))
    z = torch.randn(8, m.config.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        parallel = m.recurrent_states(z, y, tok)  # (8, N, D)
        h, table, steps = m.recurrent_start(z, y), m.rnn_table(), []
        for t in range(tok.shape[1]):
            extra, h = m.recurrent_step(h, tok[:, t - 1] if t else torch.full((8,), -1), table)
            steps.append(extra)
    torch.testing.assert_close(torch.stack(steps, 1), parallel, rtol=1e-5, atol=1e-5)
    assert parallel.abs().max() > 0  # the GRU contributes
    out = gen.sample(64, random_state=2)
    assert np.all(out.lengths[:, 0] > 0) and np.all((out.n_packets >= 1) & (out.n_packets <= 12))
    gen.save_pretrained(tmp_path / "gru")
    loaded = CVAEGenerator.from_pretrained(tmp_path / "gru")
    assert loaded.recurrent == 16 and loaded.sample(32, random_state=5) == gen.sample(32, random_state=5)
    assert CVAEGenerator().get_params()["recurrent"] is None and CVAEGenerator()._architecture()["recurrent"] == 256
    preset = CVAEGenerator(epochs=1, **TINY).fit(ragged_flows(20))  # recurrent None: the tiny preset's 16 units
    preset.save_pretrained(tmp_path / "preset")
    assert "recurrent" not in json.loads((tmp_path / "preset" / "config.json").read_text()).get("params", {})
    assert CVAEGenerator.from_pretrained(tmp_path / "preset").get_params() == preset.get_params()
    assert preset.model_.config.recurrent == 16
    plain = CVAEGenerator(epochs=1, recurrent=0, **TINY).fit(ragged_flows(20))
    plain.save_pretrained(tmp_path / "plain")
    cfg_path = tmp_path / "plain" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["model_config"]["recurrent"], cfg["params"]["recurrent"]  # a model saved before the option existed
    cfg_path.write_text(json.dumps(cfg))
    old = CVAEGenerator.from_pretrained(tmp_path / "plain")
    assert old.recurrent == 0 and old.model_.rnn is None
    assert old.sample(8, random_state=0) == plain.sample(8, random_state=0)
    with pytest.raises(ConfigError, match="recurrent"):
        CVAEGenerator(recurrent=-1, **TINY).fit(toy_flows(20))
