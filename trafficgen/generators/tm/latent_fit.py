"""VAE-TME and WGAN-GP-TME baselines: train a generator of OD vectors, then estimate TMs from
link loads by optimising its latent input (best of a shared candidate pool, then Adam on the
relative link misfit, as DDPM-TME's Algorithm 2 does with its sampling noises).

Both work on the per-flow ``log1p`` + standardised scale of
:func:`~trafficgen.generators.tm.ddpm_tme.preprocess.flow_scaler` and share the post-processing of
DDPM-TME (the projection onto the link loads, KL by default, see
:func:`~trafficgen.generators.tm.ddpm_tme.estimate.refine_to_link_loads`), so the comparison isolates
the prior. Networks are small MLPs (hidden ``width``, LeakyReLU). Both train through
:func:`~trafficgen.generators.training.train_loop` with Adam at a constant rate, no clipping, no
validation, the last weights kept; WGAN-GP's loop trains the critic and takes the generator's
step in ``after_step`` (the critic and the generator have one optimiser each).

``device`` ``"auto"`` (CUDA, else MPS, else the CPU) | ``"cpu"`` | ``"cuda[:N]"`` | ``"mps"`` is where
the networks train, sample and fit latents; every random draw comes from a CPU ``torch.Generator``
and is moved there, so CPU results are those of a model without the parameter (same seed, same
numbers), a device this machine lacks is one :class:`~trafficgen.errors.ConfigError` before any
work, saved weights are CPU tensors and a loaded model moves to its ``device`` when first used.
In a process group started by a launcher (``WORLD_SIZE > 1``) training is data-parallel through
``train_loop``; WGAN-GP's generator step averages its gradients over the processes too.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from trafficgen._random import torch_generator, torch_seeded
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError
from trafficgen.generators.base import PretrainedMixin
from trafficgen.generators.tm.ddpm_tme.estimate import (
    _as_inputs,
    best_of_pool,
    descend_link_misfit,
    refine_to_link_loads,
)
from trafficgen.generators.tm.ddpm_tme.preprocess import flow_scaler
from trafficgen.generators.training import train_loop

__all__ = ["VAETME", "WGANGPTME"]


def _randn(shape, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal draws from the CPU generator ``gen``, moved to ``device`` (the CPU: as is)."""
    return torch.randn(shape, generator=gen).to(device)


def _mlp(d_in: int, width: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, width), nn.LeakyReLU(0.2), nn.Linear(width, width),
                         nn.LeakyReLU(0.2), nn.Linear(width, d_out))


