"""The token models interpolated with a Markov chain (``chain_mix=True``): the weight search, the
likelihood of the mixture, samples drawn from it, persistence, Mamba2."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.generators.test_llama import separable_flows
from trafficgen.errors import ConfigError
from trafficgen.generators.chain_mix import COUNT_EDGES, WEIGHT_GRID, ChainMix, best_weights, buckets
from trafficgen.generators.llama import LlamaGenerator
from trafficgen.generators.mamba import MambaGenerator


@pytest.fixture(scope="module")
def mixed():
    return LlamaGenerator(preset="tiny", epochs=4, batch_size=16, learning_rate=1e-2, val_fraction=0.3,
                          chain_mix=True, random_state=0, progress=False).fit(separable_flows(80))


def test_buckets_first_packet_then_context_counts():
    pos = np.array([0, 0, 1, 1, 1, 1, 1, 2])
    counts = np.array([50, 0, 0, 1, 4, 5, 19, 20])
    assert buckets(pos, counts).tolist() == [0, 0, 1, 2, 2, 3, 3, 4]
    assert len(COUNT_EDGES) + 1 == 5


def test_best_weights_maximise_each_bucket_likelihood():
    # bucket 1: the chain is right (p 0.9 vs the LM's 0.1) -> all weight on the chain;
    # bucket 2: the LM is right -> none; bucket 3: half the events each way -> the symmetric optimum 0.5
    log_lm = np.log(np.array([0.1, 0.1, 0.9, 0.9, 0.9, 0.1]))
    p_chain = np.array([0.9, 0.9, 0.1, 0.1, 0.1, 0.9])
    bucket = np.array([1, 1, 2, 2, 3, 3])
    w = best_weights(log_lm, p_chain, bucket)
    assert w.tolist() == [0.5, 1.0, 0.0, 0.5, 0.5]  # buckets 0 and 4 have no events: 0.5
    # against brute force on a random bucket
    rng = np.random.default_rng(0)
    lm, ch = np.log(rng.uniform(0.01, 1, 200)), rng.uniform(0.01, 1, 200)
    w = best_weights(lm, ch, np.full(200, 2))[2]
    ll = [np.log((1 - g) * np.exp(lm) + g * ch).sum() for g in WEIGHT_GRID]
    assert w == WEIGHT_GRID[int(np.argmax(ll))]


def test_weights_are_checked():
    with pytest.raises(ConfigError, match="chain_mix weights"):
        ChainMix(None, [0.5, 0.5])
    with pytest.raises(ConfigError, match="chain_mix weights"):
        ChainMix(None, [0.5, 0.5, 1.5, 0.5, 0.5])


def test_fit_records_the_choice_and_the_mix_does_not_lose_on_validation(mixed):
    info = mixed.history_["chain_mix"]
    assert info["order"] == 2 and info["val_flows"] == 24  # 30 % of 80 rows
    assert len(info["weights"]) == 5 and all(0 <= w <= 1 for w in info["weights"])
    bits = info["val_bits_per_flow"]
    # the grid holds both pure models (weights 0 and 1), so the chosen mix is at least as good as either
    assert bits["mix"] <= min(bits["lm"], bits["chain"]) + 1e-9
    assert sum(info["events_per_bucket"]) > 24


def test_log_likelihood_is_the_mixture_of_the_two_models(mixed):
    flows = separable_flows(30, seed=5)
    ids, _ = mixed.tokenizer_.encode(flows, mixed.max_packets_, clip=True)
    lm, rows = mixed._event_log_probs(ids, with_rows=True)
    r2, pos, p_chain, counts = mixed.chain_mix_.chain.event_probabilities(ids, with_counts=True)
    assert (r2 == rows).all()
    w = mixed.chain_mix_.weights[buckets(pos, counts)]
    expect = np.zeros(len(flows))
    np.add.at(expect, rows, np.log((1 - w) * np.exp(lm) + w * p_chain))
    np.testing.assert_allclose(mixed.log_likelihood(flows), expect, rtol=1e-10)
    # and it is not the LM's alone
    alone = np.zeros(len(flows))
    np.add.at(alone, rows, lm)
    assert np.abs(mixed.log_likelihood(flows) - alone).max() > 1e-3


def test_first_packets_follow_the_mixture(mixed):
    gen = mixed
    saved = gen.chain_mix_.weights.copy()
    gen.chain_mix_.weights = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    try:
        n = 20000
        s = gen.sample(n, cls="A", random_state=1, support=None)
        tok = gen.tokenizer_
        prompt = torch.tensor([[tok.class_id("A")]])
        with torch.inference_mode():
            hidden = gen._backbone_hidden(gen.model_, prompt)[:, -1]  # (1, D)
            logits = gen.model_.lm_head(hidden)[0, tok.output_ids].float()  # (V',)
        logits = logits.clone()  # a normal tensor
        logits[: tok.first_positive_output] = -torch.inf
        p_lm = torch.softmax(logits, -1).numpy()  # over <EOS> + lengths
        c = gen.chain_mix_.chain.classes_.index("A")
        p_chain = gen.chain_mix_.chain.first_step_[c, tok.output_ids]
        expect = 0.5 * p_lm + 0.5 * p_chain
        got = np.bincount(tok.length_to_id(s.lengths[:, 0]) - tok.output_ids.start, minlength=len(expect)) / n
        top = np.argsort(expect)[-5:]
        se = np.sqrt(expect[top] * (1 - expect[top]) / n)
        assert (np.abs(got[top] - expect[top]) < 4.5 * se).all(), (got[top], expect[top])
        # the check can tell the mixture from either model alone
        for alone in (p_lm, p_chain):
            assert (np.abs(got[top] - alone[top]) > 6 * se).any()
    finally:
        gen.chain_mix_.weights = saved


def test_weight_one_everywhere_samples_the_chain(mixed):
    """With every weight 1 the second packet follows the chain exactly: P(second length in
    [100, 200] | class A) = sum_f P(f) P(second in [100, 200] | A, <BOS>, f)."""
    saved = mixed.chain_mix_.weights.copy()
    mixed.chain_mix_.weights = np.ones(5)
    try:
        n = 6000
        s = mixed.sample(n, cls="A", random_state=0, support=None)
        chain = mixed.chain_mix_.chain
        c = chain.classes_.index("A")
        first = np.flatnonzero(chain.first_step_[c] > 0)  # (F,) every possible first token
        second = chain.tokenizer_.length_to_id(np.arange(100, 201))  # (S,)
        f_rep, s_rep = np.repeat(first, len(second)), np.tile(second, len(first))
        context = chain.push_history(chain.start_history(len(f_rep)), f_rep)
        p = chain._interpolated(np.full(len(f_rep), c), context, s_rep).reshape(len(first), len(second))
        expect = float((chain.first_step_[c, first] * p.sum(axis=1)).sum())
        def in_range(flows):
            return float(((flows.n_packets >= 2) & (flows.lengths[:, 1] >= 100) & (flows.lengths[:, 1] <= 200)).mean())

        se = np.sqrt(expect * (1 - expect) / n)
        assert abs(in_range(s) - expect) < 4.5 * se, (in_range(s), expect)
        mixed.chain_mix_.weights = np.zeros(5)  # the LM alone: the check tells them apart
        assert abs(in_range(mixed.sample(n, cls="A", random_state=0, support=None)) - expect) > 6 * se
    finally:
        mixed.chain_mix_.weights = saved


def test_save_load_round_trip(mixed, tmp_path):
    mixed.save_pretrained(tmp_path / "m")
    back = LlamaGenerator.from_pretrained(tmp_path / "m")
    flows = separable_flows(20, seed=3)
    np.testing.assert_array_equal(back.log_likelihood(flows), mixed.log_likelihood(flows))
    a, b = mixed.sample(100, random_state=4), back.sample(100, random_state=4)
    np.testing.assert_array_equal(a.lengths, b.lengths)
    np.testing.assert_array_equal(back.chain_mix_.weights, mixed.chain_mix_.weights)


def test_without_validation_the_weights_are_half():
    gen = LlamaGenerator(preset="tiny", epochs=1, batch_size=16, val_fraction=0.0, chain_mix=True,
                         random_state=0, progress=False).fit(separable_flows(40))
    assert gen.chain_mix_.weights.tolist() == [0.5] * 5
    assert "no validation part" in gen.history_["chain_mix"]["note"]


def test_mamba_takes_the_mix_too():
    gen = MambaGenerator(preset="tiny", epochs=1, batch_size=16, val_fraction=0.3, chain_mix=True,
                         random_state=0, progress=False).fit(separable_flows(40))
    s = gen.sample(50, random_state=0)
    assert len(s) == 50 and np.isfinite(gen.log_likelihood(s)).all()


def test_a_missing_chain_tensor_is_one_error_naming_it(mixed, tmp_path):
    from safetensors.numpy import load_file, save_file

    from trafficgen.errors import InputFormatError

    mixed.save_pretrained(tmp_path / "m")
    file = tmp_path / "m" / "model.safetensors"
    tensors = load_file(file)
    del tensors["chain_mix.order1.pair_count"]
    save_file(tensors, file)
    with pytest.raises(InputFormatError, match=r"missing tensors .*chain_mix\.order1\.pair_count"):
        LlamaGenerator.from_pretrained(tmp_path / "m")
