"""Class-conditioned sampling of a diffusers denoiser: schedulers by name and the guided loop.

* :func:`make_scheduler` - ``"ddim"`` (deterministic, ``eta = 0``), ``"dpmsolver++"``
  (2nd-order multistep, data prediction) or ``"unipc"`` (diffusers'
  ``DDIMScheduler`` / ``DPMSolverMultistepScheduler`` / ``UniPCMultistepScheduler``) over a
  training noise schedule, ``"trailing"`` timesteps (the first step is ``t = 999``, the noise level
  pure noise has). All clip the image estimate to [-1, 1]: DDIM through ``clip_sample`` and
  ``use_clipped_model_output=True`` (the noise estimate re-derived from the clipped image), the
  multistep solvers through ``thresholding`` with ``sample_max_value = 1`` (the dynamic threshold
  ``max(1, quantile)`` capped at 1 is a plain clip of their data estimate).
* :func:`guided_denoise` - the loop over the timesteps for one batch, with classifier-free
  guidance ``out_u + w (out_c - out_u)`` (one batched pass over ``[x, x]`` with the class and the
  null labels; ``w = 1``: one plain conditional pass).
"""
from __future__ import annotations

import contextlib

from trafficgen.errors import ConfigError

#: Samplers by name and how progress lines call them.
SAMPLERS = ("ddim", "dpmsolver++", "unipc")
SAMPLER_LABELS = {"ddim": "DDIM", "dpmsolver++": "DPM-Solver++", "unipc": "UniPC"}


def make_scheduler(name: str, schedule: dict):
    """A fresh diffusers scheduler ``name`` over ``schedule`` (``DDPMScheduler`` keyword arguments:
    ``num_train_timesteps``, ``beta_schedule``, ``prediction_type``, ``clip_sample`` ...)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    if name == "ddim":
        return DDIMScheduler(**schedule, timestep_spacing="trailing")
    if name not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {name!r}")
    kw = dict(num_train_timesteps=schedule["num_train_timesteps"], beta_schedule=schedule["beta_schedule"],
              prediction_type=schedule["prediction_type"], thresholding=True, sample_max_value=1.0,
              timestep_spacing="trailing", solver_order=2, lower_order_final=True)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler(**kw, algorithm_type="dpmsolver++")
    return UniPCMultistepScheduler(**kw, predict_x0=True)


def guided_denoise(model, scheduler, x, labels, *, steps: int, guidance_scale: float, null_label: int,
                   on_step=lambda: None, forward_context=contextlib.nullcontext):
    """Denoise one batch ``x`` (B, C, H, W) of pure noise for class ids ``labels`` (B,) in ``steps``
    scheduler steps; returns the final sample (B, C, H, W). ``model(x, t, class_labels=y).sample``
    is a diffusers U-Net. Resets the scheduler (a multistep solver keeps a history).
    ``forward_context()`` wraps each U-Net pass (e.g. a bf16 autocast); its output is cast back to
    ``x``'s dtype, so the solver's update runs in ``x``'s precision."""
    import torch

    w = float(guidance_scale)
    scheduler.set_timesteps(int(steps))
    y = labels if w == 1.0 else torch.cat([labels, torch.full_like(labels, null_label)])  # (B,) or (2B,)
    ddim = type(scheduler).__name__ == "DDIMScheduler"
    for t in scheduler.timesteps:
        with forward_context():
            out = model(x if w == 1.0 else torch.cat([x, x]), t, class_labels=y).sample.to(x.dtype)
        if w == 1.0:
            pred = out  # (B, C, H, W)
        else:
            pred_c, pred_u = out.chunk(2)  # (B, C, H, W) each
            pred = pred_u + w * (pred_c - pred_u)  # (B, C, H, W)
        if ddim:  # noise estimate re-derived from the clipped image estimate
            x = scheduler.step(pred, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
        else:
            x = scheduler.step(pred, t, x).prev_sample  # (B, C, H, W)
        on_step()
    return x


__all__ = ["SAMPLERS", "SAMPLER_LABELS", "make_scheduler", "guided_denoise"]
