"""DDPM-TME estimation (the paper's Algorithm 2): traffic matrices from link loads.

For link loads ``Y`` (T, L) and a routing matrix ``A`` (n_od, L) (``Y = X_flat @ A``):

1. draw ``n_init`` candidate noise sets (x_T and the per-step z_t), sample them with DDIM and keep,
   for every target, the candidate with the smallest link-load misfit ``||x_hat A - y||``. The
   candidate pool is shared by all targets of a batch (same distribution as per-target pools,
   ``n_init`` samples instead of ``T * n_init``);
2. optimise all sampling noises of the batch with Adam through the differentiable DDIM sampler
   for ``n_opt`` iterations on the relative L1 (``sum|x_hat A - y| / sum y``) or L2 misfit;
3. decode to real units, clip at 0 (non-negativity), and, with ``project_iters > 0``, use the
   result as the prior of a weighted least-squares projection onto the link constraints
   (tomogravity's step with the diffusion estimate in place of the gravity model), clipping at 0
   after each round, so the estimate satisfies ``x_hat A ~ y``.

Everything is batched over time points: a batch of B targets optimises tensors (B, D) and
(B, S, D) at once.
"""
from __future__ import annotations

import numpy as np
import torch

from trafficgen.errors import ConfigError
from trafficgen.generators.tm_estimation.classic import weighted_projection

__all__ = ["estimate_tm", "link_misfit", "refine_to_link_loads", "best_of_pool"]


def _as_inputs(Y, A, n_od: int) -> tuple[np.ndarray, np.ndarray]:
    Y = np.asarray(Y, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[None]
    if A.shape[0] != n_od or Y.ndim != 2 or Y.shape[1] != A.shape[1]:
        raise ConfigError(f"link loads {Y.shape} / routing {A.shape} do not match a model with "
                          f"{n_od} OD pairs (expected Y (T, L), A ({n_od}, L))")
    if not np.all(np.isfinite(Y)):
        raise ConfigError("link loads contain NaN or infinite values")
    return Y, A


def link_misfit(x: torch.Tensor, y: torch.Tensor, A: torch.Tensor, loss: str = "l1") -> torch.Tensor:
    """Per-target relative misfit: x (B, n_od), y (B, L), A (n_od, L) -> (B,)."""
    r = x @ A - y  # (B, L)
    if loss == "l1":
        return r.abs().sum(1) / y.abs().sum(1).clamp_min(1e-12)  # (B,)
    if loss == "l2":
        return (r ** 2).sum(1) / (y ** 2).sum(1).clamp_min(1e-24)  # (B,)
    raise ConfigError(f"loss must be 'l1' or 'l2', got {loss!r}")


def best_of_pool(pool_x: np.ndarray, Y: np.ndarray, A: np.ndarray, loss: str = "l1",
                 chunk: int = 256) -> np.ndarray:
    """Index (T,) of the pool member (P, n_od) with the smallest link misfit for each target."""
    yp = torch.as_tensor(pool_x @ A)  # (P, L)
    out = []
    for s in range(0, len(Y), chunk):
        y = torch.as_tensor(Y[s:s + chunk])  # (b, L)
        r = yp[None] - y[:, None]  # (b, P, L)
        if loss == "l1":
            m = r.abs().sum(-1) / y.abs().sum(-1, keepdim=True).clamp_min(1e-12)  # (b, P)
        else:
            m = (r ** 2).sum(-1) / (y ** 2).sum(-1, keepdim=True).clamp_min(1e-24)  # (b, P)
        out.append(m.argmin(1).numpy())
    return np.concatenate(out)


def refine_to_link_loads(x: np.ndarray, Y: np.ndarray, A: np.ndarray, *, project_iters: int = 3) -> np.ndarray:
    """Clip at 0, then ``project_iters`` rounds of (weighted LS projection onto x A = y with the
    current estimate as prior and weight, clip at 0). Returns (T, n_od)."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
    for _ in range(project_iters):
        w = x + 0.05 * np.maximum(x.mean(1, keepdims=True), 1e-30)  # (T, n_od); zero flows stay adjustable
        x = np.clip(weighted_projection(x, Y, A, weights=w), 0.0, None)
    return x


def estimate_tm(model, link_loads, routing, *, n_init: int = 256, n_opt: int = 100, lr: float = 0.05,
                steps: int | None = 10, eta: float | None = None, loss: str = "l1", batch_size: int = 256,
                project_iters: int = 3, random_state: int = 0, progress: bool = False,
                return_raw: bool = False):
    """Algorithm 2 with a fitted :class:`~trafficgen.generators.ddpm_tme.model.DDPMTME`.

    Returns the estimates (T, n_od) in the model's unit; with ``return_raw`` also the diffusion
    estimate before the link projection (clipped at 0). ``eta`` (default: the model's, or 1.0
    when the model uses 0) > 0 makes the per-step noises z_t part of what is optimised.
    """
    model._check_fitted()
    n_od = model.n_nodes_ ** 2
    Y, A = _as_inputs(link_loads, routing, n_od)
    if n_init < 1 or n_opt < 0 or batch_size < 1:
        raise ConfigError("need n_init >= 1, n_opt >= 0, batch_size >= 1")
    eta = (model.eta if model.eta > 0 else 1.0) if eta is None else float(eta)
    steps = int(steps or model.sampling_steps)
    gen = torch.Generator().manual_seed(int(random_state))
    At = torch.as_tensor(A, dtype=torch.float32)  # (n_od, L)
    # 1. shared candidate pool
    with torch.no_grad():
        pool_T, pool_z = model.draw_noise(n_init, gen, steps=steps)  # (P, D), (P, S, D)
        pool_x = model.decode(model.sample_latents(pool_T, pool_z, steps=steps, eta=eta))  # (P, n_od)
    best = best_of_pool(pool_x, Y, A, loss)  # (T,)
    raw = np.empty((len(Y), n_od))
    batches = list(range(0, len(Y), batch_size))
    it = batches
    if progress:
        from rich.progress import track

        it = track(batches, description="estimating TMs", total=len(batches))
    for s in it:
        sl = slice(s, s + batch_size)
        y = torch.as_tensor(Y[sl], dtype=torch.float32)  # (B, L)
        x_T = pool_T[best[sl]].clone().requires_grad_(True)  # (B, D)
        zs = pool_z[best[sl]].clone().requires_grad_(eta > 0)  # (B, S, D)
        opt = torch.optim.Adam([x_T, zs] if eta > 0 else [x_T], lr=lr)
        best_loss = torch.full((len(y),), float("inf"))
        best_x = torch.as_tensor(pool_x[best[sl]], dtype=torch.float32)  # (B, n_od)
        for _ in range(n_opt):
            lat = model.sample_latents(x_T, zs, steps=steps, eta=eta)  # (B, D)
            x = model.decode_torch(lat)  # (B, n_od)
            per = link_misfit(x.clamp_min(0), y, At, loss)  # (B,)
            with torch.no_grad():
                better = per < best_loss
                best_loss = torch.where(better, per, best_loss)
                best_x[better] = x.clamp_min(0)[better]
            opt.zero_grad()
            per.sum().backward()
            opt.step()
        with torch.no_grad():
            x = model.decode_torch(model.sample_latents(x_T, zs, steps=steps, eta=eta)).clamp_min(0)
            per = link_misfit(x, y, At, loss)
            best_x[per < best_loss] = x[per < best_loss]
        raw[sl] = best_x.double().numpy()
    raw = np.clip(raw, 0.0, None)
    est = refine_to_link_loads(raw, Y, A, project_iters=project_iters) if project_iters > 0 else raw
    return (est, raw) if return_raw else est