class _LatentTME(PretrainedMixin):
    """Shared: scaling, sampling, latent-optimisation estimation, persistence. Subclasses build
    ``decoder_`` (the generator of OD vectors: all that sampling and estimation need)."""

    _kind_key: ClassVar[str] = "tm_model"
    _fitted_attr: ClassVar[str] = "decoder_"

    def __init__(self, *, latent_dim: int = 32, width: int = 256, epochs: int = 200, batch_size: int = 64,
                 lr: float = 1e-3, flow_scale: float = 1.0, random_state: int = 0, progress: bool = False,
                 device: str = "auto"):
        self.latent_dim = latent_dim
        self.flow_scale = flow_scale
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.random_state = random_state
        self.progress = progress
        self.device = device

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {"n_nodes": self.n_nodes_, "unit": self.unit_}
        tensors = {**{f"decoder.{k}": v.detach().cpu() for k, v in self.decoder_.state_dict().items()},
                   **{f"scaler_{k}": v for k, v in self.scaler_.state().items()}}
        return config, tensors, {"history.json": self.history_}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = cls(**config["params"])
        model.n_nodes_ = int(config["n_nodes"])
        model.unit_ = config["unit"]
        model.scaler_ = flow_scaler(model.flow_scale).load_state(
            {k[len("scaler_"):]: v for k, v in tensors.items() if k.startswith("scaler_")})
        model.decoder_ = _mlp(int(model.latent_dim), int(model.width), model.n_nodes_ ** 2)
        model.decoder_.load_state_dict({k[len("decoder."):]: v for k, v in tensors.items()
                                        if k.startswith("decoder.")})
        model.decoder_.eval().requires_grad_(False)
        model.history_ = extra.get("history.json", {})
        return model

    def fit(self, train: TMSeries, *, val=None):
        """Train the generator on ``train``'s OD vectors (``val`` is not used)."""
        from trafficgen._device import resolve_device

        device = resolve_device(self.device)  # fail before any work
        with torch_seeded(self.random_state) as seed:  # module init; the caller's RNG is left alone
            x = self._prepare(train).to(device)  # (T, n_od)
            self._fit_networks(x, torch.Generator().manual_seed(seed))
        return self

    def _fit_networks(self, x: torch.Tensor, gen: torch.Generator) -> None:
        """Build and train the networks on the scaled vectors ``x`` (T, n_od, on the training
        device; the networks are built on the CPU, then moved there); set ``decoder_``."""
        raise NotImplementedError

    def _prepare(self, train: TMSeries) -> torch.Tensor:
        if not isinstance(train, TMSeries):
            raise ConfigError(f"fit expects a TMSeries, got {type(train).__name__}")
        if self.epochs < 0 or self.batch_size < 1 or self.latent_dim < 1:
            raise ConfigError("epochs >= 0, batch_size >= 1 and latent_dim >= 1 are required")
        self.scaler_ = flow_scaler(self.flow_scale).fit(train.flat)
        self.n_nodes_ = train.n_nodes
        self.unit_ = train.unit
        self.history_ = {"loss": []}
        return torch.as_tensor(self.scaler_.transform(train.flat), dtype=torch.float32)  # (T, n_od)

    def _train(self, model: torch.nn.Module, loss_fn, optimizer, gen: torch.Generator, n: int, description: str,
               after_step=None) -> None:
        """``epochs`` of :func:`~trafficgen.generators.training.train_loop` over the ``n`` training
        vectors; ``history_["loss"]`` gets the epoch means."""
        if self.epochs:
            hist = train_loop(model, loss_fn, n=n, epochs=self.epochs, batch_size=self.batch_size, generator=gen,
                              val_fraction=None, patience=None, restore_best=False, max_grad_norm=None,
                              optimizer=optimizer, after_step=after_step, progress=bool(self.progress),
                              description=description)
            self.history_["loss"] = hist["train_loss"]

    def _placed(self) -> torch.device:
        """The torch device of ``device``, with the decoder moved there first if it is elsewhere."""
        from trafficgen.generators.training import place_modules

        return place_modules(self.device, self.decoder_)

    def _decode_real(self, z: torch.Tensor) -> torch.Tensor:
        return self.scaler_.torch_inverse(self.decoder_(z))  # (B, n_od)

    def sample(self, n: int, *, random_state=None) -> np.ndarray:
        """``n`` OD vectors (n, n_od) in real units."""
        self._check_fitted()
        device = self._placed()
        gen = torch_generator(random_state)
        with torch.no_grad():
            z = _randn((n, self.latent_dim), gen, device)  # (n, d)
            return self.scaler_.inverse_transform(self.decoder_(z).double().cpu().numpy())

    def estimate(self, link_loads, routing, *, n_init: int = 256, n_starts: int = 1, n_opt: int = 100,
                 lr: float = 0.05, loss: str = "l1", batch_size: int = 512, projection: str = "kl",
                 project_iters: int = 3, random_state: int = 0, return_raw: bool = False):
        """(T, n_od) estimates (and the raw generator fit with ``return_raw``). ``n_starts`` best
        pool latents are optimised per target and their fits averaged, as in DDPM-TME."""
        self._check_fitted()
        Y, A = _as_inputs(link_loads, routing, self.n_nodes_ ** 2)
        if n_init < 1 or n_opt < 0 or batch_size < 1 or n_starts < 1:
            raise ConfigError("need n_init >= 1, n_opt >= 0, batch_size >= 1 and n_starts >= 1")
        n_starts = min(int(n_starts), int(n_init))
        device = self._placed()
        gen = torch_generator(random_state)
        At = torch.as_tensor(A, dtype=torch.float32, device=device)  # (n_od, L)
        pool = _randn((n_init, self.latent_dim), gen, device)  # (P, d)
        with torch.no_grad():
            pool_x = self.scaler_.inverse_transform(self.decoder_(pool).double().cpu().numpy())  # (P, n_od)
        best = best_of_pool(pool_x, Y, A, loss, k=n_starts).reshape(len(Y), n_starts)  # (T, k)
        raw = np.empty((len(Y), A.shape[0]))
        for s in range(0, len(Y), batch_size):
            sl = slice(s, s + batch_size)
            idx = best[sl].reshape(-1)  # (B * k,)
            y = torch.as_tensor(Y[sl], dtype=torch.float32, device=device).repeat_interleave(n_starts, 0)  # (B*k, L)
            z = pool[torch.as_tensor(idx, device=device)].clone().requires_grad_(True)  # (B * k, d)
            best_x = descend_link_misfit([z], lambda: self._decode_real(z).clamp_min(0), y, At,  # noqa: B023
                                         torch.as_tensor(pool_x[idx], dtype=torch.float32, device=device),
                                         loss=loss, n_opt=n_opt, lr=lr)
            raw[sl] = best_x.detach().double().cpu().numpy().reshape(-1, n_starts, A.shape[0]).mean(1)
        est = refine_to_link_loads(raw, Y, A, projection=projection, project_iters=project_iters)
        return (est, raw) if return_raw else est


