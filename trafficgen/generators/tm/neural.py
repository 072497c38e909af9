"""Shared pieces of the learned TM baselines (LSTM, GRU, ViT-LSTM, STGCN).

:class:`NeuralTMForecaster` - fit / predict / save / load around a network
``forward(z (B, T_in, N, N)) -> (B, H, N, N)`` that a subclass builds in ``_build_network``.
Matrices are scaled with :class:`~trafficgen.representations.od_scaler.ODLogScaler`'s default
(``z = (log1p(x / s) - mu_od) / sd_od``, ``s`` the training series' mean; exactly invertible,
forecasts come back in the fitted series' units, clipped at 0); the windows are
:func:`~trafficgen.data.windows.make_windows` at every origin. Networks forecast all horizons at
once (direct multi-horizon head) and are trained by :func:`~trafficgen.generators.training.train_loop`
on the mean squared error: AdamW (``lr``, ``weight_decay``, constant rate, no schedule), gradients
clipped at norm 1, mini-batches shuffled with a seeded ``torch.Generator``, early stopping on the
validation windows' MSE when a validation series is given (best weights restored; without one
the weights of the epoch with the lowest training loss). ``device`` ``"auto"`` (CUDA, else MPS,
else CPU) | ``"cpu"`` | ``"cuda[:N]"`` | ``"mps"`` is where the network trains and predicts;
saved weights are CPU tensors, a loaded model moves to its ``device`` when first used.
``gradient_accumulation_steps`` k: one optimiser step per k batches. In a process group started by
a launcher (``trafficgen tm train --num-processes N``, ``accelerate launch``: ``WORLD_SIZE > 1``)
the fit is data-parallel through ``train_loop`` (each process trains on its shard of every epoch's
batches, gradients averaged, the weights stay equal; every process scores the whole validation set).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from trafficgen._random import seed_from
from trafficgen.data.windows import make_windows, window_index
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.base import TMForecaster
from trafficgen.generators.tm.naive import check_forecast_request
from trafficgen.generators.training import seeded_init, train_loop
from trafficgen.representations.od_scaler import ODLogScaler


def persistence_plus(z: torch.Tensor, change: torch.Tensor, n_horizons: int) -> torch.Tensor:
    """The direct multi-horizon residual head: the last input matrix plus the predicted change.
    ``z`` (B, T_in, N, N), ``change`` (B, H * N * N) -> (B, H, N, N); an untrained head that
    outputs 0 is persistence."""
    b, _, n, _ = z.shape
    return z[:, -1:] + change.reshape(b, n_horizons, n, n)  # (B, H, N, N)


@torch.no_grad()
def window_mse(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Mean squared error of ``net(x)`` against ``y`` over all windows (summed per batch)."""
    net.eval()
    total = 0.0
    for i in range(0, len(x), batch_size):
        total += float(torch.nn.functional.mse_loss(net(x[i:i + batch_size]), y[i:i + batch_size],
                                                    reduction="sum"))
    return total / y.numel()


