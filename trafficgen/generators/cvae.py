"""`CVAEGenerator`: a conditional VAE over fixed-length signed-length sequences (baseline).

A flow's first ``N = max_packets_`` signed lengths are mapped to ``v = sign(L) log1p(|L|) /
log1p(scale)`` in ``[-1, 1]`` (0 = no packet; ``scale`` is the GASF mapper's learned
``max |L|``). The log keeps small packets well away from the padding value. An MLP encoder
``q(z | v, class)`` and decoder ``p(v | z, class)`` (class one-hot into both, Gaussian latent,
Gaussian likelihood with one learned variance) are trained on the ELBO. Sampling decodes
``z ~ N(0, I)`` to the decoder mean, then the
:class:`~trafficgen.representations.gasf.GasfImageMapper` post-processing: snap to the payload
lengths seen in training, end of flow at the first position below half the smallest length,
packet 0 client -> server (+).

Built from plain torch layers: there is no CVAE in transformers/diffusers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.serialization import (
    GASF_MAPPER_SCHEMA,
    TENSORS_FILE,
    Field,
    load_module_state,
    validate_config,
)
from trafficgen.representations.gasf import GasfImageMapper

#: Default cap on the modelled flow length when ``max_packets=None``.

CVAE_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_dim=32, latent_dim=4, n_layers=2),
    "small": dict(hidden_dim=256, latent_dim=16, n_layers=3),
    "base": dict(hidden_dim=640, latent_dim=16, n_layers=3),   # ~1.8M: the budget of the other "small" presets
}


@dataclass
class CVAEConfig:
    input_dim: int
    n_classes: int
    hidden_dim: int = 256
    latent_dim: int = 16
    n_layers: int = 3


def _mlp(d_in: int, hidden: int, n_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.SiLU()]
    return nn.Sequential(*layers)


class ConditionalVAE(nn.Module):
    """MLP conditional VAE: ``encode(v, y) -> (mu, logvar)``, ``decode(z, y) -> mean in [-1, 1]``."""

    def __init__(self, config: CVAEConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = _mlp(c.input_dim + c.n_classes, c.hidden_dim, c.n_layers)
        self.to_stats = nn.Linear(c.hidden_dim, 2 * c.latent_dim)
        self.decoder = _mlp(c.latent_dim + c.n_classes, c.hidden_dim, c.n_layers)
        self.to_out = nn.Linear(c.hidden_dim, c.input_dim)
        self.log_var_x = nn.Parameter(torch.tensor(-2.0))  # decoder's Gaussian log-variance

    def _onehot(self, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(y, self.config.n_classes).float()  # (B, C)

    def encode(self, v: torch.Tensor, y: torch.Tensor):
        h = self.encoder(torch.cat([v, self._onehot(y)], dim=-1))  # (B, H)
        mu, logvar = self.to_stats(h).chunk(2, dim=-1)  # (B, Z) each
        return mu, logvar.clamp(-10.0, 10.0)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_out(self.decoder(torch.cat([z, self._onehot(y)], dim=-1))))  # (B, N)

    def loss(self, v: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per sequence (mean over the batch); ``eps`` (B, Z) standard normal."""
        mu, logvar = self.encode(v, y)  # (B, Z)
        z = mu + torch.exp(0.5 * logvar) * eps  # (B, Z)
        v_hat = self.decode(z, y)  # (B, N)
        nll = 0.5 * (((v - v_hat) ** 2) * torch.exp(-self.log_var_x) + self.log_var_x).sum(-1)  # (B,)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)  # (B,)
        return (nll + kl).mean()


