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

__all__ = ["TimingHead", "timing_targets", "setup_head", "fit_head", "sample_iats", "head_log_likelihood"]

#: The head's training (on the frozen LM): epochs at most, early-stopping patience, peak rate.
HEAD_EPOCHS, HEAD_PATIENCE, HEAD_LEARNING_RATE = 40, 4, 3e-3


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


# ---------------------------------------------------------------------- on a token model
def setup_head(gen, flows, width: int, model, seed: int, device):
    """The fitted IAT bins, a seeded :class:`TimingHead` on ``device`` and its per-packet targets
    as tensors (n, W), for :func:`fit_head`; ``flows`` at most ``width`` packets wide."""
    from trafficgen.generators.training import seeded_init
    from trafficgen.representations.iat_bins import IATBins

    bins = IATBins()
    cur, prev, change, scored = timing_targets(flows.lengths, flows.n_packets, flows.iat, bins)
    bins.fit(flows.iat[scored])
    pad = width - cur.shape[1]  # flows narrower than the model: no packets there
    arrays = [np.pad(a, ((0, 0), (0, pad))) for a in (cur, prev, change, scored)]
    head = seeded_init(seed + 1, lambda: TimingHead(model.config.hidden_size, bins.n_bins,
                                                    len(flows.classes))).to(device)
    t = {k: torch.from_numpy(a).to(device) for k, a in zip(("bins", "prev", "change", "scored"), arrays,
                                                           strict=True)}
    return {**t, "head": head, "iat_bins": bins}


def fit_head(gen, model, timing: dict, ids_t, n_tok, tokenizer, seed: int) -> dict:
    """Train the timing head on the trained, frozen LM's hidden states: NLL of the IAT bins,
    up to ``HEAD_EPOCHS`` epochs with early stopping on a validation split (best weights
    restored). The LM is untouched, so the lengths equal those of ``timing=False``."""
    from trafficgen.generators.training import train_loop

    head, device = timing["head"], ids_t.device
    for p in model.parameters():
        p.requires_grad_(False)

    def loss_fn(batch):
        b = batch.to(device)
        width_b = int(n_tok[batch].max())
        cols = width_b - 2  # packets 1 .. cols have hidden states
        with torch.no_grad():
            hidden = gen._backbone_hidden(model, ids_t[b, :width_b - 1])  # (B, T-1, D)
        scored = timing["scored"][b, :cols]  # (B, cols)
        h = hidden[:, 1:1 + cols][scored].float()  # (N_t, D): packet k's state
        row_cls = (ids_t[b, :1] - tokenizer.first_class_id).expand(-1, cols)[scored]  # (N_t,)
        logits = head(h, row_cls, timing["prev"][b, :cols][scored], timing["change"][b, :cols][scored])
        if not bool(scored.any()):  # a batch of one-packet flows has no IAT to score
            return logits.sum() * 0.0, 0
        return torch.nn.functional.cross_entropy(logits.float(), timing["bins"][b, :cols][scored]), int(scored.sum())

    try:
        return train_loop(head, loss_fn, n=len(ids_t), epochs=HEAD_EPOCHS, batch_size=int(gen.batch_size),
                          learning_rate=HEAD_LEARNING_RATE, generator=torch.Generator().manual_seed(seed + 2),
                          val_fraction=float(gen.val_fraction) or 0.1, patience=HEAD_PATIENCE,
                          progress=bool(gen.progress), description=f"train {gen.name} timing")
    finally:
        for p in model.parameters():
            p.requires_grad_(True)


def _hidden(gen, ids: np.ndarray, device):
    """(n, W+2) token ids -> (n, W, D) final hidden states at packets 1..W (teacher forced)."""
    x = torch.from_numpy(ids[:, :gen.max_packets_ + 1]).to(device)  # (n, W+1)
    return gen._backbone_hidden(gen.model_, x)[:, 1:].float()  # (n, W, D)


def sample_iats(gen, ids: np.ndarray, flows, rng: np.random.Generator, *, chunk: int = 1024) -> np.ndarray:
    """(n, W) IATs in seconds of decoded flows: one teacher-forced forward over their tokens,
    then the head's bins packet by packet (one uniform per packet, drawn for all rows at once
    so chunking does not change the result), then seconds from the bins' quantiles."""
    device = gen._placed()
    n, w = flows.lengths.shape
    u = rng.random((n, w))
    _, _, change, scored = timing_targets(flows.lengths, flows.n_packets, np.zeros((n, w)), gen.iat_bins_)
    none = gen.iat_bins_.n_bins
    bins = np.full((n, w), none, dtype=np.int64)
    with torch.inference_mode():
        for i in range(0, n, chunk):
            hidden = _hidden(gen, ids[i:i + chunk], device)  # (b, W, D)
            ch = torch.from_numpy(change[i:i + chunk]).to(device)  # (b, W)
            cls = torch.from_numpy(ids[i:i + chunk, 0] - gen.tokenizer_.first_class_id).to(device)  # (b,)
            prev = torch.full((hidden.shape[0],), none, dtype=torch.long, device=device)  # (b,)
            for col in range(1, w):
                probs = torch.softmax(gen.timing_head_(hidden[:, col], cls, prev, ch[:, col]).float(), dim=-1)
                cdf = probs.cumsum(-1).cpu().numpy()  # (b, n_bins)
                pick = (cdf < (u[i:i + chunk, col] * cdf[:, -1])[:, None]).sum(axis=1).clip(0, none - 1)
                bins[i:i + chunk, col] = pick
                prev = torch.from_numpy(np.where(scored[i:i + chunk, col], pick, none)).to(device)
    iat = np.zeros((n, w))
    iat[scored] = gen.iat_bins_.decode(bins[scored], rng)
    return iat


def head_log_likelihood(gen, flows, *, batch_size: int = 256) -> tuple[np.ndarray, int]:
    """(natural-log likelihood of each flow's IAT bins under ``gen``'s head (n,), number of scored
    IATs); ``flows`` already truncated to the model's width."""
    width = gen.max_packets_
    ids, _ = gen.tokenizer_.encode(flows, width, clip=True)  # (n, W+2)
    cur, prev, change, scored = timing_targets(flows.lengths, flows.n_packets, flows.iat, gen.iat_bins_)
    cols = cur.shape[1]
    device = gen._placed()
    out = np.zeros(len(ids))
    with torch.inference_mode():
        for i in range(0, len(ids), int(batch_size)):
            sl = slice(i, i + int(batch_size))
            hidden = _hidden(gen, ids[sl], device)[:, :cols]  # (B, cols, D)
            sc = torch.from_numpy(scored[sl]).to(device)
            cls = torch.from_numpy(ids[sl, :1] - gen.tokenizer_.first_class_id).to(device).expand_as(sc)[sc]
            logits = gen.timing_head_(hidden[sc], cls, torch.from_numpy(prev[sl]).to(device)[sc],
                                      torch.from_numpy(change[sl]).to(device)[sc]).float()
            logp = torch.log_softmax(logits, -1).gather(-1, torch.from_numpy(cur[sl]).to(device)[sc][:, None])[:, 0]
            rows = torch.nonzero(sc)[:, 0].cpu().numpy()
            np.add.at(out, i + rows, logp.double().cpu().numpy())
    return out, int(scored.sum())
