"""LlamaGenerator (tiny preset): decoder == HF forward, conditional sampling on separable data,
seeds, save/load, loss falling, training utilities."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, UnknownClassError
from trafficgen.generators.llama import LlamaGenerator, LlamaStepDecoder, build_llama
from trafficgen.generators.training import EarlyStopping, split_validation
from trafficgen.registry import load_generator

RANGES = {"A": (100, 200), "B": (-900, -800)}


def separable_flows(n: int = 300, seed: int = 0) -> FlowSet:
    """Class A: lengths in [100, 200]; class B: in [-900, -800] after a first (client -> server,
    FlowSet's convention) packet in [800, 900]; 2..6 packets."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        c = "AB"[i % 2]
        lo, hi = RANGES[c]
        seq = rng.integers(lo, hi + 1, rng.integers(2, 7))
        seq[0] = abs(seq[0])
        seqs.append(seq.tolist())
        labels.append(c)
    return FlowSet.from_sequences(seqs, labels)


def in_range_fraction(flows: FlowSet, cls: str) -> float:
    lo, hi = RANGES[cls]
    x = flows.lengths.copy()
    x[:, 0] = np.sign(lo) * x[:, 0]  # the first packet is + by convention
    x = x[flows.valid_mask]
    return float(np.mean((x >= lo) & (x <= hi)))


def check_valid(flows: FlowSet, max_packets: int):
    assert flows.max_packets == max_packets
    assert np.all(flows.n_packets >= 1) and np.all(flows.n_packets <= max_packets)
    x = flows.lengths[flows.valid_mask]
    assert np.all(x != 0) and np.all(np.abs(x) <= 1500)
    assert np.all(flows.lengths[~flows.valid_mask] == 0)


@pytest.fixture(scope="module")
def fitted():
    return LlamaGenerator(preset="tiny", epochs=80, batch_size=64, learning_rate=1e-2, val_fraction=0.0,
                          random_state=0, progress=False).fit(separable_flows())


def test_step_decoder_matches_hf_forward():
    torch.manual_seed(0)
    model = build_llama("tiny", 60, 10).eval()
    ids = torch.randint(0, 60, (3, 8))
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=False).logits  # (3, 8, 60)
        dec = LlamaStepDecoder(model, 3, 8)
        got = torch.stack([model.lm_head(dec.step(ids[:, t], t)) for t in range(8)], dim=1)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_fitted_attributes(fitted):
    assert fitted.classes_ == ["A", "B"]
    np.testing.assert_allclose(fitted.class_prior_, [0.5, 0.5])
    assert fitted.class_counts_ == {"A": 150, "B": 150}
    assert fitted.max_packets_ == 6
    assert fitted.tokenizer_.vocab_size == 3004
    assert len(fitted.history_["train_loss"]) == 80
    assert fitted.history_["train_loss"][-1] < 0.5 * fitted.history_["train_loss"][0]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_conditional_sampling_separable(fitted, dtype):
    for cls in "AB":
        s = fitted.sample(300, cls=cls, random_state=1, dtype=dtype)
        assert set(s.labels) == {cls}
        check_valid(s, 6)
        assert in_range_fraction(s, cls) >= 0.95, (cls, in_range_fraction(s, cls))


def test_seeds(fitted):
    a = fitted.sample(64, random_state=7)
    b = fitted.sample(64, random_state=7)
    c = fitted.sample(64, random_state=8)
    assert a == b
    assert not np.array_equal(a.lengths, c.lengths)
    # batching does not change the draw of the classes, and every batch is valid
    check_valid(fitted.sample(50, batch_size=16, random_state=7), 6)


def test_greedy_equals_top_k_1(fitted, monkeypatch):
    monkeypatch.setattr(fitted, "chain_mix_", None)  # top-k 1 of the LM alone (the chain's part is random)
    g = fitted.sample(20, cls=["A", "B"], temperature=0.0, random_state=3)
    k = fitted.sample(20, cls=["A", "B"], top_k=1, random_state=4)
    assert g == k
    p = fitted.sample(20, cls="A", top_p=0.5, random_state=3)
    check_valid(p, 6)


def test_unknown_class_and_bad_args(fitted):
    with pytest.raises(UnknownClassError, match="known classes: A, B"):
        fitted.sample(3, cls="C")
    with pytest.raises(ConfigError):
        fitted.sample(3, temperature=-1)


