"""Shared base of the class-conditioned causal-LM flow generators (LLaMA, Mamba2).

A flow is the token sequence ``<CLASS_x> PL_1 ... PL_k <EOS>`` (see
:class:`~trafficgen.representations.tokenizer.FlowTokenizer`); a transformers causal LM learns
it with next-token cross-entropy and samples it from the ``<CLASS_x>`` prompt.

This module owns what does not depend on the architecture:

* ``fit``: tokenise, seeded model init, training through :func:`training.train_loop`
  (AdamW + cosine warmup, validation split, early stopping with the best weights restored).
  Batches are trimmed to their longest flow and the LM head only runs on non-pad positions.
* ``sample``: a batched decode loop over an architecture-specific incremental ``step``
  (a pre-allocated KV cache for LLaMA, the recurrent state for Mamba2). Only the output rows
  ``<EOS>`` + length tokens of the LM head are computed, so ``<PAD>`` / ``<CLASS_*>`` can never
  be emitted; ``<EOS>`` and negative lengths are masked at step 0 (a flow has >= 1 packet and
  its first is client -> server, ``FlowSet``'s convention). Sampling draws one
  uniform per row from a seeded ``torch.Generator`` (inverse CDF), so the same seed gives the
  same flows bit for bit on CPU.
* persistence: ``config.json`` (+ the HF model config) + ``model.safetensors`` + ``tokenizer.json``.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from trafficgen._random import seed_from
from trafficgen.errors import ConfigError, InputFormatError
from trafficgen.generators.base import FlowGenerator
from trafficgen.generators.serialization import TENSORS_FILE, Field, load_module_state
from trafficgen.generators.token_sampling import decode_dtype, sample_from_logits
from trafficgen.generators.token_training_rows import (
    CLASS_BIAS_PRIOR,
    class_bias_init,
    class_support,
    training_budget,
    training_row_weights,
)
from trafficgen.representations.tokenizer import EOS_ID, PAD_ID, FlowTokenizer, count_clipped

#: Rows per decode chunk (see :meth:`CausalLMFlowGenerator.generate_ids`).
DECODE_CHUNK = 1024

#: Prefix of the timing head's tensors in ``model.safetensors``.
TIMING_PREFIX = "timing_head."
#: Prefix of the IAT chain's count tables in ``model.safetensors``.
CHAIN_PREFIX = "timing_chain"
#: Prefix of the interpolated Markov chain's tables in model.safetensors (``chain_mix=True``).
CHAIN_MIX_PREFIX = "chain_mix"

#: The classifier-free guidance scale ``sample`` uses when neither it nor the model sets one (1: none).
DEFAULT_GUIDANCE = 1.0

#: Key of the per-class length support (C, V') uint8 in ``model.safetensors``.
SUPPORT_KEY = "class_support"

#: Key of the per-class output bias (C, V') float32 in ``model.safetensors``.
CLASS_BIAS_KEY = "class_bias"

#: Key of the per-class input embedding (C, D) float32 in ``model.safetensors`` (``class_input=True``).
CLASS_INPUT_KEY = "class_input_embedding"

#: ``timing`` values: the model of the inter-arrival times (True is the default one).
TIMING_MODES = {True: "chain", "chain": "chain", "head": "head"}


def torch_tensor(array):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


class CausalLMFlowGenerator(FlowGenerator):
    """Base class; subclasses set ``name`` and ``presets`` and implement ``_build_model``,
    ``_model_from_config``, ``_backbone_hidden`` and ``_make_decoder``.

    Training-data weighting (both default to the plain empirical distribution; see
    :func:`training_row_weights`): ``class_balance`` in [0, 1] draws a class's rows with weight
    ``count_c ** -class_balance`` (1: every class equally often); ``repeat_weight`` in [0, 1] lets
    a flow that occurs ``m`` times in its class count ``m ** repeat_weight`` times instead of
    ``m`` (0: each distinct flow once, i.e. deduplicated training data, which makes a model
    reproduce fewer training flows verbatim at the price of under-sampling the common ones).

    Training budget: ``epochs`` if given, else ``max_steps`` optimiser steps, else
    :func:`training_budget` (scaled to the data size). The cosine schedule spans the budget;
    ``patience`` (None by default) stops early on the validation loss; either way the weights of
    the best validation loss are restored, and a warning says when it was still falling at the end.
    ``length_features`` (default on) shares strength between nearby lengths in the embedding and
    the output head (:mod:`trafficgen.generators.length_features`): on nDPI 200/class at 32
    packets it lowered held-out NLL from 41.5 to 39.6 bits per flow (Markov order 2: 40.6).

    Devices: ``device`` ``"auto"`` (CUDA, else MPS, else CPU) | ``"cpu"`` | ``"cuda[:N]"`` | ``"mps"``;
    ``precision`` ``"fp32"`` | ``"bf16"`` | ``"fp16"`` is the autocast precision of training;
    ``gradient_accumulation_steps`` batches per optimiser step. Saved weights are CPU tensors;
    a loaded model moves to ``device`` when it is first used. Started by ``accelerate launch``
    (or ``trafficgen train --num-processes N``), ``fit`` trains data-parallel
    (see :func:`~trafficgen.generators.training.train_loop`).

    Classifier-free guidance: with ``cfg_dropout`` p > 0 a fraction p of the training rows get
    the unconditional prompt ``<EOS>`` (an input the model otherwise never learns from) instead of
    their ``<CLASS_x>``, so the same network also models p(flow); ``guidance_scale`` s (at
    construction, or per ``sample`` call) decodes from ``softmax(l_u + s (l_c - l_u))`` with the
    conditional and unconditional logits ``l_c``, ``l_u`` of each step (s = 1: the plain
    conditional model, one forward; s > 1: two forwards per step, and a sharper class). Like
    ``top_p`` it changes what is sampled, not ``log_likelihood`` (always the conditional model).
    Defaults: ``cfg_dropout=0.1`` (the unconditional prompt is trained, so guidance is available
    without retraining; it costs no likelihood: nDPI 39.68 vs 39.71 bits per flow, CICDOH20 77.55
    vs 79.39) and ``guidance_scale=None``, which samples at :data:`DEFAULT_GUIDANCE` (1: one
    forward per decode step). ``support`` (a sampling truncation too; default ``"class"``) lets
    a class emit only ``<EOS>`` and the lengths its training flows contain (None: every length).
    Chosen on a validation split of the lightweight_ntg training part, never its test part
    (``benchmarks/token_sampling_tune.py``, 32 packets; nDPI 200/class / CICDOH20): the class
    support lowers the mean of the four fidelity JSDs from 0.635 to 0.543 / 0.181 to 0.146 and
    raises TSTR 0.415 -> 0.518 / 0.904 -> 0.916; guidance 1.5 on top of it moves TSTR by +0.010 /
    -0.010 and the JSDs by less than 0.01 (within the RandomForest seeds' noise) at twice the
    decode cost, so it is an option (``guidance_scale=1.5``), not the default. Models saved
    without a class support sample with ``support=None``.

    Stronger class conditioning (both off by default; the class otherwise enters only through the
    ``<CLASS_x>`` prompt): ``class_bias=True`` adds a learned per-class bias (C, V') to the output
    logits over ``<EOS>`` + lengths, started at the class's smoothed log next-token frequencies
    over the global ones (:func:`class_bias_init`, ``class_bias_prior`` pseudo-tokens of the
    global distribution) and pulled towards 0 by ``class_bias_l2`` (a Gaussian prior, MAP). It is
    part of the model: the loss, ``log_likelihood`` and the decode loop (folded with the class
    support into one (C, V') additive tensor; with guidance it is scaled by the guidance scale,
    the unconditional branch has none). ``class_input=True`` adds a learned per-class vector
    (C, D), started at 0, to the input embedding of every position after the prompt.
    Measured on a validation split of the lightweight_ntg training part
    (``benchmarks/token_class_bias.py``, ``benchmarks/results/token_class_bias_2026-12-02``; LLaMA
    small, 32 packets), validation NLL in bits per flow, nDPI 200/class / CICDOH20 (Markov order 2:
    39.89 / 96.54): default 39.64 / 83.74 (TSTR 0.518 / 0.916); ``class_bias`` with
    ``class_bias_l2=10`` (the default: the lower NLL of the two pulls tried) 39.61 / 87.06 (TSTR
    0.551 / 0.924), with 1: 40.10 / 87.53 (TSTR 0.584 / 0.964); ``class_input`` 38.97 / 84.70
    (TSTR 0.549 / 0.951). Over training seeds 0-3: default 39.74 / 83.12, ``class_input``
    39.30 / 83.13 (better on nDPI for every seed, a tie on CICDOH20; the seeds alone span 81.6-84.7
    bits there). Neither lowers the held-out NLL on both data sets (the class bias costs CICDOH20 3-4 bits per flow, for LLaMA and
    Mamba2 alike), so neither is on by default; ``class_bias=True, class_bias_l2=1`` is the option
    when class-recognisable samples (TSTR) matter more than likelihood.

    Interpolation with a Markov chain (``chain_mix``, default on since 2026-12-03): every
    next-token distribution is mixed, per step, with the smoothed per-class order-2 chain of
    :class:`~trafficgen.generators.markov.MarkovGenerator`, weights per context-count bucket
    chosen on the validation part (:mod:`trafficgen.generators.chain_mix`); ``log_likelihood`` and
    ``sample`` are those of the mixture. On the validation split of ``benchmarks/token_class_bias.py``
    (seeds 0 / 1; nDPI 200/class, CICDOH20; 32 packets): nDPI 35.72 / 36.53 bits per flow against
    39.64 / 40.39 without it (Markov order 2: 39.89), TSTR 0.644 / 0.644 against 0.518 / 0.565
    (chain 0.648); CICDOH20 78.26 / 78.95 against 83.74 / 83.66 (chain 96.54), TSTR 0.910 / 0.933
    against 0.916 / 0.906 (chain 0.938). ``chain_mix=False`` is the LM alone (and how models saved
    before it load).

    Timing: ``timing=True`` (or ``"chain"``) also learns the flows' inter-arrival times, given
    the sampled lengths, with the :class:`~trafficgen.generators.iat_chain.IATChain` that
    ``markov`` uses; ``timing="head"`` with a second head on the LM's hidden states
    (:mod:`trafficgen.generators.timing_head`). ``sample`` returns them in ``iat``; the lengths'
    model, likelihood and samples are those of the length model alone. Why the chain is the
    default (nDPI 200/class, 32 packets, ``benchmarks/iat_models.py``): the head predicts held-out
    IAT bins better (4.67-4.75 bits per IAT against 4.96) but its samples' per-class IAT JSD is
    0.27-0.32 against the chain's 0.21, at the real-vs-real floor (0.21).
    """

    presets: ClassVar[dict[str, dict]] = {}

    _config_schema: ClassVar[dict[str, Field]] = {
        "classes": Field.class_names(), "class_prior": Field.class_prior("classes"),
        "class_counts": Field.class_counts(required=False), "max_packets_": Field.integer(minimum=1),
        "history": Field.object(required=False), "model_config": Field.object(),
        "timing": Field.object(required=False), "class_support": Field((bool,), required=False),
        "class_bias": Field((bool,), required=False), "class_input": Field((bool,), required=False),
        "chain_mix": Field.object(required=False),
    }
    _extra_schemas: ClassVar[dict[str, dict[str, Field]]] = {
        "tokenizer.json": {"type": Field.string(equals="FlowTokenizer"), "classes": Field.class_names(),
                           "max_length": Field.integer(minimum=1)},
    }

    def __init__(self, *, preset: str = "small", max_packets: int | None = None, epochs: int | None = None,
                 max_steps: int | None = None, batch_size: int = 64, learning_rate: float = 2e-3,
                 val_fraction: float = 0.1, patience: int | None = None, class_balance: float = 0.0,
                 repeat_weight: float = 1.0, length_features: bool = True, random_state: int | None = None,
                 progress: bool = True, device: str = "auto", precision: str = "fp32",
                 gradient_accumulation_steps: int = 1, timing: bool = False, cfg_dropout: float = 0.1,
                 guidance_scale: float | None = None, support: str | None = "class", class_bias: bool = False,
                 class_bias_l2: float = 10.0, class_bias_prior: float = CLASS_BIAS_PRIOR, class_input: bool = False,
                 chain_mix: bool = True):
        self.preset = preset
        self.max_packets = max_packets
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.val_fraction = val_fraction
        self.patience = patience
        self.class_balance = class_balance
        self.repeat_weight = repeat_weight
        self.length_features = length_features
        self.random_state = random_state
        self.progress = progress
        self.device = device
        self.precision = precision
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.timing = timing
        self.cfg_dropout = cfg_dropout
        self.guidance_scale = guidance_scale
        self.support = support
        self.class_bias = class_bias
        self.class_bias_l2 = class_bias_l2
        self.class_bias_prior = class_bias_prior
        self.class_input = class_input
        self.chain_mix = chain_mix

    # ------------------------------------------------------------------ architecture hooks
    def _build_model(self, vocab_size: int, max_positions: int):
        """A fresh transformers causal LM (``eval()`` not required)."""
        raise NotImplementedError

    @classmethod
    def _model_from_config(cls, config: dict):
        """Rebuild the (untrained) transformers model from its saved config dict."""
        raise NotImplementedError

    def _backbone_hidden(self, model, input_ids, inputs_embeds=None):
        """(B, T) ids -> (B, T, D) final hidden states (after the final norm); ``inputs_embeds``
        (B, T, D), if given, replaces the embedding lookup of ``input_ids``."""
        raise NotImplementedError

    def _class_hidden(self, model, input_ids, class_vec):
        """:meth:`_backbone_hidden` with ``class_vec`` (B, D) (or None: none) added to the input
        embedding of every position after the prompt (the class input, ``class_input=True``)."""
        if class_vec is None:
            return self._backbone_hidden(model, input_ids)
        import torch

        emb = model.get_input_embeddings()(input_ids)  # (B, T, D)
        emb = torch.cat([emb[:, :1], emb[:, 1:] + class_vec[:, None].to(emb.dtype)], dim=1)
        return self._backbone_hidden(model, input_ids, inputs_embeds=emb)

    def _make_decoder(self, batch_size: int, max_steps: int, dtype=None):
        """An object with ``step(tokens (B,), t) -> (B, D)`` final hidden state of position ``t``,
        computing in ``dtype`` (None: the model's)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fit
    def _seed(self) -> int:
        return seed_from(self.random_state, bits=31)

    def fit(self, flows):
        """Train on a labelled FlowSet; returns ``self``."""
        import torch

        from trafficgen._device import resolve_device, resolve_precision
        from trafficgen.generators.training import seeded_init, split_validation, train_loop

        device = resolve_device(self.device)
        resolve_precision(self.precision, device)  # fail before any work
        width = self._validated_width(flows)
        counts = flows.class_counts()
        classes = sorted(counts)
        tokenizer = FlowTokenizer(classes=classes)
        self.n_clipped_ = count_clipped(flows, width, tokenizer.max_length)
        ids, mask = tokenizer.encode(flows, width, clip=True)  # (n, W+2)
        seed = self._seed()
        gen = torch.Generator().manual_seed(seed)
        model = seeded_init(seed, lambda: self._build_model(tokenizer.vocab_size, width + 2)).to(device)
        ids_t = torch.from_numpy(ids).to(device)  # (n, W+2)
        n_tok = torch.from_numpy(mask.sum(axis=1))  # (n,)

        if self.length_features:
            from trafficgen.generators.length_features import attach_length_features

            attach_length_features(model, tokenizer)
        outputs, first_positive = tokenizer.output_ids, tokenizer.first_positive_output
        first_class = tokenizer.first_class_id
        bias_l2 = float(self.class_bias_l2)
        if bias_l2 < 0:
            raise ConfigError(f"class_bias_l2 must be >= 0, got {self.class_bias_l2}")
        if self.class_bias:  # a parameter of the model while it trains (optimised, restored with the best weights)
            model.class_bias = torch.nn.Parameter(torch.from_numpy(
                class_bias_init(ids, tokenizer, prior=float(self.class_bias_prior))).to(device))
        if self.class_input:  # (C, D), started at 0 (the model starts as without it)
            if self._timing_mode(flows) == "head":
                raise ConfigError("class_input is not supported with timing='head'")
            model.class_input = torch.nn.Parameter(torch.zeros(len(classes), model.config.hidden_size, device=device))
        n_scored = max(int(mask[:, 1:].sum()), 1)  # tokens the loss scores over the data: scales the L2 pull
        cfg_dropout = float(self.cfg_dropout)
        if not 0.0 <= cfg_dropout < 1.0:
            raise ConfigError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}")
        drop_gen = torch.Generator().manual_seed(seed + 3)  # which rows train the unconditional prompt
        mode = self._timing_mode(flows)
        timed = flows.truncate(width) if mode is not None and flows.max_packets > width else flows
        timing = None
        if mode == "head":
            from trafficgen.generators.timing_head import fit_head, setup_head

            timing = setup_head(self, timed, width, model, seed, device)

        def loss_fn(batch):
            """Mean negative log-likelihood per scored token of the distribution :meth:`sample`
            draws from (see :meth:`log_likelihood`)."""
            width_b = int(n_tok[batch].max())
            x = ids_t[batch.to(device), :width_b]  # (B, T)
            cls_idx = x[:, 0] - first_class  # (B,)
            uncond = None
            if cfg_dropout > 0 and model.training:  # validation scores the conditional model
                uncond = (torch.rand(x.shape[0], generator=drop_gen) < cfg_dropout).to(device)  # (B,)
                x = torch.cat([torch.where(uncond, EOS_ID, x[:, 0])[:, None], x[:, 1:]], dim=1)
            inp, tgt = x[:, :-1], x[:, 1:]  # (B, T-1)
            class_vec = None
            if self.class_input:  # none for the unconditional prompt's rows
                class_vec = model.class_input[cls_idx]  # (B, D)
                if uncond is not None:
                    class_vec = torch.where(uncond[:, None], 0.0, class_vec)
            hidden = self._class_hidden(model, inp, class_vec)  # (B, T-1, D)
            sel = tgt != PAD_ID  # (B, T-1)
            if width_b == width + 2:
                sel[:, width] &= tgt[:, width] != EOS_ID  # the forced end after max_packets packets
            weight = model.lm_head.weight[outputs]  # (V', D)
            logits = (hidden[sel] @ weight.t()).float()  # (N, V')
            if self.class_bias:  # each row's class bias; none for the unconditional prompt's rows
                rows = model.class_bias[cls_idx].float()  # (B, V')
                if uncond is not None:
                    rows = torch.where(uncond[:, None], 0.0, rows)
                logits = logits + rows[sel.nonzero()[:, 0]]  # (N, V')
            first = torch.zeros_like(sel)
            first[:, 0] = True
            logits[first[sel], :first_positive] = -torch.inf  # step 0: positive lengths only
            loss = torch.nn.functional.cross_entropy(logits, tgt[sel] - EOS_ID)
            if self.class_bias and bias_l2 > 0 and model.training:  # MAP: a Gaussian prior pulling it to 0
                loss = loss + bias_l2 * model.class_bias.float().pow(2).sum() / n_scored
            return loss, int(sel.sum())

        weights = training_row_weights(ids, class_balance=float(self.class_balance),
                                       repeat_weight=float(self.repeat_weight))  # (n,) or None
        if weights is not None:
            weights = torch.from_numpy(weights)
        budget = {"epochs": int(self.epochs)} if self.epochs is not None else {
            "epochs": 1, "max_steps": int(self.max_steps) if self.max_steps is not None else training_budget(
                len(flows) * (1.0 - float(self.val_fraction)), int(self.batch_size))}
        # the validation split, drawn here (as train_loop would) so that the chain's weights use the same rows
        fit_rows, val_rows = split_validation(len(flows), float(self.val_fraction), gen)
        self.history_ = train_loop(model, loss_fn, n=len(flows), **budget, split=(fit_rows, val_rows),
                                   batch_size=int(self.batch_size), learning_rate=float(self.learning_rate),
                                   generator=gen, val_fraction=float(self.val_fraction), patience=self.patience,
                                   progress=bool(self.progress), description=f"train {self.name}",
                                   sample_weights=weights, precision=self.precision,
                                   gradient_accumulation_steps=int(self.gradient_accumulation_steps))
        self.class_bias_ = None
        if self.class_bias:
            self.class_bias_ = model.class_bias.detach().float().cpu().numpy().copy()  # (C, V')
            del model.class_bias  # the model is a plain HF model again
        self.class_input_ = None
        if self.class_input:
            self.class_input_ = model.class_input.detach().float().cpu().numpy().copy()  # (C, D)
            del model.class_input
        if self.length_features:
            from trafficgen.generators.length_features import fold_length_features

            fold_length_features(model)  # a plain HF model from here on
        if timing is not None:
            self.history_["timing"] = fit_head(self, model.eval(), timing, ids_t, n_tok, tokenizer, seed)
        self.model_ = model.eval()
        self.class_support_ = class_support(ids, tokenizer)  # (C, V') bool
        self.timing_head_ = None if timing is None else timing["head"].eval()
        self.iat_bins_ = None if timing is None else timing["iat_bins"]
        self.timing_chain_ = None
        if mode == "chain":
            from trafficgen.generators.iat_chain import IATChain

            self.timing_chain_ = IATChain().fit(timed, list(classes))
        self.tokenizer_ = tokenizer
        self.max_packets_ = width
        self.class_counts_ = {c: int(counts[c]) for c in classes}
        total = sum(counts.values())
        self.class_prior_ = np.array([counts[c] / total for c in classes])
        self.classes_ = classes
        self.chain_mix_ = None
        if self.chain_mix:
            from trafficgen.generators.chain_mix import fit_chain_mix

            self.chain_mix_, self.history_["chain_mix"] = fit_chain_mix(
                flows, fit_rows.numpy(), val_rows.numpy(), width=width, tokenizer=tokenizer,
                lm_event_log_probs=self._event_log_probs)
        return self

    def _timing_mode(self, flows) -> str | None:
        """None (no timing), "chain" or "head"; an error for a bad value or flows without IATs."""
        if self.timing is False:
            return None
        if not isinstance(self.timing, (bool, str)) or self.timing not in TIMING_MODES:
            raise ConfigError(f"timing must be False, True, 'chain' or 'head', got {self.timing!r}")
        if flows.iat is None:
            raise InputFormatError("timing needs flows with inter-arrival times (read from captures)")
        return TIMING_MODES[self.timing]

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, *, cls=None, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None, batch_size: int = 4096, random_state=None, progress: bool = False,
               dtype: str = "float32", guidance_scale: float | None = None, support: str | None = "model"):
        """``n`` flows (labels = class names), conditioned on ``cls`` (None: the training prior).

        ``progress`` shows a bar over the decode batches (the samples do not depend on it).
        ``guidance_scale`` (None: the model's) is the classifier-free guidance scale, ``support``
        (``"model"``: the model's setting; None or ``"class"``) the per-class length support (see the class).
        ``dtype="bfloat16"`` decodes with bf16 weights and activations (logits and sampling stay
        fp32): several times faster on CPUs with AMX / AVX512-BF16, with next-token distributions
        within a small KL of fp32 (tested); seeded results then differ from fp32 ones.
        """
        import torch

        from trafficgen.generators.training import progress_bar

        self._check_fitted()
        n = int(n)
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        if temperature < 0 or (top_p is not None and not 0 < top_p <= 1) or (top_k is not None and top_k < 1):
            raise ConfigError("need temperature >= 0, top_k >= 1, 0 < top_p <= 1")
        decode_dtype(dtype)  # fail before any work on a bad name
        scale = self._guidance(guidance_scale)
        offset = self._class_offset(self.support if support == "model" else support, scale)
        rng = np.random.default_rng(random_state)
        names = self._resolve_classes(n, cls, rng)
        gen = torch.Generator(device=self._placed()).manual_seed(int(rng.integers(2**63 - 1)))
        class_ids = torch.tensor([self.tokenizer_.class_id(c) for c in names], dtype=torch.long)  # (n,)
        parts = [np.zeros((0, self.max_packets_ + 2), dtype=np.int64)]
        with progress_bar(n, f"sample {self.name}", enabled=progress, show_loss=False, unit="flows") as update:
            for i in range(0, n, int(batch_size)):
                ids = self.generate_ids(class_ids[i:i + int(batch_size)], generator=gen, temperature=temperature,
                                        top_k=top_k, top_p=top_p, dtype=dtype, guidance_scale=scale,
                                        support_mask=offset)  # (b, W+2)
                parts.append(ids.cpu().numpy())
                update(len(ids))
        ids = np.concatenate(parts)
        flows = self.tokenizer_.decode(ids, max_packets=self.max_packets_)
        if getattr(self, "timing_head_", None) is not None:  # its own stream: the lengths do not depend on it
            from trafficgen.generators.timing_head import sample_iats

            flows.iat = sample_iats(self, ids, flows, np.random.default_rng(rng.integers(2**63 - 1)))
        elif getattr(self, "timing_chain_", None) is not None:
            flows.iat = self.timing_chain_.sample(flows, self.classes_, np.random.default_rng(rng.integers(2**63 - 1)))
        return flows

    def timing_log_likelihood(self, flows, *, batch_size: int = 256) -> tuple[np.ndarray, int]:
        """(natural-log likelihood of each flow's IAT bins given its lengths (n,), number of scored
        IATs), comparable with :meth:`~trafficgen.generators.iat_chain.IATChain.log_likelihood_bins`."""
        self._check_fitted()
        if getattr(self, "timing_head_", None) is None and getattr(self, "timing_chain_", None) is None:
            raise ConfigError("this model was trained without timing (timing=True)")
        if flows.iat is None:
            raise InputFormatError("the flows carry no inter-arrival times")
        width = self.max_packets_
        flows = flows.truncate(width) if flows.max_packets > width else flows
        if self.timing_chain_ is not None:
            return self.timing_chain_.log_likelihood_bins(flows, self.classes_)
        from trafficgen.generators.timing_head import head_log_likelihood

        return head_log_likelihood(self, flows, batch_size=batch_size)

    def _guidance(self, guidance_scale: float | None) -> float:
        """The guidance scale to decode with (checked against how the model was trained)."""
        trained_cfg = float(getattr(self, "cfg_dropout", 0.0) or 0.0) > 0
        if guidance_scale is None:
            guidance_scale = self.guidance_scale
        if guidance_scale is None:
            guidance_scale = DEFAULT_GUIDANCE
        scale = float(guidance_scale)
        if scale < 0:
            raise ConfigError(f"guidance_scale must be >= 0, got {scale}")
        if scale != 1.0 and not trained_cfg:
            raise ConfigError("guidance_scale != 1 needs a model trained with cfg_dropout > 0 (it has no "
                              "unconditional prompt)")
        return scale

    def _support_mask(self, support: str | None):
        """None, or for ``"class"`` the (C, V') additive mask (0 / -inf) of each class's support."""
        import torch

        if support is None:
            return None
        if support != "class":
            raise ConfigError(f"support must be None or 'class', got {support!r}")
        if getattr(self, "class_support_", None) is None:
            raise ConfigError("support='class' needs a model saved with its class support (retrain it)")
        return torch.where(torch.from_numpy(self.class_support_), 0.0, -torch.inf).to(self._placed())

    def _class_offset(self, support: str | None, guidance_scale: float = 1.0):
        """None, or the (C, V') per-class additive tensor of the decode loop: the class support mask
        (0 / -inf, see :meth:`_support_mask`) plus the class output bias (if the model has one)
        times ``guidance_scale``. Guidance samples from ``l_u + s (l_c - l_u)`` where only the
        conditional logits ``l_c`` carry the class bias ``b_c``; that is the guided logits of the
        bias-free branches plus ``s b_c``, so one tensor added after the guidance step is exact."""
        import torch

        mask = self._support_mask(support)
        bias = getattr(self, "class_bias_", None)
        if bias is None:
            return mask
        bias = float(guidance_scale) * torch.from_numpy(bias).to(self._placed())  # (C, V')
        return bias if mask is None else bias + mask

    def generate_ids(self, class_ids, *, generator, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None, max_packets: int | None = None, dtype: str = "float32",
                     guidance_scale: float = 1.0, support_mask=None):
        """Decode loop: (B,) class-token ids -> (B, W+2) ids ``<CLASS> PL... <EOS> <PAD>...``.
        ``guidance_scale != 1`` runs every chunk twice over (conditional rows, then the same rows
        with the unconditional prompt) and samples from the guided logits. ``support_mask`` (C, V'),
        the per-class additive tensor (:meth:`_class_offset`: the support mask and the class bias), is
        added to each row's logits by its class (after the guidance step)."""
        import torch

        compute_dtype = decode_dtype(dtype)
        device = self._placed()
        with torch.inference_mode():
            width = self.max_packets_ if max_packets is None else int(max_packets)
            tok = class_ids.to(device)  # (B,)
            b = tok.shape[0]
            out = torch.full((b, width + 2), PAD_ID, dtype=torch.long, device=device)  # (B, W+2)
            out[:, 0] = tok
            alive = torch.ones(b, dtype=torch.bool, device=device)  # (B,)
            if b == 0:
                return out
            project = self._output_projection(compute_dtype)  # (B, D) -> (B, V'+pad)
            n_out = self.tokenizer_.first_class_id - EOS_ID  # <EOS> + length rows; padded rows after
            first_positive = self.tokenizer_.first_positive_output
            # Rows are computed in chunks of DECODE_CHUNK: the (chunk, V') logits and the layer
            # activations stay in cache (10k flows: 2.4 s in chunks of 1024 vs 3.1 s in one
            # batch of 5000, fp32, 2 cores). The uniforms are drawn for the whole batch at each
            # step, so the samples do not depend on the chunking; chunks with no live row are skipped.
            chunks = [slice(i, min(i + DECODE_CHUNK, b)) for i in range(0, b, DECODE_CHUNK)]
            guided = float(guidance_scale) != 1.0
            rows_per = 2 if guided else 1
            decoders = [self._make_decoder(rows_per * (c.stop - c.start), width, dtype=compute_dtype) for c in chunks]
            class_in = getattr(self, "class_input_", None)
            extras = [None] * len(chunks)  # per chunk (rows_per b_c, D): each row's class input
            if class_in is not None:
                table = torch.from_numpy(class_in).to(device)  # (C, D) fp32; the decoders cast it
                rows = table[tok - self.tokenizer_.first_class_id]  # (B, D)
                extras = [torch.cat([rows[c], torch.zeros_like(rows[c])]) if guided else rows[c] for c in chunks]
            mix = getattr(self, "chain_mix_", None)
            if mix is not None and temperature == 0:
                mix = None  # greedy decoding is the LM's argmax (a mixture has no per-step argmax here)
            chain_state = None if mix is None else mix.start((tok - self.tokenizer_.first_class_id).cpu().numpy())
            allowed = None  # (C, V') bool: the class support, for the chain's part too
            if chain_state is not None and support_mask is not None:
                allowed = torch.isfinite(support_mask).cpu().numpy()
            for t in range(width):
                u = None if temperature == 0 else torch.rand((b, 1), generator=generator, device=device)  # (B, 1)
                nxt = torch.full_like(tok, EOS_ID)  # (B,)
                for c, decoder, extra in zip(chunks, decoders, extras, strict=True):
                    extra = extra if t > 0 else None  # the prompt itself gets no class input
                    if t > 0 and not bool(alive[c].any()):
                        continue  # every flow of this chunk has ended
                    if guided:  # (2 b_c,): the rows, then the same rows unconditioned
                        other = torch.full_like(tok[c], EOS_ID) if t == 0 else tok[c]
                        both = project(decoder.step(torch.cat([tok[c], other]), t, extra))  # (2 b_c, V'+pad)
                        cond, uncond = both.chunk(2)
                        logits = uncond + float(guidance_scale) * (cond - uncond)  # (b_c, V'+pad)
                    else:
                        hidden = decoder.step(tok[c], t, extra)  # (b_c, D)
                        logits = project(hidden)  # (b_c, V'+pad)
                    # masks set in place on a few columns (a GEMM bias, addmm, first writes a
                    # (b_c, V') broadcast of it)
                    if support_mask is not None:  # each row's class support and class bias
                        logits[:, :n_out] += support_mask[class_ids[c].to(device) - self.tokenizer_.first_class_id]
                    logits[:, n_out:] = -torch.inf  # padded outputs
                    if t == 0:  # a flow has >= 1 packet and its first is client -> server (+)
                        logits[:, :first_positive] = -torch.inf  # <EOS> and every negative length
                    nxt[c] = sample_from_logits(logits, generator, temperature, top_k, top_p,
                                                u=None if u is None else u[c]) + EOS_ID
                if chain_state is not None:  # each flow takes the chain's draw with its bucket's weight
                    u_mix = torch.rand((chain_state.n_uniforms(), b), generator=generator, device=device,
                                       dtype=torch.float64)  # (k, B)
                    nxt = torch.from_numpy(chain_state.mix_step(
                        t, nxt.cpu().numpy(), u_mix.cpu().numpy(), alive.cpu().numpy(), allowed=allowed,
                        more_uniforms=lambda k, m: torch.rand((k, m), generator=generator, device=device,
                                                              dtype=torch.float64).cpu().numpy())).to(device)
                tok = nxt
                out[:, t + 1] = torch.where(alive, tok, PAD_ID)
                alive &= tok != EOS_ID
                if t % 4 == 3 and not bool(alive.any()):
                    break
            out[:, width + 1] = torch.where(alive, EOS_ID, out[:, width + 1])
            return out

    def log_likelihood(self, flows, *, batch_size: int = 256):
        """Natural-log likelihood of each flow given its class, log p(x | c) (n,), in nats, under
        the distribution :meth:`sample` draws from (temperature 1): the softmax over ``<EOS>`` and
        the length tokens (plus the class output bias if the model has one), at step 0 over the
        positive lengths only, interpolated with the Markov chain at every step when the model has
        one (``chain_mix``); the end after ``max_packets_``
        packets is forced and adds no term. Lengths beyond the vocabulary are clipped (as in fit)."""
        self._check_fitted()
        width = self.max_packets_
        flows = flows.truncate(width) if flows.max_packets > width else flows
        ids, _ = self.tokenizer_.encode(flows, width, clip=True)  # (n, W+2)
        terms, rows = self._event_log_probs(ids, batch_size=batch_size, with_rows=True)
        mix = getattr(self, "chain_mix_", None)
        if mix is not None:
            rows, terms = mix.mixed_log_probs(ids, terms)
        out = np.zeros(len(ids))
        np.add.at(out, rows, terms)
        return out

    def _event_log_probs(self, ids, *, batch_size: int = 256, with_rows: bool = False):
        """The LM's log-probabilities (E,) of every scored event of encoded flows ``ids`` (n, W+2),
        row-major (rows, then positions; the forced end after ``max_packets_`` left out), and with
        ``with_rows`` each event's row (E,)."""
        import torch

        width = self.max_packets_
        outputs, first_positive = self.tokenizer_.output_ids, self.tokenizer_.first_positive_output
        device = self._placed()
        bias = getattr(self, "class_bias_", None)
        bias = None if bias is None else torch.from_numpy(bias).to(device)  # (C, V')
        class_in = getattr(self, "class_input_", None)
        class_in = None if class_in is None else torch.from_numpy(class_in).to(device)  # (C, D)
        terms, rows = [], []
        with torch.inference_mode():
            for i in range(0, len(ids), int(batch_size)):
                x = torch.from_numpy(ids[i:i + int(batch_size)]).to(device)  # (B, W+2)
                class_vec = None if class_in is None else class_in[x[:, 0] - self.tokenizer_.first_class_id]
                hidden = self._class_hidden(self.model_, x[:, :-1], class_vec)  # (B, W+1, D)
                logits = self.model_.lm_head(hidden).float()[..., outputs]  # (B, W+1, V')
                if bias is not None:  # each row's class output bias, at every position
                    logits += bias[x[:, 0] - self.tokenizer_.first_class_id][:, None]
                logits[:, 0, :first_positive] = -torch.inf
                logp = torch.log_softmax(logits, dim=-1)  # (B, W+1, V')
                tgt = x[:, 1:]  # (B, W+1)
                valid = tgt != PAD_ID
                valid[:, width] = False  # the forced end after max_packets packets
                term = logp.gather(-1, (tgt - EOS_ID).clamp_min(0)[..., None])[..., 0]  # (B, W+1)
                terms.append(term[valid].double().cpu().numpy())  # row-major
                rows.append(valid.nonzero()[:, 0].cpu().numpy() + i)
        terms = np.concatenate(terms) if terms else np.zeros(0)
        if with_rows:
            return terms, (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64))
        return terms

    def _placed(self):
        """The torch device of ``device``, with the model moved there first if it is elsewhere
        (a loaded model waits on the CPU until it is used; ``set_params(device=...)`` moves it)."""
        from trafficgen.generators.training import place_modules

        return place_modules(self.device, self.model_, getattr(self, "timing_head_", None))

    def _output_projection(self, dtype):
        """``hidden (B, D) -> logits (B, V'+pad)`` over the ``<EOS>`` + length rows of the LM head,
        padded with zero rows to whole blocks of 64 (the caller masks them with -inf).
        A dynamic-int8 head runs the int8 GEMM (see :func:`quantization.fused_projection`)."""
        import torch.nn.functional as F

        from trafficgen.generators.quantization import DynamicInt8Linear, fused_projection

        rows = self.tokenizer_.output_ids
        pad = (-(rows.stop - rows.start)) % 64
        lm_head = self.model_.lm_head
        if isinstance(lm_head, DynamicInt8Linear):
            int8_head = fused_projection([lm_head], rows=rows)
            return lambda hidden: F.pad(int8_head(hidden), (0, pad))
        head_t = F.pad(lm_head.weight.detach()[rows].to(dtype), (0, 0, 0, pad)).t()  # (D, V'+pad)
        return lambda hidden: hidden @ head_t

    # ------------------------------------------------------------------ persistence
    def _state(self):
        config = {
            "classes": list(self.classes_),
            "class_prior": self.class_prior_.tolist(),
            "class_counts": dict(self.class_counts_),
            "max_packets_": int(self.max_packets_),
            "history": self.history_,
            "model_config": self.model_.config.to_dict(),
        }
        tensors = {k: v for k, v in self.model_.state_dict().items()}
        if getattr(self, "class_support_", None) is not None:
            tensors[SUPPORT_KEY] = torch_tensor(self.class_support_.astype(np.uint8))
            config["class_support"] = True
        if getattr(self, "class_bias_", None) is not None:
            tensors[CLASS_BIAS_KEY] = torch_tensor(self.class_bias_.astype(np.float32))
            config["class_bias"] = True
        if getattr(self, "class_input_", None) is not None:
            tensors[CLASS_INPUT_KEY] = torch_tensor(self.class_input_.astype(np.float32))
            config["class_input"] = True
        if getattr(self, "chain_mix_", None) is not None:
            config["chain_mix"], mix_tensors = self.chain_mix_.state(CHAIN_MIX_PREFIX)
            tensors.update({k: torch_tensor(v) for k, v in mix_tensors.items()})
        if getattr(self, "timing_chain_", None) is not None:
            config["timing"] = {"model": "chain", **self.timing_chain_.config()}
            tensors.update({k: torch_tensor(v) for k, v in self.timing_chain_.state(CHAIN_PREFIX).items()})
        if getattr(self, "timing_head_", None) is not None:
            config["timing"] = {"model": "head", **self.iat_bins_.to_dict()}
            tensors.update({f"{TIMING_PREFIX}{k}": v for k, v in self.timing_head_.state_dict().items()})
            tensors[f"{TIMING_PREFIX}iat_quantiles"] = torch_tensor(self.iat_bins_.quantiles_)
        return config, tensors, {"tokenizer.json": self.tokenizer_.to_dict()}

    @classmethod
    def _load_state(cls, config: dict, tensors: dict, extra: dict):
        from trafficgen.generators.training import seeded_init

        params = config.get("params", {})
        gen = cls(**{k: v for k, v in params.items() if k in cls._param_names()})
        if "cfg_dropout" not in params:  # saved before guidance existed: no unconditional prompt
            gen.cfg_dropout = 0.0
        if "support" not in params:  # saved before the class support existed
            gen.support = None
        if "class_bias" not in params:  # saved before the class output bias existed
            gen.class_bias = False
        if "class_input" not in params:
            gen.class_input = False
        if "chain_mix" not in params:  # saved before the chain interpolation existed
            gen.chain_mix = False
        gen.tokenizer_ = FlowTokenizer.from_dict(extra["tokenizer.json"])
        if list(gen.tokenizer_.classes) != list(config["classes"]):
            raise InputFormatError(f"tokenizer.json classes {list(gen.tokenizer_.classes)} differ from "
                                   f"config.json classes {list(config['classes'])}", path="tokenizer.json")
        model = seeded_init(0, lambda: cls._model_from_config(config["model_config"]))
        if model.config.vocab_size < gen.tokenizer_.vocab_size:
            raise InputFormatError(f"model_config vocab_size {model.config.vocab_size} is smaller than the "
                                   f"tokenizer's {gen.tokenizer_.vocab_size}", path="config.json")
        head_tensors = {k[len(TIMING_PREFIX):]: v for k, v in tensors.items() if k.startswith(TIMING_PREFIX)}
        chain_tensors = {k: v for k, v in tensors.items() if k.startswith(CHAIN_PREFIX + ".")}
        mix_tensors = {k: v for k, v in tensors.items() if k.startswith(CHAIN_MIX_PREFIX + ".")}
        support = tensors.get(SUPPORT_KEY)
        if config.get("class_support") and support is None:
            raise InputFormatError(f"missing tensor {SUPPORT_KEY!r} (config.json says the model has it)",
                                   path=TENSORS_FILE)
        bias = tensors.get(CLASS_BIAS_KEY)
        if bool(config.get("class_bias")) != (bias is not None):
            raise InputFormatError(f"config.json class_bias is {bool(config.get('class_bias'))} but tensor "
                                   f"{CLASS_BIAS_KEY!r} is {'present' if bias is not None else 'missing'}",
                                   path=TENSORS_FILE)
        n_out = gen.tokenizer_.first_class_id - EOS_ID
        if bias is not None and tuple(bias.shape) != (len(config["classes"]), n_out):
            raise InputFormatError(f"tensor {CLASS_BIAS_KEY!r} has shape {tuple(bias.shape)}, expected "
                                   f"{(len(config['classes']), n_out)}", path=TENSORS_FILE)
        class_in = tensors.get(CLASS_INPUT_KEY)
        if bool(config.get("class_input")) != (class_in is not None):
            raise InputFormatError(f"config.json class_input is {bool(config.get('class_input'))} but tensor "
                                   f"{CLASS_INPUT_KEY!r} is {'present' if class_in is not None else 'missing'}",
                                   path=TENSORS_FILE)
        tensors = {k: v for k, v in tensors.items() if k not in (SUPPORT_KEY, CLASS_BIAS_KEY, CLASS_INPUT_KEY)}
        tensors = {k: v for k, v in tensors.items()
                   if not k.startswith(TIMING_PREFIX) and k not in chain_tensors and k not in mix_tensors}
        load_module_state(model, tensors, TENSORS_FILE, optional=lambda key: "inv_freq" in key)
        gen.model_ = model.eval()  # CPU weights; moved to gen.device when first used (_placed)
        gen.timing_head_ = gen.iat_bins_ = gen.timing_chain_ = None
        gen.class_support_ = None if support is None else np.asarray(support).astype(bool)
        gen.class_bias_ = None if bias is None else np.asarray(bias, dtype=np.float32)
        gen.class_input_ = None if class_in is None else np.asarray(class_in, dtype=np.float32)
        if gen.support == "class" and gen.class_support_ is None:
            raise InputFormatError(f"params.support is 'class' but there is no {SUPPORT_KEY!r} tensor",
                                   path=TENSORS_FILE)
        if (config.get("timing") or {}).get("model") == "chain":
            from trafficgen.generators.iat_chain import IATChain

            gen.timing_chain_ = IATChain.from_state(config["timing"], {k: v.numpy() for k, v in chain_tensors.items()},
                                                    CHAIN_PREFIX)
        elif config.get("timing") is not None:
            from trafficgen.generators.timing_head import TimingHead
            from trafficgen.representations.iat_bins import IATBins

            gen.iat_bins_ = IATBins.from_dict(config["timing"], np.asarray(head_tensors.pop("iat_quantiles", None)))
            head = TimingHead(model.config.hidden_size, gen.iat_bins_.n_bins, len(config["classes"]))
            load_module_state(head, head_tensors, TENSORS_FILE)
            gen.timing_head_ = head.eval()
        gen.chain_mix_ = None
        if config.get("chain_mix") is not None:
            from trafficgen.generators.chain_mix import ChainMix

            gen.chain_mix_ = ChainMix.from_state(config["chain_mix"], {k: v.numpy() for k, v in mix_tensors.items()},
                                                 CHAIN_MIX_PREFIX, gen.tokenizer_)
        elif params.get("chain_mix"):
            raise InputFormatError("params.chain_mix is true but config.json has no chain_mix", path="config.json")
        gen.max_packets_ = int(config["max_packets_"])
        gen.history_ = config.get("history", {})
        gen.class_counts_ = {str(k): int(v) for k, v in config.get("class_counts", {}).items()}
        gen.class_prior_ = np.asarray(config["class_prior"], dtype=float)
        gen.classes_ = list(config["classes"])
        return gen

    def n_parameters(self) -> int:
        self._check_fitted()
        return sum(p.numel() for p in self.model_.parameters())

    def describe(self) -> dict[str, Any]:
        """Short summary for the CLI."""
        self._check_fitted()
        return {"model": self.name, "preset": self.preset, "parameters": self.n_parameters(),
                "classes": len(self.classes_), "max_packets": self.max_packets_}

