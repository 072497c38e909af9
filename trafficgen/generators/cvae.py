"""`CVAEGenerator`: a conditional VAE over exact signed-length sequences, with a categorical
decoder and an explicit flow-length head (network: :mod:`trafficgen.generators.cvae_network`).

Flows are the :class:`~trafficgen.representations.tokenizer.FlowTokenizer` length tokens of their
first ``N = max_packets_`` packets. The encoder ``q(z | x, n, c)`` reads the tokens, the packet
count and the class; the decoder is ``p(n | z, c) prod_t p(x_t | z, c, t, x_{t-1}, ..)``: a softmax
over the packet count and, per position, a softmax over the 3,000 signed lengths that sees the
latent, the class, the position and the previous ``context`` lengths (default 3), so training
stays parallel over positions (``context=0``: positions independent given ``z``).
Training maximises the ELBO with the KL weight annealed from 0 to 1 over the first ``kl_warmup``
of the steps and "free bits" (a per-dimension KL floor of ``free_bits`` nats on the batch mean,
Kingma et al. 2016) so that the latent stays in use, and label smoothing 0.1 on the length
softmaxes; early stopping and the kept weights follow the plain (beta = 1, no floor, no
smoothing) ELBO on the validation split. ``class_weight`` (off by default) weights each training
flow's loss by ``n_class ** -class_weight`` (:func:`class_balance_weights`) so that small classes
count more; the validation criterion stays unweighted.

Sampling: ``z ~ N(0, z_temperature^2 I)`` (around the class's learned prior mean with
``class_prior_mean``, off by default), then the packet count and each length from their
softmaxes at ``temperature``, the lengths restricted to those the class used in training
(``support="class"``) or any class used (``"train"``), the first packet to client -> server (+):
every sampled flow is valid by construction. ``log_likelihood`` returns the ELBO (a lower bound on
``log p(x | c)`` of the unrestricted model at temperature 1; ``likelihood_kind`` says so), or the
tighter importance-weighted bound with ``importance=True``.

Why not the previous design (a Gaussian decoder over ``sign(L) log1p|L|`` whose mean was snapped
to a length, the flow ending where the mean fell near 0), and how the defaults were chosen: see
``benchmarks/results/cvae_2026-12-02/README_section.md`` (the design) and
``benchmarks/results/cvae_2026-12-02b/README_section.md`` (context 3, label smoothing 0.1).
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import ClassVar

import numpy as np

from trafficgen._random import seed_from, torch_seeded
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError, UnknownClassError
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.serialization import TENSORS_FILE, Field, load_module_state, validate_config
from trafficgen.representations.tokenizer import FlowTokenizer, count_clipped

#: Parameters at 32 packets, 32 classes, context 3, without the GRU: tiny 0.14M, small 0.86M (the
#: default), base 1.82M (the ~1.8M budget of the other generators' comparison presets; not tuned: on
#: the validation splits the small model already overfits after ~15 epochs on nDPI). ``recurrent``:
#: the GRU's units (small's 256 add 0.31M; chosen on the ``cvae_tune.py`` validation split,
#: ``benchmarks/results/cvae_2026-12-08/``).
CVAE_PRESETS: dict[str, dict] = {
    "tiny": dict(hidden_dim=32, latent_dim=4, n_layers=2, token_dim=8, recurrent=16),
    "small": dict(hidden_dim=256, latent_dim=16, n_layers=2, token_dim=32, recurrent=256),
    "base": dict(hidden_dim=448, latent_dim=32, n_layers=2, token_dim=40, recurrent=256),
}

_FIRST_LENGTH_ID = 2  # token id of the first length (tokenizer layout)
#: Sampling supports of the lengths (see :meth:`CVAEGenerator.sample`).
SUPPORTS = ("class", "train")
#: Where ``sample`` draws the latents (see ``latent``).
LATENTS = ("aggregate", "prior")
#: Name prefix of the training posteriors' tensors in ``model.safetensors``.
POSTERIOR_PREFIX = "posterior"


def _pick_rows(train_cls: np.ndarray, want: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n,) a random training row of each requested class ``want`` (n,) among ``train_cls``."""
    out = np.empty(len(want), dtype=np.int64)
    for c in np.unique(want):
        rows = np.flatnonzero(want == c)
        out[rows] = rng.choice(np.flatnonzero(train_cls == c), size=len(rows))
    return out


