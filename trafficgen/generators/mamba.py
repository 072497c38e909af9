"""`MambaGenerator`: a class-conditioned Mamba2 (transformers ``Mamba2ForCausalLM``) over flow tokens.

Training uses the HF model (its torch chunked-scan path on CPU; the mamba-ssm / causal-conv1d
kernels are picked up automatically on CUDA when installed). Sampling uses
:class:`Mamba2StepDecoder`, a lean single-step forward over the model's own weights (the
SSD dual form of the HF ``Mamba2Mixer`` recurrent branch, see its docstring);
``tests/generators/test_mamba.py`` checks it against the HF forward numerically. Written here because the HF per-step path rebuilds caches and
expands tensors on every token, which dominates for a model this small.
"""
from __future__ import annotations

from typing import ClassVar

from trafficgen.generators.causal_lm import CausalLMFlowGenerator
from trafficgen.generators.presets import MAMBA_PRESETS, get_preset


class MambaGenerator(CausalLMFlowGenerator):
    """Class-conditioned Mamba2 flow generator (registry name ``"mamba"``).

    Parameters: see :class:`~trafficgen.generators.causal_lm.CausalLMFlowGenerator`
    (``preset`` in ``"tiny"``, ``"small"`` (~1.8M parameters, matched to LLaMA small), ``"base"``).
    Fitted attributes: ``classes_``, ``class_prior_``, ``class_counts_``, ``tokenizer_``,
    ``model_`` (``Mamba2ForCausalLM``), ``max_packets_``, ``history_``.
    """

    name: ClassVar[str] = "mamba"
    presets: ClassVar[dict[str, dict]] = MAMBA_PRESETS

    def _build_model(self, vocab_size: int, max_positions: int):
        return build_mamba2(self.preset, vocab_size)

    @classmethod
    def _model_from_config(cls, config: dict):
        from transformers import Mamba2Config, Mamba2ForCausalLM

        return Mamba2ForCausalLM(Mamba2Config.from_dict(config))

    def _backbone_hidden(self, model, input_ids, inputs_embeds=None):
        if inputs_embeds is not None:
            return model.backbone(inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state  # (B, T, D)
        return model.backbone(input_ids=input_ids, use_cache=False).last_hidden_state  # (B, T, D)

    def _make_decoder(self, batch_size: int, max_steps: int, dtype=None):
        return Mamba2StepDecoder(self.model_, batch_size, max_steps, dtype=dtype)


def build_mamba2(preset: str, vocab_size: int):
    """A randomly initialised ``Mamba2ForCausalLM`` of the given preset."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    cfg = Mamba2Config(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, bos_token_id=None,
                       tie_word_embeddings=False, chunk_size=64, **get_preset(MAMBA_PRESETS, preset))
    return Mamba2ForCausalLM(cfg)


class Mamba2StepDecoder:
    """One-token-at-a-time Mamba2 forward of a ``Mamba2ForCausalLM`` in the SSD "dual" form.

    ``step(tokens (B,), t)`` consumes the token at position ``t`` (``t`` = 0, 1, ... in order)
    and returns the final-norm hidden state ``(B, D)``.

    The HF recurrent branch keeps the SSM state ``h (B, H, P, N)`` and updates it per token:
    ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t + D x_t``. For flows of at
    most a few dozen tokens it is cheaper to keep, like a KV cache, the per-position ``x_s``,
    ``B_s``, ``dt_s`` and the cumulative log-decay, and compute the same output as
    ``y_t = sum_{s<=t} exp(cum_t - cum_s) dt_s (C_t . B_s) x_s + D x_t``: H*P*N state
    values per layer and flow (~4k floats, several memory passes per token) become ~H*P*t reads.
    The depthwise causal conv keeps its last inputs in a buffer indexed by position.
    """

    def __init__(self, model, batch_size: int, max_steps: int, dtype=None):
        import torch

        from trafficgen.generators.quantization import fused_projection

        bb = model.backbone
        dtype = bb.embeddings.weight.dtype if dtype is None else dtype
        self.dtype = dtype

        # only the in / out projections run in dtype (bf16 on AMX); the residual stream, the norms,
        # the conv and the SSM stay fp32 (bf16 there costs accuracy for little speed)
        self.embed = bb.embeddings.weight.detach()  # (V, D)
        self.norm_f, self.eps_f = bb.norm_f.weight.detach(), bb.norm_f.variance_epsilon
        dev = self.embed.device
        self.layers = []
        for layer in bb.layers:
            m = layer.mixer
            self.layers.append(dict(
                ln=layer.norm.weight.detach(), ln_eps=layer.norm.variance_epsilon,
                in_proj=fused_projection([m.in_proj], dtype),
                conv_w=m.conv1d.weight[:, 0].t().contiguous().detach(),  # (K, C)
                conv_b=None if m.conv1d.bias is None else m.conv1d.bias.detach(),
                A=-torch.exp(m.A_log.detach().float()),  # (H,) fp32: the decay is accumulated in fp32
                dt_bias=m.dt_bias.detach(), D=m.D[:, None].detach(),  # (H,), (H, 1)
                gn=m.norm.weight.detach(), gn_eps=m.norm.variance_epsilon, gn_groups=m.intermediate_size // m.norm.group_size,
                out_proj=fused_projection([m.out_proj], dtype)))
        m0 = bb.layers[0].mixer
        self.n_inner, self.H, self.P = m0.intermediate_size, m0.num_heads, m0.head_dim
        self.G, self.N, self.K = m0.n_groups, m0.ssm_state_size, m0.conv_kernel_size
        self.C = m0.conv_dim
        n, T, b = len(self.layers), max_steps + 1, batch_size
        # conv inputs of every position (zeros before t=0): (L, T+K-1, B, C)
        self.conv_buf = torch.zeros((n, T + self.K - 1, b, self.C), device=dev)
        self.x_hist = torch.zeros((n, b, self.H, T, self.P), device=dev)  # dt_s * x_s
        self.b_hist = torch.zeros((n, b, T, self.G, self.N), device=dev)  # B_s
        self.cum = torch.zeros((n, b, self.H, T), device=dev, dtype=torch.float32)  # sum_{r<=s} dt_r A

    @staticmethod
    def _rms(x, w, eps):
        import torch

        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def step(self, tokens, t: int, extra=None):
        """``extra`` (B, D), optional: added to the input embeddings (the class input)."""
        import torch
        import torch.nn.functional as F

        b, n_in, H, P, G, N, K = tokens.shape[0], self.n_inner, self.H, self.P, self.G, self.N, self.K
        x = self.embed[tokens]  # (B, D)
        if extra is not None:
            x = x + extra.to(x.dtype)
        for i, p in enumerate(self.layers):
            proj = p["in_proj"](self._rms(x, p["ln"], p["ln_eps"]).to(self.dtype))  # (B, n_in+C+H)
            proj = proj.float()
            gate, xbc, dt = proj.split([n_in, self.C, H], dim=-1)
            buf = self.conv_buf[i]  # (T+K-1, B, C)
            buf[t + K - 1] = xbc
            conv = buf[t] * p["conv_w"][0]  # (B, C)
            for k in range(1, K):
                conv = conv.addcmul_(buf[t + k], p["conv_w"][k])
            if p["conv_b"] is not None:
                conv = conv + p["conv_b"]
            conv = F.silu(conv)
            xs, Bm, Cm = conv.split([n_in, G * N, G * N], dim=-1)
            dt = F.softplus(dt + p["dt_bias"])  # (B, H)
            xs = xs.view(b, H, P)  # (B, H, P)
            self.x_hist[i, :, :, t] = dt[:, :, None] * xs
            self.b_hist[i, :, t] = Bm.view(b, G, N)
            cum = self.cum[i]  # (B, H, T)
            cum[:, :, t] = dt * p["A"] + (cum[:, :, t - 1] if t else 0.0)
            decay = torch.exp(cum[:, :, t:t + 1] - cum[:, :, :t + 1])  # (B, H, t+1)
            cb = (self.b_hist[i, :, :t + 1] * Cm.view(b, 1, G, N)).sum(-1)  # (B, t+1, G)
            cb = cb.transpose(1, 2).repeat_interleave(H // G, dim=1)  # (B, H, t+1)
            w = decay * cb  # (B, H, t+1)
            y = (w[..., None] * self.x_hist[i, :, :, :t + 1]).sum(2) + p["D"] * xs  # (B, H, P)
            y = y.reshape(b, n_in) * F.silu(gate)  # (B, n_in)
            g = p["gn_groups"]
            y = (y.view(b, g, n_in // g) * torch.rsqrt(y.view(b, g, n_in // g).pow(2).mean(-1, keepdim=True)
                                                      + p["gn_eps"])).view(b, n_in) * p["gn"]
            x = x + p["out_proj"](y.to(self.dtype))  # (B, D) fp32 + dtype -> fp32
        return self._rms(x, self.norm_f, self.eps_f).to(self.dtype)  # (B, D)
