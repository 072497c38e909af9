"""Traffic-to-Image frames and LEAD's per-frame vision encoder.

:func:`traffic_frames` turns a normalised TM series into RGB frames (value, first difference,
second difference), as LEAD's Traffic-to-Image step; it is computed once for a whole series and
windows are views into it (the one part of the input pipeline that can be cached).

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


def traffic_frames(z: torch.Tensor, *, grayscale: bool = False) -> torch.Tensor:
    """RGB Traffic-to-Image frames of a normalised series.

    ``z`` (T, N, N) -> (T, 3, N, N) = [z_t, z_t - z_{t-1}, (z_t - z_{t-1}) - (z_{t-1} - z_{t-2})];
    the differences are 0 where the series has no earlier matrix. ``grayscale`` keeps only the
    value channel -> (T, 1, N, N) (the paper's grayscale ablation).
    """
    if grayscale:
        return z[:, None]  # (T, 1, N, N)
    d1 = torch.zeros_like(z)
    d1[1:] = z[1:] - z[:-1]  # (T, N, N)
    d2 = torch.zeros_like(z)
    d2[2:] = d1[2:] - d1[1:-1]  # (T, N, N)
    return torch.stack([z, d1, d2], dim=1)  # (T, 3, N, N)


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