class VAETME(_LatentTME):
    """VAE on scaled OD vectors (Gaussian decoder, MSE reconstruction + ``beta`` * KL)."""

    name = "vae-tme"

    def __init__(self, *, latent_dim: int = 32, width: int = 256, epochs: int = 200, batch_size: int = 64,
                 lr: float = 1e-3, beta: float = 0.01, flow_scale: float = 1.0, random_state: int = 0,
                 progress: bool = False, device: str = "auto"):
        super().__init__(latent_dim=latent_dim, width=width, epochs=epochs, batch_size=batch_size, lr=lr,
                         flow_scale=flow_scale, random_state=random_state, progress=progress, device=device)
        self.beta = beta

    def _fit_networks(self, x: torch.Tensor, gen: torch.Generator) -> None:
        n_od, device = x.shape[1], x.device
        self.encoder_ = _mlp(n_od, self.width, 2 * self.latent_dim).to(device)
        decoder = _mlp(self.latent_dim, self.width, n_od).to(device)
        vae = nn.ModuleList([self.encoder_, decoder])

        def loss_fn(idx):
            xb = x[idx]  # (B, n_od)
            mu, logvar = self.encoder_(xb).chunk(2, dim=1)  # (B, d) each
            z = mu + (0.5 * logvar).exp() * _randn(mu.shape, gen, device)  # (B, d)
            rec = ((decoder(z) - xb) ** 2).sum(1).mean()
            kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
            return rec + self.beta * kl, len(idx)

        self._train(vae, loss_fn, lambda steps: (torch.optim.Adam(vae.parameters(), lr=self.lr), None), gen,
                    len(x), "train VAE-TME")
        self.decoder_ = decoder.eval().requires_grad_(False)
        self.encoder_.eval().requires_grad_(False)


class WGANGPTME(_LatentTME):
    """WGAN-GP (Gulrajani et al. 2017) on scaled OD vectors: ``n_critic`` critic steps per
    generator step, gradient penalty weight ``gp_weight``, Adam(0.5, 0.9)."""

    name = "wgan-gp-tme"

    def __init__(self, *, latent_dim: int = 32, width: int = 256, epochs: int = 200, batch_size: int = 64,
                 lr: float = 1e-4, n_critic: int = 5, gp_weight: float = 10.0, flow_scale: float = 1.0,
                 random_state: int = 0, progress: bool = False, device: str = "auto"):
        super().__init__(latent_dim=latent_dim, width=width, epochs=epochs, batch_size=batch_size, lr=lr,
                         flow_scale=flow_scale, random_state=random_state, progress=progress, device=device)
        self.n_critic = n_critic
        self.gp_weight = gp_weight

    def _fit_networks(self, x: torch.Tensor, gen: torch.Generator) -> None:
        from trafficgen.generators.training import all_reduce_gradients, distributed_state

        n_od, device = x.shape[1], x.device
        generator = _mlp(self.latent_dim, self.width, n_od).to(device)
        self.critic_ = critic = _mlp(n_od, self.width, 1).to(device)
        state = distributed_state(device) if self.epochs else None  # a launched group: data-parallel
        if state is not None:  # train_loop starts the critic from the main process's weights; the generator too
            for tensor in generator.state_dict().values():
                torch.distributed.broadcast(tensor, src=0)
        opt_g = torch.optim.Adam(generator.parameters(), lr=self.lr, betas=(0.5, 0.9))

        def critic_loss(idx):
            real = x[idx]  # (B, n_od)
            fake = generator(_randn((len(idx), self.latent_dim), gen, device)).detach()  # (B, n_od)
            a = torch.rand((len(idx), 1), generator=gen).to(device)  # (B, 1)
            mix = (a * real + (1 - a) * fake).requires_grad_(True)  # (B, n_od)
            grad, = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)  # (B, n_od)
            gp = ((grad.norm(dim=1) - 1) ** 2).mean()
            return critic(fake).mean() - critic(real).mean() + self.gp_weight * gp, len(idx)

        def generator_step(position, n_batches):
            """One generator step after every ``n_critic`` critic steps and after an epoch's last."""
            if (position + 1) % self.n_critic == 0 or position == n_batches - 1:
                z = _randn((self.batch_size, self.latent_dim), gen, device)  # (B, d)
                loss_g = -critic(generator(z)).mean()
                opt_g.zero_grad()
                loss_g.backward()
                if state is not None:  # the same averaged step on every process: the generators stay equal
                    all_reduce_gradients(generator, state)
                opt_g.step()

        self._train(critic, critic_loss,
                    lambda steps: (torch.optim.Adam(critic.parameters(), lr=self.lr, betas=(0.5, 0.9)), None),
                    gen, len(x), "train WGAN-GP-TME", after_step=generator_step)
        self.decoder_ = generator.eval().requires_grad_(False)
        self.critic_.eval().requires_grad_(False)
