"""The network of :class:`~trafficgen.generators.cvae.CVAEGenerator`: a conditional VAE whose decoder
is categorical over exact signed payload lengths, with an explicit flow-length head.

A flow of ``n`` packets (1 <= n <= N) is the tokens ``x_0 .. x_{n-1}``, each one of the ``2M``
signed lengths of :class:`~trafficgen.representations.tokenizer.FlowTokenizer` (index ``k`` is the
length ``k - M`` for ``k < M`` and ``k - M + 1`` otherwise: the tokenizer's ids minus 2). Given the
latent ``z`` and the class ``c`` the decoder is::

    p(x, n | z, c) = p(n | z, c) * prod_{t < n} p(x_t | z, c, t, x_{t-1}, .., x_{t-k})

with ``p(n | z, c)`` a softmax over 1..N (the length head) and ``p(x_t | ..)`` a softmax over the
lengths, at ``t = 0`` over the positive ones only (the client sends first), that sees the
``k = context`` previous lengths (0..4; the generator's default 3). The decoder is a fixed-order
chain, not a recurrent one: training stays parallel over positions, and every dependency further
back than ``k`` (a request size and a later response size, the flow length and what fills it)
goes through ``z``, which keeps the latent in use. With ``context=0`` the positions are
independent given ``z``. With ``recurrent=R > 0`` a GRU of R units (``torch.nn.GRU``) also reads
every earlier length of the flow, started from ``(z, c)``, and its projected output is added to
each position's state, so the decoder sees the whole prefix (training stays one parallel pass per
batch, teacher-forced; sampling steps the GRU once per position).

Lengths share strength with their neighbours: their embeddings and output rows are
``phi(v) @ F``, the fixed direction / log / linear soft-bin features ``phi`` of
:mod:`trafficgen.generators.length_features` times a learned ``F`` (a length seen twice in
training borrows from its neighbours). Exact lengths come from a per-class output bias
``class_bias`` (C, 2M), started at each class's smoothed log length frequencies, and a global one.

Written from plain torch layers: there is no CVAE in transformers / diffusers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["CVAEConfig", "CategoricalCVAE", "length_index_features", "MAX_CONTEXT"]

#: The most previous lengths the decoder can see (``CVAEConfig.context``).
MAX_CONTEXT = 4


@dataclass
class CVAEConfig:
    """Hyper-parameters of :class:`CategoricalCVAE` (``n_lengths`` = 2 * the tokenizer's ``max_length``)."""

    max_packets: int
    n_classes: int
    n_lengths: int = 3000
    hidden_dim: int = 256
    latent_dim: int = 16
    n_layers: int = 2
    token_dim: int = 32
    context: int = 1
    recurrent: int = 0


#: Soft bins of the length features: finer than the token models' (24 log, 30 linear), since
#: here they are the only per-length parameters (a linear bin is 15 bytes wide at M = 1500).
LOG_BINS, LINEAR_BINS = 64, 100


def length_index_features(max_length: int) -> np.ndarray:
    """(2M, K) float32 features of the signed lengths in index order (see the module docstring):
    the rows of :func:`~trafficgen.generators.length_features.length_feature_matrix` of the length
    tokens, without the ``<EOS>`` column."""
    from trafficgen.generators.length_features import length_feature_matrix
    from trafficgen.representations.tokenizer import FlowTokenizer

    tok = FlowTokenizer(max_length=max_length)
    phi = length_feature_matrix(tok, log_bins=LOG_BINS, linear_bins=LINEAR_BINS)  # (V, K + 1)
    return np.ascontiguousarray(phi[2:tok.first_class_id, :-1])  # (2M, K)


def _mlp(d_in: int, hidden: int, n_layers: int, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(d_in if i == 0 else hidden, hidden), nn.SiLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class LengthTable(nn.Module):
    """A ``(2M, D)`` table ``phi @ F`` over the signed lengths: each length is its features, so
    lengths between the same soft-bin centres share their parameters. (A free residual row per
    length, as in the token models' :mod:`~trafficgen.generators.length_features`, overfitted here:
    on nDPI 200/class the validation negative ELBO was best after 3 epochs at 24.6 nats per flow
    with it, and fell to 22.5 over 30 epochs without it; exact per-class lengths come from
    ``CategoricalCVAE.class_bias``.)"""

    def __init__(self, phi: torch.Tensor, dim: int):
        super().__init__()
        self.register_buffer("phi", phi, persistent=False)  # (2M, K) fixed; rebuilt from the config
        self.features = nn.Parameter(torch.randn(phi.shape[1], dim) * 0.02)  # (K, D)

    def forward(self) -> torch.Tensor:
        return self.phi @ self.features  # (2M, D)


class CategoricalCVAE(nn.Module):
    """``encode(tokens, n, y) -> (mu, logvar)``; ``decode(z, y) -> (count_logits, states)``;
    ``token_logits(states, prev, y, first)``; ``reconstruction_nll`` / ``negative_elbo`` per flow
    (nats).

    ``tokens`` (B, N) int64 length indices (anything past a flow's end is ignored), ``n`` (B,) int64
    packets in 1..N, ``y`` (B,) int64 class indices. With ``context=k`` the length at position t
    also sees the lengths at t - 1 .. t - k (a k-th order decoder: training stays parallel over
    positions, no recurrent state); with ``context=0`` the positions are independent given ``z``.
    ``dropout`` (decoder MLP) and ``word_dropout`` (a previous length replaced by the start
    vector, Bowman et al. 2016) regularise training only. ``class_prior_mean``: the prior is
    ``p(z | c) = N(m_c, I)`` with a learned mean ``prior_mean`` (C, Z) per class (started at 0;
    off: ``N(0, I)`` and no such parameter).
    """

    def __init__(self, config: CVAEConfig, *, dropout: float = 0.0, word_dropout: float = 0.0,
                 label_smoothing: float = 0.0, class_prior_mean: bool = False):
        super().__init__()
        self.config = c = config
        self.word_dropout = float(word_dropout)  # training only: not part of the saved model
        self.label_smoothing = float(label_smoothing)  # training only, over the allowed lengths
        if not 0 <= c.context <= MAX_CONTEXT:
            raise ValueError(f"context must be in 0..{MAX_CONTEXT}, got {c.context}")
        phi = torch.from_numpy(length_index_features(c.n_lengths // 2))  # (2M, K)
        self.in_table = LengthTable(phi, c.token_dim)
        self.out_table = LengthTable(phi, c.token_dim)
        self.out_bias = nn.Parameter(torch.zeros(c.n_lengths))  # (2M,)
        self.class_bias = nn.Parameter(torch.zeros(c.n_classes, c.n_lengths))  # (C, 2M): each class's lengths
        # a fixed per-class offset under class_bias (its smoothed log length frequencies with
        # ``anchor_class_bias``: the weight decay then pulls class_bias towards them, not towards 0)
        self.register_buffer("class_offset", torch.zeros(c.n_classes, c.n_lengths))  # (C, 2M)
        # one table per look-back j = 1..context and its "before the start" vector
        self.prev_tables = nn.ModuleList([LengthTable(phi, c.token_dim) for _ in range(c.context)])
        self.bos = nn.Parameter(torch.zeros(c.context, c.token_dim))  # (context, D)
        self.mix = nn.Sequential(nn.Linear(c.token_dim, 2 * c.token_dim), nn.SiLU(),
                                 nn.Linear(2 * c.token_dim, c.token_dim))
        self.encoder = _mlp(c.max_packets * c.token_dim + c.max_packets + c.n_classes, c.hidden_dim, c.n_layers)
        self.to_stats = nn.Linear(c.hidden_dim, 2 * c.latent_dim)
        self.decoder = _mlp(c.latent_dim + c.n_classes, c.hidden_dim, c.n_layers, dropout)
        self.to_count = nn.Linear(c.hidden_dim, c.max_packets)  # logits of n = 1..N
        self.to_states = nn.Linear(c.hidden_dim, c.max_packets * c.token_dim)
        if c.recurrent < 0:
            raise ValueError(f"recurrent must be >= 0, got {c.recurrent}")
        if c.recurrent:  # a GRU over the whole prefix, started from (z, c)
            self.rnn_table = LengthTable(phi, c.token_dim)
            self.rnn_bos = nn.Parameter(torch.zeros(c.token_dim))  # (D,) the input at position 0
            self.rnn_init = nn.Linear(c.latent_dim + c.n_classes, c.recurrent)
            self.rnn = nn.GRU(c.token_dim, c.recurrent, batch_first=True)
            self.rnn_out = nn.Linear(c.recurrent, c.token_dim)
        else:
            self.rnn = None
        # p(n | z, c) = (1 - a) softmax(count head) + a p_train(n | c) (``count_mix`` a of the generator):
        # count_keep = log(1 - a), count_prior (C, N) = log(a p_train(n | c)); a = 0 (-inf) unless set in fit
        self.register_buffer("count_keep", torch.zeros(()))
        self.register_buffer("count_prior", torch.full((c.n_classes, c.max_packets), -torch.inf))
        # the lengths each class used in training (the supports :meth:`CVAEGenerator.sample` draws from)
        self.register_buffer("class_vocab", torch.ones(c.n_classes, c.n_lengths, dtype=torch.bool))  # (C, 2M)
        # p(z | c) = N(prior_mean[c], I) with ``class_prior_mean``; otherwise N(0, I) (no parameter)
        self.register_parameter("prior_mean", nn.Parameter(torch.zeros(c.n_classes, c.latent_dim))
                                if class_prior_mean else None)  # (C, Z)

    @property
    def first_positive(self) -> int:
        """Index of length +1 (indices below it are the negative lengths)."""
        return self.config.n_lengths // 2

    def _onehot(self, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(y, self.config.n_classes).to(self.to_stats.weight.dtype)  # (B, C)

    def encode(self, tokens: torch.Tensor, n: torch.Tensor, y: torch.Tensor):
        c = self.config
        present = torch.arange(c.max_packets, device=tokens.device)[None, :] < n[:, None]  # (B, N)
        emb = self.in_table()[tokens] * present[..., None]  # (B, N, D)
        count = nn.functional.one_hot(n - 1, c.max_packets).to(emb.dtype)  # (B, N)
        h = self.encoder(torch.cat([emb.flatten(1), count, self._onehot(y)], dim=-1))  # (B, H)
        mu, logvar = self.to_stats(h).chunk(2, dim=-1)  # (B, Z) each
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor, y: torch.Tensor):
        h = self.decoder(torch.cat([z, self._onehot(y)], dim=-1))  # (B, H)
        states = self.to_states(h).view(len(z), self.config.max_packets, self.config.token_dim)  # (B, N, D)
        return self.to_count(h), states  # (B, N), (B, N, D)

    def _hidden(self, prev: torch.Tensor) -> torch.Tensor:
        """(...,) previous length indices -> (...,) bool: the ones the decoder does not see, those
        before the flow's start (-1) and, in training, a random ``word_dropout`` share ("word
        dropout", Bowman et al. 2016: lean on z)."""
        hide = prev < 0
        if self.training and self.word_dropout:
            hide = hide | (torch.rand(hide.shape, device=hide.device) < self.word_dropout)
        return hide

    def recurrent_start(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, Z) latents, (B,) classes -> (1, B, R) the GRU's initial state (``recurrent > 0`` only)."""
        return torch.tanh(self.rnn_init(torch.cat([z, self._onehot(y)], dim=-1)))[None]

    def recurrent_inputs(self, prev: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
        """(...,) the previous length index at each step (-1 at position 0) -> (..., D) the GRU's
        inputs; ``word_dropout`` hides a previous length in training as in :meth:`token_logits`."""
        table = self.rnn_table() if table is None else table
        return torch.where(self._hidden(prev)[..., None], self.rnn_bos, table[prev.clamp_min(0)])

    def recurrent_states(self, z: torch.Tensor, y: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced GRU contributions (B, N, D) to the position states of flows ``tokens`` (B, N)."""
        prev = torch.cat([torch.full_like(tokens[:, :1], -1), tokens[:, :-1]], dim=1)  # (B, N)
        out, _ = self.rnn(self.recurrent_inputs(prev), self.recurrent_start(z, y))  # (B, N, R)
        return self.rnn_out(out)  # (B, N, D)

    def recurrent_step(self, h: torch.Tensor, prev: torch.Tensor, table: torch.Tensor):
        """One sampling step: state (1, B, R), previous length indices (B,) (-1 at the start) ->
        (the (B, D) contribution to this position's state, the new (1, B, R) state)."""
        out, h = self.rnn(self.recurrent_inputs(prev, table)[:, None], h)  # (B, 1, R)
        return self.rnn_out(out[:, 0]), h

    def count_log_probs(self, count_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, N) count-head logits, (B,) classes -> (B, N) ``log p(n | z, c)`` of n = 1..N, the
        head mixed with the class's training count distribution (``count_prior``)."""
        head = torch.log_softmax(count_logits.float(), -1) + self.count_keep
        return torch.logaddexp(head, self.count_prior[y].float())

    def tables(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The (2M, D) look-back tables and the (2M, D) output table: computed once per call of
        :meth:`token_logits` unless passed in (the sampling loop computes them once per batch)."""
        return [table() for table in self.prev_tables], self.out_table()

    def token_logits(self, states: torch.Tensor, prev: torch.Tensor, y: torch.Tensor,
                     first: torch.Tensor, tables=None) -> torch.Tensor:
        """(R, D) position states, (R, context) the lengths 1..context positions back (-1: before
        the flow's start), (R,) classes, (R,) bool position 0 -> (R, 2M) logits, the negative
        lengths masked at position 0. ``tables``: :meth:`tables`, if already computed."""
        back, out = self.tables() if tables is None else tables
        h = states
        for j, table in enumerate(back):
            h = h + torch.where(self._hidden(prev[:, j])[:, None], self.bos[j],
                                table[prev[:, j].clamp_min(0)])  # (R, D)
        h = h + self.mix(h)  # (R, D)
        logits = h @ out.t() + self.out_bias + self.class_bias[y] + self.class_offset[y]  # (R, 2M)
        return logits.masked_fill(first[:, None] & (torch.arange(logits.shape[1], device=h.device)
                                                    < self.first_positive), -torch.inf)

    def previous(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N) length indices -> (B, N, context): the lengths 1..context positions back, -1
        before the start."""
        n = tokens.shape[1]
        cols = torch.arange(n, device=tokens.device)[:, None] - torch.arange(1, self.config.context + 1,
                                                                             device=tokens.device)  # (N, ctx)
        return torch.where(cols >= 0, tokens[:, cols.clamp_min(0)], -1)  # (B, N, ctx)

    def reconstruction_nll(self, z: torch.Tensor, tokens: torch.Tensor, n: torch.Tensor, y: torch.Tensor):
        """``-log p(x, n | z, c)`` per flow (B,), nats; only the present positions are scored."""
        count_logits, states = self.decode(z, y)  # (B, N), (B, N, D)
        if self.rnn is not None:
            states = states + self.recurrent_states(z, y, tokens)  # (B, N, D)
        nll = -self.count_log_probs(count_logits, y).gather(1, (n - 1)[:, None])[:, 0]  # (B,)
        present = torch.arange(self.config.max_packets, device=z.device)[None, :] < n[:, None]  # (B, N)
        first = torch.zeros_like(present)
        first[:, 0] = True
        rows = present.nonzero()[:, 0]  # (P,)
        logits = self.token_logits(states[present], self.previous(tokens)[present], y[rows],
                                   first[present]).float()  # (P, 2M)
        per_token = nn.functional.cross_entropy(logits, tokens[present], reduction="none")  # (P,)
        if self.training and self.label_smoothing:  # mix in the mean NLL over the allowed lengths
            logp = torch.log_softmax(logits, -1)  # (P, 2M)
            ok = torch.isfinite(logp)
            uniform = -logp.masked_fill(~ok, 0.0).sum(-1) / ok.sum(-1)  # (P,)
            per_token = (1.0 - self.label_smoothing) * per_token + self.label_smoothing * uniform
        return nll.index_add(0, rows, per_token)  # (B,)

    def prior_loc(self, y: torch.Tensor) -> torch.Tensor | None:
        """(B,) classes -> (B, Z) the prior means of ``z`` (``class_prior_mean``), or None (0)."""
        return None if self.prior_mean is None else self.prior_mean[y]

    @staticmethod
    def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor, loc: torch.Tensor | None = None) -> torch.Tensor:
        """KL(q(z | x, c) || N(loc, I)) per flow and latent dimension (B, Z), nats (``loc`` None: 0)."""
        if loc is not None:
            mu = mu - loc
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)

    def negative_elbo(self, tokens, n, y, eps):
        """(negative ELBO (B,), reconstruction NLL (B,), KL per dimension (B, Z)) with the
        reparameterised ``z = mu + sigma * eps``, ``eps`` (B, Z) standard normal."""
        mu, logvar = self.encode(tokens, n, y)  # (B, Z)
        z = mu + torch.exp(0.5 * logvar) * eps  # (B, Z)
        rec = self.reconstruction_nll(z, tokens, n, y)  # (B,)
        kl = self.kl_per_dim(mu, logvar, self.prior_loc(y))  # (B, Z)
        return rec + kl.sum(-1), rec, kl
