"""LEAD's per-frame vision encoder.

The frames it encodes come from :func:`trafficgen.representations.traffic_image.traffic_frames`
(LEAD's Traffic-to-Image step), computed once for a whole scaled series by the forecaster.

:class:`VisionEncoder` is LEAD's frame encoder: a 3x3 stem convolution to ``d_v`` channels,
residual blocks without stride or pooling (the N x N resolution is kept, so every OD pair keeps
its own feature), then spatial self-attention over the N*N positions and attention pooling to
one vector per frame. The residual blocks reuse diffusers' ``ResnetBlock2D``; the spatial
attention is ``torch.nn.MultiheadAttention``. Only the wiring is ours.
"""
from __future__ import annotations

import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn


class VisionEncoder(nn.Module):
    """Per-frame encoder: (B, T, C, N, N) -> (B, T, d_out)."""

    def __init__(self, *, in_channels: int, d_v: int, n_res_blocks: int, d_out: int, n_heads: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, d_v, kernel_size=3, padding=1)
        groups = min(8, d_v)
        self.blocks = nn.ModuleList(
            [ResnetBlock2D(in_channels=d_v, out_channels=d_v, temb_channels=None, groups=groups)
             for _ in range(n_res_blocks)])
        self.norm = nn.LayerNorm(d_v)
        self.spatial_attn = nn.MultiheadAttention(d_v, n_heads, batch_first=True)
        self.pool_query = nn.Parameter(torch.randn(1, 1, d_v) * d_v ** -0.5)
        self.pool_attn = nn.MultiheadAttention(d_v, n_heads, batch_first=True)
        self.out = nn.Linear(d_v, d_out)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, c, n, _ = frames.shape
        x = self.stem(frames.reshape(b * t, c, n, n))  # (B*T, D_v, N, N)
        for block in self.blocks:
            x = block(x, None)  # (B*T, D_v, N, N)
        x = x.flatten(2).transpose(1, 2)  # (B*T, N*N, D_v)
        h = self.norm(x)
        x = x + self.spatial_attn(h, h, h, need_weights=False)[0]  # (B*T, N*N, D_v)
        q = self.pool_query.expand(b * t, -1, -1)  # (B*T, 1, D_v)
        pooled = self.pool_attn(q, x, x, need_weights=False)[0][:, 0]  # (B*T, D_v)
        return self.out(pooled).reshape(b, t, -1)  # (B, T, d_out)
