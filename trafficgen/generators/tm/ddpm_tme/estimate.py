"""DDPM-TME estimation (the paper's Algorithm 2): traffic matrices from link loads.

For link loads ``Y`` (T, L) and a routing matrix ``A`` (n_od, L) (``Y = X_flat @ A``):

1. draw ``n_init`` candidate noise sets (x_T and the per-step z_t), sample them with DDIM and keep,
   for every target, the ``n_starts`` candidates with the smallest link-load misfit
   ``||x_hat A - y||`` (the paper keeps one; more starts average out the choice among the many
   matrices that fit the same loads). The candidate pool is shared by all targets of a batch (same
   distribution as per-target pools, ``n_init`` samples instead of ``T * n_init``);
2. optimise all sampling noises of the batch with Adam through the differentiable DDIM sampler
   for ``n_opt`` iterations on the relative L1 (``sum|x_hat A - y| / sum y``) or L2 misfit,
   keeping each start's best iterate; the diffusion estimate ("raw") is the mean over starts;
3. decode to real units (non-negative by construction) and project onto the link constraints
   with the diffusion estimate as prior: ``projection="kl"`` (default) is the I-projection
   (:func:`~trafficgen.estimation.classic.kl_projection`, minimum KL divergence to
   the prior, exact fit, non-negative), ``"wls"`` is tomogravity's weighted least-squares step
   (``project_iters`` rounds of projection + clip at 0), ``"none"`` returns the raw estimate.
   The paper's code returns the raw decoder output; the projection is our addition so that the
   estimate satisfies ``x_hat A ~ y`` as tomogravity's does.

``start="projected_mean"`` (our addition) replaces steps 1-2 by a conditioning on the observed
loads during sampling, SDEdit-style (Meng et al. 2022): the training mean KL-projected onto ``y``
(the ``mean_prior`` baseline) is encoded, noised to the diffusion step ``t_start`` and denoised
with ``steps`` DDIM steps, ``n_starts`` times per target; the mean of the decoded samples is
projected again, and this is repeated ``refine_rounds`` times. The learned prior then only moves
the projected estimate towards the matrices it has learned, by an amount ``t_start`` sets
(0: the E/R round trip only; ``num_train_timesteps``: an unconditional sample).

A conditional model (``DDPMTME(condition="links")``, trained on p(x | y)) replaces step 1: every
target gets its own ``n_starts`` samples drawn given its observed link loads (no shared pool;
``n_init`` is not used); steps 2-3 are the same (``n_opt = 0`` keeps the plain posterior samples).

A sequential model (``DDPMTME(condition="previous")``, trained on p(x_t | y_t, x_{t-1})) estimates
the intervals one after the other, each conditioned on its link loads and on the previous
interval's final (projected) estimate; ``previous`` gives the matrix before the first one (default:
the projected training mean of the first interval). Sampling starts from pure noise
(``start="pool"``: ``n_starts`` conditional samples) or from a matrix noised to ``t_start``: the
projected training mean (``start="projected_mean"``) or the previous estimate KL-projected onto the
current loads (``start="previous"``); the mean of the samples is projected as above.

Everything else is batched over time points: a batch of B targets optimises tensors (B * n_starts, D) and
(B * n_starts, S, D) at once.
"""
from __future__ import annotations

import numpy as np
import torch

from trafficgen._random import torch_generator
from trafficgen.errors import ConfigError
from trafficgen.estimation.classic import kl_projection, weighted_projection

__all__ = ["estimate_tm", "link_misfit", "refine_to_link_loads", "best_of_pool", "PROJECTIONS"]

PROJECTIONS = ("kl", "wls", "none")
STARTS = ("pool", "projected_mean", "previous")


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
                 chunk: int = 256, k: int = 1) -> np.ndarray:
    """Index (T,) of the pool member (P, n_od) with the smallest link misfit for each target, or
    with ``k > 1`` the indices (T, k) of the ``k`` best, best first."""
    yp = torch.as_tensor(pool_x @ A)  # (P, L)
    out = []
    for s in range(0, len(Y), chunk):
        y = torch.as_tensor(Y[s:s + chunk])  # (b, L)
        r = yp[None] - y[:, None]  # (b, P, L)
        if loss == "l1":
            m = r.abs().sum(-1) / y.abs().sum(-1, keepdim=True).clamp_min(1e-12)  # (b, P)
        else:
            m = (r ** 2).sum(-1) / (y ** 2).sum(-1, keepdim=True).clamp_min(1e-24)  # (b, P)
        out.append(m.argmin(1).numpy() if k == 1 else torch.topk(m, min(k, m.shape[1]), dim=1,
                                                                  largest=False).indices.numpy())
    return np.concatenate(out)


