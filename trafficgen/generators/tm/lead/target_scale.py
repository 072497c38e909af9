"""The divisor that turns LEAD's residual (or value) in z units into its diffusion target.

``residual=False`` (the paper): the target is z[o+h] itself, already in [-1, 1] (DDPM's data
range), divisor 1. ``residual=True``: the residual z[o+h] - anchor is small (std ~0.05) and very
heavy-tailed (kurtosis 30-80 on Abilene/GEANT with the last-value anchor: half of the entries
within 0.2 std, a few at 20-30 std), and its spread differs by orders of magnitude between OD
pairs. ``scaling``:

* ``"od_std"`` (LEAD's default): its training std per horizon and OD pair, floored at 5 % of the
  horizon's median pair (flat pairs would otherwise get a near-zero divisor and blow up);
* ``"std"``: one std per horizon (unit variance overall, tails to +-30);
* a float q in (0, 1]: the q-quantile of |residual| per horizon, so a fraction q of the training
  targets lies in [-1, 1] (q = 1: all of them).
"""
from __future__ import annotations

import torch

from trafficgen.errors import ConfigError

__all__ = ["fit_target_scale"]


def fit_target_scale(resid: torch.Tensor, *, residual: bool, scaling) -> torch.Tensor:
    """Divisor (H,) or (H, N, N) from training residuals ``resid`` (B, H, N, N), at least 1e-4."""
    h = resid.shape[1]
    if not residual:
        scale = torch.ones(h)
    elif scaling == "od_std":
        sd = resid.std(dim=0)  # (H, N, N)
        floor = 0.05 * sd.flatten(1).median(dim=1).values.clamp_min(1e-4)  # (H,)
        scale = torch.maximum(sd, floor[:, None, None])  # (H, N, N)
    elif scaling == "std":
        scale = resid.std(dim=(0, 2, 3))  # (H,)
    elif isinstance(scaling, (int, float)) and not isinstance(scaling, bool) and 0 < float(scaling) <= 1:
        flat = resid.abs().transpose(0, 1).reshape(h, -1)  # (H, B*N*N)
        scale = torch.quantile(flat[:, :: max(1, flat.shape[1] // 1_000_000)], float(scaling), dim=1)  # (H,)
    else:
        raise ConfigError(f"target_scaling must be 'od_std', 'std' or a quantile in (0, 1], got {scaling!r}")
    return scale.clamp_min(1e-4)
