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

    def _backbone_hidden(self, model, input_ids, inputs_embeds=None):
        if inputs_embeds is not None:
            return model.model(inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state  # (B, T, D)
        return model.model(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, T, D)

    def _make_decoder(self, batch_size: int, max_steps: int, dtype=None):
        return LlamaStepDecoder(self.model_, batch_size, max_steps, dtype=dtype)


def build_llama(preset: str, vocab_size: int, max_positions: int):
    """A randomly initialised ``LlamaForCausalLM`` of the given preset."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=max(64, max_positions),
                      pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=False,
                      attn_implementation="sdpa", **get_preset(LLAMA_PRESETS, preset))
    return LlamaForCausalLM(cfg)


def one_query_attention(q, k, v):
    """Softmax attention of one query position over ``T`` cached ones: q (B, H, hd), k / v
    (B, H, T, hd) -> (B, H, hd), scaled by ``hd ** -0.5`` (what ``scaled_dot_product_attention``
    computes for a single query). Written out as broadcast products and sums: for a handful of
    positions it is about 2x faster than SDPA's CPU kernel (1024 rows, 4 heads of 32, T = 2-11:
    0.29-0.62 ms against 0.68-1.28 ms, 2 threads). Scores, softmax and the weighted sum
    accumulate in fp32 whatever the cache's dtype."""
    import torch

    scores = (q[:, :, None] * k).sum(-1, dtype=torch.float32) * q.shape[-1] ** -0.5  # (B, H, T)
    weights = torch.softmax(scores, dim=-1)  # (B, H, T), fp32
    return (weights[..., None] * v).sum(2, dtype=torch.float32).to(v.dtype)  # (B, H, hd)


class LlamaStepDecoder:
    """One-token-at-a-time forward of a ``LlamaForCausalLM`` with a static KV cache.

    ``step(tokens (B,), t)`` feeds the token at position ``t`` and returns the final-norm hidden
    state ``(B, D)`` of that position (the LM head is applied by the caller, on the rows it needs).
    ``dtype`` (default: the model's) is the compute dtype of the copies of the weights and the
    cache; ``torch.bfloat16`` runs the matmuls on AMX / AVX512-BF16 units where the CPU has them.

    Two shortcuts that do not change the result: at ``t == 0`` (the ``<CLASS_x>`` prompt) each
    distinct token is computed once and its keys / values broadcast to its rows (attention over a
    single position is the identity on ``v``).
    """

    def __init__(self, model, batch_size: int, max_steps: int, dtype=None):
        import torch

        from trafficgen.generators.quantization import fused_projection

        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        if cfg.num_key_value_heads != self.n_heads:
            raise ConfigError("LlamaStepDecoder needs num_key_value_heads == num_attention_heads")
        self.head_dim = cfg.head_dim
        inner = model.model
        dtype = inner.embed_tokens.weight.dtype if dtype is None else dtype
        self.dtype = dtype

        def w(t):
            return None if t is None else t.detach().to(dtype)

        self.embed = w(inner.embed_tokens.weight)  # (V, D)
        self.eps = cfg.rms_norm_eps
        self.layers = []
        for layer in inner.layers:
            at, mlp = layer.self_attn, layer.mlp
            self.layers.append(dict(
                ln1=w(layer.input_layernorm.weight), ln2=w(layer.post_attention_layernorm.weight),
                qkv=fused_projection([at.q_proj, at.k_proj, at.v_proj], dtype),  # (B, D) -> (B, 3HD)
                o=fused_projection([at.o_proj], dtype),
                gu=fused_projection([mlp.gate_proj, mlp.up_proj], dtype),  # (B, D) -> (B, 2I)
                down=fused_projection([mlp.down_proj], dtype)))
        self.norm = w(inner.norm.weight)
        dev = self.embed.device
        pos = torch.arange(max_steps + 1, device=dev)[None]  # (1, T)
        cos, sin = inner.rotary_emb(inner.embed_tokens.weight[:1][None], pos)  # (1, T, hd) each
        self.cos, self.sin = cos[0].to(dtype), sin[0].to(dtype)  # (T, hd)
        shape = (len(self.layers), batch_size, self.n_heads, max_steps + 1, self.head_dim)
        self.k_cache = torch.empty(shape, device=dev, dtype=dtype)  # (L, B, H, T, hd); read up to t only
        self.v_cache = torch.empty(shape, device=dev, dtype=dtype)  # (L, B, H, T, hd)

    def _rms(self, x, w):
        import torch.nn.functional as F

        return F.rms_norm(x, w.shape, w, self.eps)

    def _rope(self, x, t):
        import torch

        half = x.shape[-1] // 2
        rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * self.cos[t] + rot * self.sin[t]

    def _mlp(self, x, p):
        import torch.nn.functional as F

        gate, up = p["gu"](self._rms(x, p["ln2"])).chunk(2, dim=-1)  # (B, I) each
        return x + p["down"](F.silu(gate) * up)  # (B, D)

    def step(self, tokens, t: int, extra=None):
        """``extra`` (B, D), optional: added to the input embeddings (at ``t > 0``; the class input)."""

        if t == 0:
            return self._first_step(tokens)
        b, h, hd = tokens.shape[0], self.n_heads, self.head_dim
        x = self.embed[tokens]  # (B, D)
        if extra is not None:
            x = x + extra.to(x.dtype)
        for i, p in enumerate(self.layers):
            qkv = p["qkv"](self._rms(x, p["ln1"])).view(b, 3, h, hd)  # (B, 3, H, hd)
            qk = self._rope(qkv[:, :2], t)  # (B, 2, H, hd)
            q = qk[:, 0]  # (B, H, hd)
            self.k_cache[i, :, :, t] = qk[:, 1]
            self.v_cache[i, :, :, t] = qkv[:, 2]
            att = one_query_attention(q, self.k_cache[i, :, :, :t + 1], self.v_cache[i, :, :, :t + 1])  # (B, H, hd)
            x = x + p["o"](att.reshape(b, h * hd))  # (B, D)
            x = self._mlp(x, p)
        return self._rms(x, self.norm)  # (B, D)

    def _first_step(self, tokens):
        """Position 0: each distinct token once; attention over one position returns ``v``."""
        import torch

        uniq, inverse = torch.unique(tokens, return_inverse=True)  # (U,), (B,)
        u, h, hd = uniq.shape[0], self.n_heads, self.head_dim
        x = self.embed[uniq]  # (U, D)
        for i, p in enumerate(self.layers):
            qkv = p["qkv"](self._rms(x, p["ln1"])).view(u, 3, h, hd)  # (U, 3, H, hd)
            self.k_cache[i, :, :, 0] = self._rope(qkv[:, 1], 0)[inverse]
            self.v_cache[i, :, :, 0] = qkv[:, 2][inverse]
            x = x + p["o"](qkv[:, 2].reshape(u, h * hd))  # (U, D)
            x = self._mlp(x, p)
        return self._rms(x, self.norm)[inverse]  # (B, D)
