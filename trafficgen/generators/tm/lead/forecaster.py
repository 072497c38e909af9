"""`LeadForecaster`: LEAD (LLM-enhanced adapter-based conditional diffusion) as a TMForecaster.

Pipeline: the series is scaled once, z = log1p(x / s) min-max mapped to [-1, 1] with the training
series' s (mean), min and max (:class:`~trafficgen.representations.od_scaler.ODLogScaler` with
``normalize="minmax"``; invertible, so forecasts come back in real units; LEAD's own per-matrix
min-max would throw the scale away), turned into Traffic-to-Image RGB frames once per series
(:func:`~trafficgen.representations.traffic_image.traffic_frames`, cached; windows index into
them), and for every origin o the last ``t_in`` frames condition a DDPM on the target z[o + h].
One model serves all horizons (a learned horizon embedding is added to c_global). Training
(:func:`~trafficgen.generators.training.train_loop`): noise-prediction MSE, 1000 DDPM steps, AdamW
(default betas) + cosine schedule with half an epoch of warmup, gradients of the trainable
parameters clipped at norm 1, early stopping on the validation loss (fixed noise, so it is
comparable across epochs; best weights restored; without a validation series the last weights are
kept); each window's
conditioning (vision encoder + LM, the expensive part) is computed once and reused for all
horizons and ``noise_draws`` noise draws, and the vision encoder runs once per distinct frame of a
batch (``window_chunk`` > 1 batches runs of consecutive windows, which share most frames). The frozen
LM cannot be cached: its input comes from the trainable encoder and its blocks carry the trainable
adapters. Inference: ``sampler`` (below) with ``n_inference_steps``,
``n_samples`` samples per forecast; :meth:`predict` returns their median.

``prediction_type`` picks what the U-Net predicts: ``"epsilon"`` (the paper's noise prediction),
``"v_prediction"`` (default) or ``"sample"`` (x0). On a CPU budget of ~500 optimiser steps on Abilene,
epsilon gave medians at 1.1-1.7x persistence RMSE, x0 ~1.0x with far too narrow intervals, v ~1.0x
with the best calibrated intervals (benchmarks/results/lead_2026-11-23). ``target_scaling``: see
:mod:`~trafficgen.generators.tm.lead.target_scale`.

``residual=True`` (our option, not in the paper, default): the target is z[o+h] - a[o, h], with the
anchor a an extra U-Net input channel: ``anchor="last"`` a = z[o] (the change from the last
matrix), ``anchor="linear"`` (default) a = z of the cheap point forecast of
:class:`~trafficgen.generators.tm.lead.anchor.LinearAnchor` (a residual on top of it).
``residual=False`` is the paper's setting (the U-Net sees only noise + conditioning).
``target_scaling="od_std"`` (default) divides the residual by its training std per horizon and OD
pair, so every pair's target has unit variance. ``anchor_ridge`` (``anchor="linear"`` only):
``None`` the pooled blend (3 coefficients per horizon; the 2026-12-02 recipe), a number the
per-OD blend (3 coefficients per horizon and pair) ridge-shrunk towards the pooled one at that
strength, ``"auto"`` (default) the strength chosen per horizon on the validation series
(:meth:`~trafficgen.generators.tm.lead.anchor.LinearAnchor.select_ridge`; pooled without one);
``anchor_selection_`` records the validation RMSE of every strength. ``anchor_features``:
``"mean"`` (the 2026-12-02b anchor), ``"mean+season"`` (a 4th feature, the change
``x[o+h-P] - x[o-P]`` over the same h steps one period ``P`` earlier; ``anchor_period`` None = one
day from the series' ``interval_s``), ``"lags+season"`` (also ``x[o-1]``, ``x[o-2]`` and two
exponentially weighted window means) or ``"auto"`` (default since 2026-12-03d: per horizon the one
of ``"mean+season"`` / ``"lags+season"`` with the lower validation RMSE at its chosen ridge,
:mod:`~trafficgen.generators.tm.lead.anchor_choice`; needs ``anchor_ridge="auto"`` and a
validation series, else ``"mean+season"``); the seasonal sets fall back to ``"mean"`` without an
interval or when the training part is shorter than 2 P + the largest horizon. By rolling origin
inside train + validation (benchmarks/lead_anchor_rolling.py, 2 folds), ``"auto"`` against
``"mean+season"`` moved RMSE / persistence at h = 1 / 10 / 20 by -0.000 / -0.016 / -0.013 and
+0.012 / -0.011 / -0.002 on Abilene, -0.013 / 0 / +0.003 and -0.012 / 0 / 0 on GEANT. ``anchor_val_history=True`` (default):
the validation origins of the ridge choice, the validation loss and the calibration are every
origin whose target lies in the validation part, the history reaching back into the training part
(as the test origins' does; False: history inside the validation part, the 2026-12-02b origins).
``anchor_refit=True`` (default): once the ridge and calibration are chosen on validation, the
anchor's coefficients are refitted on train + validation at the chosen ridge (``anchor_refit_``
records it; the diffusion, the target scale and the quantile tables stay those of the training
part). In a rolling-origin check inside train + validation (benchmarks/lead_anchor_rolling.py,
benchmarks/results/lead_2026-12-03) the three together lowered the anchor's RMSE / persistence at
every horizon of two folds on Abilene and five of six on GEANT.

``sampler``: ``"dpm"`` (default; diffusers ``DPMSolverMultistepScheduler``, DPM-Solver++ of
order 2, 5 steps by default) or ``"ddim"`` (the paper's DDIM). ``calibrate=True`` (default, with a validation
series and ``residual=True``): after training, ``calib_origins`` validation origins are sampled
and the per-horizon median shrinkage and spread of
:mod:`~trafficgen.generators.tm.lead.calibration` are fitted there so that the 90 % intervals
cover 90 % (``calib_levels=(0.9,)``; ``(0.5, 0.9)`` also fits a tail power so that the 50 %
intervals cover 50 %: on the recipe's Abilene model that doubled CRPS, 2.0x probabilistic
persistence's against 1.04-1.13x, benchmarks/results/lead_2026-12-02/recalibrated_two_level.json;
``calibration_`` records them; :meth:`calibrate_on` refits them on a saved model).
``spread_mode`` picks the shape of the calibrated spread: ``"factor"`` (the spread factor / tail
power above), ``"qmap_rank"`` or ``"qmap_cdf"`` (a per-OD quantile map of the samples onto the
anchor's training-residual distribution that keeps the samples' ranks,
:func:`~trafficgen.generators.tm.lead.calibration.apply_quantile_map`), ``"qmap_levels"``
(``qmap_rank`` with its quantile levels recalibrated on the validation truths' PIT values, so that
the 50 % and the 90 % level are both right), or ``"auto"`` (default): per horizon the one with the
lowest CRPS (real units) on the calibration origins among those whose K-sample 90 % intervals
cover inside :data:`~trafficgen.generators.tm.lead.calibration.COVERAGE_BAND` there (all of them
if none does). ``calibration_["val_crps"]`` records every candidate's, ``calibration_["width_cv"]``
how much the spread of each varies between origins (0 for ``qmap_rank``: none of its marginal
spread is the diffusion's). ``n_samples`` (K, default 32) is what the calibration and the point
forecast (the median) use: with K = 8 quantile samples the linear sample quantiles of a calibrated
distribution reach only about its 10th / 90th percentile (90 % intervals covering about 0.8), at
K = 32 about its 6th / 94th (benchmarks/results/lead_level_map_2026-12-03/).
``max_steps`` caps the optimiser steps at ``min(max_steps, epochs x steps per epoch)`` (the
recorded CPU budget; None: ``epochs`` alone). ``gradient_accumulation_steps`` k: one optimiser step
per k batches (steps per epoch, the warmup and the cap count optimiser steps).

``device`` ``"auto"`` (CUDA, else MPS, else the CPU) | ``"cpu"`` | ``"cuda[:N]"`` | ``"mps"`` is where
the whole network (vision encoder, aggregator, the frozen LM with its adapters, conditioning and
U-Net) trains, is calibrated and samples. The scaling, frames, anchors and target scale are
computed on the CPU and moved there once; every random draw (training noise and timesteps, the
sampler's initial noise) comes from a CPU ``torch.Generator`` and is moved there, so CPU results
are those of a model without the parameter (same seed, same numbers). A device this machine lacks
is one :class:`~trafficgen.errors.ConfigError` before any work; saved weights are CPU tensors and a
loaded model moves to its ``device`` when first used. No mixed precision (as the other TM models).

Data-parallel: in a process group started by a launcher (``trafficgen tm train --num-processes N``,
``accelerate launch``: ``WORLD_SIZE > 1``) training goes through ``train_loop``'s data-parallel
path (each process takes every N-th batch of the epoch, gradients averaged, each process's own
diffusion noise); an epoch then has N times fewer optimiser steps. Only the main process fits the
calibration (the one that writes the model; the others' copies stay uncalibrated).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch

from trafficgen._random import seed_from
from trafficgen.data.windows import target_index, window_index, window_origins
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.base import TMForecaster
from trafficgen.generators.tm.lead.anchor import FEATURE_SETS, default_period
from trafficgen.generators.tm.lead.anchor_choice import anchor_from_state, fit_lead_anchor
from trafficgen.generators.tm.lead.backbone import DEFAULT_LLM
from trafficgen.generators.tm.lead.calibration import (
    QMAP_MODES,
    apply_calibration,
    apply_quantile_map,
    choose_modes,
    fit_calibration,
    fit_quantile_map,
    residual_quantiles,
    width_variation,
)
from trafficgen.generators.tm.lead.model import LeadConfig, LeadNet
from trafficgen.generators.tm.lead.sampling import make_scheduler, sample_batch
from trafficgen.generators.tm.lead.target_scale import fit_target_scale
from trafficgen.generators.training import progress_bar, train_loop
from trafficgen.representations.od_scaler import ODLogScaler
from trafficgen.representations.traffic_image import traffic_frames


def _repeat(c: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """Repeat each batch row ``n`` times (conditioning shared by horizons and samples)."""
    return None if c is None else c.repeat_interleave(n, dim=0)  # (B * n, ...)


class LeadForecaster(TMForecaster):
    name = "lead"
    probabilistic = True
    default_max_origins = 200

    #: Defaults = the recipe's main model (trafficgen/recipes/lead.yaml, benchmarks/results/lead_2026-12-03;
    #: anchor_ridge / spread_mode 'auto' chose ridge 0-0.001 and qmap_rank there on validation; the
    #: seasonal anchor, validation history and refit were chosen by rolling origin inside train + val):
    #: ~7 min of training on a contended 2-core CPU for Abilene. ``epochs`` is an upper bound: the budget
    #: is ``max_steps`` (200 optimiser steps; 2 epochs gave GEANT's 430 training windows 54 steps and a
    #: validation loss of 4.885, 8 epochs 162 steps and 4.581 before early stopping, 2026-12-03). The paper's widths were d_v 32, 2 res
    #: blocks, d_model 128, adapter rank 16, U-Net 32/64/128 with 2 layers per block, lr 3e-5.
    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20), llm: str = DEFAULT_LLM,
                 ablations: Sequence[str] = (), residual: bool = True, d_v: int = 16, n_res_blocks: int = 1,
                 d_model: int = 64, adapter_rank: int = 8, adapter_scale: float = 1.0,
                 unet_channels: Sequence[int] = (16, 32, 64), layers_per_block: int = 1,
                 epochs: int = 8, batch_size: int = 16, lr: float = 1e-3, weight_decay: float = 1e-2,
                 patience: int = 2, noise_draws: int = 1, max_train_windows: int | None = None,
                 max_val_windows: int = 128, window_chunk: int = 4, target_scaling: str | float = "od_std",
                 prediction_type: str = "v_prediction", anchor: str = "linear", sampler: str = "dpm",
                 calibrate: bool = True, calib_origins: int = 64, calib_levels: Sequence[float] = (0.9,),
                 anchor_ridge: float | str | None = "auto", spread_mode: str = "auto",
                 anchor_features: str = "auto", anchor_period: int | None = None,
                 anchor_val_history: bool = True, anchor_refit: bool = True,
                 max_steps: int | None = 200,
                 n_train_timesteps: int = 1000, n_inference_steps: int = 5,
                 n_samples: int = 32, random_state: int | None = 0, progress: bool = True,
                 allow_download: bool = False, gradient_accumulation_steps: int = 1, device: str = "auto"):
        self.t_in = t_in
        self.horizons = horizons
        self.llm = llm
        self.ablations = ablations
        self.residual = residual
        self.d_v = d_v
        self.n_res_blocks = n_res_blocks
        self.d_model = d_model
        self.adapter_rank = adapter_rank
        self.adapter_scale = adapter_scale
        self.unet_channels = unet_channels
        self.layers_per_block = layers_per_block
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.noise_draws = noise_draws
        self.max_train_windows = max_train_windows
        self.max_val_windows = max_val_windows
        self.window_chunk = window_chunk
        self.target_scaling = target_scaling
        self.prediction_type = prediction_type
        self.anchor = anchor
        self.sampler = sampler
        self.calibrate = calibrate
        self.calib_origins = calib_origins
        self.calib_levels = calib_levels
        self.anchor_ridge = anchor_ridge
        self.spread_mode = spread_mode
        self.anchor_features = anchor_features
        self.anchor_period = anchor_period
        self.anchor_val_history = anchor_val_history
        self.anchor_refit = anchor_refit
        self.max_steps = max_steps
        self.n_train_timesteps = n_train_timesteps
        self.n_inference_steps = n_inference_steps
        self.n_samples = n_samples
        self.random_state = random_state
        self.progress = progress
        self.allow_download = allow_download
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.device = device

    @property
    def min_history(self) -> int:  # noqa: D401 - instance value of TMForecaster.min_history
        return int(self.t_in)

    # ------------------------------------------------------------------ building blocks
    def _config(self, n_nodes: int) -> LeadConfig:
        return LeadConfig(n_nodes=n_nodes, n_horizons=len(self.horizons), t_in=int(self.t_in),
                          llm=str(self.llm or DEFAULT_LLM), ablations=list(self.ablations), residual=bool(self.residual),
                          d_v=self.d_v, n_res_blocks=self.n_res_blocks, d_model=self.d_model,
                          adapter_rank=self.adapter_rank, adapter_scale=self.adapter_scale,
                          cond_dim=self.d_model, cross_dim=self.d_model,
                          unet_channels=list(self.unet_channels), layers_per_block=self.layers_per_block)

    def _scheduler(self):
        from diffusers import DDPMScheduler

        if self.prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise ConfigError(f"prediction_type must be epsilon, sample or v_prediction, got {self.prediction_type!r}")
        return DDPMScheduler(num_train_timesteps=self.n_train_timesteps, clip_sample=False,
                             prediction_type=self.prediction_type)

    #: Normalised samples are clipped to this range before unscaling: the training data spans
    #: [-1, 1]; a quarter of the range of extrapolation either side is allowed, so an untrained or
    #: diverging sampler cannot produce astronomically large matrices through ``expm1``.
    sample_clip = (-1.5, 1.5)

    def _new_scaler(self) -> ODLogScaler:
        return ODLogScaler(scale="global", normalize="minmax", z_clip=self.sample_clip)

    def _scale(self, values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.scaler_.transform(values), dtype=torch.float32)

    def _unscale(self, z: np.ndarray) -> np.ndarray:
        return self.scaler_.inverse_transform(z)

    def _frames(self, z: torch.Tensor) -> torch.Tensor:
        """Traffic-to-Image frames of a whole scaled series, (T, C, N, N); windows index into it."""
        return traffic_frames(z, grayscale=self.net_.config.image_channels == 1)

    def _anchors(self, values: np.ndarray, z: torch.Tensor, origins: np.ndarray) -> torch.Tensor:
        """(B, H, N, N) anchors in z units: z[o] for every horizon (``anchor="last"``) or the scaled
        linear point forecast (``anchor="linear"``)."""
        if self.anchor == "last" or not self.residual:
            return z[origins][:, None].expand(-1, len(self.horizons), -1, -1)  # (B, H, N, N)
        return self._scale(self.anchor_model_.predict(values, origins, self.horizons))  # (B, H, N, N)

    def _windows(self, values: np.ndarray, z: torch.Tensor, origins: np.ndarray):
        """frame index (B, T_in) into ``_frames(z)``, anchors (B, H, N, N), targets z[o+h]
        (B, H, N, N) or None (``values`` (T, N, N) the same series in real units)."""
        tgt_idx = target_index(origins, self.horizons)  # (B, H)
        targets = z[tgt_idx] if tgt_idx.max() < len(z) else None
        return torch.as_tensor(window_index(origins, self.t_in)), self._anchors(values, z, origins), targets

    def _origins(self, n: int, limit: int | None, gen: torch.Generator, start: int = 0) -> np.ndarray:
        origins = window_origins(n, self.t_in, self.horizons)
        origins = origins[origins >= start]
        if limit is not None and len(origins) > limit:
            keep = torch.randperm(len(origins), generator=gen)[:limit].sort().values.numpy()
            origins = origins[keep]
        return origins

    # ------------------------------------------------------------------ diffusion target
    def _fit_target_scale(self, resid: torch.Tensor) -> None:
        """Divisor of the diffusion target from the training residuals (B, H, N, N)
        (:func:`~trafficgen.generators.tm.lead.target_scale.fit_target_scale`)."""
        self._set_target_scale(fit_target_scale(resid, residual=bool(self.residual), scaling=self.target_scaling))

    def _set_target_scale(self, scale) -> None:
        """(H,) or (H, N, N) divisor; kept as (H, 1, 1) or (H, N, N) (broadcasts over the pairs)."""
        t = torch.as_tensor(scale, dtype=torch.float32)
        self.target_scale_t_ = (t[:, None, None] if t.ndim == 1 else t).contiguous()  # (H, 1|N, 1|N)
        self.target_scale_ = self.target_scale_t_.flatten(1).tolist()

    def _target_scale_on(self, device: torch.device) -> torch.Tensor:
        """``target_scale_t_`` (kept on the CPU: saved, and read by numpy) on ``device``."""
        scale = self.target_scale_t_
        return scale if scale.device == device else scale.to(device)

    def _to_target(self, resid: torch.Tensor) -> torch.Tensor:
        """(B, H, N, N) residual (or value) in z units -> diffusion target."""
        return resid / self._target_scale_on(resid.device)[None]

    def _from_target(self, x: torch.Tensor, hidx: list[int]) -> torch.Tensor:
        """(..., H, N, N) diffusion samples for horizons ``hidx`` -> z units."""
        return x * self._target_scale_on(x.device)[hidx]

    def _loss(self, frames, index, anchor, target, gen: torch.Generator) -> torch.Tensor:
        """Mean noise-prediction MSE over the batch, all horizons and ``noise_draws`` draws.
        ``frames`` (T_all, C, N, N) of the series, ``index`` (B, T_in) window frames."""
        b, h = target.shape[:2]
        device = target.device
        c_global, c_seq = self.net_.encode_indexed(frames, index)  # (B, cond), (B, T, cross): once per window
        rep = h * self.noise_draws
        base = anchor if self.residual else torch.zeros_like(target)  # (B, H, N, N)
        x0 = self._to_target(target - base)  # (B, H, N, N)
        x0 = x0.repeat_interleave(self.noise_draws, dim=0).reshape(b * rep, 1, *target.shape[2:])  # (B', 1, N, N)
        hidx = torch.arange(h).repeat(b * self.noise_draws).to(device)  # (B',)
        # the draws come from the CPU generator and are moved: the same numbers on every device
        noise = torch.randn(x0.shape, generator=gen).to(device)  # (B', 1, N, N)
        t = torch.randint(0, self.n_train_timesteps, (x0.shape[0],), generator=gen).to(device)  # (B',)
        x_t = self.scheduler_.add_noise(x0, noise, t)  # (B', 1, N, N)
        anc = (anchor.repeat_interleave(self.noise_draws, dim=0).reshape(x0.shape)
               if self.residual else None)  # (B', 1, N, N), same (b, draw, h) order as x0
        out = self.net_.denoise(x_t, t, hidx, _repeat(c_global, rep), _repeat(c_seq, rep), anc)  # (B', 1, N, N)
        if self.prediction_type == "epsilon":  # the paper: noise prediction
            goal = noise
        elif self.prediction_type == "sample":
            goal = x0
        else:
            goal = self.scheduler_.get_velocity(x0, noise, t)  # (B', 1, N, N)
        return torch.mean((out - goal) ** 2)

    def _batches(self, n: int, gen: torch.Generator) -> list[torch.Tensor]:
        """One epoch of batches over ``n`` windows. ``window_chunk`` > 1: the epoch is cut into runs
        of that many consecutive windows (random offset), runs are shuffled and batched, so the
        windows of a batch share most frames (see ``LeadNet.encode_indexed``); every window is still
        seen once per epoch."""
        c = max(1, int(self.window_chunk))
        if c == 1:
            perm = torch.randperm(n, generator=gen)
        else:
            offset = int(torch.randint(0, c, (1,), generator=gen))
            bounds = np.arange(offset if offset else c, n, c)
            chunks = np.split(np.arange(n), bounds)
            order = torch.randperm(len(chunks), generator=gen).numpy()
            perm = torch.as_tensor(np.concatenate([chunks[k] for k in order]))
        return [perm[i:i + self.batch_size] for i in range(0, n, self.batch_size)]

    # ------------------------------------------------------------------ fit
    def _check_options(self, values: np.ndarray) -> None:
        if values.ndim != 3 or values.shape[1] != values.shape[2]:
            raise InputFormatError(f"expected a (T, N, N) series, got shape {values.shape}")
        need = self.t_in + max(self.horizons)
        if len(values) < need + 1:
            raise InputFormatError(f"training series has {len(values)} matrices; LEAD needs > {need} "
                                   f"(t_in={self.t_in} + max horizon {max(self.horizons)})")
        if sorted(set(self.horizons)) != list(self.horizons) or min(self.horizons) < 1:
            raise ConfigError(f"horizons must be increasing positive integers, got {self.horizons}")
        if self.anchor not in ("last", "linear"):
            raise ConfigError(f"anchor must be 'last' or 'linear', got {self.anchor!r}")
        if self.sampler not in ("ddim", "dpm"):
            raise ConfigError(f"sampler must be 'ddim' or 'dpm', got {self.sampler!r}")
        if self.spread_mode not in ("auto", "factor", *QMAP_MODES):
            raise ConfigError(f"spread_mode must be 'auto', 'factor', {', '.join(repr(m) for m in QMAP_MODES)}, "
                              f"got {self.spread_mode!r}")
        ridge = self.anchor_ridge
        if not (ridge is None or ridge == "auto" or (isinstance(ridge, (int, float)) and not isinstance(ridge, bool)
                                                     and float(ridge) >= 0)):
            raise ConfigError(f"anchor_ridge must be None, a number >= 0 or 'auto', got {ridge!r}")
        if self.anchor_features not in (*FEATURE_SETS, "auto"):
            raise ConfigError(f"anchor_features must be one of {(*FEATURE_SETS, 'auto')}, got {self.anchor_features!r}")
        if self.anchor_period is not None and int(self.anchor_period) < 1:
            raise ConfigError(f"anchor_period must be None or >= 1, got {self.anchor_period!r}")

    def _anchor_features(self, train, n_train: int) -> tuple[str, int | None]:
        """The anchor's feature set and period as used: a seasonal set (``"mean+season"``,
        ``"lags+season"``, ``"auto"``) falls back to ``"mean"`` when the period is unknown (no
        ``anchor_period`` and no ``interval_s``) or the training part is shorter than two periods
        plus the largest horizon (too few origins reach back a period)."""
        if self.anchor_features == "mean":
            return "mean", None
        period = self.anchor_period
        if period is None:
            interval = getattr(train, "interval_s", None)
            if interval is None:
                return "mean", None
            period = default_period(interval)
        if n_train < 2 * int(period) + max(self.horizons):
            return "mean", None
        return self.anchor_features, int(period)

    def fit(self, train, *, val=None):
        from trafficgen._device import resolve_device

        values = np.asarray(getattr(train, "values", train), dtype=np.float64)
        self._check_options(values)
        device = resolve_device(self.device)  # fail before any work (the LM is not loaded yet)
        seed = seed_from(self.random_state)
        gen = torch.Generator().manual_seed(seed)
        self.n_nodes_ = values.shape[1]
        self.scaler_ = self._new_scaler().fit(values)
        vvalues = None if val is None else np.asarray(getattr(val, "values", val), dtype=np.float64)
        linear = self.residual and self.anchor == "linear"
        ridge = self.anchor_ridge if linear else None
        features, period = self._anchor_features(train, len(values)) if linear else ("mean", None)
        # validation windows may reach back into the training part (as test origins do)
        hist = values if vvalues is not None and self.anchor_val_history else None
        vseries = vvalues if hist is None else np.concatenate([hist, vvalues])
        self.anchor_model_ = fit_lead_anchor(values, vvalues, t_in=int(self.t_in), horizons=self.horizons, ridge=ridge,
                                        features=features, period=period,
                                        history=hist is not None)
        self.anchor_selection_ = getattr(self.anchor_model_, "selection_", None)
        self.calibration_ = None
        self.qmap_resid_ = self.qmap_dev_ = self.qmap_levels_ = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net_ = LeadNet(self._config(self.n_nodes_), allow_download=bool(self.allow_download))
        self.net_.to(device)  # built (seeded) on the CPU, then moved
        self.scheduler_ = self._scheduler()
        zt = self._scale(values)  # (T, N, N)
        origins = self._origins(len(values), self.max_train_windows, gen)
        frames = self._frames(zt)  # (T, C, N, N), computed once
        index, anchors, targets = self._windows(values, zt, origins)
        base = anchors if self.residual else torch.zeros_like(targets)
        self._fit_target_scale(targets - base)  # on the CPU; then the training tensors go to the device
        if self.residual:  # per-OD quantiles of the training residuals in target units (quantile maps)
            self.qmap_resid_ = residual_quantiles(self._to_target(targets - base).numpy())  # (L, H, N, N)
        frames, anchors, targets = frames.to(device), anchors.to(device), targets.to(device)
        validate = None
        if vvalues is not None:
            vz = self._scale(vseries)
            vo = self._origins(len(vz), self.max_val_windows, torch.Generator().manual_seed(seed + 1),
                               start=0 if hist is None else len(hist) - 1)
            if len(vo):
                vindex, vanchors, vtargets = self._windows(vseries, vz, vo)
                val_data = (self._frames(vz).to(device), vindex, vanchors.to(device), vtargets.to(device))
                validate = lambda: self._val_loss(val_data, seed)  # noqa: E731
        from trafficgen.generators.training import is_main_process, launched_world_size

        accum = int(self.gradient_accumulation_steps)  # optimiser steps of an epoch (train_loop's count)
        steps_per_epoch = math.ceil(math.ceil(math.ceil(len(origins) / self.batch_size) / launched_world_size())
                                    / max(accum, 1))
        max_steps = None if self.max_steps is None else min(int(self.max_steps), int(self.epochs) * steps_per_epoch)

        def adamw_cosine(total_steps):
            from diffusers.optimization import get_cosine_schedule_with_warmup

            params = [p for p in self.net_.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
            warmup = max(1, min(steps_per_epoch, int(total_steps)) // 2)
            return opt, get_cosine_schedule_with_warmup(opt, warmup, total_steps)

        def loss_fn(sel):
            return self._loss(frames, index[sel], anchors[sel], targets[sel], gen), len(sel)

        history = train_loop(
            self.net_, loss_fn, n=len(origins), epochs=int(self.epochs), batch_size=int(self.batch_size),
            generator=gen, val_fraction=None, validate=validate, patience=self.patience, min_delta=1e-6,
            restore_best=validate is not None, optimizer=adamw_cosine, max_steps=max_steps,
            epoch_batches=lambda rows: [rows[b] for b in self._batches(len(rows), gen)],
            progress=bool(self.progress), description="LEAD training", show_epoch=True, time_epochs=True,
            gradient_accumulation_steps=accum)
        self.history_ = {**history, "n_train_windows": len(origins)}
        if self.calibrate and self.residual and vvalues is not None and is_main_process():
            self.calibrate_on(vvalues, history=hist)
        self.anchor_refit_ = None
        if linear and self.anchor_refit and vvalues is not None:
            # hyper-parameters (ridge, calibration) chosen on validation; the anchor's coefficients
            # are then refitted on train + validation, so the newest data informs the forecast
            self.anchor_model_.refit(np.concatenate([values, vvalues]))
            self.anchor_refit_ = {"n_matrices": int(len(values) + len(vvalues))}
        return self

    @torch.no_grad()
    def _val_loss(self, val_data, seed: int) -> float:
        self.net_.eval()
        frames, index, anchors, targets = val_data
        gen = torch.Generator().manual_seed(seed + 2)  # same noise every epoch
        total = 0.0
        for i in range(0, len(index), 64):
            sl = slice(i, i + 64)
            total += float(self._loss(frames, index[sl], anchors[sl], targets[sl], gen)) * len(index[sl])
        self.net_.train()
        return total / len(index)

    def calibrate_on(self, val, *, history=None) -> LeadForecaster:
        """Fit (or refit, on a trained or loaded model) the median shrinkage, spread and tail power
        per horizon on ``calib_origins`` evenly spaced origins of the validation series ``val``
        (:func:`~trafficgen.generators.tm.lead.calibration.fit_calibration` at ``calib_levels``).
        ``history`` (the series just before ``val``): the origins are those whose targets lie in
        ``val``, their history reaching back into it."""
        self._check_fitted()
        if not self.residual:
            raise ConfigError("calibration needs residual=True (the paper's setting samples z itself)")
        vvalues = np.asarray(getattr(val, "values", val), dtype=np.float64)
        seed = seed_from(self.random_state)
        start = 0
        if history is not None:
            history = np.asarray(getattr(history, "values", history), dtype=np.float64)
            vvalues, start = np.concatenate([history, vvalues]), len(history) - 1
        origins = window_origins(len(vvalues), self.t_in, self.horizons)
        origins = origins[origins >= start]
        if len(origins) < 2:
            return self
        keep = np.unique(np.linspace(0, len(origins) - 1, min(len(origins), int(self.calib_origins))).round())
        origins = origins[keep.astype(int)]
        x, anchors = self._target_samples(vvalues, origins, list(range(len(self.horizons))), int(self.n_samples),
                                          seed + 3, "LEAD calibration")  # (B, S, H, N, N), (B, H, N, N)
        zt = self._scale(vvalues)
        scale = self.target_scale_t_.numpy()  # (H, N, N)
        truth_z = zt[target_index(origins, self.horizons)].numpy()  # (B, H, N, N)
        truth_t = (truth_z - anchors) / scale
        truth = vvalues[target_index(origins, self.horizons)]  # (B, H, N, N) real units

        def rmse_of(point_t, k):
            pred = self._unscale(anchors[:, k] + point_t * scale[k])
            return float(np.sqrt(np.mean((pred - truth[:, k]) ** 2)))

        def crps_of(xt, k):  # (B, S, N, N) target units -> mean CRPS in the series' units
            import scoringrules as sr  # the estimator of evaluation.tm.probabilistic_metrics.crps_ensemble
            # (the evaluation layer sits above the models, so it is called here directly)
            samples = np.asarray(self._unscale(anchors[:, None, k] + xt * scale[k]), dtype=np.float64)
            crps = sr.crps_ensemble(np.asarray(truth[:, k], dtype=np.float64), samples, m_axis=1, estimator="qd",
                                    backend="numpy")
            return float(np.mean(crps))

        cal = fit_calibration(x, truth_t, rmse_of, levels=tuple(self.calib_levels))
        h = len(self.horizons)
        factor = apply_calibration(x, cal["shrink"], cal["spread"], cal["power"])
        cands = {"factor": factor}
        spread = {"factor": list(cal["spread"])}
        val_cov = {"factor": list(cal["val_coverage"][str(max(self.calib_levels))])}
        q_dev = level_map = None
        if self.spread_mode != "factor" and self.qmap_resid_ is not None:
            modes = QMAP_MODES if self.spread_mode == "auto" else (self.spread_mode,)
            qm = fit_quantile_map(x, truth_t, cal["shrink"], self.qmap_resid_, modes=modes)
            q_dev, level_map = qm["q_dev"], qm["level_map"]
            for mode in modes:
                cands[mode] = apply_quantile_map(x, cal["shrink"], qm[mode]["spread"], mode, self.qmap_resid_, q_dev,
                                                 level_map=level_map)
                spread[mode], val_cov[mode] = qm[mode]["spread"], qm[mode]["val_coverage"]
        elif self.spread_mode != "factor":
            raise ConfigError(f"spread_mode={self.spread_mode!r} needs the training-residual quantiles of fit() "
                              "(a model saved before they existed: use spread_mode='factor')")
        crps = {m: [crps_of(v[:, :, k], k) for k in range(h)] for m, v in cands.items()}
        chosen = choose_modes(crps, val_cov, list(cands) if self.spread_mode == "auto" else [self.spread_mode])
        self.qmap_dev_, self.qmap_levels_ = q_dev, level_map
        self.calibration_ = {**cal, "mode": chosen, "spread": [spread[m][k] for k, m in enumerate(chosen)],
                             "spread_by_mode": spread, "val_coverage_90_by_mode": val_cov, "val_crps": crps,
                             "width_cv": {"raw": width_variation(x), **{m: width_variation(v) for m, v in cands.items()}},
                             "n_origins": int(len(origins)), "n_samples": int(self.n_samples),
                             "n_inference_steps": int(self.n_inference_steps), "sampler": self.sampler}
        return self

    # ------------------------------------------------------------------ predict
    def _check_query(self, values: np.ndarray, origins, horizons) -> tuple[np.ndarray, list[int]]:
        self._check_fitted()
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 3 or values.shape[1:] != (self.n_nodes_, self.n_nodes_):
            raise InputFormatError(f"expected values of shape (T, {self.n_nodes_}, {self.n_nodes_}), got {values.shape}")
        origins = np.asarray(origins, dtype=np.int64).reshape(-1)
        if len(origins) and (origins.min() < self.t_in - 1 or origins.max() >= len(values)):
            raise InputFormatError(f"origins must lie in [{self.t_in - 1}, {len(values) - 1}] "
                                   f"(LEAD needs t_in={self.t_in} matrices of history)")
        unknown = [h for h in horizons if h not in self.horizons]
        if unknown:
            raise ConfigError(f"LEAD was trained for horizons {list(self.horizons)}, not {unknown}")
        return origins, [list(self.horizons).index(h) for h in horizons]

    @torch.no_grad()
    def _target_samples(self, values, origins, hidx, s, seed, what, batch_size: int = 16):
        """Raw diffusion samples in target units (B, S, H, N, N) and the anchors (B, H, N, N) in z
        units of horizons ``hidx``, for ``origins`` of ``values`` (real units)."""
        device = self._placed()
        self.net_.eval()
        gen = torch.Generator().manual_seed(int(seed))
        zt = self._scale(values)  # (T, N, N)
        frames = self._frames(zt)  # (T, C, N, N)
        index, anchors, _ = self._windows(values, zt, origins)
        anchors = anchors[:, hidx]  # (B, H, N, N)
        frames, anchors_dev = frames.to(device), anchors.to(device)
        out = np.empty((len(origins), s, len(hidx), self.n_nodes_, self.n_nodes_))
        n_batches = math.ceil(len(origins) / batch_size)
        with progress_bar(n_batches, f"{what} ({len(origins)} origins, {s} samples, {self.n_inference_steps} "
                          f"{self.sampler} steps)", enabled=bool(self.progress), show_loss=False,
                          unit="batches") as update:
            for i in range(0, len(origins), batch_size):
                sl = slice(i, i + batch_size)
                sched = make_scheduler(self.scheduler_.config, self.sampler, self.n_inference_steps)
                out[sl] = sample_batch(self.net_, sched, frames, index[sl],
                                       anchors_dev[sl] if self.residual else None, hidx, s, gen)
                update(1)
        return out, anchors.numpy().astype(np.float64)

    def _placed(self) -> torch.device:
        """The torch device of ``device``, with the network moved there first if it is elsewhere
        (a loaded model, or ``device`` changed after fitting)."""
        from trafficgen.generators.training import place_modules

        return place_modules(self.device, self.net_)

    def predict_samples(self, values, origins, horizons, n_samples: int, *, random_state=None,
                        batch_size: int = 16) -> np.ndarray:
        """(len(origins), n_samples, len(horizons), N, N) samples in the series' units (calibrated
        when ``calibration_`` was fitted)."""
        origins, hidx = self._check_query(values, origins, horizons)
        values = np.asarray(values, dtype=np.float64)
        x, anchors = self._target_samples(values, origins, hidx, int(n_samples), seed_from(random_state),
                                          "LEAD forecast", batch_size)
        if self.calibration_ is not None:
            cal = self.calibration_
            power = np.asarray(cal.get("power", [1.0] * len(self.horizons)))[hidx]
            modes = [cal.get("mode", ["factor"] * len(self.horizons))[k] for k in hidx]
            shrink, spread = np.asarray(cal["shrink"])[hidx], np.asarray(cal["spread"])[hidx]
            if all(m == "factor" for m in modes):
                x = apply_calibration(x, shrink, spread, power)
            else:
                levels = getattr(self, "qmap_levels_", None)
                x = apply_quantile_map(x, shrink, spread, modes, self.qmap_resid_[:, hidx],
                                       None if self.qmap_dev_ is None else self.qmap_dev_[:, hidx], power,
                                       None if levels is None else levels[hidx])
        z = x * self.target_scale_t_[hidx].numpy()[None, None]  # (B, S, H, N, N) in z units
        if self.residual:
            z = z + anchors[:, None]
        return self._unscale(z)

    def predict(self, values, origins, horizons) -> np.ndarray:
        """Point forecasts (len(origins), len(horizons), N, N): median of ``n_samples`` samples."""
        samples = self.predict_samples(values, origins, horizons, self.n_samples, random_state=self.random_state)
        return self.point_from_samples(samples)

    def point_from_samples(self, samples: np.ndarray) -> np.ndarray:
        """The median over the samples axis: (B, S, H, N, N) -> (B, H, N, N)."""
        return np.median(samples, axis=1)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {"lead_config": asdict(self.net_.config), "n_nodes": self.n_nodes_, "scale": self.scaler_.scale_,
                  "zmin": self.scaler_.min_, "zmax": self.scaler_.max_, "anchor_model": self.anchor_model_.state(),
                  "calibration": self.calibration_, "n_train_timesteps": self.n_train_timesteps,
                  "anchor_selection": getattr(self, "anchor_selection_", None), "history": self.history_,
                  "anchor_refit": getattr(self, "anchor_refit_", None)}
        tensors = {**{k: v.detach().cpu() for k, v in self.net_.trainable_state_dict().items()},
                   "lead.target_scale": self.target_scale_t_.cpu()}
        for key, arr in (("lead.qmap_resid", getattr(self, "qmap_resid_", None)),
                         ("lead.qmap_dev", getattr(self, "qmap_dev_", None)),
                         ("lead.qmap_levels", getattr(self, "qmap_levels_", None))):
            if arr is not None:
                tensors[key] = torch.as_tensor(np.asarray(arr), dtype=torch.float64)
        return config, tensors, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        params = dict(config["params"])
        params["horizons"] = tuple(params["horizons"])
        params["ablations"] = tuple(params["ablations"])
        params["unet_channels"] = tuple(params["unet_channels"])
        if "calib_levels" in params:
            params["calib_levels"] = tuple(params["calib_levels"])
        # the LM named in a saved folder is loaded offline, whatever that folder's config asks for
        params["allow_download"] = False
        self = cls(**params)
        self.n_nodes_ = int(config["n_nodes"])
        self.scaler_ = self._new_scaler().load_state({"scale": config["scale"], "min": config["zmin"],
                                                      "max": config["zmax"]})
        tensors = dict(tensors)
        self._set_target_scale(tensors.pop("lead.target_scale"))
        qr, qd = tensors.pop("lead.qmap_resid", None), tensors.pop("lead.qmap_dev", None)
        self.qmap_resid_ = None if qr is None else qr.numpy().astype(np.float64)
        self.qmap_dev_ = None if qd is None else qd.numpy().astype(np.float64)
        ql = tensors.pop("lead.qmap_levels", None)
        self.qmap_levels_ = None if ql is None else ql.numpy().astype(np.float64)
        self.anchor_model_ = anchor_from_state(config["anchor_model"])
        self.anchor_selection_ = config.get("anchor_selection")
        self.anchor_refit_ = config.get("anchor_refit")
        self.calibration_ = config.get("calibration")
        self.history_ = config.get("history", {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net_ = LeadNet(LeadConfig(**config["lead_config"]))
        missing, unexpected = self.net_.load_state_dict(tensors, strict=False)
        bad = [k for k in missing if not k.startswith("backbone.lm.") or ".adapter." in k]
        if bad or unexpected:
            raise InputFormatError(f"model.safetensors does not match the LEAD config: missing {bad[:5]}, "
                                   f"unexpected {list(unexpected)[:5]}")
        self.scheduler_ = self._scheduler()
        self.net_.eval()
        return self
