"""DDPM-TME preprocessing: OD-vector scaling, embedding network E and recovery network R.

Scaling (:func:`flow_scaler`): OD magnitudes span many orders of magnitude (Abilene flows differ
by ~3000x in mean; GEANT has all-zero flows next to Gbit/s ones), so each flow ``i`` is mapped
``u_i = log1p(x_i / s_i)`` with ``s_i`` the flow's training mean times ``flow_scale``, then
standardised per flow; the inverse is bounded by the flow's training maximum, differentiable and
non-negative (:class:`~trafficgen.representations.od_scaler.ODLogScaler` with per-OD scale).

E (:class:`Embedding`) is the paper's two linear layers with a LeakyReLU, followed by a
parameter-free LayerNorm: it fixes the latent's scale to what the diffusion schedule assumes and
stops joint training from shrinking the latent to make the diffusion loss trivially small (our
addition, written here because no library layer does this). R (:class:`Recovery`) is one
linear layer.
"""
from __future__ import annotations

import torch
from torch import nn

from trafficgen.representations.od_scaler import ODLogScaler

__all__ = ["flow_scaler", "Embedding", "Recovery"]


def flow_scaler(flow_scale: float = 1.0) -> ODLogScaler:
    """The estimators' scaler (DDPM-TME, VAE-TME, WGAN-GP-TME): per-flow ``log1p(x / s_i)`` with
    ``s_i`` the flow's training mean times ``flow_scale``, standardised per flow (a flat flow only
    centred), the inverse bounded by the flow's training maximum (see
    :class:`~trafficgen.representations.od_scaler.ODLogScaler`)."""
    return ODLogScaler(scale="per_od", relative_scale=flow_scale, min_std=1e-6, flat_std="unit", bounded=True)


class Embedding(nn.Module):
    """E: (B, n_od) scaled OD vector -> (B, latent_dim) latent (Linear, LeakyReLU, Linear, LayerNorm)."""

    def __init__(self, n_od: int, latent_dim: int, hidden_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_od, hidden_dim), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden_dim, latent_dim))
        self.norm = nn.LayerNorm(latent_dim, elementwise_affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(x))  # (B, D)


class Recovery(nn.Module):
    """R: (B, latent_dim) -> (B, n_od) scaled OD vector (one linear layer)."""

    def __init__(self, latent_dim: int, n_od: int):
        super().__init__()
        self.linear = nn.Linear(latent_dim, n_od)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)  # (B, n_od)
