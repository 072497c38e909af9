"""The conditional U-Net of LEAD: diffusers ``UNet2DConditionModel`` plus pad/crop helpers.

Three levels (base channels 32, multipliers 1, 2, 4 by default; 2 res blocks per level).
Cross-attention to ``c_seq`` sits on the two downsampled levels and the middle block only (at
full resolution it costs ~5x per step on CPU). ``c_global`` (+ the horizon embedding) enters as a
projection class embedding added to the time embedding, and the res blocks use scale-shift
GroupNorm (AdaGN / FiLM). Sizes that are not multiples of 4 (22x22, 23x23) are padded with
zeros and cropped back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel


def padded_size(n: int, levels: int) -> int:
    """Smallest size >= n divisible by 2 ** (levels - 1)."""
    m = 2 ** (levels - 1)
    return -(-n // m) * m


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    n = x.shape[-1]
    return x if n == size else F.pad(x, (0, size - n, 0, size - n))  # (..., size, size)


def crop_to(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[..., :n, :n]  # (..., n, n)


def build_unet(*, n_nodes: int, in_channels: int, channels: tuple[int, ...], layers_per_block: int,
               cross_dim: int, cond_dim: int, head_dim: int = 8) -> UNet2DConditionModel:
    levels = len(channels)
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1)
    up = ("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",)
    return UNet2DConditionModel(
        sample_size=padded_size(n_nodes, levels),
        in_channels=in_channels,
        out_channels=1,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(channels),
        layers_per_block=layers_per_block,
        norm_num_groups=min(8, channels[0]),
        cross_attention_dim=cross_dim,
        attention_head_dim=head_dim,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=cond_dim,
        resnet_time_scale_shift="scale_shift",
    )
