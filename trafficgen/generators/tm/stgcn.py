"""STGCN traffic-matrix forecaster (Yu, Yin & Zhu, "Spatio-Temporal Graph Convolutional Networks",
IJCAI 2018), compact and written here: the maintained implementation (``torch_geometric_temporal``)
needs ``torch_scatter`` / ``torch_sparse`` wheels, which do not build for this torch.

**Node-level** formulation: the graph is the network's routers; at each step node ``i`` carries
``2N`` features, its outgoing row ``z[i, :]`` and incoming column ``z[:, i]`` of the scaled matrix.
Two ST-Conv blocks (gated temporal conv (GLU) -> Chebyshev graph conv (order ``cheb_k``) + ReLU
-> gated temporal conv -> LayerNorm over nodes and channels), an output gated temporal conv that
collapses the remaining time steps, and a per-node linear layer that predicts node ``i``'s
outgoing row for every horizon (direct multi-horizon head, as the change from the last matrix).

Adjacency (undirected, 0/1), ``adjacency=``:

* ``"topology"`` - the physical links the training series carries in ``meta["links"]`` (index
  pairs; the shipped loaders set them: Abilene's 15 backbone links from its routing matrix,
  GEANT's links from ``topology.json``, see :mod:`trafficgen.datasets.tm`).
* ``"correlation"`` - each node joined to the ``k_neighbors`` nodes whose total (in + out) log
  traffic correlates most with its own over the training series.
* ``"auto"`` (default) - ``"topology"`` when the series carries its links, else
  ``"correlation"``; or an explicit (N, N) array-like.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trafficgen.errors import ConfigError
from trafficgen.generators.tm.neural import NeuralTMForecaster


def links_adjacency(links, n_nodes: int) -> np.ndarray:
    """(N, N) 0/1 undirected adjacency from index pairs ``[[i, j], ...]``."""
    adj = np.zeros((n_nodes, n_nodes))
    for i, j in links:
        adj[int(i), int(j)] = adj[int(j), int(i)] = 1.0
    return adj


def correlation_adjacency(values: np.ndarray, k_neighbors: int = 3) -> np.ndarray:
    """(N, N) 0/1 undirected: each node to the ``k`` nodes whose in + out log traffic correlates most."""
    totals = np.log1p(values.sum(axis=2) + values.sum(axis=1))  # (T, N)
    corr = np.nan_to_num(np.corrcoef(totals.T), nan=0.0)  # (N, N)
    np.fill_diagonal(corr, -np.inf)
    adj = np.zeros_like(corr)
    k = min(int(k_neighbors), len(corr) - 1)
    for i in range(len(corr)):
        for j in np.argsort(-corr[i], kind="stable")[:k]:
            adj[i, j] = adj[j, i] = 1.0
    return adj


def scaled_laplacian(adj: np.ndarray) -> np.ndarray:
    """``2 L / lambda_max - I`` with ``L = I - D^-1/2 A D^-1/2`` (the Chebyshev input)."""
    deg = adj.sum(axis=1)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    lap = np.eye(len(adj)) - inv_sqrt[:, None] * adj * inv_sqrt[None, :]
    lam = float(np.linalg.eigvalsh(lap).max())
    return 2.0 * lap / max(lam, 1e-6) - np.eye(len(adj))


class TemporalGLU(nn.Module):
    """Gated temporal convolution: (B, C_in, T, N) -> (B, C_out, T - kt + 1, N)."""

    def __init__(self, c_in: int, c_out: int, kt: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, 2 * c_out, (kt, 1))
        self.res = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.kt = kt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.conv(x).chunk(2, dim=1)  # (B, C_out, T', N) each
        return (p + self.res(x)[:, :, self.kt - 1:]) * torch.sigmoid(q)  # (B, C_out, T', N)


class ChebGraphConv(nn.Module):
    """Chebyshev graph convolution of order ``k`` over the node axis: (B, C_in, T, N) -> (B, C_out, T, N)."""

    def __init__(self, c_in: int, c_out: int, k: int, lap: torch.Tensor):
        super().__init__()
        self.register_buffer("lap", lap, persistent=False)  # rebuilt from the saved adjacency
        self.k = k
        self.theta = nn.Linear(k * c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        terms = [x]
        if self.k > 1:
            terms.append(torch.einsum("nm,bctm->bctn", self.lap, x))  # (B, C, T, N)
        for _ in range(2, self.k):
            terms.append(2 * torch.einsum("nm,bctm->bctn", self.lap, terms[-1]) - terms[-2])
        h = torch.cat(terms, dim=1).permute(0, 2, 3, 1)  # (B, T, N, K*C_in)
        return self.theta(h).permute(0, 3, 1, 2)  # (B, C_out, T, N)


class STConvBlock(nn.Module):
    """Temporal GLU -> Chebyshev graph conv + ReLU -> temporal GLU -> LayerNorm over (N, C)."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, kt: int, cheb_k: int, lap: torch.Tensor):
        super().__init__()
        self.t1 = TemporalGLU(c_in, c_mid, kt)
        self.graph = ChebGraphConv(c_mid, c_mid, cheb_k, lap)
        self.t2 = TemporalGLU(c_mid, c_out, kt)
        self.norm = nn.LayerNorm([lap.shape[0], c_out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.graph(self.t1(x)))  # (B, C_mid, T - kt + 1, N)
        x = self.t2(x)  # (B, C_out, T - 2kt + 2, N)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, C_out, T', N)


@dataclass
class STGCNConfig:
    n_nodes: int
    n_horizons: int
    t_in: int
    hidden: int = 32
    kt: int = 3
    cheb_k: int = 3


class STGCNNet(nn.Module):
    """z (B, T_in, N, N) -> z_hat (B, H, N, N); node i predicts its outgoing row."""

    def __init__(self, config: STGCNConfig, lap: np.ndarray):
        super().__init__()
        self.config = config
        n, c = config.n_nodes, config.hidden
        t_left = config.t_in - 4 * (config.kt - 1)
        if t_left < 1:
            raise ConfigError(f"t_in={config.t_in} is too short for two ST-Conv blocks with kt={config.kt}")
        lap_t = torch.as_tensor(lap, dtype=torch.float32)
        self.block1 = STConvBlock(2 * n, c, c, config.kt, config.cheb_k, lap_t)
        self.block2 = STConvBlock(c, c, c, config.kt, config.cheb_k, lap_t)
        self.out_t = TemporalGLU(c, c, t_left)
        self.out_norm = nn.LayerNorm([n, c])
        self.head = nn.Linear(c, config.n_horizons * n)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, t, n, _ = z.shape
        feats = torch.cat([z, z.transpose(2, 3)], dim=3)  # (B, T, N, 2N): row i then column i
        x = feats.permute(0, 3, 1, 2)  # (B, 2N, T, N)
        x = self.block2(self.block1(x))  # (B, C, T', N)
        x = self.out_t(x)[:, :, -1]  # (B, C, N)
        x = self.out_norm(x.transpose(1, 2))  # (B, N, C)
        delta = self.head(x).reshape(b, n, self.config.n_horizons, n).transpose(1, 2)  # (B, H, N, N)
        return z[:, -1:] + delta  # (B, H, N, N)


class STGCNForecaster(NeuralTMForecaster):
    """Node-level STGCN over the router graph; direct multi-horizon head."""

    name = "stgcn"

    def __init__(self, *, t_in: int = 24, horizons: Sequence[int] = (1, 10, 20), hidden: int = 32,
                 kt: int = 3, cheb_k: int = 3, adjacency="auto", k_neighbors: int = 3, epochs: int = 30,
                 batch_size: int = 32, lr: float = 1e-3, weight_decay: float = 1e-4,
                 patience: int | None = 5, random_state: int | None = 0, progress: bool = True,
                 device: str = "auto", gradient_accumulation_steps: int = 1):
        self.hidden = hidden
        self.kt = kt
        self.cheb_k = cheb_k
        self.adjacency = adjacency
        self.k_neighbors = k_neighbors
        self._common_init(t_in=t_in, horizons=horizons, epochs=epochs, batch_size=batch_size, lr=lr,
                          weight_decay=weight_decay, patience=patience, random_state=random_state,
                          progress=progress, device=device,
                          gradient_accumulation_steps=gradient_accumulation_steps)

    def _prepare(self, train) -> None:
        links = train.meta.get("links")
        mode = self.adjacency
        if isinstance(mode, str):
            if mode not in ("auto", "topology", "correlation"):
                raise ConfigError(f"adjacency must be 'auto', 'topology', 'correlation' or an array, got {mode!r}")
            if mode == "topology" and links is None:
                raise ConfigError("adjacency='topology' needs a series that carries its links (meta['links'], "
                                  "as the shipped datasets do); use 'correlation' or pass an (N, N) array")
            if mode in ("auto", "topology") and links is not None:
                adj = links_adjacency(links, train.n_nodes)
                self.adjacency_source_ = "topology"
            else:
                adj = correlation_adjacency(train.values, int(self.k_neighbors))
                self.adjacency_source_ = "correlation"
        else:
            adj = np.asarray(mode, dtype=np.float64)
            if adj.shape != (train.n_nodes, train.n_nodes):
                raise ConfigError(f"adjacency must be ({train.n_nodes}, {train.n_nodes}), got {adj.shape}")
            adj = ((adj + adj.T) > 0).astype(np.float64)
            np.fill_diagonal(adj, 0.0)
            self.adjacency_source_ = "given"
        self.adjacency_ = adj

    def _state(self):
        config, tensors, extra = super()._state()
        return {**config, "adjacency_source": self.adjacency_source_}, tensors, extra

    @classmethod
    def _load_state(cls, config, tensors, extra):
        model = super()._load_state(config, tensors, extra)
        model.adjacency_source_ = str(config.get("adjacency_source", "given"))
        return model

    def _extra_tensors(self) -> dict:
        return {"adjacency": self.adjacency_}

    def _load_extra(self, tensors: dict) -> None:
        self.adjacency_ = tensors["adjacency"].double().numpy()

    def _build_network(self, n_nodes: int) -> nn.Module:
        config = STGCNConfig(n_nodes=n_nodes, n_horizons=len(self.horizons), t_in=int(self.t_in),
                             hidden=int(self.hidden), kt=int(self.kt), cheb_k=int(self.cheb_k))
        return STGCNNet(config, scaled_laplacian(self.adjacency_))
