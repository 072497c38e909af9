"""LEAD's dual conditioning from the LM outputs H_out (B, T, H).

* ``c_global`` = attention pooling over the T tokens with one trainable query
  (``nn.MultiheadAttention``), projected to ``cond_dim``; it enters the U-Net through the
  time-embedding path (projection class embedding + scale-shift GroupNorm = AdaGN / FiLM).
* ``c_seq`` = LayerNorm(H_out W_seq), (B, T, cross_dim): the keys/values of the U-Net's
  cross-attention.

Either path is absent (returns ``None``) under the "no c_global" / "no c_seq" ablations.
"""
from __future__ import annotations

import torch
from torch import nn


class DualConditioning(nn.Module):
    def __init__(self, *, hidden: int, cond_dim: int, cross_dim: int, use_global: bool = True,
                 use_seq: bool = True):
        super().__init__()
        self.use_global = use_global
        self.use_seq = use_seq
        if use_global:
            heads = 4 if hidden % 4 == 0 else 1
            self.query = nn.Parameter(torch.randn(1, 1, hidden) * hidden ** -0.5)
            self.pool = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.global_proj = nn.Linear(hidden, cond_dim)
        if use_seq:
            self.seq_proj = nn.Linear(hidden, cross_dim)
            self.seq_norm = nn.LayerNorm(cross_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        c_global = c_seq = None
        if self.use_global:
            q = self.query.expand(h.shape[0], -1, -1)  # (B, 1, H)
            pooled = self.pool(q, h, h, need_weights=False)[0][:, 0]  # (B, H)
            c_global = self.global_proj(pooled)  # (B, cond_dim)
        if self.use_seq:
            c_seq = self.seq_norm(self.seq_proj(h))  # (B, T, cross_dim)
        return c_global, c_seq
