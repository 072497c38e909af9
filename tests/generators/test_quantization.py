"""Int8 post-training quantization: per-channel math, closeness to fp32, size, save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trafficgen.errors import ConfigError
from trafficgen.experiments.profiling import directory_size
from trafficgen.generators.quantization import (
    DynamicInt8Linear,
    Int8WeightOnlyEmbedding,
    Int8WeightOnlyLinear,
    fused_projection,
    next_token_distance,
    quantize_generator,
    quantize_model,
    quantize_per_channel,
)
from trafficgen.registry import load_generator

#: Tolerance on next-token distributions of int8 vs fp32 (every position of 48 real prefixes).
MAX_MEAN_KL = {"weight-only": 1e-3, "dynamic": 5e-3}
MAX_ABS_PROB_DIFF = {"weight-only": 0.02, "dynamic": 0.05}


def test_per_channel_hand_computed():
    w = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [2.54, 1.27, -0.01]])
    q, s = quantize_per_channel(w)
    assert torch.allclose(s, torch.tensor([1.0 / 127, 1.0, 2.54 / 127]))
    assert q.dtype == torch.int8
    assert q.tolist() == [[64, -127, 32], [0, 0, 0], [127, 64, 0]]  # round(63.5)=64 (half to even: 63.5->64)


def test_linear_error_bound_and_tied_head():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    q = Int8WeightOnlyLinear.from_linear(lin)
    err = (q.weight - lin.weight).abs()  # (8, 16)
    assert bool((err <= q.scale[:, None] / 2 + 1e-7).all())  # rounding error <= half a step
    x = torch.randn(4, 16)
    assert torch.allclose(q(x), torch.nn.functional.linear(x, q.weight, lin.bias))
    d = DynamicInt8Linear.from_linear(lin).refresh()
    assert torch.allclose(d(x), q(x), atol=0.05)

    cfg = LlamaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=32, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    info = quantize_model(model, mode="weight-only")
    assert info["tied"] == {"lm_head": "model.embed_tokens"}
    assert isinstance(model.model.embed_tokens, Int8WeightOnlyEmbedding)
    assert model.lm_head.qweight.data_ptr() == model.model.embed_tokens.qweight.data_ptr()
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 40)


@pytest.fixture(scope="module")
def small_flows():
    from trafficgen.datasets import load_ndpi_apps

    flows = load_ndpi_apps()
    keep = np.isin(flows.labels, ["DNS", "HTTP", "TLS", "QUIC"])
    return flows[np.flatnonzero(keep)[:120]].truncate(8)


@pytest.fixture(scope="module", params=["llama", "mamba"])
def fitted(request, small_flows):
    from trafficgen.registry import get_generator

    gen = get_generator(request.param)(preset="tiny", epochs=1, batch_size=32, random_state=0, progress=False)
    return gen.fit(small_flows)


@pytest.mark.parametrize("mode", ["weight-only", "dynamic"])
def test_quantized_lm_close_to_fp32_and_roundtrips(fitted, small_flows, mode, tmp_path):
    q = quantize_generator(fitted, mode=mode)
    assert not hasattr(fitted, "quantization_")  # the original is untouched
    assert isinstance(q.model_.lm_head, DynamicInt8Linear if mode == "dynamic" else Int8WeightOnlyLinear)
    ids = fitted.tokenizer_.encode(small_flows[:48], fitted.max_packets_, clip=True)[0][:, :-1]  # (48, W+1)
    dist = next_token_distance(fitted, q, ids)
    assert dist["mean_kl"] < MAX_MEAN_KL[mode]
    assert dist["max_abs_prob_diff"] < MAX_ABS_PROB_DIFF[mode]
    assert next_token_distance(fitted, fitted, ids)["mean_kl"] == 0.0

    if mode == "dynamic":  # the lean decode loop runs the int8 GEMM, not dequantized weights
        layer = q._make_decoder(2, 4).layers[0]
        assert isinstance(layer["qkv" if fitted.name == "llama" else "in_proj"], DynamicInt8Linear)

    s1 = q.sample(30, random_state=5)
    assert np.array_equal(s1.lengths, q.sample(30, random_state=5).lengths)  # same seed, same flows

    fp_dir, q_dir = tmp_path / "fp32", tmp_path / "int8"
    fitted.save_pretrained(fp_dir)
    q.save_pretrained(q_dir)  # the one save path, quantized or not
    assert directory_size(q_dir) <= 0.40 * directory_size(fp_dir)
    cfg = json.loads((q_dir / "config.json").read_text())
    assert cfg["quantization"]["mode"] == mode and "lm_head" in cfg["quantization"]["linear"]
    back = load_generator(q_dir)  # the one load path
    assert back.quantization_["mode"] == mode
    for (k, a), (k2, b) in zip(sorted(q.model_.state_dict().items()), sorted(back.model_.state_dict().items()), strict=True):
        assert k == k2 and torch.equal(a, b)
    assert np.array_equal(back.sample(30, random_state=5).lengths, s1.lengths)


def test_quantize_errors(fitted):
    with pytest.raises(ConfigError):
        quantize_generator(fitted, mode="int4")
    q = quantize_generator(fitted, mode="weight-only")
    with pytest.raises(ConfigError):
        quantize_generator(q, mode="dynamic")


def test_fused_projection_equals_concatenated_outputs():
    torch.manual_seed(0)
    lins = [torch.nn.Linear(16, o, bias=b) for o, b in ((8, True), (12, False), (5, True))]
    x = torch.randn(40, 16)
    with torch.no_grad():
        ref = torch.cat([m(x) for m in lins], dim=-1)  # (40, 25)
        torch.testing.assert_close(fused_projection(lins)(x), ref)
        torch.testing.assert_close(fused_projection(lins, rows=slice(3, 20))(x), ref[:, 3:20])
        dyn = [DynamicInt8Linear.from_linear(m) for m in lins]
        fused = fused_projection(dyn)
        assert isinstance(fused, DynamicInt8Linear) and torch.equal(fused.qweight, torch.cat([m.qweight for m in dyn]))
        # same input -> same activation scale: the fused int8 GEMM equals the separate ones
        torch.testing.assert_close(fused(x), torch.cat([m(x) for m in dyn], dim=-1))
        torch.testing.assert_close(fused(x), ref, atol=0.05, rtol=0.05)
        torch.testing.assert_close(fused_projection(dyn, rows=slice(3, 20))(x), fused(x)[:, 3:20])
