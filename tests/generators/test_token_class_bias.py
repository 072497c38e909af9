"""The token models' per-class output bias (``class_bias=True``): its start, its use in the loss,
``log_likelihood`` and the decode loop (with and without guidance), persistence, old models."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.generators.test_llama import separable_flows
from trafficgen.errors import InputFormatError
from trafficgen.generators import causal_lm
from trafficgen.generators.causal_lm import CLASS_BIAS_KEY, class_bias_init
from trafficgen.generators.llama import LlamaGenerator
from trafficgen.generators.mamba import MambaGenerator
from trafficgen.registry import load_generator
from trafficgen.representations.tokenizer import EOS_ID, PAD_ID, FlowTokenizer


@pytest.fixture(scope="module")
def biased():
    # chain_mix=False: these tests check the LM's own terms against the HF forward
    return LlamaGenerator(preset="tiny", epochs=4, batch_size=16, learning_rate=1e-2, cfg_dropout=0.2, chain_mix=False,
                          class_bias=True, random_state=0, progress=False).fit(separable_flows(60))


def _ref_logits(gen, prefixes, *, bias=True):
    """(B, V') next-token logits after each prefix (B, T) from the HF forward, plus the class bias
    of each prefix's class token (rows whose prompt is <EOS> get none)."""
    tok = gen.tokenizer_
    with torch.inference_mode():
        hidden = gen._backbone_hidden(gen.model_, torch.as_tensor(prefixes))[:, -1]  # (B, D)
        logits = gen.model_.lm_head(hidden)[:, tok.output_ids].float()  # (B, V')
    logits = logits.clone()  # a normal tensor (updated in place below and by the callers)
    if bias:
        for i, first in enumerate(np.asarray(prefixes)[:, 0]):
            if first >= tok.first_class_id:
                logits[i] += torch.from_numpy(gen.class_bias_[first - tok.first_class_id])
    return logits


def test_class_bias_init_is_the_smoothed_class_over_global_log_frequency():
    tok = FlowTokenizer(classes=["A", "B"])
    a, b = tok.class_id("A"), tok.class_id("B")
    l5, l7 = tok.length_to_id(np.array([5, 7]))
    # width 2: <CLASS> PL PL <EOS|PAD>; the last column (the forced end) is not counted
    ids = np.array([[a, l5, EOS_ID, PAD_ID], [a, l5, l5, EOS_ID], [b, l7, EOS_ID, PAD_ID]])
    got = class_bias_init(ids, tok, prior=2.0)
    n_out = tok.first_class_id - EOS_ID
    assert got.shape == (2, n_out) and got.dtype == np.float32
    total = np.zeros(n_out)
    total[[0, l5 - EOS_ID, l7 - EOS_ID]] = [2, 3, 1]
    p = (total + 0.01) / (6 + 0.01 * n_out)
    counts_a = np.zeros(n_out)
    counts_a[[0, l5 - EOS_ID]] = [1, 3]  # A's targets: l5, <EOS>, l5, l5
    expect_a = np.log((counts_a + 2.0 * p) / (4 + 2.0)) - np.log(p)
    np.testing.assert_allclose(got[0], expect_a, rtol=1e-5)
    assert got[0, l5 - EOS_ID] > 0 > got[0, l7 - EOS_ID] and got[1, l7 - EOS_ID] > 0 > got[1, l5 - EOS_ID]
    # adding the start to log p gives the smoothed class distribution (a class unigram prior)
    np.testing.assert_allclose(np.exp(np.log(p) + got[0]).sum(), 1.0, rtol=1e-5)


def test_bias_is_trained_class_specific_and_pulled_by_l2():
    flows = separable_flows(60)
    kw = dict(preset="tiny", epochs=3, batch_size=16, learning_rate=1e-2, class_bias=True, random_state=0,
              progress=False)
    free = LlamaGenerator(**kw, class_bias_l2=0.0).fit(flows)
    pulled = LlamaGenerator(**kw, class_bias_l2=1e4).fit(flows)
    plain = LlamaGenerator(**{**kw, "class_bias": False}).fit(flows)
    assert plain.class_bias_ is None
    tok = free.tokenizer_
    ids, _ = tok.encode(flows, free.max_packets_)
    start = class_bias_init(ids, tok)
    assert not np.allclose(free.class_bias_, start)  # it is a trained parameter
    # Adam moves each entry by at most about lr per step: the strong pull shrinks every entry by
    # about that much, the free one leaves the entries no flow uses near their start
    shrink_pulled = np.abs(start).mean() - np.abs(pulled.class_bias_).mean()
    shrink_free = np.abs(start).mean() - np.abs(free.class_bias_).mean()
    assert shrink_pulled > 0.05 and shrink_free < 0.5 * shrink_pulled
    a, b = (tok.length_to_id(np.array([150]))[0] - EOS_ID, tok.length_to_id(np.array([-850]))[0] - EOS_ID)
    assert free.class_bias_[0, a] > free.class_bias_[1, a] and free.class_bias_[1, b] > free.class_bias_[0, b]
    # the same model without the bias is a different model (the loss used it)
    assert not torch.equal(free.model_.lm_head.weight, plain.model_.lm_head.weight)


def test_log_likelihood_adds_each_rows_class_bias(biased):
    flows = separable_flows(8, seed=5)
    tok = biased.tokenizer_
    ids, _ = tok.encode(flows, biased.max_packets_)
    expect = np.zeros(len(ids))
    for i, row in enumerate(ids):
        # scored targets: the lengths and the <EOS>, unless it is the forced end after max_packets packets
        n = min(int((row[1:] != PAD_ID).sum()), biased.max_packets_)
        for t in range(n):
            logits = _ref_logits(biased, row[None, :t + 1])[0]
            if t == 0:
                logits[:tok.first_positive_output] = -torch.inf
            expect[i] += float(torch.log_softmax(logits, -1)[row[t + 1] - EOS_ID])
    np.testing.assert_allclose(biased.log_likelihood(flows), expect, rtol=1e-4, atol=1e-4)
    unbiased = biased.log_likelihood(flows)
    saved = biased.class_bias_
    try:
        biased.class_bias_ = None
        assert not np.allclose(biased.log_likelihood(flows), unbiased)
    finally:
        biased.class_bias_ = saved


@pytest.mark.parametrize("scale", [1.0, 2.0, 0.0])
def test_decode_logits_carry_the_class_bias_times_the_guidance_scale(biased, monkeypatch, scale):
    """What the decode loop samples from, step by step: ``l_u + s (l_c + b_c - l_u)`` with the
    class support mask; the unconditional branch ``l_u`` has no class bias."""
    seen = []
    real = causal_lm.sample_from_logits

    def spy(logits, *args, **kwargs):
        seen.append(logits.clone())
        return real(logits, *args, **kwargs)

    monkeypatch.setattr(causal_lm, "sample_from_logits", spy)
    names = ["A", "B", "B"]
    out = biased.sample(3, cls=names, random_state=7, guidance_scale=scale)
    ids, _ = biased.tokenizer_.encode(out, biased.max_packets_)
    tok = biased.tokenizer_
    n_out = tok.first_class_id - EOS_ID
    support = torch.where(torch.from_numpy(biased.class_support_), 0.0, -torch.inf)  # (C, V')
    for t in range(2):
        got = seen[t][:, :n_out]
        cond = _ref_logits(biased, ids[:, :t + 1])
        # the unconditional branch: the same rows after the <EOS> prompt (no class, so no class bias)
        uncond = _ref_logits(biased, np.concatenate([np.full((3, 1), EOS_ID), ids[:, 1:t + 1]], 1))
        cls_idx = ids[:, 0] - tok.first_class_id
        expect = uncond + scale * (cond - uncond) if scale != 1.0 else cond
        expect = expect + support[cls_idx]
        if t == 0:
            expect[:, :tok.first_positive_output] = -torch.inf
        finite = torch.isfinite(expect)
        assert torch.equal(finite, torch.isfinite(got))
        torch.testing.assert_close(got[finite], expect[finite], rtol=1e-4, atol=1e-4)
    if scale == 0.0:  # pure unconditional decoding: no trace of the class bias
        offset = biased._class_offset("class", 0.0)
        assert torch.equal(offset, biased._support_mask("class"))


def test_class_offset_folds_support_and_bias_on_the_models_device(biased):
    offset = biased._class_offset("class", 1.0)
    assert offset.device == biased._placed() and offset.shape == biased.class_bias_.shape
    expect = torch.from_numpy(biased.class_bias_).masked_fill(~torch.from_numpy(biased.class_support_), -torch.inf)
    assert torch.equal(offset, expect)
    torch.testing.assert_close(biased._class_offset(None, 1.5), 1.5 * torch.from_numpy(biased.class_bias_))


def test_save_load_round_trip_keeps_bias_and_samples(biased, tmp_path):
    from safetensors.torch import load_file

    biased.save_pretrained(tmp_path / "m")
    assert CLASS_BIAS_KEY in load_file(tmp_path / "m" / "model.safetensors")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["class_bias"] is True
    back = load_generator(tmp_path / "m")
    assert back.class_bias is True and np.array_equal(back.class_bias_, biased.class_bias_)
    for kw in ({}, {"guidance_scale": 1.5}, {"support": None}):
        assert np.array_equal(back.sample(64, random_state=3, **kw).lengths,
                              biased.sample(64, random_state=3, **kw).lengths)
    flows = separable_flows(10, seed=2)
    np.testing.assert_array_equal(back.log_likelihood(flows), biased.log_likelihood(flows))
    # a config that says it has the bias but no tensor (or the reverse) is refused
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["class_bias"] = False
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(InputFormatError, match="class_bias"):
        load_generator(tmp_path / "m")


def test_models_without_the_bias_load_and_sample_as_before(tmp_path):
    from safetensors.torch import load_file

    plain = LlamaGenerator(preset="tiny", epochs=2, batch_size=16, random_state=0, progress=False).fit(separable_flows(30))
    plain.save_pretrained(tmp_path / "p")
    assert CLASS_BIAS_KEY not in load_file(tmp_path / "p" / "model.safetensors")
    cfg_path = tmp_path / "p" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert "class_bias" not in cfg
    del cfg["params"]["class_bias"], cfg["params"]["class_bias_l2"]  # saved before the option existed
    cfg_path.write_text(json.dumps(cfg))
    old = load_generator(tmp_path / "p")
    assert old.class_bias is False and old.class_bias_ is None
    assert torch.equal(old._class_offset("class"), plain._support_mask("class"))
    assert np.array_equal(old.sample(100, random_state=5).lengths, plain.sample(100, random_state=5).lengths)
    flows = separable_flows(10, seed=2)
    np.testing.assert_array_equal(old.log_likelihood(flows), plain.log_likelihood(flows))


def test_mamba_uses_the_same_class_bias():
    gen = MambaGenerator(preset="tiny", epochs=2, batch_size=16, learning_rate=1e-2, class_bias=True, chain_mix=False,
                         random_state=0,
                         progress=False).fit(separable_flows(30))
    assert gen.class_bias_.shape == (2, gen.tokenizer_.first_class_id - EOS_ID)
    flows = separable_flows(4, seed=3)
    ids, _ = gen.tokenizer_.encode(flows, gen.max_packets_)
    row = ids[0]
    logits = _ref_logits(gen, row[None, :2])[0]  # after the first packet
    expect_term = float(torch.log_softmax(logits, -1)[row[2] - EOS_ID])
    first = _ref_logits(gen, row[None, :1])[0]
    first[:gen.tokenizer_.first_positive_output] = -torch.inf
    expect_first = float(torch.log_softmax(first, -1)[row[1] - EOS_ID])
    saved = gen.class_bias_
    total = gen.log_likelihood(flows[:1])[0]
    gen.class_bias_ = np.zeros_like(saved)
    try:
        assert not np.isclose(gen.log_likelihood(flows[:1])[0], total)
    finally:
        gen.class_bias_ = saved
    assert expect_first < 0 and expect_term < 0
    n = min(int((row[1:] != PAD_ID).sum()), gen.max_packets_)
    parts = []
    for t in range(n):
        lg = _ref_logits(gen, row[None, :t + 1])[0]
        if t == 0:
            lg[:gen.tokenizer_.first_positive_output] = -torch.inf
        parts.append(float(torch.log_softmax(lg, -1)[row[t + 1] - EOS_ID]))
    assert parts[0] == pytest.approx(expect_first, abs=1e-5) and parts[1] == pytest.approx(expect_term, abs=1e-5)
    assert total == pytest.approx(sum(parts), abs=1e-3)
    out = gen.sample(20, random_state=1)
    assert (out.lengths[:, 0] > 0).all()


@pytest.mark.parametrize("cls", [LlamaGenerator, MambaGenerator])
def test_class_input_embedding_in_training_likelihood_and_decode(cls, monkeypatch, tmp_path):
    """``class_input=True``: a learned (C, D) vector added to the input embedding of every
    position after the prompt; the decode loop (both branches of guidance) and
    ``log_likelihood`` use it like the HF forward with those embeddings."""
    gen = cls(preset="tiny", epochs=3, batch_size=16, learning_rate=1e-2, cfg_dropout=0.2, class_input=True,
              chain_mix=False, random_state=0, progress=False).fit(separable_flows(40))
    assert gen.class_input_.shape == (2, gen.model_.config.hidden_size) and np.abs(gen.class_input_).max() > 0
    tok = gen.tokenizer_

    def ref(prefixes, conditional=True):
        x = torch.as_tensor(prefixes)
        vec = torch.from_numpy(gen.class_input_)[x[:, 0] - tok.first_class_id] if conditional else None
        if not conditional:
            x = torch.cat([torch.full_like(x[:, :1], EOS_ID), x[:, 1:]], 1)
        with torch.inference_mode():
            hidden = gen._class_hidden(gen.model_, x, vec)[:, -1]
            logits = gen.model_.lm_head(hidden)[:, tok.output_ids].float()
        return logits.clone()

    seen = []
    real = causal_lm.sample_from_logits
    monkeypatch.setattr(causal_lm, "sample_from_logits", lambda lg, *a, **k: (seen.append(lg.clone()), real(lg, *a, **k))[1])
    n_out = tok.first_class_id - EOS_ID
    support = torch.where(torch.from_numpy(gen.class_support_), 0.0, -torch.inf)
    for scale in (1.0, 2.0):
        seen.clear()
        out = gen.sample(4, cls=["A", "B", "A", "B"], random_state=2, guidance_scale=scale)
        ids, _ = tok.encode(out, gen.max_packets_)
        t = 1
        cond = ref(ids[:, :t + 1])
        expect = cond if scale == 1.0 else ref(ids[:, :t + 1], False) + scale * (cond - ref(ids[:, :t + 1], False))
        expect = expect + support[ids[:, 0] - tok.first_class_id]
        finite = torch.isfinite(expect)
        torch.testing.assert_close(seen[t][:, :n_out][finite], expect[finite], rtol=1e-4, atol=1e-4)
    flows = separable_flows(6, seed=4)
    ids, _ = tok.encode(flows, gen.max_packets_)
    row = ids[0]
    expect = 0.0
    for t in range(min(int((row[1:] != PAD_ID).sum()), gen.max_packets_)):
        lg = ref(row[None, :t + 1])[0]
        if t == 0:
            lg[:tok.first_positive_output] = -torch.inf
        expect += float(torch.log_softmax(lg, -1)[row[t + 1] - EOS_ID])
    assert gen.log_likelihood(flows)[0] == pytest.approx(expect, abs=1e-3)
    gen.save_pretrained(tmp_path / "ci")
    back = load_generator(tmp_path / "ci")
    assert np.array_equal(back.class_input_, gen.class_input_)
    assert np.array_equal(back.sample(30, random_state=1).lengths, gen.sample(30, random_state=1).lengths)
