"""LEAD's multi-scale adapter and its injection parallel to every FFN of a frozen HF model.

Both are our own layers (the paper's adapter exists in no library; PEFT has LoRA and bottleneck
adapters but not this multi-scale convolutional one). In every transformer block

    h_l = h_{l-1} + LM_block(h_{l-1}) + lambda * Adapter(h_{l-1})

where the adapter reads the FFN's input (the block's hidden state after attention) and its output
is added beside the FFN's output. ``Adapter`` = down-projection to rank ``r`` ->
``SiLU(Conv1d_k3(z) + Conv1d_k5(z))`` over the token axis -> gated up-projection
``W_up(z) * sigmoid(W_gate(z))``. ``W_up`` starts at zero, so the adapted model starts as the
frozen LM exactly. ``multiscale=False`` replaces the two convolutions by one linear layer (the
paper's "no multi-scale conv" ablation).

:func:`inject_adapters` supports the two block layouts of the backbones we load:

* Qwen2 / Llama-style (``model.layers[i].mlp``): ``mlp`` is wrapped, adapter added to its output;
* BERT-style, e.g. MiniLM (``model.encoder.layer[i].intermediate`` / ``.output``): ``output`` is
  wrapped so the adapter output joins the residual sum before the block's LayerNorm.
"""
from __future__ import annotations

import torch
from torch import nn

from trafficgen.errors import ConfigError


class MultiScaleAdapter(nn.Module):
    """(B, T, H) -> (B, T, H)."""

    def __init__(self, *, hidden: int, rank: int, multiscale: bool = True):
        super().__init__()
        self.multiscale = multiscale
        self.down = nn.Linear(hidden, rank)
        if multiscale:
            self.conv3 = nn.Conv1d(rank, rank, kernel_size=3, padding=1)
            self.conv5 = nn.Conv1d(rank, rank, kernel_size=5, padding=2)
        else:
            self.mix = nn.Linear(rank, rank)
        self.act = nn.SiLU()
        self.up = nn.Linear(rank, hidden)
        self.gate = nn.Linear(rank, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.down(x)  # (B, T, r)
        if self.multiscale:
            zc = z.transpose(1, 2)  # (B, r, T)
            z = self.act(self.conv3(zc) + self.conv5(zc)).transpose(1, 2)  # (B, T, r)
        else:
            z = self.act(self.mix(z))  # (B, T, r)
        return self.up(z) * torch.sigmoid(self.gate(z))  # (B, T, H)


class ParallelAdapterMLP(nn.Module):
    """Qwen2/Llama-style block: ``mlp(x) + scale * adapter(x)``."""

    def __init__(self, ffn: nn.Module, adapter: MultiScaleAdapter, scale: float):
        super().__init__()
        self.ffn = ffn
        self.adapter = adapter
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(x) + self.scale * self.adapter(x)  # (B, T, H)


class ParallelAdapterBertOutput(nn.Module):
    """BERT-style block output: ``LayerNorm(dropout(dense(inter)) + x + scale * adapter(x))``
    where ``x`` is the FFN's input (the attention output)."""

    def __init__(self, output: nn.Module, adapter: MultiScaleAdapter, scale: float):
        super().__init__()
        self.ffn_out = output
        self.adapter = adapter
        self.scale = scale

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        o = self.ffn_out
        h = o.dropout(o.dense(hidden_states))  # (B, T, H)
        return o.LayerNorm(h + input_tensor + self.scale * self.adapter(input_tensor))  # (B, T, H)


def transformer_blocks(model: nn.Module) -> tuple[str, list[nn.Module]]:
    """("decoder", model.layers) or ("bert", model.encoder.layer); ConfigError otherwise."""
    if hasattr(model, "layers") and len(model.layers) and hasattr(model.layers[0], "mlp"):
        return "decoder", list(model.layers)
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is not None and len(layers) and hasattr(layers[0], "output") and hasattr(layers[0], "intermediate"):
        return "bert", list(layers)
    raise ConfigError(f"{type(model).__name__}: no Qwen2/Llama-style `layers[i].mlp` or BERT-style "
                      "`encoder.layer[i].output` blocks to attach adapters to")


def inject_adapters(model: nn.Module, *, rank: int, scale: float, multiscale: bool = True) -> list[MultiScaleAdapter]:
    """Attach one adapter per block, in place; returns the adapters (the only trainable part)."""
    kind, blocks = transformer_blocks(model)
    hidden = model.config.hidden_size
    adapters = []
    for block in blocks:
        adapter = MultiScaleAdapter(hidden=hidden, rank=rank, multiscale=multiscale)
        if kind == "decoder":
            block.mlp = ParallelAdapterMLP(block.mlp, adapter, scale)
        else:
            block.output = ParallelAdapterBertOutput(block.output, adapter, scale)
        adapters.append(adapter)
    return adapters
