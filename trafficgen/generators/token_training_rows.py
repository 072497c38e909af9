"""What the causal-LM flow generators derive from their tokenised training flows before training:
the step budget, each class's length support, the start of the per-class output bias and the
per-row sampling weights (class balance, deduplication). ``ids`` are tokenised flows (n, W+2):
``<CLASS_x> PL_1 ... PL_k <EOS> <PAD>...`` (:class:`~trafficgen.representations.tokenizer.FlowTokenizer`)."""
from __future__ import annotations

import numpy as np

from trafficgen.errors import ConfigError
from trafficgen.representations.tokenizer import EOS_ID, FlowTokenizer

#: Pseudo-count (in tokens) of the global next-token distribution in each class's smoothed one,
#: which starts the per-class output bias (see :func:`class_bias_init`).
CLASS_BIAS_PRIOR = 200.0


#: The default training budget: ``BUDGET_EPOCHS`` passes over the training rows, at least
#: ``BUDGET_MIN_STEPS`` and at most ``BUDGET_MAX_STEPS`` optimiser steps (see :func:`training_budget`).
BUDGET_EPOCHS, BUDGET_MIN_STEPS, BUDGET_MAX_STEPS = 10, 300, 3000


def training_budget(n_train: float, batch_size: int) -> int:
    """Optimiser steps of the default schedule for ``n_train`` training rows: ``BUDGET_EPOCHS``
    epochs clipped to [``BUDGET_MIN_STEPS``, ``BUDGET_MAX_STEPS``]. The cosine schedule spans the
    budget and anneals to zero; the weights of the best validation loss are kept."""
    per_epoch = max(1, int(np.ceil(float(n_train) / max(int(batch_size), 1))))
    return int(np.clip(BUDGET_EPOCHS * per_epoch, BUDGET_MIN_STEPS, BUDGET_MAX_STEPS))


def class_support(ids: np.ndarray, tokenizer: FlowTokenizer) -> np.ndarray:
    """(C, V') bool: which outputs (``<EOS>`` + lengths, in output-row order) each class's
    training flows ``ids`` (n, W+2) contain; ``<EOS>`` always."""
    n_out = tokenizer.first_class_id - EOS_ID
    out = np.zeros((len(tokenizer.classes), n_out), dtype=bool)
    out[:, 0] = True
    body = ids[:, 1:]
    rows, cols = np.nonzero(body > EOS_ID)
    out[ids[rows, 0] - tokenizer.first_class_id, body[rows, cols] - EOS_ID] = True
    return out


def class_bias_init(ids: np.ndarray, tokenizer: FlowTokenizer, prior: float = CLASS_BIAS_PRIOR) -> np.ndarray:
    """(C, V') float32 start of the per-class output bias: ``log p_c(v) - log p(v)`` over the
    outputs (``<EOS>`` + lengths, output-row order), where ``p`` is the next-token frequency of all
    training flows ``ids`` (n, W+2) (add-0.01 smoothed) and ``p_c`` class c's, smoothed towards
    ``p`` with ``prior`` pseudo-tokens: ``p_c = (n_cv + prior p(v)) / (n_c + prior)``. A model whose
    logits are ``log p`` plus this bias predicts ``p_c``: the bias starts as a class unigram prior
    on top of what the shared network learns."""
    n_out = tokenizer.first_class_id - EOS_ID
    counts = np.zeros((len(tokenizer.classes), n_out))
    body = ids[:, 1:-1]  # the scored targets (the <EOS> after max_packets packets is forced)
    rows, cols = np.nonzero(body >= EOS_ID)
    np.add.at(counts, (ids[rows, 0] - tokenizer.first_class_id, body[rows, cols] - EOS_ID), 1.0)
    total = counts.sum(0)  # (V',)
    p = (total + 0.01) / (total.sum() + 0.01 * n_out)  # (V',)
    p_c = (counts + prior * p) / (counts.sum(1, keepdims=True) + prior)  # (C, V')
    return (np.log(p_c) - np.log(p)).astype(np.float32)


def training_row_weights(ids: np.ndarray, *, class_balance: float = 0.0,
                         repeat_weight: float = 1.0) -> np.ndarray | None:
    """Per-row sampling weights ``(n,)`` float64 for tokenised flows ``ids`` ``(n, W+2)`` (column 0
    is the ``<CLASS_x>`` token), or None when both settings keep the empirical distribution.

    ``class_balance`` b: a row of class c weighs ``count_c ** -b`` (0: natural frequencies,
    1: every class equally often). ``repeat_weight`` r: a row whose exact sequence (class token
    included) occurs ``m`` times weighs ``m ** (r - 1)``, so the ``m`` copies together count
    ``m ** r`` (1: unchanged, 0: deduplicated). The two factors multiply.
    """
    for name, value in (("class_balance", class_balance), ("repeat_weight", repeat_weight)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {value}")
    if class_balance == 0.0 and repeat_weight == 1.0:
        return None
    ids = np.asarray(ids)
    _, cls_inv, cls_count = np.unique(ids[:, 0], return_inverse=True, return_counts=True)
    _, seq_inv, seq_count = np.unique(ids, axis=0, return_inverse=True, return_counts=True)
    cls_inv, seq_inv = cls_inv.reshape(-1), seq_inv.reshape(-1)  # (n,) each
    weights = cls_count[cls_inv].astype(np.float64) ** -class_balance  # (n,)
    return weights * seq_count[seq_inv].astype(np.float64) ** (repeat_weight - 1.0)

