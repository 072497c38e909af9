"""Reverse diffusion for LEAD: one batch of windows -> samples in target units.

``make_scheduler(train_config, sampler, steps)``: diffusers ``DPMSolverMultistepScheduler``
(DPM-Solver++, order 2; ``"dpm"``) or ``DDIMScheduler`` (eta 0, the paper's; ``"ddim"``) built
from the training ``DDPMScheduler``'s config, so both share its betas and prediction type.
:func:`sample_batch` encodes each window once, repeats the conditioning for every sample and
horizon, and runs all ``b x S x H`` reverse chains as one U-Net batch on the network's device:
the initial noise is drawn from the CPU generator and moved there (the samplers add no noise of
their own: DPM-Solver++ and DDIM with eta 0 are deterministic), so CPU samples do not depend on
the device code and a GPU run starts from the same noise.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["make_scheduler", "sample_batch"]


def make_scheduler(train_config, sampler: str, steps: int):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    cls = DPMSolverMultistepScheduler if sampler == "dpm" else DDIMScheduler
    sched = cls.from_config(train_config)
    sched.set_timesteps(int(steps))
    return sched


def _repeat(c: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Repeat each batch row ``n`` times (conditioning shared by horizons and samples)."""
    return None if c is None else c.repeat_interleave(n, dim=0)  # (B * n, ...)


@torch.no_grad()
def sample_batch(net, scheduler, frames: torch.Tensor, index: torch.Tensor, anchors: torch.Tensor | None,
                 hidx: list[int], n_samples: int, gen: torch.Generator) -> np.ndarray:
    """Samples (b, S, H, N, N) in target units. ``frames`` (T, C, N, N) of the series, ``index``
    (b, T_in) window frames, ``anchors`` (b, H, N, N) in z units (None: no anchor channel),
    ``scheduler`` a fresh one (multistep solvers keep state between steps). ``frames`` and
    ``anchors`` are on the network's device, ``index`` anywhere; the result is on the CPU."""
    b, s, h = len(index), int(n_samples), len(hidx)
    n, device = frames.shape[-1], frames.device
    c_global, c_seq = net.encode_indexed(frames, index)  # (b, cond), (b, T, cross)
    rep = s * h
    cg, cs = _repeat(c_global, rep), _repeat(c_seq, rep)
    hz = torch.tensor(hidx).repeat(b * s).to(device)  # (b*S*H,) in (b, s, h) order
    anc = None if anchors is None else anchors[:, None].expand(-1, s, -1, -1, -1).reshape(b * rep, 1, n, n)
    x = torch.randn((b * rep, 1, n, n), generator=gen).to(device)  # (B', 1, N, N): CPU draws, moved
    for t in scheduler.timesteps:  # the scheduler's timesteps stay on the CPU (it indexes its tables with them)
        out = net.denoise(x, t.to(device).expand(x.shape[0]), hz, cg, cs, anc)  # (B', 1, N, N)
        x = scheduler.step(out, t, x).prev_sample  # (B', 1, N, N)
    return x.reshape(b, s, h, n, n).cpu().numpy().astype(np.float64)