def test_save_load_samples_identical(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    loaded = load_generator(tmp_path / "m")
    assert isinstance(loaded, LlamaGenerator) and loaded.get_params() == fitted.get_params()
    assert loaded.classes_ == fitted.classes_ and loaded.tokenizer_ == fitted.tokenizer_
    assert loaded.sample(100, random_state=5) == fitted.sample(100, random_state=5)


def test_fit_is_seeded_and_overfits_one_batch():
    flows = separable_flows(16, seed=3)
    kw = dict(preset="tiny", epochs=60, batch_size=16, learning_rate=1e-2, val_fraction=0.0, progress=False)
    a = LlamaGenerator(random_state=11, **kw).fit(flows)
    b = LlamaGenerator(random_state=11, **kw).fit(flows)
    loss = a.history_["train_loss"]
    assert loss[-1] < 0.3 * loss[0]
    assert loss == b.history_["train_loss"]
    for (k, v), (_, w) in zip(a.model_.state_dict().items(), b.model_.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_validation_split_and_early_stopping():
    g = torch.Generator().manual_seed(0)
    tr, va = split_validation(10, 0.2, g)
    assert len(va) == 2 and sorted(torch.cat([tr, va]).tolist()) == list(range(10))
    assert len(split_validation(1, 0.5, g)[1]) == 0  # cannot spare a validation row
    model = torch.nn.Linear(1, 1)
    stop = EarlyStopping(patience=2)
    with torch.no_grad():
        model.weight.fill_(1.0)
        assert not stop.step(1.0, 0, model)
        model.weight.fill_(2.0)
        assert not stop.step(1.5, 1, model)
        assert stop.step(1.2, 2, model)  # two epochs without improvement
    stop.restore(model)
    assert stop.best_epoch == 0 and float(model.weight.detach()) == 1.0


def test_inverse_cdf_sampling_exact_and_frequencies():
    from trafficgen.generators.token_sampling import inverse_cdf_sample

    g = torch.Generator().manual_seed(0)
    onehot = torch.zeros(5, 200)
    onehot[torch.arange(5), torch.tensor([0, 63, 64, 130, 199])] = 1.0
    assert inverse_cdf_sample(onehot, g).tolist() == [0, 63, 64, 130, 199]
    p = torch.tensor([0.5, 0.0, 0.2, 0.3] + [0.0] * 100)
    draws = inverse_cdf_sample(p.expand(20000, -1), g)
    freq = torch.bincount(draws, minlength=104).float() / 20000
    assert freq[1] == 0 and freq[4:].sum() == 0
    torch.testing.assert_close(freq[[0, 2, 3]], torch.tensor([0.5, 0.2, 0.3]), atol=0.015, rtol=0)


def test_training_row_weights_values():
    from trafficgen.generators.token_training_rows import training_row_weights

    # rows: class token in column 0; class 7 has the same flow three times and one other flow
    ids = np.array([[7, 5, 1], [7, 5, 1], [7, 5, 1], [7, 6, 1], [8, 5, 1]])
    assert training_row_weights(ids) is None  # empirical distribution: plain shuffling
    np.testing.assert_allclose(training_row_weights(ids, class_balance=1.0), [1 / 4] * 4 + [1.0])
    np.testing.assert_allclose(training_row_weights(ids, class_balance=0.5), [4**-0.5] * 4 + [1.0])
    dedup = training_row_weights(ids, repeat_weight=0.0)
    np.testing.assert_allclose(dedup, [1 / 3] * 3 + [1.0, 1.0])  # the three copies count once together
    np.testing.assert_allclose(training_row_weights(ids, repeat_weight=0.5), [3**-0.5] * 3 + [1.0, 1.0])
    np.testing.assert_allclose(training_row_weights(ids, class_balance=1.0, repeat_weight=0.0),
                               [1 / 12] * 3 + [1 / 4, 1.0])
    for bad in ({"class_balance": -0.1}, {"class_balance": 1.5}, {"repeat_weight": 2.0}):
        with pytest.raises(ConfigError):
            training_row_weights(ids, **bad)


def test_repeat_weight_zero_stops_reproducing_a_repeated_flow():
    """60 % of class A is one identical flow; trained on deduplicated rows the model emits it rarely."""
    rng = np.random.default_rng(4)
    seqs = [[150] for _ in range(120)] + [rng.integers(100, 201, rng.integers(2, 6)).tolist() for _ in range(80)]
    flows = FlowSet.from_sequences(seqs, ["A"] * len(seqs))
    kw = dict(preset="tiny", epochs=25, batch_size=32, learning_rate=1e-2, val_fraction=0.0, random_state=0,
              progress=False, chain_mix=False)  # repeat_weight weighs the LM's rows; the chain counts every flow
    share = {}
    for r in (1.0, 0.0):
        syn = LlamaGenerator(repeat_weight=r, **kw).fit(flows).sample(500, cls="A", random_state=0)
        share[r] = float(np.mean((syn.n_packets == 1) & (syn.lengths[:, 0] == 150)))
    assert share[1.0] > 0.45  # the empirical share is 0.6
    assert share[0.0] < 0.15  # deduplicated: one of ~81 distinct flows


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_samples_do_not_depend_on_decode_chunking(fitted, monkeypatch, temperature):
    from trafficgen.generators import causal_lm

    whole = fitted.sample(300, random_state=9, temperature=temperature)  # one chunk (DECODE_CHUNK 1024)
    monkeypatch.setattr(causal_lm, "DECODE_CHUNK", 7)  # 43 chunks; many end before the last step
    assert fitted.sample(300, random_state=9, temperature=temperature) == whole


def test_one_query_attention_is_sdpa_for_one_query():
    """The decoder's written-out attention equals SDPA for a single query (fp32; bf16 within
    bf16 rounding), for 1 to 11 cached positions."""
    import torch
    import torch.nn.functional as F

    from trafficgen.generators.llama import one_query_attention

    g = torch.Generator().manual_seed(0)
    for t in (1, 4, 11):
        q, k, v = (torch.randn(shape, generator=g) for shape in ((6, 4, 32), (6, 4, t, 32), (6, 4, t, 32)))
        ref = F.scaled_dot_product_attention(q[:, :, None], k, v)[:, :, 0]  # (6, 4, 32)
        torch.testing.assert_close(one_query_attention(q, k, v), ref, rtol=1e-5, atol=1e-6)
        low = one_query_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
        assert low.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), ref, rtol=0.05, atol=0.03)
    assert torch.allclose(one_query_attention(q[:, :, :], k[:, :, :1], v[:, :, :1]), v[:, :, 0])  # one position: v
