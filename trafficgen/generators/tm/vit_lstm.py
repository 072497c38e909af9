"""ViT-LSTM traffic-matrix forecaster: a small vision transformer per frame + an LSTM over time.

Each scaled matrix of the input window becomes an RGB Traffic-to-Image frame
(:func:`~trafficgen.representations.traffic_image.traffic_frames`: value ``z_t``, first and second
difference, 0 where they would need a matrix before the window's first one), on the invertible
scale of :class:`~trafficgen.representations.od_scaler.ODLogScaler` rather than the per-matrix
min-max of Eq. 1 (which discards the scale a real-unit forecast needs). Frames are zero-padded
to a multiple of ``patch_size`` (Abilene 12 -> 12, GEANT 22 -> 24 with the default 4). A
``transformers.ViTModel`` built from a tiny ``ViTConfig`` (no pretrained weights: none can be
downloaded, and ImageNet features would not fit 12x12 matrices anyway) encodes every frame to its
[CLS] vector; an LSTM runs over the ``t_in`` vectors; a linear head predicts the change ``z[o + h] - z[o]`` for all
horizons at once (direct multi-horizon head, like the RNN baselines).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trafficgen.errors import ConfigError
from trafficgen.generators.tm.neural import NeuralTMForecaster, persistence_plus
from trafficgen.representations.traffic_image import traffic_frames


@dataclass
class ViTLSTMConfig:
    n_nodes: int
    n_horizons: int
    patch_size: int = 4
    vit_hidden: int = 32
    vit_layers: int = 2
    vit_heads: int = 2
    hidden: int = 64

    @property
    def image_size(self) -> int:
        return -(-self.n_nodes // self.patch_size) * self.patch_size


class ViTLSTMNet(nn.Module):
    """z (B, T_in, N, N) -> z_hat (B, H, N, N)."""

    def __init__(self, config: ViTLSTMConfig):
        super().__init__()
        from transformers import ViTConfig, ViTModel

        self.config = config
        vit_config = ViTConfig(image_size=config.image_size, patch_size=config.patch_size, num_channels=3,
                               hidden_size=config.vit_hidden, num_hidden_layers=config.vit_layers,
                               num_attention_heads=config.vit_heads, intermediate_size=2 * config.vit_hidden,
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.vit = ViTModel(vit_config, add_pooling_layer=False)
        self.lstm = nn.LSTM(config.vit_hidden, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, config.n_horizons * config.n_nodes * config.n_nodes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, t, n, _ = z.shape
        pad = self.config.image_size - n
        frames = traffic_frames(z)  # (B, T, 3, N, N)
        frames = nn.functional.pad(frames, (0, pad, 0, pad))  # (B, T, 3, S, S)
        tokens = self.vit(pixel_values=frames.reshape(b * t, 3, n + pad, n + pad)).last_hidden_state
        cls = tokens[:, 0].reshape(b, t, -1)  # (B, T, D_vit)
        out, _ = self.lstm(cls)  # (B, T, D)
        return persistence_plus(z, self.head(out[:, -1]), self.config.n_horizons)  # (B, H, N, N)


class ViTLSTMForecaster(NeuralTMForecaster):
    """Tiny ViT per Traffic-to-Image frame + LSTM over time; direct multi-horizon head."""

    name = "vit-lstm"

    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20), patch_size: int = 4,
                 vit_hidden: int = 32, vit_layers: int = 2, vit_heads: int = 2, hidden: int = 64,
                 epochs: int = 20, batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 1e-4,
                 patience: int | None = 5, random_state: int | None = 0, progress: bool = True,
                 device: str = "auto", gradient_accumulation_steps: int = 1):
        self.patch_size = patch_size
        self.vit_hidden = vit_hidden
        self.vit_layers = vit_layers
        self.vit_heads = vit_heads
        self.hidden = hidden
        self._common_init(t_in=t_in, horizons=horizons, epochs=epochs, batch_size=batch_size, lr=lr,
                          weight_decay=weight_decay, patience=patience, random_state=random_state,
                          progress=progress, device=device,
                          gradient_accumulation_steps=gradient_accumulation_steps)

    def _build_network(self, n_nodes: int) -> nn.Module:
        if int(self.vit_hidden) % int(self.vit_heads):
            raise ConfigError(f"vit_hidden ({self.vit_hidden}) must be divisible by vit_heads ({self.vit_heads})")
        return ViTLSTMNet(ViTLSTMConfig(n_nodes=n_nodes, n_horizons=len(self.horizons),
                                        patch_size=int(self.patch_size), vit_hidden=int(self.vit_hidden),
                                        vit_layers=int(self.vit_layers), vit_heads=int(self.vit_heads),
                                        hidden=int(self.hidden)))
