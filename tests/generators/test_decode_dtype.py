"""bf16 decoding of the LLaMA / Mamba2 step decoders: next-token distributions close to fp32."""
from __future__ import annotations

import pytest
import torch

from trafficgen.errors import ConfigError
from trafficgen.generators.llama import LlamaStepDecoder, build_llama
from trafficgen.generators.mamba import Mamba2StepDecoder, build_mamba2
from trafficgen.generators.token_sampling import decode_dtype

# builder, decoder, LM-head scale giving peaked distributions (mean entropy ~1-2 nats, like a
# trained model; random init is near uniform, where any dtype agrees)
BUILDERS = {"llama": (lambda: build_llama("tiny", 200, 12), LlamaStepDecoder, 30.0),
            "mamba": (lambda: build_mamba2("tiny", 200), Mamba2StepDecoder, 10.0)}


def next_token_log_probs(model, decoder_cls, ids, dtype):
    dec = decoder_cls(model, ids.shape[0], ids.shape[1], dtype=dtype)
    head = model.lm_head.weight.to(dtype)
    with torch.inference_mode():
        out = [torch.log_softmax(torch.nn.functional.linear(dec.step(ids[:, t], t), head).float(), -1)
               for t in range(ids.shape[1])]
    return torch.stack(out, dim=1)  # (B, T, V)


@pytest.mark.parametrize("arch", sorted(BUILDERS))
def test_bf16_decoder_close_to_fp32(arch):
    build, decoder_cls, head_scale = BUILDERS[arch]
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(head_scale)
    ids = torch.randint(2, 200, (64, 10))
    ref = next_token_log_probs(model, decoder_cls, ids, torch.float32)
    got = next_token_log_probs(model, decoder_cls, ids, torch.bfloat16)
    entropy = -(ref.exp() * ref).sum(-1)
    assert entropy.mean() < 2.5  # far from uniform (ln 200 = 5.3): the check is not vacuous
    kl = (ref.exp() * (ref - got)).sum(-1)  # (B, T)
    assert kl.mean() < 2e-3 and kl.max() < 2e-2, (kl.mean(), kl.max())
    assert (ref.argmax(-1) == got.argmax(-1)).float().mean() > 0.9


def test_decode_dtype_names():
    assert decode_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ConfigError, match="float32, bfloat16"):
        decode_dtype("float16")
