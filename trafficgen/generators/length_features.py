"""Shared length features for the token models' input embeddings and output head.

A model over exact signed lengths sees most lengths a handful of times: a 3,000-way embedding and
softmax learn each length on its own. Here each length token's input embedding row and LM-head row
are reparameterised during training as

    W[v] = R[v] + phi(v) @ F          phi: (V, K) fixed features, F: (K, D) learned, R: (V, D) learned

where ``phi(v)`` describes what the token is: its direction (client->server or back), its
magnitude on a log scale and on a linear scale (triangular "soft bins": a length between two bin
centres activates both, in proportion), and ``<EOS>``. Nearby lengths share ``F`` and so share
strength; the residual ``R`` still lets a common length be exactly itself. The features are a
``torch.nn.utils.parametrize`` parametrisation (written here: transformers has no such layer);
after training :func:`fold_length_features` bakes ``R + phi F`` into the plain weight, so the saved
model, the decode loops and int8 quantization see an ordinary ``LlamaForCausalLM`` /
``Mamba2ForCausalLM``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from trafficgen.representations.tokenizer import EOS_ID, FlowTokenizer

__all__ = ["length_feature_matrix", "SharedLengthFeatures", "attach_length_features", "fold_length_features"]


def _soft_bins(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Triangular interpolation of ``x`` (n,) onto sorted ``centres`` (K,): (n, K), rows sum to 1."""
    x = np.clip(x, centres[0], centres[-1])
    hi = np.clip(np.searchsorted(centres, x, side="right"), 1, len(centres) - 1)
    lo = hi - 1
    w_hi = (x - centres[lo]) / (centres[hi] - centres[lo])
    out = np.zeros((len(x), len(centres)))
    out[np.arange(len(x)), lo] = 1.0 - w_hi
    out[np.arange(len(x)), hi] += w_hi
    return out


def length_feature_matrix(tokenizer: FlowTokenizer, *, log_bins: int = 24, linear_bins: int = 30) -> np.ndarray:
    """(V, K) float32 features of every token: per direction, ``log_bins`` soft bins of log|L| and
    ``linear_bins`` soft bins of |L| over [1, max_length]; a direction indicator; an ``<EOS>``
    indicator. ``<PAD>`` and class tokens have all-zero rows (they keep only their residual)."""
    m = tokenizer.max_length
    mags = np.arange(1, m + 1, dtype=np.float64)
    log_part = _soft_bins(np.log(mags), np.linspace(0.0, np.log(m), log_bins))  # (M, Kl)
    lin_part = _soft_bins(mags, np.linspace(1.0, float(m), linear_bins))  # (M, Kn)
    per_dir = np.concatenate([np.ones((m, 1)), log_part, lin_part], axis=1)  # (M, 1 + Kl + Kn)
    k_dir = per_dir.shape[1]
    phi = np.zeros((tokenizer.vocab_size, 2 * k_dir + 1), dtype=np.float32)
    pos_ids = tokenizer.length_to_id(np.arange(1, m + 1))
    neg_ids = tokenizer.length_to_id(-np.arange(1, m + 1))
    phi[pos_ids, :k_dir] = per_dir
    phi[neg_ids, k_dir:2 * k_dir] = per_dir
    phi[EOS_ID, -1] = 1.0
    return phi


class SharedLengthFeatures(nn.Module):
    """Parametrisation ``R -> R + phi @ F`` of a ``(V, D)`` weight (``F`` starts at 0, so the
    model starts as initialised)."""

    def __init__(self, phi: np.ndarray, dim: int):
        super().__init__()
        self.register_buffer("phi", torch.as_tensor(phi, dtype=torch.float32))  # (V, K)
        self.features = nn.Parameter(torch.zeros(self.phi.shape[1], dim))  # (K, D)

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        v = residual.shape[0]
        return residual + (self.phi[:v] @ self.features).to(residual.dtype)  # (V, D)


def attach_length_features(model: nn.Module, tokenizer: FlowTokenizer) -> None:
    """Parametrise the input embedding and the LM head of a transformers causal LM in place."""
    phi = length_feature_matrix(tokenizer)
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        weight = module.weight
        pad = weight.shape[0] - phi.shape[0]
        rows = np.pad(phi, ((0, max(pad, 0)), (0, 0))) if pad > 0 else phi
        parametrize.register_parametrization(module, "weight", SharedLengthFeatures(rows, weight.shape[1]).to(
            weight.device))


def fold_length_features(model: nn.Module) -> None:
    """Bake the parametrised weights into plain ones (the model becomes an ordinary HF model)."""
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