def refine_to_link_loads(x: np.ndarray, Y: np.ndarray, A: np.ndarray, *, projection: str = "wls",
                         project_iters: int = 3, kl_iters: int = 20) -> np.ndarray:
    """Project the prior ``x`` (T, n_od) onto ``x A = y``. ``"wls"``: clip at 0, then
    ``project_iters`` rounds of (weighted LS projection with the current estimate as prior and
    weight, clip at 0), tomogravity's step. ``"kl"``: the I-projection (``kl_iters`` Newton steps).
    ``"none"``: clip at 0 only. Returns (T, n_od), non-negative."""
    if projection not in PROJECTIONS:
        raise ConfigError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, None)
    if projection == "kl":
        return kl_projection(x, Y, A, iters=kl_iters)
    if projection == "none":
        return x
    for _ in range(project_iters):
        w = x + 0.05 * np.maximum(x.mean(1, keepdims=True), 1e-30)  # (T, n_od); zero flows stay adjustable
        x = np.clip(weighted_projection(x, Y, A, weights=w), 0.0, None)
    return x


def descend_link_misfit(params: list[torch.Tensor], decode, y: torch.Tensor, At: torch.Tensor,
                        best_x: torch.Tensor, *, loss: str, n_opt: int, lr: float) -> torch.Tensor:
    """Adam on ``params`` for ``n_opt`` steps on the summed link misfit of ``decode()`` (B, n_od)
    against ``y`` (B, L); returns ``best_x`` (B, n_od, the starting estimates, updated in place)
    holding each row's best iterate (the last pass only scores the final ``params``). Shared by
    DDPM-TME (``params``: the sampling noises) and the latent baselines (their latents)."""
    opt = torch.optim.Adam(params, lr=lr)
    best_loss = torch.full((len(y),), float("inf"), device=y.device)
    for i in range(n_opt + 1):
        x = decode()  # (B, n_od)
        per = link_misfit(x, y, At, loss)  # (B,)
        with torch.no_grad():
            better = per < best_loss
            best_loss = torch.where(better, per, best_loss)
            best_x[better] = x[better]
        if i == n_opt:
            break
        opt.zero_grad()
        per.sum().backward()
        opt.step()
    return best_x