def class_balance_weights(y: np.ndarray, alpha: float) -> np.ndarray:
    """Per-flow loss weights (n,) float64 of the class indices ``y`` (n,): ``n_c ** -alpha``
    (``n_c`` the number of flows of the flow's class in ``y``), divided by their mean so that they
    average 1 over ``y``. ``alpha`` 0: all 1; 1: every class carries the same total weight; 0.5
    half way (in log scale)."""
    y = np.asarray(y)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    w = counts.astype(np.float64) ** -float(alpha)
    w = w[inverse.reshape(-1)]
    return w / w.mean()


def training_loss(rec, kl, beta: float, free: float, weights=None):
    """The training objective (a scalar tensor): the mean reconstruction NLL plus ``beta`` times
    the KL with the free-bits floor ``free`` on each latent dimension's batch mean; ``rec`` (B,),
    ``kl`` (B, Z). ``weights`` (B,) (optional, see :func:`class_balance_weights`): both batch
    means become weighted means (weights summed over the batch, divided by B)."""
    if weights is None:
        return rec.mean() + beta * kl.mean(0).clamp_min(free).sum()
    return (weights * rec).mean() + beta * (weights[:, None] * kl).mean(0).clamp_min(free).sum()


class CVAEGenerator(FlowGenerator):
    """Conditional VAE flow generator (registry name ``"cvae"``).

    Parameters: ``preset`` (``"tiny"``, ``"small"``, ``"base"``), ``max_packets`` (``None``: the
    data's width capped at 32), ``epochs``, ``batch_size``, ``learning_rate``, ``weight_decay``
    (AdamW), ``val_fraction`` (validation split for early stopping and the kept weights; 0 =
    none), ``patience`` (epochs without a better validation ELBO; None = never stop early),
    ``kl_warmup`` (fraction of the steps over which the KL weight rises from 0 to 1),
    ``free_bits`` (nats per latent dimension), ``context`` (0 to 4 previous lengths the
    decoder sees), ``recurrent`` (units of a GRU that also reads every earlier length of the flow,
    started from the latent and the class; None, the default, = the preset's; 0 = none, the
    fixed-order decoder alone), ``count_mix`` (weight ``a`` of the class's training packet-count distribution
    in ``p(n | z, c) = (1 - a) head + a p_train(n | c)``: part of the model, so the likelihood and
    training use it too), ``anchor_class_bias`` (the class's smoothed log length frequencies
    are a fixed offset and the learned per-class bias starts at 0, so the weight decay pulls it
    towards the frequencies instead of towards 0; off by default), ``label_smoothing`` (training
    only: that share of each length's loss is the mean NLL over the lengths allowed at its
    position; default 0.1), ``class_weight`` (exponent ``alpha`` >= 0 of the per-flow training loss
    weights ``n_class ** -alpha``, normalised to mean 1 over the fitted flows
    (:func:`class_balance_weights`; 0, the default, = unweighted; 1 = every class the same total
    weight; the KL and its free-bits floor are weighted the same way; validation / early stopping
    stays the unweighted ELBO), ``class_prior_mean`` (the prior over ``z`` is ``N(m_c, I)`` with a
    learned mean per class instead of ``N(0, I)``; sampling draws around it; off by default),
    ``dropout`` / ``word_dropout`` (training-only regularisers, off by
    default),
    ``latent`` (where sampling draws ``z``: ``"aggregate"``, the default, the aggregate posterior
    ``q(z | c) = mean_i q(z | x_i, c)`` over the class's training flows (a training flow of the class
    at random, then its posterior ``N(mu_i, sd_i)``), so no latent region the encoder never used
    (the "prior hole") is decoded; ``"prior"``, ``N(0, I)`` (or ``N(m_c, I)``); chosen on the
    validation split of ``benchmarks/cvae_aggregate_posterior_probe.py``: nDPI TSTR +0.002 to +0.033
    in 4 of 4 seeds at equal fidelity JSDs, leakage +0.013, CICDOH20 higher in both seeds; a model saved
    before the posterior was stored samples from the prior, as it did),
    ``temperature``, ``z_temperature`` and ``support`` (the sampling defaults), ``random_state``,
    ``progress``, ``device`` (``"auto"`` | ``"cpu"`` | ``"cuda[:N]"`` | ``"mps"``: where it trains
    and samples; saved weights are CPU tensors; every random draw is made on the CPU, so CPU
    results are the same for a seed whatever was used before).

    The defaults were chosen on a validation split of the nDPI and CICDOH20 training parts
    (``benchmarks/cvae_tune.py``): held-out ELBO and the fidelity JSDs first, TSTR only as a
    check (it moves by +-0.03 between seeds there).

    Fitted attributes: ``classes_``, ``class_prior_``, ``max_packets_``, ``tokenizer_``,
    ``model_`` (:class:`~trafficgen.generators.cvae_network.CategoricalCVAE`, whose buffer
    ``class_vocab`` marks the lengths each class used in training), ``history_``, ``n_clipped_``,
    ``posterior_`` (``mu``, ``sd`` (n, Z) and ``cls`` (n,): the training flows' posteriors, for
    ``latent="aggregate"``).
    """

    name: ClassVar[str] = "cvae"
    presets: ClassVar[dict[str, dict]] = CVAE_PRESETS
    #: What :meth:`log_likelihood` returns (read by :func:`trafficgen.evaluation.likelihood.likelihood_summary`).
    likelihood_kind: ClassVar[str] = "elbo (lower bound)"
    _config_schema: ClassVar[dict[str, Field]] = {
        "classes_": Field.class_names(), "class_prior_": Field.class_prior("classes_"),
        "max_packets_": Field.integer(minimum=1), "model_config": Field.object(),
        "history_": Field.object(required=False),
    }
    _extra_schemas: ClassVar[dict[str, dict[str, Field]]] = {
        "tokenizer.json": {"type": Field.string(equals="FlowTokenizer"), "classes": Field.class_names(),
                           "max_length": Field.integer(minimum=1)},
    }

    def __init__(self, *, preset: str = "small", max_packets: int | None = None, epochs: int = 80,
                 batch_size: int = 64, learning_rate: float = 2e-3, val_fraction: float = 0.1,
                 patience: int | None = 20, kl_warmup: float = 0.2, free_bits: float = 0.1, context: int = 3,
                 count_mix: float = 0.0, dropout: float = 0.0, word_dropout: float = 0.0,
                 label_smoothing: float = 0.1, anchor_class_bias: bool = False,
                 weight_decay: float = 0.1, class_weight: float = 0.0, class_prior_mean: bool = False,
                 temperature: float = 0.8, z_temperature: float = 1.0, support: str = "class",
                 latent: str = "aggregate", random_state: int | None = None,
                 recurrent: int | None = None, progress: bool = True, device: str = "auto"):
        self.preset = preset
        self.max_packets = max_packets
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.val_fraction = val_fraction
        self.patience = patience
        self.kl_warmup = kl_warmup
        self.free_bits = free_bits
        self.context = context
        self.recurrent = recurrent
        self.dropout = dropout
        self.word_dropout = word_dropout
        self.label_smoothing = label_smoothing
        self.count_mix = count_mix
        self.anchor_class_bias = anchor_class_bias
        self.weight_decay = weight_decay
        self.class_weight = class_weight
        self.class_prior_mean = class_prior_mean
        self.temperature = temperature
        self.z_temperature = z_temperature
        self.support = support
        self.latent = latent
        self.random_state = random_state
        self.progress = progress
        self.device = device

    def _architecture(self) -> dict:
        """The CVAEConfig fields of ``preset``, with ``recurrent`` overridden when it is set."""
        arch = dict(self.presets[self.preset])
        if self.recurrent is not None:
            arch["recurrent"] = int(self.recurrent)
        return arch

    # ------------------------------------------------------------------ data
    def _tokens(self, flows) -> tuple[np.ndarray, np.ndarray]:
        """(length indices (n, N) int64, 0 past the end; packets (n,) int64 in 0..N)."""
        width = self.max_packets_
        flows = flows.truncate(width) if flows.max_packets > width else flows
        ids, _ = self.tokenizer_.encode(flows, width, clip=True)  # (n, N+2)
        n_pk = np.minimum(flows.n_packets, width).astype(np.int64)  # (n,)
        body = ids[:, 1:1 + width]  # (n, N)
        present = np.arange(width)[None, :] < n_pk[:, None]
        return np.where(present, body - _FIRST_LENGTH_ID, 0), n_pk

    def _class_index(self, labels) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes_)}
        try:
            return np.array([index[str(c)] for c in labels], dtype=np.int64)
        except KeyError as exc:
            raise UnknownClassError(str(exc.args[0]), self.classes_) from None

    # ------------------------------------------------------------------ fit
    def fit(self, flows):
        """Train on a labelled FlowSet; returns ``self``. Flows with no packet carry nothing to
        learn and are left out."""
        import torch

        from trafficgen._device import resolve_device
        from trafficgen.generators.cvae_network import MAX_CONTEXT, CategoricalCVAE, CVAEConfig
        from trafficgen.generators.training import seeded_init, train_loop

        device = resolve_device(self.device)
        width = self._validated_width(flows)
        if (not 0.0 <= float(self.kl_warmup) <= 1.0 or float(self.free_bits) < 0
                or self.context not in range(MAX_CONTEXT + 1)
                or not 0.0 <= float(self.dropout) < 1.0 or not 0.0 <= float(self.word_dropout) <= 1.0
                or not 0.0 <= float(self.label_smoothing) < 1.0 or not 0.0 <= float(self.count_mix) < 1.0
                or not 0.0 <= float(self.class_weight) < math.inf
                or not (self.recurrent is None
                        or (isinstance(self.recurrent, (int, np.integer)) and self.recurrent >= 0))):
            raise ConfigError(f"need 0 <= kl_warmup <= 1, free_bits >= 0, context in 0..{MAX_CONTEXT}, 0 <= dropout < 1, "
                              f"0 <= word_dropout <= 1, 0 <= label_smoothing < 1, "
                              f"0 <= count_mix < 1, finite class_weight >= 0, recurrent None or an integer >= 0; got "
                              f"{self.kl_warmup}, {self.free_bits}, {self.context!r}, {self.dropout}, "
                              f"{self.word_dropout}, {self.label_smoothing}, {self.count_mix}, {self.class_weight}, "
                              f"{self.recurrent!r}")
        flows = flows.truncate(width)
        flows = flows[np.flatnonzero(flows.n_packets > 0)]
        if len(flows) == 0:
            raise InputFormatError("fit needs at least one flow with a packet")
        counts = flows.class_counts()
        classes = sorted(counts)
        self.tokenizer_ = FlowTokenizer(classes=classes)
        self.max_packets_, self.classes_ = width, classes
        self.n_clipped_ = count_clipped(flows, width, self.tokenizer_.max_length)
        tokens_np, n_np = self._tokens(flows)
        present = np.arange(width)[None, :] < n_np[:, None]
        y_np = self._class_index(flows.labels)  # (n,)
        freq = np.zeros((len(classes), self.tokenizer_.n_length_tokens))  # (C, 2M) length counts per class
        np.add.at(freq, (np.broadcast_to(y_np[:, None], tokens_np.shape)[present], tokens_np[present]), 1.0)
        cfg = CVAEConfig(max_packets=width, n_classes=len(classes), n_lengths=self.tokenizer_.n_length_tokens,
                         context=int(self.context), **self._architecture())
        seed = seed_from(self.random_state, bits=31)
        gen = torch.Generator().manual_seed(seed)
        model = seeded_init(seed, lambda: CategoricalCVAE(cfg, dropout=float(self.dropout),
                                                          word_dropout=float(self.word_dropout),
                                                          label_smoothing=float(self.label_smoothing),
                                                          class_prior_mean=bool(self.class_prior_mean)))
        model.class_vocab.copy_(torch.from_numpy(freq > 0))
        mix = float(self.count_mix)
        if mix > 0:  # the count head mixed with the class's training packet-count distribution
            n_freq = np.zeros((len(classes), width))  # (C, N)
            np.add.at(n_freq, (y_np, n_np - 1), 1.0)
            with np.errstate(divide="ignore"):
                prior = np.log(mix * n_freq / n_freq.sum(1, keepdims=True))
            model.count_keep.fill_(math.log1p(-mix))
            model.count_prior.copy_(torch.from_numpy(prior))
        with torch.no_grad():  # start every position at its class's (smoothed) length frequencies
            logfreq = torch.from_numpy(np.log(freq + 0.1) - np.log(freq + 0.1).mean(1, keepdims=True))
            (model.class_offset if self.anchor_class_bias else model.class_bias).copy_(logfreq)
        model = model.to(device)
        tokens = torch.from_numpy(tokens_np).to(device)  # (n, N)
        n_pk = torch.from_numpy(n_np).to(device)  # (n,)
        y = torch.from_numpy(y_np).to(device)  # (n,)
        weights = (torch.from_numpy(class_balance_weights(y_np, float(self.class_weight))).float().to(device)
                   if float(self.class_weight) > 0 else None)  # (n,) per-flow training loss weights
        eval_eps = torch.randn((len(flows), cfg.latent_dim), generator=torch.Generator().manual_seed(seed + 1))
        epochs, bs = int(self.epochs), int(self.batch_size)
        n_train = len(flows) - int(round(len(flows) * float(self.val_fraction)))
        warm = float(self.kl_warmup) * epochs * math.ceil(max(n_train, 1) / bs)
        free = float(self.free_bits)
        step = [0]

        def loss_fn(batch):
            """Training: reconstruction + beta * KL with the free-bits floor (mean per flow,
            weighted with ``class_weight``). Validation (eval mode): the plain negative ELBO per
            flow, with fixed noise, unweighted."""
            b = batch.to(device)
            if not model.training:
                loss, _, _ = model.negative_elbo(tokens[b], n_pk[b], y[b], eval_eps[batch].to(device))
                return loss.mean(), len(batch)
            eps = torch.randn((len(batch), cfg.latent_dim), generator=gen).to(device)  # (B, Z)
            elbo, rec, kl = model.negative_elbo(tokens[b], n_pk[b], y[b], eps)  # (B,), (B,), (B, Z)
            beta = min(1.0, (step[0] + 1) / warm) if warm > 0 else 1.0
            step[0] += 1
            loss = training_loss(rec, kl, beta, free, None if weights is None else weights[b])
            return loss, len(batch), {"rec": rec.mean().detach(), "kl": kl.sum(-1).mean().detach()}

        with torch_seeded(seed + 2):  # dropout draws from torch's global generator
            self.history_ = train_loop(model, loss_fn, n=len(flows), epochs=epochs, batch_size=bs,
                                       learning_rate=float(self.learning_rate), generator=gen,
                                       val_fraction=float(self.val_fraction), patience=self.patience,
                                       weight_decay=float(self.weight_decay),
                                       progress=bool(self.progress), description=f"train {self.name}")
        self.model_ = model.eval()
        with torch.inference_mode():  # the training flows' posteriors (latent="aggregate")
            mu, logvar = model.encode(tokens, n_pk, y)  # (n, Z) each
        self.posterior_ = {"mu": mu.float().cpu(), "sd": (0.5 * logvar).exp().float().cpu(), "cls": y.cpu()}
        total = sum(counts.values())
        self.class_prior_ = np.array([counts[c] / total for c in classes])
        return self

    # ------------------------------------------------------------------ sample
    def sample(self, n: int, *, cls=None, random_state=None, temperature: float | None = None,
               z_temperature: float | None = None, support: str | None = None, latent: str | None = None,
               batch_size: int = 4096):
        """``n`` flows (a labelled FlowSet of width ``max_packets_``); same seed -> same flows.
        ``temperature`` / ``z_temperature`` / ``support`` / ``latent`` default to the parameters of
        the same name; temperature 0 is greedy (the most likely count and lengths; with z_temperature
        0 too, the prior mean, or with ``latent="aggregate"`` the posterior mean of a random training
        flow of the class).
        ``support``: ``"class"`` draws each length among those its class used in training,
        ``"train"`` among those any class used (renormalised softmax either way)."""
        import torch

        self._check_fitted()
        t_tok = float(self.temperature if temperature is None else temperature)
        t_z = float(self.z_temperature if z_temperature is None else z_temperature)
        support = self.support if support is None else support
        latent = self.latent if latent is None else latent
        if t_tok < 0 or t_z < 0 or int(n) < 0 or support not in SUPPORTS or latent not in LATENTS:
            raise ConfigError(f"need n, temperature and z_temperature >= 0, support one of {SUPPORTS} and latent one "
                              f"of {LATENTS}, got {n}, {t_tok}, {t_z}, {support!r}, {latent!r}")
        post = getattr(self, "posterior_", None) if latent == "aggregate" else None
        if latent == "aggregate" and post is None:
            raise ConfigError("latent='aggregate' needs the training flows' posteriors, which this model (saved "
                              "before they were stored) lacks: use latent='prior'")
        rng = np.random.default_rng(random_state)
        names = self._resolve_classes(int(n), cls, rng)
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        y_all = torch.from_numpy(self._class_index(names))  # (n,)
        pick = None if post is None else _pick_rows(post["cls"].numpy(), y_all.numpy(), rng)  # (n,) training rows
        width, m = self.max_packets_, self.model_
        lengths = np.zeros((len(names), width), dtype=np.int32)
        n_packets = np.zeros(len(names), dtype=np.int32)
        with torch.inference_mode():
            allowed = m.class_vocab if support == "class" else m.class_vocab.any(0, keepdim=True).expand_as(
                m.class_vocab)  # (C, 2M)
            for i in range(0, len(names), int(batch_size)):
                y = y_all[i:i + int(batch_size)]  # (b,)
                z = torch.randn((len(y), m.config.latent_dim), generator=gen) * t_z  # (b, Z)
                if pick is not None:  # q(z | c): a training flow's posterior N(mu_i, sd_i)
                    rows = torch.from_numpy(pick[i:i + len(y)])
                    z = post["mu"][rows] + post["sd"][rows] * z
                elif m.prior_mean is not None:  # p(z | c) = N(m_c, I)
                    z = z + m.prior_mean[y].to(z.device)
                lengths[i:i + len(y)], n_packets[i:i + len(y)] = self._decode_latents(z, y, gen, t_tok, allowed)
        return FlowSet(lengths=lengths, n_packets=n_packets, labels=names)

    def _decode_latents(self, z, y, gen, t_tok: float, allowed) -> tuple[np.ndarray, np.ndarray]:
        """Signed lengths (b, N) and packet counts (b,) decoded from latents ``z`` (b, Z) of classes
        ``y`` (b,) (CPU tensors), drawing the count and the lengths with ``gen`` at temperature
        ``t_tok`` among ``allowed`` (C, 2M) lengths per class."""
        import torch

        from trafficgen.generators.token_sampling import sample_from_logits

        device, width, m = self._placed(), self.max_packets_, self.model_
        b = len(y)
        u_count = torch.rand((b, 1), generator=gen)  # (b, 1)
        u_tok = torch.rand((b, width), generator=gen)  # (b, N)
        count_logits, states = m.decode(z.to(device), y.to(device))  # (b, N), (b, N, D)
        k = sample_from_logits(m.count_log_probs(count_logits, y.to(device)), gen, temperature=t_tok,
                               u=u_count.to(device)) + 1  # (b,)
        yd, u_tok = y.to(device), u_tok.to(device)
        idx = torch.zeros((b, width), dtype=torch.long, device=device)  # (b, N) length indices
        back = torch.arange(1, m.config.context + 1)  # (ctx,)
        tables = m.tables()  # once per batch, not once per position
        if m.rnn is not None:  # the GRU over the prefix (recurrent > 0)
            h, rnn_table = m.recurrent_start(z.to(device), yd), m.rnn_table()  # (1, b, R), (2M, D)
        for t in range(width):
            live = torch.nonzero(k > t)[:, 0]  # (b_t,) flows with a packet at t
            if len(live) == 0:
                break
            state_t = states[live, t]  # (b_t, D)
            if m.rnn is not None:  # step every live flow's GRU on its previous length
                step_prev = idx[live, t - 1] if t else torch.full((len(live),), -1, device=device)
                extra, h_live = m.recurrent_step(h[:, live], step_prev, rnn_table)  # (b_t, D), (1, b_t, R)
                h[:, live] = h_live
                state_t = state_t + extra
            cols = t - back  # (ctx,)
            prev = torch.where(cols.to(device) >= 0, idx[live][:, cols.clamp_min(0).to(device)], -1)  # (b_t, ctx)
            first = torch.full((len(live),), t == 0, dtype=torch.bool, device=device)
            logits = m.token_logits(state_t, prev, yd[live], first, tables).float()
            logits = logits.masked_fill(~allowed[yd[live]], -torch.inf)  # (b_t, 2M)
            idx[live, t] = sample_from_logits(logits, gen, temperature=t_tok, u=u_tok[live, t:t + 1])
        present = torch.arange(width, device=device)[None, :] < k[:, None]  # (b, N)
        signed = self.tokenizer_.id_to_length(idx.cpu().numpy() + _FIRST_LENGTH_ID)  # (b, N)
        return np.where(present.cpu().numpy(), signed, 0), k.cpu().numpy()

    # ------------------------------------------------------------------ likelihood
    def log_likelihood(self, flows, *, n_samples: int = 16, importance: bool = False, batch_size: int = 512,
                       random_state: int = 0) -> np.ndarray:
        """A lower bound on ``log p(x | c)`` per flow (n,), in nats, under the model :meth:`sample`
        draws from at temperature 1 before the training-vocabulary restriction: the ELBO averaged
        over ``n_samples`` posterior draws, or with ``importance=True`` the importance-weighted
        bound ``log mean_k p(x, z_k | c) / q(z_k | x, c)`` (Burda et al. 2016; tighter, still a
        bound). Lengths beyond the vocabulary are clipped, flows truncated to ``max_packets_``
        (as in fit); a flow with no packet has likelihood 0 (-inf). Seeded: the same flows give
        the same numbers."""
        import torch

        self._check_fitted()
        tokens_np, n_np = self._tokens(flows)
        y_np = self._class_index(flows.labels)
        out = np.full(len(n_np), -np.inf)
        keep = np.flatnonzero(n_np > 0)
        gen = torch.Generator().manual_seed(int(random_state))
        device, m, k = self._placed(), self.model_, int(n_samples)
        if k < 1:
            raise ConfigError(f"n_samples must be >= 1, got {n_samples}")
        with torch.inference_mode():
            for i in range(0, len(keep), int(batch_size)):
                rows = keep[i:i + int(batch_size)]
                tok = torch.from_numpy(tokens_np[rows]).to(device)  # (B, N)
                n_pk = torch.from_numpy(n_np[rows]).to(device)  # (B,)
                y = torch.from_numpy(y_np[rows]).to(device)  # (B,)
                mu, logvar = m.encode(tok, n_pk, y)  # (B, Z)
                loc = m.prior_loc(y)  # (B, Z) or None (0)
                std = torch.exp(0.5 * logvar)
                terms = []
                for _ in range(k):
                    eps = torch.randn(mu.shape, generator=gen).to(device)  # (B, Z)
                    z = mu + std * eps
                    rec = m.reconstruction_nll(z, tok, n_pk, y).double()  # (B,)
                    if importance:  # log p(z) - log q(z | x): the KL's single-sample estimate
                        zc = z if loc is None else z - loc
                        log_ratio = (-0.5 * zc.pow(2) + 0.5 * eps.pow(2) + 0.5 * logvar).sum(-1).double()
                        terms.append(-rec + log_ratio)
                    else:
                        terms.append(-rec - m.kl_per_dim(mu, logvar, loc).sum(-1).double())
                t = torch.stack(terms)  # (K, B)
                bound = torch.logsumexp(t, 0) - math.log(k) if importance else t.mean(0)
                out[rows] = bound.cpu().numpy()
        return out

    # ------------------------------------------------------------------ device
    def _placed(self):
        """The torch device of ``device``, with the model moved there first if it is elsewhere (a
        loaded model waits on the CPU until it is used)."""
        from trafficgen.generators.training import place_modules

        return place_modules(self.device, self.model_)

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {"classes_": list(self.classes_), "class_prior_": self.class_prior_.tolist(),
                  "max_packets_": self.max_packets_, "model_config": asdict(self.model_.config),
                  "history_": self.history_}
        # options left at their defaults are not written: config.json as before they existed
        off = {k for k in ("class_weight", "class_prior_mean") if not getattr(self, k)}
        off |= {"recurrent"} if self.recurrent is None else set()
        if off:
            config["params"] = {k: v for k, v in self.get_params().items() if k not in off}
        tensors = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        post = getattr(self, "posterior_", None)
        if post is not None:
            tensors.update({f"{POSTERIOR_PREFIX}.{k}": v.contiguous() for k, v in post.items()})
        return config, tensors, {"tokenizer.json": self.tokenizer_.to_dict()}

    @classmethod
    def _load_state(cls, config, tensors, extra):
        from trafficgen.generators.cvae_network import CategoricalCVAE, CVAEConfig
        from trafficgen.generators.training import seeded_init

        gen = cls._from_params(config)
        mc = config["model_config"]
        unknown = sorted(set(mc) - set(CVAEConfig.__dataclass_fields__))
        if unknown:
            raise InputFormatError(f"model_config has unknown fields {unknown}", path="config.json")
        validate_config(mc, {k: Field.integer(k != "recurrent", minimum=0 if k in ("context", "recurrent") else 1)
                             for k in CVAEConfig.__dataclass_fields__}, "config.json")
        tokenizer = FlowTokenizer.from_dict(extra["tokenizer.json"])
        if list(tokenizer.classes) != list(config["classes_"]):
            raise InputFormatError(f"tokenizer.json classes {tokenizer.classes} differ from config.json classes "
                                   f"{list(config['classes_'])}", path="tokenizer.json")
        if (mc["max_packets"], mc["n_classes"], mc["n_lengths"]) != (
                config["max_packets_"], len(config["classes_"]), tokenizer.n_length_tokens):
            raise InputFormatError(f"model_config max_packets {mc['max_packets']} / n_classes {mc['n_classes']} / "
                                   f"n_lengths {mc['n_lengths']} do not fit max_packets_ {config['max_packets_']} / "
                                   f"{len(config['classes_'])} classes / the tokenizer's "
                                   f"{tokenizer.n_length_tokens} lengths", path="config.json")
        tensors = dict(tensors)
        post = {k: tensors.pop(f"{POSTERIOR_PREFIX}.{k}", None) for k in ("mu", "sd", "cls")}
        if all(v is None for v in post.values()):  # saved before the posteriors were stored: the prior
            post, gen.latent = None, "prior"
        elif any(v is None for v in post.values()) or post["mu"].shape != post["sd"].shape or \
                post["mu"].shape[:1] != post["cls"].shape or post["mu"].shape[1:] != (mc["latent_dim"],):
            raise InputFormatError(f"{TENSORS_FILE}: the {POSTERIOR_PREFIX}.mu / sd / cls tensors are incomplete or "
                                   f"do not fit latent_dim {mc['latent_dim']}", path=TENSORS_FILE)
        gen.posterior_ = post
        preset_units = gen.presets.get(gen.preset, {}).get("recurrent", 0)
        if (preset_units if gen.recurrent is None else gen.recurrent) != mc.get("recurrent", 0):
            # the network's own units win (a model saved before the GRU existed has none)
            gen.recurrent = int(mc.get("recurrent", 0))
        gen.model_ = seeded_init(0, lambda: CategoricalCVAE(CVAEConfig(**mc), class_prior_mean=bool(gen.class_prior_mean)))
        load_module_state(gen.model_, tensors, TENSORS_FILE,  # saved before these buffers: none of them
                          optional=lambda key: key in ("count_keep", "count_prior", "class_offset"))
        gen.model_.eval()  # CPU weights; moved to gen.device when first used (_placed)
        gen.tokenizer_ = tokenizer
        gen.classes_ = list(config["classes_"])
        gen.class_prior_ = np.asarray(config["class_prior_"], dtype=float)
        gen.max_packets_ = int(config["max_packets_"])
        gen.history_ = config.get("history_", {})
        return gen
