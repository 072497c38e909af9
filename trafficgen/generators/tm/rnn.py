"""LSTM and GRU traffic-matrix forecasters over flattened, log-scaled matrices.

Each window of ``t_in`` matrices is scaled (:class:`~trafficgen.representations.od_scaler.ODLogScaler`),
flattened to N*N OD values per step, embedded by a linear layer, run through a ``torch.nn.LSTM``
/ ``GRU``, and the last hidden state feeds one **direct multi-horizon head** (one model for all
horizons: the head outputs H x N x N values at once). The head predicts the change from the last
input matrix (``z[o + h] - z[o]``, residual on persistence in the scaled space), so an untrained
head starts at persistence.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trafficgen.generators.tm.neural import NeuralTMForecaster, persistence_plus


@dataclass
class RNNConfig:
    n_nodes: int
    n_horizons: int
    hidden: int = 64
    n_layers: int = 1
    cell: str = "lstm"  # "lstm" | "gru"


class RNNNet(nn.Module):
    """z (B, T_in, N, N) -> z_hat (B, H, N, N)."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        d = config.n_nodes * config.n_nodes
        self.embed = nn.Linear(d, config.hidden)
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = rnn(config.hidden, config.hidden, num_layers=config.n_layers, batch_first=True)
        self.head = nn.Linear(config.hidden, config.n_horizons * d)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, t, n, _ = z.shape
        x = torch.relu(self.embed(z.reshape(b, t, n * n)))  # (B, T_in, D)
        out, _ = self.rnn(x)  # (B, T_in, D)
        return persistence_plus(z, self.head(out[:, -1]), self.config.n_horizons)  # (B, H, N, N)


class _RNNForecaster(NeuralTMForecaster):
    cell = "lstm"

    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20), hidden: int = 64,
                 n_layers: int = 1, epochs: int = 30, batch_size: int = 32, lr: float = 1e-3,
                 weight_decay: float = 1e-4, patience: int | None = 5, random_state: int | None = 0,
                 progress: bool = True,
                 device: str = "auto", gradient_accumulation_steps: int = 1):
        self.hidden = hidden
        self.n_layers = n_layers
        self._common_init(t_in=t_in, horizons=horizons, epochs=epochs, batch_size=batch_size, lr=lr,
                          weight_decay=weight_decay, patience=patience, random_state=random_state,
                          progress=progress, device=device,
                          gradient_accumulation_steps=gradient_accumulation_steps)

    def _build_network(self, n_nodes: int) -> nn.Module:
        return RNNNet(RNNConfig(n_nodes=n_nodes, n_horizons=len(self.horizons), hidden=int(self.hidden),
                                n_layers=int(self.n_layers), cell=self.cell))


class LSTMForecaster(_RNNForecaster):
    """LSTM over flattened log-scaled matrices, direct multi-horizon head."""

    name = "lstm"
    cell = "lstm"


class GRUForecaster(_RNNForecaster):
    """GRU over flattened log-scaled matrices, direct multi-horizon head."""

    name = "gru"
    cell = "gru"