class CVAEGenerator(FlowGenerator):
    """Conditional VAE flow generator (registry name ``"cvae"``).

    Parameters: ``preset`` (``"small"`` ~0.3M parameters, ``"base"`` ~1.75M, the budget of the other generators, ``"tiny"``), ``max_packets``
    (sequence length; ``None``: the data's width capped at 32), ``epochs``, ``batch_size``,
    ``learning_rate``, ``val_fraction`` (early stopping; 0 = none), ``random_state``,
    ``progress``.

    Fitted attributes: ``classes_``, ``class_prior_``, ``mapper_`` (scale, valid lengths),
    ``max_packets_``, ``model_`` (:class:`ConditionalVAE`), ``history_``.
    """

    name: ClassVar[str] = "cvae"
    presets: ClassVar[dict[str, dict]] = CVAE_PRESETS
    _config_schema: ClassVar[dict[str, Field]] = {
        "classes_": Field.class_names(), "class_prior_": Field.class_prior("classes_"),
        "max_packets_": Field.integer(minimum=1), "model_config": Field.object(),
        "history_": Field.object(required=False),
    }
    _extra_schemas: ClassVar[dict[str, dict[str, Field]]] = {"gasf.json": GASF_MAPPER_SCHEMA}

    def __init__(self, *, preset: str = "small", max_packets: int | None = None, epochs: int = 100,
                 batch_size: int = 64, learning_rate: float = 2e-3, val_fraction: float = 0.1,
                 random_state: int | None = None, progress: bool = True):
        self.preset = preset
        self.max_packets = max_packets
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.progress = progress

    # ------------------------------------------------------------------ scaling
    def _to_log(self, flows) -> np.ndarray:
        x = self.mapper_.scale_flows(flows)  # (n, N) L / scale
        return np.sign(x) * np.log1p(np.abs(x) * self.mapper_.scale_) / np.log1p(self.mapper_.scale_)

    def _from_log(self, v: np.ndarray) -> np.ndarray:
        x = np.sign(v) * np.expm1(np.abs(v) * np.log1p(self.mapper_.scale_)) / self.mapper_.scale_  # (n, N)
        x[:, 0] = np.abs(x[:, 0])  # convention: packet 0 is client -> server
        return x

    # ------------------------------------------------------------------ fit
    def fit(self, flows):
        """Train on a labelled FlowSet; returns ``self``."""
        from trafficgen.generators.training import seeded_init, train_loop

        width = self._validated_width(flows)
        flows = flows.truncate(width)
        counts = flows.class_counts()
        classes = sorted(counts)
        self.mapper_ = GasfImageMapper(image_size=width).fit(flows)
        self.max_packets_ = width
        v = torch.from_numpy(self._to_log(flows).astype(np.float32))  # (n, N)
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[c] for c in flows.labels], dtype=torch.long)  # (n,)
        cfg = CVAEConfig(input_dim=width, n_classes=len(classes), **self.presets[self.preset])
        seed = int(np.random.default_rng(self.random_state).integers(2**31 - 1))
        gen = torch.Generator().manual_seed(seed)
        model = seeded_init(seed, lambda: ConditionalVAE(cfg))

        def loss_fn(batch):
            eps = torch.randn((len(batch), cfg.latent_dim), generator=gen)  # (B, Z)
            return model.loss(v[batch], y[batch], eps), len(batch)

        self.history_ = train_loop(model, loss_fn, n=len(flows), epochs=int(self.epochs),
                                   batch_size=int(self.batch_size), learning_rate=float(self.learning_rate),
                                   generator=gen, val_fraction=float(self.val_fraction),
                                   patience=10 if self.val_fraction else None, progress=bool(self.progress),
                                   description=f"train {self.name}")
        self.model_ = model.eval()
        self.classes_ = classes
        total = sum(counts.values())
        self.class_prior_ = np.array([counts[c] / total for c in classes])
        return self

    # ------------------------------------------------------------------ sample
    def sample(self, n: int, *, cls=None, random_state=None):
        """``n`` flows (a labelled FlowSet of width ``max_packets_``); same seed -> same flows."""
        self._check_fitted()
        rng = np.random.default_rng(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        index = {c: i for i, c in enumerate(self.classes_)}
        gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        y = torch.tensor([index[c] for c in names], dtype=torch.long)  # (n,)
        z = torch.randn((len(names), self.model_.config.latent_dim), generator=gen)  # (n, Z)
        with torch.inference_mode():
            v = self.model_.decode(z, y).double().numpy()  # (n, N)
        lengths, n_packets = self.mapper_.lengths_from_scaled(self._from_log(v), samples=True)
        return FlowSet(lengths=lengths, n_packets=n_packets, labels=names)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {"classes_": list(self.classes_), "class_prior_": self.class_prior_.tolist(),
                  "max_packets_": self.max_packets_, "model_config": asdict(self.model_.config),
                  "history_": self.history_}
        return config, dict(self.model_.state_dict()), {"gasf.json": self.mapper_.to_dict()}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        gen = cls._from_params(config)
        mc = config["model_config"]
        unknown = sorted(set(mc) - set(CVAEConfig.__dataclass_fields__))
        if unknown:
            raise InputFormatError(f"model_config has unknown fields {unknown}", path="config.json")
        validate_config(mc, {k: Field.integer(minimum=1) for k in CVAEConfig.__dataclass_fields__}, "config.json")
        if mc["input_dim"] != config["max_packets_"] or mc["n_classes"] != len(config["classes_"]):
            raise InputFormatError(f"model_config input_dim {mc['input_dim']} / n_classes {mc['n_classes']} do "
                                   f"not fit max_packets_ {config['max_packets_']} / {len(config['classes_'])} "
                                   "classes", path="config.json")
        gen.model_ = ConditionalVAE(CVAEConfig(**mc))
        load_module_state(gen.model_, tensors, TENSORS_FILE)
        gen.model_.eval()
        gen.mapper_ = GasfImageMapper.from_dict(extra["gasf.json"])
        gen.classes_ = list(config["classes_"])
        gen.class_prior_ = np.asarray(config["class_prior_"], dtype=float)
        gen.max_packets_ = int(config["max_packets_"])
        gen.history_ = config.get("history_", {})
        return gen
