"""Shared pieces of the learned TM baselines (LSTM, GRU, ViT-LSTM, STGCN).

* :class:`ODLogScaler` - ``z = (log1p(x / s) - mu_od) / sd_od`` with the training series' mean
  ``s`` and per-OD mean / std of the log values (exactly invertible; forecasts come back in the
  fitted series' units, clipped at 0).
* :func:`make_windows` - (X (B, T_in, N, N), Y (B, H, N, N)) at every origin with a full window
  and all targets inside the series.
* :func:`fit_network` - seeded AdamW loop over windows, mini-batches shuffled with a
  ``torch.Generator``, early stopping on the validation loss (best weights restored), a rich
  progress bar with the running loss.
* :class:`NeuralTMForecaster` - fit / predict / save / load around a network
  ``forward(z (B, T_in, N, N)) -> (B, H, N, N)`` that a subclass builds in ``_build_network``.
  Networks forecast one step set for all horizons at once (direct multi-horizon head).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from trafficgen._random import seed_from
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.tm.base import TMForecaster
from trafficgen.generators.tm.naive import check_forecast_request
from trafficgen.generators.training import EarlyStopping, progress_bar, seeded_init


class ODLogScaler:
    """Per-OD standardised log scale. ``fit(x (T, N, N))`` learns ``scale_``, ``mean_``, ``std_``."""

    def __init__(self, *, eps: float = 1e-3):
        self.eps = eps

    def fit(self, x: np.ndarray) -> ODLogScaler:
        x = np.asarray(x, dtype=np.float64)
        self.scale_ = float(max(x.mean(), 1e-12))
        logx = np.log1p(x / self.scale_)  # (T, N, N)
        self.mean_ = logx.mean(axis=0)  # (N, N)
        self.std_ = np.maximum(logx.std(axis=0), self.eps)  # (N, N)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.log1p(np.asarray(x, dtype=np.float64) / self.scale_) - self.mean_) / self.std_

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        logx = np.asarray(z, dtype=np.float64) * self.std_ + self.mean_
        return np.maximum(np.expm1(logx) * self.scale_, 0.0)

    def tensors(self) -> dict:
        return {"scaler.mean": self.mean_, "scaler.std": self.std_,
                "scaler.scale": np.array([self.scale_], dtype=np.float64)}

    @classmethod
    def from_tensors(cls, tensors: dict) -> ODLogScaler:
        scaler = cls()
        scaler.mean_ = tensors["scaler.mean"].double().numpy()
        scaler.std_ = tensors["scaler.std"].double().numpy()
        scaler.scale_ = float(tensors["scaler.scale"][0])
        return scaler


def make_windows(z: np.ndarray, t_in: int, horizons: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """All full windows of ``z`` (T, N, N): X (B, T_in, N, N) and targets Y (B, H, N, N)."""
    horizons = np.asarray(horizons, dtype=np.int64)
    origins = np.arange(t_in - 1, len(z) - int(horizons.max()))
    if len(origins) == 0:
        return z[:0, None].repeat(t_in, 1), z[:0, None].repeat(len(horizons), 1)
    window = origins[:, None] + np.arange(1 - t_in, 1)[None, :]  # (B, T_in)
    return z[window], z[origins[:, None] + horizons[None, :]]


def fit_network(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, x_val: torch.Tensor | None,
                y_val: torch.Tensor | None, epochs: int, batch_size: int, lr: float, weight_decay: float,
                patience: int | None, generator: torch.Generator, progress: bool,
                description: str) -> dict:
    """Mean-squared-error training of ``net(x) ~ y``; returns the loss history.

    Early stopping watches the validation loss when validation windows exist, else the epoch's
    training loss; the best weights are restored at the end.
    """
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    if len(x) == 0:
        raise InputFormatError("training series too short for one window of t_in + max(horizons)")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    has_val = x_val is not None and len(x_val) > 0
    stopper = EarlyStopping(patience=patience)
    n_batches = -(-len(x) // batch_size)
    history: dict = {"train_loss": [], "val_loss": [], "best_epoch": -1}
    start = time.perf_counter()
    with progress_bar(epochs * n_batches, description, enabled=progress) as update:
        for epoch in range(epochs):
            net.train()
            perm = torch.randperm(len(x), generator=generator)
            total = 0.0
            for i in range(0, len(x), batch_size):
                idx = perm[i:i + batch_size]
                loss = torch.nn.functional.mse_loss(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                total += float(loss.detach()) * len(idx)
                update(1, loss=float(loss.detach()))
            history["train_loss"].append(total / len(x))
            monitor = history["train_loss"][-1]
            if has_val:
                history["val_loss"].append(evaluate_mse(net, x_val, y_val, batch_size))
                monitor = history["val_loss"][-1]
            if stopper.step(monitor, epoch, net):
                update(n_batches * (epochs - epoch - 1))
                break
    stopper.restore(net)
    net.eval()
    history["best_epoch"] = stopper.best_epoch
    history["fit_time_s"] = time.perf_counter() - start
    return history


@torch.no_grad()
def evaluate_mse(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
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
                     random_state, progress):
        self.t_in = t_in
        self.horizons = horizons
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.random_state = random_state
        self.progress = progress

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
        seed = seed_from(self.random_state)
        self.n_nodes_ = train.n_nodes
        self.nodes_ = list(train.nodes)
        self.unit_ = train.unit
        self.interval_s_ = float(train.interval_s)
        self.scaler_ = ODLogScaler().fit(train.values)
        self._prepare(train)
        x, y = make_windows(self.scaler_.transform(train.values), int(self.t_in), horizons)
        x_val = y_val = None
        if val is not None:
            x_val, y_val = make_windows(self.scaler_.transform(val.values), int(self.t_in), horizons)
            x_val, y_val = torch.as_tensor(x_val, dtype=torch.float32), torch.as_tensor(y_val, dtype=torch.float32)
        self.network_ = seeded_init(seed, lambda: self._build_network(self.n_nodes_))
        generator = torch.Generator().manual_seed(seed)
        self.history_ = fit_network(
            self.network_, torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32),
            x_val=x_val, y_val=y_val, epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr),
            weight_decay=float(self.weight_decay), patience=self.patience, generator=generator,
            progress=bool(self.progress), description=f"{self.name} fit")
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
        self.network_.eval()
        out = np.empty((len(origins), len(horizons)) + values.shape[1:])
        for i in range(0, len(origins), 256):
            o = origins[i:i + 256]
            window = o[:, None] + np.arange(1 - t_in, 1)[None, :]  # (b, T_in)
            z = torch.as_tensor(self.scaler_.transform(values[window]), dtype=torch.float32)  # (b, T_in, N, N)
            z_hat = self.network_(z)[:, cols].double().numpy()  # (b, H, N, N)
            out[i:i + len(o)] = self.scaler_.inverse_transform(z_hat)
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {"n_nodes": self.n_nodes_, "nodes": self.nodes_, "unit": self.unit_,
                  "interval_s": self.interval_s_, "history": self.history_}
        tensors = {f"net.{k}": v for k, v in self.network_.state_dict().items()}
        tensors.update(self.scaler_.tensors())
        tensors.update(self._extra_tensors())
        return config, tensors, {}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = cls(**config["params"])
        model.n_nodes_ = int(config["n_nodes"])
        model.nodes_ = list(config["nodes"])
        model.unit_ = str(config["unit"])
        model.interval_s_ = float(config["interval_s"])
        model.history_ = dict(config.get("history", {}))
        model.scaler_ = ODLogScaler.from_tensors(tensors)
        model._load_extra(tensors)
        model.network_ = model._build_network(model.n_nodes_)
        model.network_.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        model.network_.eval()
        return model
