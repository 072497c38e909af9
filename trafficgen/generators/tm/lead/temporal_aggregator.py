"""LEAD's causal temporal aggregator (our own layer: no library provides it).

Learnable temporal queries, initialised with sinusoidal positional embeddings, attend over the
per-frame features (plus the same positional embeddings) through ``nn.MultiheadAttention`` with a
lower-triangular mask: query ``t`` sees frames ``<= t`` only, so the token ``Z_st[t]`` never uses
a later frame. A feed-forward block with a residual follows, applied token-wise.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """Transformer sinusoidal positional embeddings, (n, d)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))  # (ceil(d/2),)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe  # (n, d)


class CausalTemporalAggregator(nn.Module):
    """(B, T, D) frame features -> (B, T, D) spatio-temporal tokens Z_st (causal in T)."""

    def __init__(self, *, t_in: int, d_model: int, n_heads: int = 4):
        super().__init__()
        pe = sinusoidal_positions(t_in, d_model)
        self.queries = nn.Parameter(pe.clone())  # (T, D), learnable, initialised with positions
        self.register_buffer("positions", pe, persistent=False)  # (T, D)
        self.register_buffer("mask", torch.triu(torch.ones(t_in, t_in, dtype=torch.bool), 1), persistent=False)
        self.norm_kv = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.norm_ff = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        b, t, _ = feats.shape
        kv = self.norm_kv(feats + self.positions[:t])  # (B, T, D)
        q = self.queries[:t].expand(b, -1, -1)  # (B, T, D)
        z = q + self.attn(q, kv, kv, attn_mask=self.mask[:t, :t], need_weights=False)[0]  # (B, T, D)
        return z + self.ff(self.norm_ff(z))  # (B, T, D)
