"""DDPM-TME denoiser (an MLP-ResNet over the latent with a timestep embedding) and the DDIM
sampler used for synthesis and, differentiably, for estimation.

The timestep embedding uses diffusers' ``Timesteps`` + ``TimestepEmbedding``; the noise schedule
is diffusers' ``DDPMScheduler`` (linear betas 1e-4..0.02) and the DDIM step indices come from
``DDIMScheduler.set_timesteps`` ("trailing" spacing, so the first step starts at t = T - 1).
The DDIM update itself is written out here (:func:`ddim_sample`) from the scheduler's
``alphas_cumprod`` so that gradients flow to the initial noise ``x_T`` and to every per-step noise
``z_t`` (the scheduler's ``step`` draws its own noise). With ``eta = 0`` it matches
``DDIMScheduler.step`` exactly (tested), for both prediction types.

Prediction type: ``"epsilon"`` (the DDPM paper's noise prediction) or ``"v_prediction"``
(Salimans & Ho 2022, ``v = sqrt(a) eps - sqrt(1 - a) x0``; diffusers' name). With epsilon
prediction the first DDIM step at t = T - 1 computes ``x0 = (x - sqrt(1 - a) eps) / sqrt(a)`` with
``1 / sqrt(a) ~ 150``: a denoiser that is not trained to near-exact identity at high noise (any
small model on a CPU budget) amplifies its error there and samples explode (latent std ~25 instead
of 1 after 40 Abilene epochs). With v-prediction ``x0 = sqrt(a) x - sqrt(1 - a) v`` has no such
amplification, which is why DDPM-TME defaults to it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["DenoiserConfig", "MLPResNetDenoiser", "make_schedulers", "ddim_timesteps", "ddim_sample",
           "PREDICTION_TYPES", "training_target", "predicted_x0_eps"]

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass
class DenoiserConfig:
    latent_dim: int = 128
    width: int = 256
    n_blocks: int = 4
    time_dim: int = 128
    #: size of the conditioning vector (0: unconditional, the paper's model)
    cond_dim: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class _ResBlock(nn.Module):
    def __init__(self, width: int, time_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.temb = nn.Linear(time_dim, width)
        self.fc2 = nn.Linear(width, width)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        u = self.act(self.fc1(self.norm(h)) + self.temb(temb))  # (B, W)
        return h + self.fc2(u)  # (B, W)


class MLPResNetDenoiser(nn.Module):
    """eps_theta(x_t, t[, c]): (B, D) latent + (B,) integer timesteps [+ (B, cond_dim) condition]
    -> (B, D) predicted noise (or v). With ``cond_dim > 0`` the condition goes through a two-layer
    MLP added to the timestep embedding (like a class embedding in diffusers' UNets) and through a
    linear layer added to the input projection; with ``cond_dim = 0`` the module is exactly the
    unconditional one."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.config = config
        self.time_proj = Timesteps(config.time_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(config.time_dim, config.time_dim)
        self.inp = nn.Linear(config.latent_dim, config.width)
        self.blocks = nn.ModuleList(_ResBlock(config.width, config.time_dim) for _ in range(config.n_blocks))
        self.out_norm = nn.LayerNorm(config.width)
        self.out = nn.Linear(config.width, config.latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if config.cond_dim:  # created last: an unconditional model's init stays bit-identical
            self.cond_embed = nn.Sequential(nn.Linear(config.cond_dim, config.time_dim), nn.SiLU(),
                                            nn.Linear(config.time_dim, config.time_dim))
            self.cond_in = nn.Linear(config.cond_dim, config.width)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.time_embed(self.time_proj(t).to(x.dtype))  # (B, Td)
        if self.config.cond_dim:
            if cond is None:
                raise ValueError("this denoiser is conditional: pass cond (B, cond_dim)")
            temb = temb + self.cond_embed(cond)  # (B, Td)
            h = self.inp(x) + self.cond_in(cond)  # (B, W)
        else:
            h = self.inp(x)  # (B, W)
        for block in self.blocks:
            h = block(h, temb)  # (B, W)
        return self.out(torch.nn.functional.silu(self.out_norm(h)))  # (B, D)


def make_schedulers(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                    prediction_type: str = "epsilon"):
    """(DDPMScheduler for training, DDIMScheduler for step indices) with the same linear betas."""
    from diffusers import DDIMScheduler, DDPMScheduler

    kw = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
              beta_schedule="linear", clip_sample=False, prediction_type=prediction_type)
    return DDPMScheduler(**kw), DDIMScheduler(**kw, timestep_spacing="trailing", set_alpha_to_one=True)


def ddim_timesteps(ddim_scheduler, steps: int) -> list[tuple[int, int]]:
    """[(t, t_prev), ...] of a ``steps``-step DDIM run (t_prev = -1 at the end)."""
    ddim_scheduler.set_timesteps(steps)
    ts = [int(t) for t in ddim_scheduler.timesteps]
    gap = ddim_scheduler.config.num_train_timesteps // steps
    return [(t, t - gap) for t in ts]


def training_target(x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """What the denoiser regresses on: eps, or v = sqrt(a) eps - sqrt(1 - a) x0 (a: (B, 1))."""
    if prediction_type == "epsilon":
        return eps
    return a.sqrt() * eps - (1 - a).sqrt() * x0  # (B, D)


def predicted_x0_eps(out: torch.Tensor, x: torch.Tensor, a: torch.Tensor, prediction_type: str):
    """(x0_hat, eps_hat) from the denoiser output at x_t = x with alpha_cumprod a."""
    if prediction_type == "epsilon":
        return (x - (1 - a).sqrt() * out) / a.sqrt(), out
    return a.sqrt() * x - (1 - a).sqrt() * out, (1 - a).sqrt() * x + a.sqrt() * out


def ddim_sample(denoiser: nn.Module, x_T: torch.Tensor, noises: torch.Tensor | None,
                alphas_cumprod: torch.Tensor, pairs: list[tuple[int, int]], eta: float = 0.0,
                prediction_type: str = "epsilon", cond: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable DDIM: x_T (B, D), noises (B, S, D) per-step z_t (ignored when eta = 0)
    [, cond (B, C) for a conditional denoiser] -> x_0 (B, D). x_{t'} = sqrt(a') x0 + sqrt(1 - a' - s^2) eps + s z with
    s = eta sqrt((1 - a') / (1 - a)) sqrt(1 - a / a')."""
    x = x_T  # (B, D)
    for k, (t, t_prev) in enumerate(pairs):
        a = alphas_cumprod[t]
        a_prev = alphas_cumprod[t_prev] if t_prev >= 0 else alphas_cumprod.new_tensor(1.0)
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = denoiser(x, tt) if cond is None else denoiser(x, tt, cond)
        x0, eps = predicted_x0_eps(out, x, a, prediction_type)  # (B, D) each
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma ** 2).clamp_min(0).sqrt() * eps  # (B, D)
        if eta > 0 and noises is not None and t_prev >= 0:
            x = x + sigma * noises[:, k]  # (B, D)
    return x
