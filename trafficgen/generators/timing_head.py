"""`TimingHead`: the token models' inter-arrival times, a second head on the causal LM.

Packet ``k >= 2`` of a flow gets an IAT bin (:class:`~trafficgen.representations.iat_bins.IATBins`)
drawn from

    p(bin_k | h_k, c, bin_{k-1}, d_k) = softmax(W2 silu(W1 [h_k ; e(c) + e(bin_{k-1}) + e(d_k)]))

where ``h_k`` is the LM's final hidden state at packet ``k`` (it has read the class and the
lengths of packets 1..k), ``c`` the class (also given directly: a short training leaves it faint
in ``h_k``, and without it the second packet's IAT, which has no previous bin, came out of the
wrong class in a two-class test), ``bin_{k-1}`` the previous packet's bin (``none`` for the
second packet) and ``d_k`` whether packet ``k`` changes direction. The head is trained after the
length model, on its frozen hidden states, with its own early stopping on the validation IAT
NLL: the length model is exactly the one ``timing=False`` trains (same seed, same lengths), its
``log_likelihood`` stays the likelihood of the lengths, and lengths never depend on the timing.
(Trained jointly, on the LM's schedule and best epoch, the head had better held-out bits than
the Markov IAT chain on nDPI, 4.75 against 4.96 per IAT, but its samples' per-class IAT JSD was
0.28 against the chain's 0.21: it stopped with its per-class marginals under-fitted.) Sampling
decodes the lengths first, runs one teacher-forced forward over them for ``h``, then draws the
bins packet by packet and turns them into seconds through the training IATs' per-bin quantiles.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trafficgen.representations.iat_bins import IATBins

__all__ = ["TimingHead", "timing_targets"]


class TimingHead(nn.Module):
    """IAT-bin logits from (hidden state, previous bin, direction change); see the module docstring."""

    def __init__(self, hidden_size: int, n_bins: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.n_bins = int(n_bins)
        self.dropout = nn.Dropout(float(dropout))
        self.class_embed = nn.Embedding(int(n_classes), hidden_size)
        self.prev_embed = nn.Embedding(self.n_bins + 1, hidden_size)  # the last row: "none"
        self.change_embed = nn.Embedding(2, hidden_size)
        self.net = nn.Sequential(nn.Linear(2 * hidden_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, self.n_bins))

    def forward(self, hidden: torch.Tensor, cls: torch.Tensor, prev_bin: torch.Tensor,
                change: torch.Tensor) -> torch.Tensor:
        """hidden (N, D), cls (N,) class index, prev_bin (N,) in [0, n_bins], change (N,) in {0, 1}
        -> logits (N, n_bins)."""
        context = self.class_embed(cls) + self.prev_embed(prev_bin) + self.change_embed(change)  # (N, D)
        return self.net(self.dropout(torch.cat([hidden, context], dim=-1)))


def timing_targets(lengths: np.ndarray, n_packets: np.ndarray, iat: np.ndarray, bins: IATBins):
    """Per-packet arrays (n, W) for training and scoring: the IAT bin, the previous packet's bin
    (``bins.n_bins`` = none before the third packet), the direction change, and the mask of the
    scored packets (2nd .. last of each flow)."""
    n, w = lengths.shape
    cur = bins.encode(iat)  # (n, W)
    prev = np.full((n, w), bins.n_bins, dtype=np.int64)
    prev[:, 2:] = cur[:, 1:-1]
    change = np.zeros((n, w), dtype=np.int64)
    change[:, 1:] = np.sign(lengths[:, 1:]) != np.sign(lengths[:, :-1])
    scored = np.arange(w)[None, :] < np.asarray(n_packets)[:, None]
    scored[:, 0] = False
    return cur, prev, change, scored
