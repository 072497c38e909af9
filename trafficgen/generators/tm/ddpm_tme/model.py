"""DDPM-TME (Xu et al., "Diffusion-based traffic matrix estimation"): a DDPM in the latent space
of an embedding network E / recovery network R, used to synthesise traffic matrices and, by
optimising the sampler's noises (:mod:`~trafficgen.generators.tm.ddpm_tme.estimate`), to estimate
them from link loads.

Training follows the paper's Algorithm 1, two runs of :func:`~trafficgen.generators.training.train_loop`:
E and R are pre-trained for ``pretrain_epochs`` on reconstruction (Adam, constant rate, no
clipping), then E, R and the denoiser are trained jointly for ``epochs`` on
``recon_weight * ||R(E(x)) - x||^2 + ||eps - eps_theta(sqrt(a_t) E(x) + sqrt(1 - a_t) eps, t)||^2``
(Adam, cosine annealing to 5 % of ``lr`` over all steps, gradients clipped at norm 1). Neither run
validates or restores earlier weights: the last ones are kept.

``condition`` (our addition, not in the paper) makes the denoiser conditional on the link loads
``y = A x`` of each training matrix (``fit(train, routing=A)``; the routing is stored with the
model): ``"links"`` feeds the standardised ``log1p(y / mean_y)`` per link, ``"projected_mean"`` the
training mean KL-projected onto ``y`` (the ``mean_prior`` baseline's estimate) in the model's
scaled OD space. The model then learns ``p(x | y)`` instead of ``p(x)``, and estimation samples
from it given the observed loads (see :func:`~trafficgen.generators.tm.ddpm_tme.estimate.estimate_tm`).
``"previous"`` (sequential estimation, in the spirit of Kalman-filter TM estimation, Soule et al.
2005) conditions on ``y_t`` as ``"links"`` does and on the previous interval's traffic matrix in
the scaled OD space: in training the previous *true* matrix ``x_{t-1}`` plus Gaussian noise with,
per flow, ``prev_noise`` times the standard deviation of the projected training mean's error on
the training matrices (an estimate's error), drawn afresh for every batch; in estimation the
model's own previous estimate ``x_hat_{t-1}``, one interval after the other.

``device`` ``"auto"`` (CUDA, else MPS, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
``"mps"``: where the networks train and sample. All random draws are made on the CPU and moved,
so CPU results do not depend on naming the device; saved weights are CPU tensors and a loaded model
moves to its ``device`` when first used; a device the machine lacks is one
:class:`~trafficgen.errors.ConfigError` before any work.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from trafficgen._random import seed_from, torch_seeded
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError
from trafficgen.generators.base import PretrainedMixin
from trafficgen.generators.tm.base import SeriesMetadata
from trafficgen.generators.tm.ddpm_tme.denoiser import (
    PREDICTION_TYPES,
    DenoiserConfig,
    MLPResNetDenoiser,
    ddim_sample,
    ddim_timesteps,
    make_schedulers,
    training_target,
)
from trafficgen.generators.tm.ddpm_tme.preprocess import Embedding, Recovery, flow_scaler
from trafficgen.generators.training import train_loop

__all__ = ["DDPMTME", "CONDITIONS"]

#: ``"none"``: the paper's unconditional prior p(x); ``"links"`` / ``"projected_mean"``: p(x | link
#: loads), given as normalised loads or as the projected training mean; ``"previous"``: p(x_t | y_t,
#: x_{t-1}), the link loads and the previous interval's matrix (sequential estimation)
CONDITIONS = ("none", "links", "projected_mean", "previous")


class DDPMTME(SeriesMetadata, PretrainedMixin):
    """Latent DDPM over OD vectors. ``latent_dim=None`` picks 128 for up to 15 nodes (Abilene)
    and 256 above (GEANT), as in the paper.

    ``prediction_type`` is ``"v_prediction"`` by default: with ``"epsilon"`` a denoiser trained on a
    CPU budget samples exploding latents (see :mod:`~trafficgen.generators.tm.ddpm_tme.denoiser`).
    ``flow_scale`` sets the per-flow log scale of :func:`~trafficgen.generators.tm.ddpm_tme.preprocess.flow_scaler`.
    ``gradient_accumulation_steps`` k: one optimiser step per k batches, in both training phases;
    launched in N processes (``tm train --num-processes N``) each phase trains data-parallel
    through :func:`~trafficgen.generators.training.train_loop`.
    """

    name: ClassVar[str] = "ddpm-tme"
    _kind_key: ClassVar[str] = "tm_model"
    _fitted_attr: ClassVar[str] = "n_nodes_"

    def __init__(self, *, latent_dim: int | None = None, hidden_dim: int = 256, width: int = 256,
                 n_blocks: int = 4, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, epochs: int = 200, pretrain_epochs: int = 50,
                 batch_size: int = 64, lr: float = 1e-3, recon_weight: float = 1.0,
                 sampling_steps: int = 20, eta: float = 0.0, prediction_type: str = "v_prediction",
                 flow_scale: float = 1.0, condition: str = "none", prev_noise: float = 1.0, random_state: int = 0,
                 progress: bool = True, device: str = "auto", gradient_accumulation_steps: int = 1):
        self.latent_dim = latent_dim
        self.hidden_dim = hidden_dim
        self.width = width
        self.n_blocks = n_blocks
        self.num_train_timesteps = num_train_timesteps
        self.beta_start = beta_start
        self.beta_end = beta_end
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.recon_weight = recon_weight
        self.sampling_steps = sampling_steps
        self.eta = eta
        self.prediction_type = prediction_type
        self.flow_scale = flow_scale
        self.condition = condition
        self.prev_noise = prev_noise
        self.random_state = random_state
        self.progress = progress
        self.device = device
        self.gradient_accumulation_steps = gradient_accumulation_steps

    # ------------------------------------------------------------------ building blocks
    def _resolved_latent_dim(self, n_nodes: int) -> int:
        return int(self.latent_dim) if self.latent_dim is not None else (128 if n_nodes <= 15 else 256)

    def _build(self, n_nodes: int, cond_dim: int = 0) -> None:
        n_od = n_nodes * n_nodes
        d = self._resolved_latent_dim(n_nodes)
        self.embedding_ = Embedding(n_od, d, self.hidden_dim)
        self.recovery_ = Recovery(d, n_od)
        self.denoiser_config_ = DenoiserConfig(latent_dim=d, width=self.width, n_blocks=self.n_blocks,
                                               time_dim=min(128, max(32, self.width // 2)), cond_dim=int(cond_dim))
        self.denoiser_ = MLPResNetDenoiser(self.denoiser_config_)
        self.ddpm_scheduler_, self.ddim_scheduler_ = make_schedulers(
            self.num_train_timesteps, self.beta_start, self.beta_end, self.prediction_type)
        self.alphas_cumprod_ = self.ddpm_scheduler_.alphas_cumprod.to(torch.float32)  # (T_train,)

    def _validate(self):
        if self.epochs < 0 or self.pretrain_epochs < 0 or self.batch_size < 1 or self.sampling_steps < 1:
            raise ConfigError("epochs/pretrain_epochs must be >= 0, batch_size and sampling_steps >= 1")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError(f"need 0 < beta_start < beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.condition not in CONDITIONS:
            raise ConfigError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")

    @property
    def conditional(self) -> bool:
        return self.condition != "none"

    # ------------------------------------------------------------------ link-load condition
    def _fit_condition(self, y: np.ndarray, A: np.ndarray) -> None:
        """Condition statistics from the training link loads y (T, L) and the routing A (n_od, L)."""
        self.cond_routing_ = A
        ybar = y.mean(0)  # (L,)
        self.cond_ybar_ = np.where(ybar > 0, ybar, 1.0)
        u = np.log1p(np.clip(y, 0.0, None) / self.cond_ybar_)  # (T, L)
        self.cond_mean_, self.cond_std_ = u.mean(0), np.maximum(u.std(0), 1e-6)

    def _fit_previous_noise(self, x: np.ndarray, y: np.ndarray, A: np.ndarray) -> None:
        """``condition="previous"``: per-flow standard deviation (n_od,) in the scaled space of the
        projected training mean's error on the training matrices x (T, n_od), times ``prev_noise``."""
        from trafficgen.estimation.classic import kl_projection

        est = kl_projection(np.tile(self.train_mean_, (len(y), 1)), y, A)  # (T, n_od)
        err = self.scaler_.transform(est) - self.scaler_.transform(x)  # (T, n_od)
        self.cond_prev_std_ = float(self.prev_noise) * err.std(0)  # (n_od,)

    def _cond_dim(self) -> int:
        L, n_od = self.cond_routing_.shape[1], self.cond_routing_.shape[0]
        return {"links": L, "projected_mean": n_od, "previous": L + n_od}[self.condition]

    def _link_features(self, y: np.ndarray) -> np.ndarray:
        return (np.log1p(np.clip(y, 0.0, None) / self.cond_ybar_) - self.cond_mean_) / self.cond_std_  # (T, L)

    def previous_features(self, link_loads, previous) -> torch.Tensor:
        """``condition="previous"``: link loads (T, L) and previous matrices (T, n_od) in the training
        unit -> condition (T, L + n_od) float32 on the model's device."""
        y = np.asarray(link_loads, dtype=np.float64)
        prev = np.asarray(previous, dtype=np.float64)
        feats = np.concatenate([self._link_features(y), self.scaler_.transform(prev)], axis=1)  # (T, L + n_od)
        return torch.as_tensor(feats, dtype=torch.float32).to(self._placed())

    def _features(self, y: np.ndarray) -> np.ndarray:
        if self.condition == "links":
            return self._link_features(y)  # (T, L)
        from trafficgen.estimation.classic import kl_projection

        base = kl_projection(np.tile(self.train_mean_, (len(y), 1)), y, self.cond_routing_)  # (T, n_od)
        return self.scaler_.transform(base)  # (T, n_od)

    def condition_features(self, link_loads) -> torch.Tensor:
        """Link loads (T, L) in the training unit -> condition float32 on the model's device."""
        self._check_fitted()
        if not self.conditional:
            raise ConfigError("this DDPM-TME model is unconditional (condition='none')")
        if self.condition == "previous":
            raise ConfigError("condition='previous' needs the previous matrices too: use previous_features(Y, X_prev)")
        y = np.asarray(link_loads, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != self.cond_routing_.shape[1]:
            raise ConfigError(f"link loads {y.shape} do not match the {self.cond_routing_.shape[1]} links "
                              "the model was fitted on")
        return torch.as_tensor(self._features(y), dtype=torch.float32).to(self._placed())

    # ------------------------------------------------------------------ device
    def _placed(self) -> torch.device:
        """The torch device of ``device``, with the networks (and schedule) moved there if elsewhere."""
        from trafficgen._device import same_device
        from trafficgen.generators.training import place_modules

        device = place_modules(self.device, self.embedding_, self.recovery_, self.denoiser_)
        if not same_device(self.alphas_cumprod_.device, device):
            self.alphas_cumprod_ = self.alphas_cumprod_.to(device)
        return device

    # ------------------------------------------------------------------ training
    def fit(self, train: TMSeries, *, val: TMSeries | None = None, routing=None) -> DDPMTME:
        """Algorithm 1 on the OD vectors of ``train`` (``val`` is only scored, not used to fit).
        ``routing`` (n_od, L): needed by a conditional model (the link loads ``train.flat @ routing``
        are the condition), ignored otherwise."""
        from trafficgen._device import resolve_device

        self._validate()
        resolve_device(self.device)  # fail before any work
        if not isinstance(train, TMSeries):
            raise ConfigError(f"fit expects a TMSeries, got {type(train).__name__}")
        if val is not None and (not isinstance(val, TMSeries) or val.n_nodes != train.n_nodes):
            raise ConfigError(f"val must be a TMSeries over the {train.n_nodes} nodes of train, got "
                              f"{getattr(val, 'n_nodes', type(val).__name__)}")
        y = None
        if self.conditional:
            if routing is None:
                raise ConfigError(f"condition={self.condition!r} needs fit(train, routing=A) (A: (n_od, L))")
            A = np.asarray(routing, dtype=np.float64)
            if A.ndim != 2 or A.shape[0] != train.n_nodes ** 2:
                raise ConfigError(f"routing {A.shape} does not match {train.n_nodes ** 2} OD pairs")
            y = (train.flat @ A, A)  # (T, L), (n_od, L)
        with torch_seeded(self.random_state) as seed:  # module init; the caller's RNG is left alone
            return self._fit(train, val, seed, y)

    def _fit(self, train: TMSeries, val: TMSeries | None, seed: int, y) -> DDPMTME:
        from trafficgen._device import resolve_device

        device = resolve_device(self.device)
        gen = torch.Generator().manual_seed(seed)
        self.scaler_ = flow_scaler(self.flow_scale).fit(train.flat)
        self.train_mean_ = train.flat.mean(0)  # (n_od,): the start of estimate(start="projected_mean")
        if y is not None:
            self._fit_condition(y[0], y[1])
        self._build(train.n_nodes, cond_dim=0 if y is None else self._cond_dim())
        for name in ("embedding_", "recovery_", "denoiser_"):
            setattr(self, name, getattr(self, name).to(device))
        self.alphas_cumprod_ = self.alphas_cumprod_.to(device)
        z = torch.as_tensor(self.scaler_.transform(train.flat), dtype=torch.float32).to(device)  # (T, n_od)
        cond = prev_std = None
        if y is not None and self.condition == "previous":
            self._fit_previous_noise(train.flat, y[0], y[1])
            prev = np.concatenate([train.flat[:1], train.flat[:-1]])  # (T, n_od): x_{t-1} (x_0 for t = 0)
            cond = torch.as_tensor(np.concatenate([self._link_features(y[0]), self.scaler_.transform(prev)], axis=1),
                                   dtype=torch.float32).to(device)  # (T, L + n_od)
            prev_std = torch.as_tensor(np.concatenate([np.zeros(y[0].shape[1]), self.cond_prev_std_]),
                                       dtype=torch.float32).to(device)  # (L + n_od,): noise on the x_{t-1} part only
        elif y is not None:
            cond = torch.as_tensor(self._features(y[0]), dtype=torch.float32).to(device)  # (T, C)
        er = torch.nn.ModuleList([self.embedding_, self.recovery_])
        self.history_ = {"pretrain_loss": [], "recon_loss": [], "diffusion_loss": [], "val_recon_loss": [],
                         "pretrain_steps": 0, "steps": 0}  # optimiser steps of each phase
        common = dict(n=len(z), batch_size=self.batch_size, generator=gen, val_fraction=None, patience=None,
                      restore_best=False, progress=bool(self.progress),
                      gradient_accumulation_steps=self.gradient_accumulation_steps)

        def recon_loss(idx):
            idx = idx.to(device)
            xb = z[idx]  # (B, n_od)
            return torch.mean((self.recovery_(self.embedding_(xb)) - xb) ** 2), len(idx)

        if self.pretrain_epochs:
            pre = train_loop(er, recon_loss, epochs=self.pretrain_epochs, max_grad_norm=None,
                             optimizer=lambda steps: (torch.optim.Adam(er.parameters(), lr=self.lr), None),
                             description="DDPM-TME pre-train E/R", **common)
            self.history_["pretrain_loss"] = pre["train_loss"]
            self.history_["pretrain_steps"] = pre["steps"]
        ac = self.alphas_cumprod_

        def joint_loss(idx):
            idx = idx.to(device)
            xb = z[idx]  # (B, n_od)
            lat = self.embedding_(xb)  # (B, D)
            rec = torch.mean((self.recovery_(lat) - xb) ** 2)
            t = torch.randint(0, self.num_train_timesteps, (len(idx),), generator=gen).to(device)  # (B,)
            eps = torch.randn(lat.shape, generator=gen).to(device)  # (B, D), drawn on the CPU
            a = ac[t][:, None]  # (B, 1)
            noisy = a.sqrt() * lat + (1 - a).sqrt() * eps  # (B, D)
            target = training_target(lat, eps, a, self.prediction_type)  # (B, D)
            if cond is None:
                out = self.denoiser_(noisy, t)
            elif prev_std is None:
                out = self.denoiser_(noisy, t, cond[idx])
            else:  # the previous matrix perturbed like an estimate, afresh for every batch
                c = cond[idx] + prev_std * torch.randn(cond[idx].shape, generator=gen).to(device)  # (B, L + n_od)
                out = self.denoiser_(noisy, t, c)
            dif = torch.mean((out - target) ** 2)
            return self.recon_weight * rec + dif, len(idx), {"recon_loss": rec.detach(), "diffusion_loss": dif.detach()}

        everything = torch.nn.ModuleList([self.embedding_, self.recovery_, self.denoiser_])

        def adam_cosine(steps):
            opt = torch.optim.Adam(everything.parameters(), lr=self.lr)
            return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps), eta_min=self.lr * 0.05)

        if self.epochs:
            joint = train_loop(everything, joint_loss, epochs=self.epochs, max_grad_norm=1.0, optimizer=adam_cosine,
                               description="DDPM-TME training", **common)
            self.history_["recon_loss"] = joint["recon_loss"]
            self.history_["diffusion_loss"] = joint["diffusion_loss"]
            self.history_["steps"] = joint["steps"]
            if "processes" in joint:
                self.history_["processes"] = joint["processes"]
        # fitted from here on: mark it before anything (the validation score) calls encode/decode
        self._record_series(train)
        self._set_eval()
        if val is not None:
            self.history_["val_recon_loss"].append(self.reconstruction_error(val.flat, scaled=True))
        return self

    def _set_eval(self) -> None:
        for m in (self.embedding_, self.recovery_, self.denoiser_):
            m.eval()
            m.requires_grad_(False)

    # ------------------------------------------------------------------ encode / decode
    def encode(self, x_flat: np.ndarray) -> torch.Tensor:
        """Real-unit OD vectors (B, n_od) -> latents (B, D)."""
        self._check_fitted()
        z = torch.as_tensor(self.scaler_.transform(x_flat), dtype=torch.float32).to(self._placed())  # (B, n_od)
        with torch.no_grad():
            return self.embedding_(z)  # (B, D)

    def decode_torch(self, latent: torch.Tensor) -> torch.Tensor:
        """Differentiable latents (B, D) -> real units (B, n_od) (not clipped)."""
        return self.scaler_.torch_inverse(self.recovery_(latent))  # (B, n_od)

    def decode(self, latent: torch.Tensor) -> np.ndarray:
        """Latents (B, D) -> non-negative real-unit OD vectors (B, n_od)."""
        with torch.no_grad():
            return self.scaler_.inverse_transform(self.recovery_(latent).double().cpu().numpy())

    def reconstruction_error(self, x_flat: np.ndarray, *, scaled: bool = False) -> float:
        """Mean squared E/R round-trip error (scaled space) or relative L1 error (real units)."""
        self._check_fitted()
        lat = self.encode(x_flat)
        if scaled:
            z = self.scaler_.transform(x_flat)
            with torch.no_grad():
                return float(np.mean((self.recovery_(lat).double().cpu().numpy() - z) ** 2))
        xh = self.decode(lat)
        return float(np.abs(xh - x_flat).sum() / max(np.abs(x_flat).sum(), 1e-300))

    # ------------------------------------------------------------------ sampling
    def sample_latents(self, x_T: torch.Tensor, noises: torch.Tensor | None = None, *,
                       steps: int | None = None, eta: float | None = None,
                       cond: torch.Tensor | None = None) -> torch.Tensor:
        """Run the DDIM sampler from x_T (B, D) (differentiable w.r.t. x_T and noises (B, S, D));
        ``cond`` (B, L): :meth:`condition_features` of the link loads, for a conditional model."""
        self._check_fitted()
        if self.conditional and cond is None:
            raise ConfigError("a conditional DDPM-TME model samples given link loads (cond)")
        device = self._placed()
        pairs = ddim_timesteps(self.ddim_scheduler_, int(steps or self.sampling_steps))
        return ddim_sample(self.denoiser_, x_T.to(device), None if noises is None else noises.to(device),
                           self.alphas_cumprod_, pairs, self.eta if eta is None else float(eta),
                           self.prediction_type, cond=cond if self.conditional else None)

    def draw_noise(self, n: int, generator: torch.Generator, *, steps: int | None = None):
        """Fresh (x_T (n, D), per-step noises (n, S, D)) from ``generator`` (a CPU generator; the
        draws are moved to the model's device)."""
        d = self.denoiser_config_.latent_dim
        s = int(steps or self.sampling_steps)
        device = self._placed()
        return (torch.randn((n, d), generator=generator).to(device),
                torch.randn((n, s, d), generator=generator).to(device))

    def sample(self, n: int, *, random_state=None, steps: int | None = None, batch_size: int = 1024,
               link_loads=None) -> TMSeries:
        """``n`` synthetic TMs in the training series' unit, as a TMSeries (n, N, N). A conditional
        model needs ``link_loads`` (n, L): sample i is drawn given row i."""
        self._check_fitted()
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        cond = None
        if self.conditional:
            if link_loads is None or len(link_loads) != n:
                raise ConfigError("a conditional DDPM-TME model needs link_loads with one row per sample")
            cond = self.condition_features(link_loads)  # (n, L)
        seed = seed_from(random_state)
        gen = torch.Generator().manual_seed(seed)
        out = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                x_T, noises = self.draw_noise(min(batch_size, n - start), gen, steps=steps)
                c = None if cond is None else cond[start:start + len(x_T)]
                out.append(self.decode(self.sample_latents(x_T, noises, steps=steps, cond=c)))
        values = np.concatenate(out).reshape(n, self.n_nodes_, self.n_nodes_)
        return TMSeries(values, self.nodes_, self.interval_s_, self.unit_, None, meta={"synthetic": "ddpm-tme"})

    def estimate(self, link_loads, routing, **kwargs) -> np.ndarray:
        """TMs (T, n_od) from link loads (T, L) and routing (n_od, L); see
        :func:`~trafficgen.generators.tm.ddpm_tme.estimate.estimate_tm` for the keywords."""
        from trafficgen.generators.tm.ddpm_tme.estimate import estimate_tm

        return estimate_tm(self, link_loads, routing, **kwargs)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {**self._series_config(), "denoiser": self.denoiser_config_.to_dict()}
        tensors = {**{f"embedding.{k}": v.detach().cpu() for k, v in self.embedding_.state_dict().items()},
                   **{f"recovery.{k}": v.detach().cpu() for k, v in self.recovery_.state_dict().items()},
                   **{f"denoiser.{k}": v.detach().cpu() for k, v in self.denoiser_.state_dict().items()},
                   **{f"scaler_{k}": v for k, v in self.scaler_.state().items()}}
        if getattr(self, "train_mean_", None) is not None:
            tensors["train_mean"] = np.asarray(self.train_mean_, dtype=np.float64)
        if self.conditional:
            tensors.update({"cond.ybar": self.cond_ybar_, "cond.mean": self.cond_mean_, "cond.std": self.cond_std_,
                            "cond.routing": self.cond_routing_})
            if self.condition == "previous":
                tensors["cond.prev_std"] = np.asarray(self.cond_prev_std_, dtype=np.float64)
        return config, tensors, {"history.json": self.history_}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = cls(**config["params"])
        model._build(int(config["n_nodes"]), cond_dim=int(config.get("denoiser", {}).get("cond_dim", 0)))
        if model.conditional:
            model.cond_ybar_, model.cond_mean_, model.cond_std_, model.cond_routing_ = (
                np.asarray(tensors[f"cond.{k}"], dtype=np.float64) for k in ("ybar", "mean", "std", "routing"))
            if "cond.prev_std" in tensors:
                model.cond_prev_std_ = np.asarray(tensors["cond.prev_std"], dtype=np.float64)
        for prefix, module in (("embedding.", model.embedding_), ("recovery.", model.recovery_),
                               ("denoiser.", model.denoiser_)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        model.scaler_ = flow_scaler(model.flow_scale).load_state(
            {k[len("scaler_"):]: v for k, v in tensors.items() if k.startswith("scaler_")})
        model._load_series(config)
        model.train_mean_ = np.asarray(tensors["train_mean"], dtype=np.float64) if "train_mean" in tensors else None
        model.history_ = extra.get("history.json", {})
        model._set_eval()
        return model