def estimate_tm(model, link_loads, routing, *, n_init: int = 1024, n_starts: int = 16, n_opt: int = 5,
                lr: float = 0.01, steps: int | None = 5, eta: float | None = None, loss: str = "l1",
                batch_size: int = 256, projection: str = "kl", project_iters: int = 3, random_state: int = 0,
                progress: bool = False, return_raw: bool = False, start: str = "pool", t_start: int = 100,
                refine_rounds: int = 1, previous=None, init=None):
    """Algorithm 2 with a fitted :class:`~trafficgen.generators.tm.ddpm_tme.model.DDPMTME`.

    Returns the estimates (T, n_od) in the model's unit; with ``return_raw`` also the diffusion
    estimate before the link projection. ``eta`` (default: the model's, or 1.0 when the model
    uses 0) > 0 makes the per-step noises z_t part of what is optimised. ``n_starts`` best pool
    candidates (at most ``n_init``) are optimised per target and averaged (1 = the paper's single
    start). The defaults are the recipe's (tuned on Abilene/GEANT, see the benchmark note).
    ``start``: ``"pool"`` (Algorithm 2) or ``"projected_mean"`` (refine the projected training mean
    from diffusion step ``t_start``, ``refine_rounds`` times; see the module docstring); a sequential
    model also takes ``"previous"`` (refine the previous estimate projected onto the current loads).
    ``previous`` (n_od,): for a ``condition="previous"`` model, the matrix before the first interval.
    ``init`` (T, n_od): with ``start="projected_mean"``, the prior that is projected and refined
    instead of the training mean (e.g. another estimator's estimates).
    """
    model._check_fitted()
    n_od = model.n_nodes_ ** 2
    Y, A = _as_inputs(link_loads, routing, n_od)
    if n_init < 1 or n_opt < 0 or batch_size < 1 or n_starts < 1:
        raise ConfigError("need n_init >= 1, n_opt >= 0, batch_size >= 1 and n_starts >= 1")
    n_starts = min(int(n_starts), int(n_init))
    if projection not in PROJECTIONS:
        raise ConfigError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
    eta = (model.eta if model.eta > 0 else 1.0) if eta is None else float(eta)
    steps = int(steps or model.sampling_steps)
    gen = torch_generator(random_state)
    device = model._placed()
    At = torch.as_tensor(A, dtype=torch.float32).to(device)  # (n_od, L)
    if start not in STARTS:
        raise ConfigError(f"start must be one of {STARTS}, got {start!r}")
    if init is not None:
        init = np.asarray(init, dtype=np.float64)
        if init.shape != (len(Y), n_od) or start != "projected_mean":
            raise ConfigError(f"init must be ({len(Y)}, {n_od}) and goes with start='projected_mean', "
                              f"got {init.shape} with start={start!r}")
    if start == "previous" and model.condition != "previous":
        raise ConfigError("start='previous' needs a sequential model (condition='previous')")
    if model.condition == "previous":
        return _estimate_sequential(model, Y, A, gen, n_starts=n_starts, start=start, t_start=t_start, steps=steps,
                                    eta=eta, projection=projection, project_iters=project_iters,
                                    return_raw=return_raw, previous=previous, progress=progress, init=init)
    if start == "projected_mean":
        return _estimate_refine(model, Y, A, gen, n_starts=n_starts, t_start=t_start, rounds=refine_rounds,
                                steps=steps, batch_size=batch_size, projection=projection,
                                project_iters=project_iters, return_raw=return_raw, init=init)
    if model.conditional:
        raw = _estimate_conditional(model, Y, At, gen, n_starts=n_starts, n_opt=n_opt, lr=lr, steps=steps,
                                    eta=eta, loss=loss, batch_size=batch_size, progress=progress)
        est = refine_to_link_loads(raw, Y, A, projection=projection, project_iters=project_iters)
        return (est, raw) if return_raw else est
    # 1. shared candidate pool
    with torch.no_grad():
        pool_T, pool_z = model.draw_noise(n_init, gen, steps=steps)  # (P, D), (P, S, D)
        pool_x = model.decode(model.sample_latents(pool_T, pool_z, steps=steps, eta=eta))  # (P, n_od)
    best = best_of_pool(pool_x, Y, A, loss, k=n_starts).reshape(len(Y), n_starts)  # (T, k)
    raw = np.empty((len(Y), n_od))
    from trafficgen.generators.training import progress_bar

    n_batches = -(-len(Y) // batch_size)
    with progress_bar(n_batches, f"DDPM-TME estimating {len(Y)} TMs", enabled=bool(progress),
                      show_loss=False, unit="batches") as update:
        for s in range(0, len(Y), batch_size):
            sl = slice(s, s + batch_size)
            idx = torch.as_tensor(best[sl].reshape(-1))  # (B * k,) start b * k + j = target b, start j
            y = torch.as_tensor(Y[sl], dtype=torch.float32).repeat_interleave(n_starts, 0).to(device)  # (B * k, L)
            x_T = pool_T[idx.to(device)].clone().requires_grad_(True)  # (B * k, D)
            zs = pool_z[idx.to(device)].clone().requires_grad_(eta > 0)  # (B * k, S, D)
            best_x = descend_link_misfit(
                [x_T, zs] if eta > 0 else [x_T],
                lambda: model.decode_torch(model.sample_latents(x_T, zs, steps=steps, eta=eta)),  # noqa: B023
                y, At, torch.as_tensor(pool_x[idx.numpy()], dtype=torch.float32).to(device), loss=loss,
                n_opt=n_opt, lr=lr)
            raw[sl] = best_x.double().cpu().numpy().reshape(-1, n_starts, n_od).mean(1)
            update(1)
    raw = np.clip(raw, 0.0, None)
    est = refine_to_link_loads(raw, Y, A, projection=projection, project_iters=project_iters)
    return (est, raw) if return_raw else est


def _estimate_conditional(model, Y: np.ndarray, At: torch.Tensor, gen: torch.Generator, *, n_starts: int,
                          n_opt: int, lr: float, steps: int, eta: float, loss: str, batch_size: int,
                          progress: bool) -> np.ndarray:
    """Raw estimates (T, n_od) of a conditional model: ``n_starts`` samples given each target's link
    loads, ``n_opt`` Adam steps on their sampling noises (best iterate kept), mean over starts."""
    from trafficgen.generators.training import progress_bar

    n_od = model.n_nodes_ ** 2
    cond_all = model.condition_features(Y)  # (T, L) on the model's device
    device = cond_all.device
    raw = np.empty((len(Y), n_od))
    n_batches = -(-len(Y) // batch_size)
    with progress_bar(n_batches, f"DDPM-TME (conditional) estimating {len(Y)} TMs", enabled=bool(progress),
                      show_loss=False, unit="batches") as update:
        for s in range(0, len(Y), batch_size):
            sl = slice(s, s + batch_size)
            b = len(Y[sl])
            cond = cond_all[sl].repeat_interleave(n_starts, 0)  # (B * k, L)
            x_T, zs = model.draw_noise(b * n_starts, gen, steps=steps)  # (B * k, D), (B * k, S, D)
            with torch.no_grad():
                x0 = model.decode_torch(model.sample_latents(x_T, zs, steps=steps, eta=eta, cond=cond))
            if n_opt:
                y = torch.as_tensor(Y[sl], dtype=torch.float32).repeat_interleave(n_starts, 0).to(device)
                x_T.requires_grad_(True)
                zs.requires_grad_(eta > 0)
                x0 = descend_link_misfit(
                    [x_T, zs] if eta > 0 else [x_T],
                    lambda: model.decode_torch(model.sample_latents(x_T, zs, steps=steps, eta=eta, cond=cond)),  # noqa: B023
                    y, At, x0, loss=loss, n_opt=n_opt, lr=lr)
            raw[sl] = x0.detach().double().cpu().numpy().reshape(b, n_starts, n_od).mean(1)
            update(1)
    return np.clip(raw, 0.0, None)


def _estimate_refine(model, Y: np.ndarray, A: np.ndarray, gen: torch.Generator, *, n_starts: int, t_start: int,
                     rounds: int, steps: int, batch_size: int, projection: str, project_iters: int, return_raw: bool,
                     init=None):
    """``start="projected_mean"``: SDEdit from the projected training mean (see the module docstring)."""
    if getattr(model, "train_mean_", None) is None:
        raise ConfigError("start='projected_mean' needs the training mean, which this saved model lacks (refit it)")
    T_train = int(model.num_train_timesteps)
    if not 0 <= int(t_start) < T_train or int(rounds) < 1:
        raise ConfigError(f"need 0 <= t_start < {T_train} and refine_rounds >= 1, got {t_start}, {rounds}")
    n_od = model.n_nodes_ ** 2
    cond_all = model.condition_features(Y) if model.conditional else None  # (T, C)
    pairs = _sdedit_pairs(t_start, steps)
    prior = np.tile(model.train_mean_, (len(Y), 1)) if init is None else init  # (T, n_od)
    x = refine_to_link_loads(prior, Y, A, projection=projection, project_iters=project_iters)  # (T, n_od)
    raw = x
    for _ in range(int(rounds)):
        raw = np.empty((len(Y), n_od))
        for s in range(0, len(Y), batch_size):
            sl = slice(s, s + batch_size)
            b = len(Y[sl])
            cond = None if cond_all is None else cond_all[sl].repeat_interleave(n_starts, 0)
            with torch.no_grad():
                x0 = _sdedit(model, x[sl], n_starts, t_start, pairs, gen, cond)  # (B * k, D)
            raw[sl] = model.decode(x0).reshape(b, n_starts, n_od).mean(1)
        x = refine_to_link_loads(raw, Y, A, projection=projection, project_iters=project_iters)
    return (x, raw) if return_raw else x


def _estimate_sequential(model, Y: np.ndarray, A: np.ndarray, gen: torch.Generator, *, n_starts: int, start: str,
                         t_start: int, steps: int, eta: float, projection: str, project_iters: int, return_raw: bool,
                         previous, progress: bool, init=None):
    """``condition="previous"``: one interval after the other, each conditioned on its link loads and
    the previous final estimate (see the module docstring)."""
    from trafficgen.generators.training import progress_bar

    n_od = model.n_nodes_ ** 2
    T_train = int(model.num_train_timesteps)
    refine = start in ("projected_mean", "previous")
    if refine and not 0 <= int(t_start) < T_train:
        raise ConfigError(f"need 0 <= t_start < {T_train}, got {t_start}")
    prior = np.tile(model.train_mean_, (len(Y), 1)) if init is None else init  # (T, n_od)
    base = refine_to_link_loads(prior, Y, A, projection=projection,
                                project_iters=project_iters)  # (T, n_od): the projected training mean (or init)
    if previous is None:
        prev = base[0]
    else:
        prev = np.asarray(previous, dtype=np.float64).reshape(-1)
        if prev.shape != (n_od,):
            raise ConfigError(f"previous must be one matrix of {n_od} OD pairs, got {np.shape(previous)}")
    pairs = _sdedit_pairs(t_start, steps) if refine else None
    est, raw = np.empty((len(Y), n_od)), np.empty((len(Y), n_od))
    with progress_bar(len(Y), f"DDPM-TME (sequential) estimating {len(Y)} TMs", enabled=bool(progress),
                      show_loss=False, unit="TMs") as update:
        for t in range(len(Y)):
            cond = model.previous_features(Y[t:t + 1], prev[None]).repeat_interleave(n_starts, 0)  # (k, L + n_od)
            with torch.no_grad():
                if refine:
                    x_start = base[t:t + 1] if start == "projected_mean" else kl_projection(prev[None], Y[t:t + 1], A)
                    x0 = _sdedit(model, x_start, n_starts, t_start, pairs, gen, cond)  # (k, D)
                else:
                    x_T, zs = model.draw_noise(n_starts, gen, steps=steps)  # (k, D), (k, S, D)
                    x0 = model.sample_latents(x_T, zs, steps=steps, eta=eta, cond=cond)  # (k, D)
            raw[t] = model.decode(x0).mean(0)
            est[t] = refine_to_link_loads(raw[t:t + 1], Y[t:t + 1], A, projection=projection,
                                          project_iters=project_iters)[0]
            prev = est[t]
            update(1)
    return (est, raw) if return_raw else est


def _sdedit_pairs(t_start: int, steps: int) -> list[tuple[int, int]]:
    """The DDIM (t, t_prev) pairs from diffusion step ``t_start`` down to 0 in ``steps`` steps."""
    ts = np.unique(np.linspace(int(t_start), 0, int(steps) + 1).round().astype(int))[::-1]  # t_start .. 0
    return [(int(ts[i]), int(ts[i + 1]) if i + 1 < len(ts) - 1 else -1) for i in range(len(ts) - 1)] or [(0, -1)]


def _sdedit(model, x_start: np.ndarray, n_starts: int, t_start: int, pairs, gen: torch.Generator, cond):
    """Latents (B * k, D) denoised by DDIM from the matrices ``x_start`` (B, n_od) noised to step
    ``t_start`` (``n_starts`` noise draws each, on the CPU generator ``gen``)."""
    from trafficgen.generators.tm.ddpm_tme.denoiser import ddim_sample

    ac = model.alphas_cumprod_
    lat = model.encode(x_start).repeat_interleave(n_starts, 0)  # (B * k, D)
    eps = torch.randn(lat.shape, generator=gen).to(model._placed())  # (B * k, D), drawn on the CPU
    a = ac[int(t_start)]
    return ddim_sample(model.denoiser_, a.sqrt() * lat + (1 - a).sqrt() * eps, None, ac, pairs, 0.0,
                       model.prediction_type, cond=cond)