class NeuralTMForecaster(TMForecaster):
    """fit / predict / persistence of a window network; subclasses implement ``_build_network``
    (returns an ``nn.Module`` mapping z (B, T_in, N, N) -> (B, H, N, N)) and, when their network
    needs more than ``n_nodes``, ``_network_inputs`` (extra fitted state saved as tensors)."""

    def _common_init(self, *, t_in, horizons, epochs, batch_size, lr, weight_decay, patience,
                     random_state, progress, device="auto", gradient_accumulation_steps=1):
        self.t_in = t_in
        self.horizons = horizons
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.random_state = random_state
        self.progress = progress
        self.device = device
        self.gradient_accumulation_steps = gradient_accumulation_steps

    @property
    def min_history(self) -> int:
        return int(self.t_in)

    def _build_network(self, n_nodes: int) -> torch.nn.Module:
        raise NotImplementedError

    def _prepare(self, train) -> None:
        """Hook: learn extra state from the training series before the network is built."""

    def _extra_tensors(self) -> dict:
        return {}

    def _load_extra(self, tensors: dict) -> None:
        pass

    def fit(self, train, *, val=None):
        from trafficgen.data.tmseries import TMSeries

        if not isinstance(train, TMSeries):
            raise InputFormatError(f"fit expects a TMSeries, got {type(train).__name__}")
        if val is not None and (val.n_nodes != train.n_nodes or val.unit != train.unit):
            raise InputFormatError("validation series must have the training series' nodes and unit")
        horizons = [int(h) for h in self.horizons]
        if not horizons or min(horizons) < 1 or int(self.t_in) < 1:
            raise ConfigError(f"need t_in >= 1 and horizons >= 1, got {self.t_in}, {horizons}")
        if len(train) < int(self.t_in) + max(horizons):
            raise InputFormatError("training series too short for one window of t_in + max(horizons)")
        from trafficgen._device import resolve_device

        device = resolve_device(self.device)  # fail before any work
        seed = seed_from(self.random_state)
        self._record_series(train)
        self.scaler_ = ODLogScaler().fit(train.values)
        self._prepare(train)

        def windows(series):
            x, y = make_windows(self.scaler_.transform(series.values), int(self.t_in), horizons)
            return (torch.as_tensor(x, dtype=torch.float32, device=device),
                    torch.as_tensor(y, dtype=torch.float32, device=device))

        x, y = windows(train)  # (B, T_in, N, N), (B, H, N, N)
        validate = None
        if val is not None:
            x_val, y_val = windows(val)
            if len(x_val):
                validate = lambda: window_mse(net, x_val, y_val, int(self.batch_size))  # noqa: E731
        self.network_ = net = seeded_init(seed, lambda: self._build_network(self.n_nodes_)).to(device)

        def loss_fn(idx):
            return torch.nn.functional.mse_loss(net(x[idx]), y[idx]), len(idx)

        def adamw(total_steps):
            return torch.optim.AdamW(net.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay)), None

        start = time.perf_counter()
        self.history_ = train_loop(
            net, loss_fn, n=len(x), epochs=int(self.epochs), batch_size=int(self.batch_size),
            generator=torch.Generator().manual_seed(seed), val_fraction=None, validate=validate,
            patience=self.patience, optimizer=adamw, progress=bool(self.progress), description=f"{self.name} fit",
            gradient_accumulation_steps=int(self.gradient_accumulation_steps))
        self.history_["fit_time_s"] = time.perf_counter() - start
        return self

    @torch.no_grad()
    def predict(self, values, origins, horizons):
        self._check_fitted()
        values, origins, horizons = check_forecast_request(values, origins, horizons, n_nodes=self.n_nodes_,
                                                           min_history=self.min_history)
        trained = [int(h) for h in self.horizons]
        missing = [int(h) for h in horizons if int(h) not in trained]
        if missing:
            raise ConfigError(f"{self.name} was trained for horizons {trained}; cannot forecast {missing}")
        cols = [trained.index(int(h)) for h in horizons]
        t_in = int(self.t_in)
        device = self._placed()
        self.network_.eval()
        out = np.empty((len(origins), len(horizons)) + values.shape[1:])
        for i in range(0, len(origins), 256):
            o = origins[i:i + 256]
            z = torch.as_tensor(self.scaler_.transform(values[window_index(o, t_in)]),
                                dtype=torch.float32, device=device)  # (b, T_in, N, N)
            z_hat = self.network_(z)[:, cols].double().cpu().numpy()  # (b, H, N, N)
            out[i:i + len(o)] = self.scaler_.inverse_transform(z_hat)
        return out

    def _placed(self):
        """The torch device of ``device``, with the network moved there first if it is elsewhere."""
        from trafficgen.generators.training import place_modules

        return place_modules(self.device, self.network_)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {**self._series_config(), "history": self.history_}
        tensors = {f"net.{k}": v.detach().cpu() for k, v in self.network_.state_dict().items()}
        tensors.update({f"scaler.{k}": v for k, v in self.scaler_.state().items()})
        tensors.update(self._extra_tensors())
        return config, tensors, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = cls(**config["params"])
        model._load_series(config)
        model.history_ = dict(config.get("history", {}))
        model.scaler_ = ODLogScaler().load_state({k[len("scaler."):]: v for k, v in tensors.items()
                                                  if k.startswith("scaler.")})
        model._load_extra(tensors)
        model.network_ = model._build_network(model.n_nodes_)
        model.network_.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        model.network_.eval()
        return model
