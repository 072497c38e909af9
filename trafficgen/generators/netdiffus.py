"""`NetDiffusGenerator`: NetDiffus-style class-conditioned diffusion over GASF flow images.

A flow's first ``N = max_packets_`` signed lengths become an ``N x N`` GASF image
(:class:`~trafficgen.representations.gasf.GasfImageMapper`, global learned scale); a diffusers
``UNet2DModel`` with a class embedding (``num_class_embeds = n_classes + 1``, the last id is the
*null* class of classifier-free guidance) learns to predict the noise (``DDPMScheduler``,
1000 steps, cosine schedule). Sampling runs ``DDIMScheduler`` (deterministic, ``eta = 0``,
``num_inference_steps`` steps) from seeded Gaussian noise; with ``guidance_scale != 1`` each step
mixes the conditional and the null-class prediction, ``eps_u + w (eps_c - eps_u)``. Images go
back to flows through the mapper's exact inverse (snap to the training lengths, end detection).

Unlike the NetDiffus paper (which fine-tuned an image model on PNG GASFs and lost precision in
the 8-bit images), images stay float and the inverse is exact on real flows.

``UNet2DModel`` needs sizes divisible by ``2^(levels-1)``: images are padded in sequence space
(extra packets at ``x = 0``, i.e. the GASF of the same flow with more padding) to the next
multiple and cropped back before decoding.
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from trafficgen.errors import ConfigError
from trafficgen.generators.base import FlowGenerator
from trafficgen.representations.gasf import GasfImageMapper, gasf_from_scaled

#: Default cap on the image size when ``max_packets=None``.

#: ``UNet2DModel`` keyword arguments per preset. "small" is ~1.8M parameters (attention only at
#: the lowest resolution: full-resolution attention costs ~5x per step on CPU), "tiny" is for tests.
NETDIFFUS_PRESETS: dict[str, dict] = {
    "tiny": dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                 down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D")),
    "small": dict(block_out_channels=(32, 64, 96), layers_per_block=1, norm_num_groups=8, attention_head_dim=32,
                  down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                  up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")),
}

#: Training noise schedule (``DDPMScheduler``); sampling uses ``DDIMScheduler`` from the same config.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                        clip_sample=True, clip_sample_range=1.0)


def _seed_from(random_state) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    return int(np.random.default_rng(random_state).integers(2**31 - 1))


def padded_size(size: int, levels: int) -> int:
    """Smallest multiple of ``2^(levels-1)`` that is >= ``size``."""
    mult = 2 ** (levels - 1)
    return int(math.ceil(size / mult) * mult)


class NetDiffusGenerator(FlowGenerator):
    """Class-conditioned DDPM/DDIM over GASF images (registry name ``"netdiffus"``).

    Parameters
    ----------
    preset: ``"small"`` (~1.8M parameters) or ``"tiny"`` (tests).
    max_packets: image size ``N`` (packets per flow); ``None``: the data's width capped at 32.
    epochs, batch_size, learning_rate: training (AdamW + cosine warmup).
    num_inference_steps: DDIM steps at sampling time (default 50).
    guidance_scale: classifier-free guidance weight ``w`` (1.0 = plain conditional, one U-Net
        pass per step; > 1 doubles the cost per step).
    cfg_dropout: probability of replacing a training label by the null class.
    val_fraction: held-out fraction for early stopping (0: none, train on everything).
    random_state: seed of the initialisation, shuffling, noise and timesteps.
    progress: show a progress bar while training.

    Fitted attributes: ``classes_``, ``class_prior_``, ``mapper_`` (:class:`GasfImageMapper`),
    ``max_packets_``, ``image_size_`` (padded), ``model_`` (``UNet2DModel``), ``history_``.
    """

    name: ClassVar[str] = "netdiffus"
    presets: ClassVar[dict[str, dict]] = NETDIFFUS_PRESETS

    def __init__(self, *, preset: str = "small", max_packets: int | None = None, epochs: int = 30,
                 batch_size: int = 64, learning_rate: float = 1e-3, num_inference_steps: int = 50,
                 guidance_scale: float = 1.0, cfg_dropout: float = 0.1, val_fraction: float = 0.0,
                 random_state: int | None = None, progress: bool = True):
        self.preset = preset
        self.max_packets = max_packets
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.cfg_dropout = cfg_dropout
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ model
    @staticmethod
    def build_unet(preset: str, image_size: int, n_classes: int):
        """A fresh ``UNet2DModel`` (1 channel in/out, ``n_classes + 1`` class embeddings)."""
        from diffusers import UNet2DModel

        if preset not in NETDIFFUS_PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(NETDIFFUS_PRESETS)}")
        return UNet2DModel(sample_size=image_size, in_channels=1, out_channels=1,
                           num_class_embeds=n_classes + 1, **NETDIFFUS_PRESETS[preset])

    def _images(self, flows) -> np.ndarray:
        """Padded GASF images (n, 1, P, P) float32 of ``flows``."""
        x = self.mapper_.scale_flows(flows, self.image_size_)  # (n, P)
        return gasf_from_scaled(x)[:, None].astype(np.float32)  # (n, 1, P, P)

    # ------------------------------------------------------------------ fit
    def fit(self, flows):
        """Train on a labelled FlowSet; returns ``self``."""
        import torch
        import torch.nn.functional as F
        from diffusers import DDPMScheduler

        from trafficgen.generators.training import seeded_init, train_loop

        width = self._validated_width(flows)
        if not 0.0 <= float(self.cfg_dropout) < 1.0:
            raise ConfigError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        flows = flows.truncate(width)
        counts = flows.class_counts()
        classes = sorted(counts)
        self.mapper_ = GasfImageMapper(image_size=width).fit(flows)
        self.max_packets_ = width
        self.image_size_ = padded_size(width, len(self.presets[self.preset]["block_out_channels"]))

        images = torch.from_numpy(self._images(flows))  # (n, 1, P, P)
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[c] for c in flows.labels], dtype=torch.long)  # (n,)
        null = len(classes)
        seed = _seed_from(self.random_state)
        gen = torch.Generator().manual_seed(seed)
        model = seeded_init(seed, lambda: self.build_unet(self.preset, self.image_size_, len(classes)))
        noise_sched = DDPMScheduler(**SCHEDULER_CONFIG)
        n_train = noise_sched.config.num_train_timesteps
        p_drop = float(self.cfg_dropout)

        def loss_fn(batch):
            x0 = images[batch]  # (B, 1, P, P)
            noise = torch.randn(x0.shape, generator=gen)  # (B, 1, P, P)
            t = torch.randint(0, n_train, (len(batch),), generator=gen)  # (B,)
            y = labels[batch]  # (B,)
            if p_drop > 0:
                y = torch.where(torch.rand(len(batch), generator=gen) < p_drop, torch.full_like(y, null), y)
            pred = model(noise_sched.add_noise(x0, noise, t), t, class_labels=y).sample  # (B, 1, P, P)
            return F.mse_loss(pred, noise), len(batch)

        self.history_ = train_loop(model, loss_fn, n=len(flows), epochs=int(self.epochs),
                                   batch_size=int(self.batch_size), learning_rate=float(self.learning_rate),
                                   generator=gen, val_fraction=float(self.val_fraction),
                                   patience=5 if self.val_fraction else None, progress=bool(self.progress),
                                   description=f"train {self.name}")
        self.model_ = model.eval()
        self.classes_ = classes
        total = sum(counts.values())
        self.class_prior_ = np.array([counts[c] / total for c in classes])
        return self

    # ------------------------------------------------------------------ sample
    def sample_images(self, labels: np.ndarray, *, random_state=None, num_inference_steps: int | None = None,
                      guidance_scale: float | None = None, batch_size: int = 250) -> np.ndarray:
        """Denoised padded images (n, 1, P, P) float32 for class ids ``labels`` (n,).

        All initial noise is drawn up front from one seeded generator, so ``batch_size`` changes
        only the float summation order (same seed and batch size -> same bits).
        """
        import torch
        from diffusers import DDIMScheduler

        self._check_fitted()
        steps = int(num_inference_steps or self.num_inference_steps)
        w = float(self.guidance_scale if guidance_scale is None else guidance_scale)
        if steps < 1:
            raise ConfigError(f"num_inference_steps must be >= 1, got {steps}")
        gen = torch.Generator().manual_seed(_seed_from(random_state))
        n, p = len(labels), self.image_size_
        noise = torch.randn((n, 1, p, p), generator=gen)  # (n, 1, P, P)
        y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)  # (n,)
        null = len(self.classes_)
        out = torch.empty_like(noise)
        sched = DDIMScheduler(**SCHEDULER_CONFIG)
        sched.set_timesteps(steps)
        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                x = noise[lo:lo + batch_size]  # (B, 1, P, P)
                y = y_all[lo:lo + batch_size]  # (B,)
                if w != 1.0:
                    y = torch.cat([y, torch.full_like(y, null)])  # (2B,)
                for t in sched.timesteps:
                    if w == 1.0:
                        eps = self.model_(x, t, class_labels=y).sample  # (B, 1, P, P)
                    else:
                        eps_c, eps_u = self.model_(torch.cat([x, x]), t, class_labels=y).sample.chunk(2)
                        eps = eps_u + w * (eps_c - eps_u)  # (B, 1, P, P)
                    x = sched.step(eps, t, x, eta=0.0).prev_sample  # (B, 1, P, P)
                out[lo:lo + batch_size] = x
        return out.numpy()

    def sample(self, n: int, *, cls=None, random_state=None, num_inference_steps: int | None = None,
               guidance_scale: float | None = None):
        """``n`` flows (a labelled FlowSet of width ``max_packets_``); same seed -> same flows."""
        self._check_fitted()
        rng = np.random.default_rng(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        index = {c: i for i, c in enumerate(self.classes_)}
        images = self.sample_images(np.array([index[c] for c in names], dtype=np.int64), random_state=rng,
                                    num_inference_steps=num_inference_steps, guidance_scale=guidance_scale)
        k = self.max_packets_
        return self.mapper_.decode(images[:, :, :k, :k], labels=names)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {"classes_": list(self.classes_), "class_prior_": self.class_prior_.tolist(),
                  "max_packets_": self.max_packets_, "image_size_": self.image_size_,
                  "unet_config": {k: v for k, v in dict(self.model_.config).items() if not k.startswith("_")},
                  "history_": self.history_}
        return config, dict(self.model_.state_dict()), {"gasf.json": self.mapper_.to_dict()}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        from diffusers import UNet2DModel

        gen = cls(**config["params"])
        gen.model_ = UNet2DModel.from_config(config["unet_config"])
        gen.model_.load_state_dict(tensors)
        gen.model_.eval()
        gen.mapper_ = GasfImageMapper.from_dict(extra["gasf.json"])
        gen.classes_ = list(config["classes_"])
        gen.class_prior_ = np.asarray(config["class_prior_"], dtype=float)
        gen.max_packets_ = int(config["max_packets_"])
        gen.image_size_ = int(config["image_size_"])
        gen.history_ = config.get("history_", {})
        return gen
