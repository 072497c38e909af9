"""`LlamaGenerator`: a class-conditioned LLaMA (transformers ``LlamaForCausalLM``) over flow tokens.

Training uses the HF model as is. Sampling uses :class:`LlamaStepDecoder`, a lean incremental
forward over the same weights with a pre-allocated static KV cache (fused QKV and gate/up
projections, SDPA over the filled prefix): HF ``generate()`` spends most of its time in per-step
bookkeeping for a model this small. ``tests/generators/test_llama.py`` checks the decoder against
the HF forward numerically.
"""
from __future__ import annotations

from typing import ClassVar

from trafficgen.errors import ConfigError
from trafficgen.generators.causal_lm import CausalLMFlowGenerator
from trafficgen.generators.presets import LLAMA_PRESETS, get_preset


class LlamaGenerator(CausalLMFlowGenerator):
    """Class-conditioned LLaMA flow generator (registry name ``"llama"``).

    Parameters: see :class:`~trafficgen.generators.causal_lm.CausalLMFlowGenerator`
    (``preset`` in ``"tiny"``, ``"small"`` (~1.8M parameters), ``"base"``).
    Fitted attributes: ``classes_``, ``class_prior_``, ``class_counts_``, ``tokenizer_``,
    ``model_`` (``LlamaForCausalLM``), ``max_packets_``, ``history_``.
    """

    name: ClassVar[str] = "llama"
    presets: ClassVar[dict[str, dict]] = LLAMA_PRESETS

    def _build_model(self, vocab_size: int, max_positions: int):
        return build_llama(self.preset, vocab_size, max_positions)

    @classmethod
    def _model_from_config(cls, config: dict):
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig.from_dict(config))

    def _backbone_hidden(self, model, input_ids):
        return model.model(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, T, D)

    def _make_decoder(self, batch_size: int, max_steps: int):
        return LlamaStepDecoder(self.model_, batch_size, max_steps)


def build_llama(preset: str, vocab_size: int, max_positions: int):
    """A randomly initialised ``LlamaForCausalLM`` of the given preset."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max(64, max_positions),
                      pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=False,
                      attn_implementation="sdpa", **get_preset(LLAMA_PRESETS, preset))
    return LlamaForCausalLM(cfg)


class LlamaStepDecoder:
    """One-token-at-a-time forward of a ``LlamaForCausalLM`` with a static KV cache.

    ``step(tokens (B,), t)`` feeds the token at position ``t`` and returns the final-norm hidden
    state ``(B, D)`` of that position (the LM head is applied by the caller, on the rows it needs).
    """

    def __init__(self, model, batch_size: int, max_steps: int):
        import torch

        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        if cfg.num_key_value_heads != self.n_heads:
            raise ConfigError("LlamaStepDecoder needs num_key_value_heads == num_attention_heads")
        self.head_dim = cfg.head_dim
        inner = model.model
        self.embed = inner.embed_tokens.weight  # (V, D)
        self.eps = cfg.rms_norm_eps
        self.layers = []
        for layer in inner.layers:
            at, mlp = layer.self_attn, layer.mlp
            self.layers.append(dict(
                ln1=layer.input_layernorm.weight, ln2=layer.post_attention_layernorm.weight,
                qkv=torch.cat([at.q_proj.weight, at.k_proj.weight, at.v_proj.weight]),  # (3HD, D)
                qkv_b=None if at.q_proj.bias is None else torch.cat([at.q_proj.bias, at.k_proj.bias, at.v_proj.bias]),
                o=at.o_proj.weight, o_b=at.o_proj.bias,
                gu=torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),  # (2I, D)
                down=mlp.down_proj.weight))
        self.norm = inner.norm.weight
        dev, dtype = self.embed.device, self.embed.dtype
        pos = torch.arange(max_steps + 1, device=dev)[None]  # (1, T)
        cos, sin = inner.rotary_emb(self.embed[:1][None], pos)  # (1, T, hd) each
        self.cos, self.sin = cos[0], sin[0]  # (T, hd)
        shape = (len(self.layers), batch_size, self.n_heads, max_steps + 1, self.head_dim)
        self.k_cache = torch.zeros(shape, device=dev, dtype=dtype)  # (L, B, H, T, hd)
        self.v_cache = torch.zeros(shape, device=dev, dtype=dtype)  # (L, B, H, T, hd)

    def _rms(self, x, w):
        import torch

        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def _rope(self, x, t):
        import torch

        half = x.shape[-1] // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * self.cos[t] + rot * self.sin[t]

    def step(self, tokens, t: int):
        import torch.nn.functional as F

        b, h, hd = tokens.shape[0], self.n_heads, self.head_dim
        x = self.embed[tokens]  # (B, D)
        for i, p in enumerate(self.layers):
            qkv = F.linear(self._rms(x, p["ln1"]), p["qkv"], p["qkv_b"]).view(b, 3, h, hd)  # (B, 3, H, hd)
            q = self._rope(qkv[:, 0], t)  # (B, H, hd)
            self.k_cache[i, :, :, t] = self._rope(qkv[:, 1], t)
            self.v_cache[i, :, :, t] = qkv[:, 2]
            att = F.scaled_dot_product_attention(
                q[:, :, None], self.k_cache[i, :, :, :t + 1], self.v_cache[i, :, :, :t + 1])  # (B, H, 1, hd)
            x = x + F.linear(att.reshape(b, h * hd), p["o"], p["o_b"])  # (B, D)
            gate, up = F.linear(self._rms(x, p["ln2"]), p["gu"]).chunk(2, dim=-1)  # (B, I) each
            x = x + F.linear(F.silu(gate) * up, p["down"])  # (B, D)
        return self._rms(x, self.norm)  # (B, D)
