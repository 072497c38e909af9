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

__all__ = ["DDPMTME"]


class DDPMTME(SeriesMetadata, PretrainedMixin):
    """Latent DDPM over OD vectors. ``latent_dim=None`` picks 128 for up to 15 nodes (Abilene)
    and 256 above (GEANT), as in the paper.

    ``prediction_type`` is ``"v_prediction"`` by default: with ``"epsilon"`` a denoiser trained on a
    CPU budget samples exploding latents (see :mod:`~trafficgen.generators.tm.ddpm_tme.denoiser`).
    ``flow_scale`` sets the per-flow log scale of :func:`~trafficgen.generators.tm.ddpm_tme.preprocess.flow_scaler`.
    """

    name: ClassVar[str] = "ddpm-tme"
    _kind_key: ClassVar[str] = "tm_model"
    _fitted_attr: ClassVar[str] = "n_nodes_"

    def __init__(self, *, latent_dim: int | None = None, hidden_dim: int = 256, width: int = 256,
                 n_blocks: int = 4, num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02, epochs: int = 200, pretrain_epochs: int = 50,
                 batch_size: int = 64, lr: float = 1e-3, recon_weight: float = 1.0,
                 sampling_steps: int = 20, eta: float = 0.0, prediction_type: str = "v_prediction",
                 flow_scale: float = 1.0, random_state: int = 0, progress: bool = True):
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
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ building blocks
    def _resolved_latent_dim(self, n_nodes: int) -> int:
        return int(self.latent_dim) if self.latent_dim is not None else (128 if n_nodes <= 15 else 256)

    def _build(self, n_nodes: int) -> None:
        n_od = n_nodes * n_nodes
        d = self._resolved_latent_dim(n_nodes)
        self.embedding_ = Embedding(n_od, d, self.hidden_dim)
        self.recovery_ = Recovery(d, n_od)
        self.denoiser_config_ = DenoiserConfig(latent_dim=d, width=self.width, n_blocks=self.n_blocks,
                                               time_dim=min(128, max(32, self.width // 2)))
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

    # ------------------------------------------------------------------ training
    def fit(self, train: TMSeries, *, val: TMSeries | None = None) -> DDPMTME:
        """Algorithm 1 on the OD vectors of ``train`` (``val`` is only scored, not used to fit)."""
        self._validate()
        if not isinstance(train, TMSeries):
            raise ConfigError(f"fit expects a TMSeries, got {type(train).__name__}")
        if val is not None and (not isinstance(val, TMSeries) or val.n_nodes != train.n_nodes):
            raise ConfigError(f"val must be a TMSeries over the {train.n_nodes} nodes of train, got "
                              f"{getattr(val, 'n_nodes', type(val).__name__)}")
        with torch_seeded(self.random_state) as seed:  # module init; the caller's RNG is left alone
            return self._fit(train, val, seed)

    def _fit(self, train: TMSeries, val: TMSeries | None, seed: int) -> DDPMTME:
        gen = torch.Generator().manual_seed(seed)
        self.scaler_ = flow_scaler(self.flow_scale).fit(train.flat)
        self._build(train.n_nodes)
        z = torch.as_tensor(self.scaler_.transform(train.flat), dtype=torch.float32)  # (T, n_od)
        er = torch.nn.ModuleList([self.embedding_, self.recovery_])
        self.history_ = {"pretrain_loss": [], "recon_loss": [], "diffusion_loss": [], "val_recon_loss": []}
        common = dict(n=len(z), batch_size=self.batch_size, generator=gen, val_fraction=None, patience=None,
                      restore_best=False, progress=bool(self.progress))

        def recon_loss(idx):
            xb = z[idx]  # (B, n_od)
            return torch.mean((self.recovery_(self.embedding_(xb)) - xb) ** 2), len(idx)

        if self.pretrain_epochs:
            pre = train_loop(er, recon_loss, epochs=self.pretrain_epochs, max_grad_norm=None,
                             optimizer=lambda steps: (torch.optim.Adam(er.parameters(), lr=self.lr), None),
                             description="DDPM-TME pre-train E/R", **common)
            self.history_["pretrain_loss"] = pre["train_loss"]
        ac = self.alphas_cumprod_

        def joint_loss(idx):
            xb = z[idx]  # (B, n_od)
            lat = self.embedding_(xb)  # (B, D)
            rec = torch.mean((self.recovery_(lat) - xb) ** 2)
            t = torch.randint(0, self.num_train_timesteps, (len(idx),), generator=gen)  # (B,)
            eps = torch.randn(lat.shape, generator=gen)  # (B, D)
            a = ac[t][:, None]  # (B, 1)
            noisy = a.sqrt() * lat + (1 - a).sqrt() * eps  # (B, D)
            target = training_target(lat, eps, a, self.prediction_type)  # (B, D)
            dif = torch.mean((self.denoiser_(noisy, t) - target) ** 2)
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
        z = torch.as_tensor(self.scaler_.transform(x_flat), dtype=torch.float32)  # (B, n_od)
        with torch.no_grad():
            return self.embedding_(z)  # (B, D)

    def decode_torch(self, latent: torch.Tensor) -> torch.Tensor:
        """Differentiable latents (B, D) -> real units (B, n_od) (not clipped)."""
        return self.scaler_.torch_inverse(self.recovery_(latent))  # (B, n_od)

    def decode(self, latent: torch.Tensor) -> np.ndarray:
        """Latents (B, D) -> non-negative real-unit OD vectors (B, n_od)."""
        with torch.no_grad():
            return self.scaler_.inverse_transform(self.recovery_(latent).double().numpy())

    def reconstruction_error(self, x_flat: np.ndarray, *, scaled: bool = False) -> float:
        """Mean squared E/R round-trip error (scaled space) or relative L1 error (real units)."""
        self._check_fitted()
        lat = self.encode(x_flat)
        if scaled:
            z = self.scaler_.transform(x_flat)
            with torch.no_grad():
                return float(np.mean((self.recovery_(lat).double().numpy() - z) ** 2))
        xh = self.decode(lat)
        return float(np.abs(xh - x_flat).sum() / max(np.abs(x_flat).sum(), 1e-300))

    # ------------------------------------------------------------------ sampling
    def sample_latents(self, x_T: torch.Tensor, noises: torch.Tensor | None = None, *,
                       steps: int | None = None, eta: float | None = None) -> torch.Tensor:
        """Run the DDIM sampler from x_T (B, D) (differentiable w.r.t. x_T and noises (B, S, D))."""
        self._check_fitted()
        pairs = ddim_timesteps(self.ddim_scheduler_, int(steps or self.sampling_steps))
        return ddim_sample(self.denoiser_, x_T, noises, self.alphas_cumprod_, pairs,
                           self.eta if eta is None else float(eta), self.prediction_type)

    def draw_noise(self, n: int, generator: torch.Generator, *, steps: int | None = None):
        """Fresh (x_T (n, D), per-step noises (n, S, D)) from ``generator``."""
        d = self.denoiser_config_.latent_dim
        s = int(steps or self.sampling_steps)
        return torch.randn((n, d), generator=generator), torch.randn((n, s, d), generator=generator)

    def sample(self, n: int, *, random_state=None, steps: int | None = None, batch_size: int = 1024) -> TMSeries:
        """``n`` synthetic TMs in the training series' unit, as a TMSeries (n, N, N)."""
        self._check_fitted()
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        seed = seed_from(random_state)
        gen = torch.Generator().manual_seed(seed)
        out = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                x_T, noises = self.draw_noise(min(batch_size, n - start), gen, steps=steps)
                out.append(self.decode(self.sample_latents(x_T, noises, steps=steps)))
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
        tensors = {**{f"embedding.{k}": v for k, v in self.embedding_.state_dict().items()},
                   **{f"recovery.{k}": v for k, v in self.recovery_.state_dict().items()},
                   **{f"denoiser.{k}": v for k, v in self.denoiser_.state_dict().items()},
                   **{f"scaler_{k}": v for k, v in self.scaler_.state().items()}}
        return config, tensors, {"history.json": self.history_}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = cls(**config["params"])
        model._build(int(config["n_nodes"]))
        for prefix, module in (("embedding.", model.embedding_), ("recovery.", model.recovery_),
                               ("denoiser.", model.denoiser_)):
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        model.scaler_ = flow_scaler(model.flow_scale).load_state(
            {k[len("scaler_"):]: v for k, v in tensors.items() if k.startswith("scaler_")})
        model._load_series(config)
        model.history_ = extra.get("history.json", {})
        model._set_eval()
        return model
