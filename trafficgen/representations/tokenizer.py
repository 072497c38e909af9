"""`FlowTokenizer`: flows of signed payload lengths <-> token ids, one token per packet.

Vocabulary (fixed, not learned from the data)::

    0                      <PAD>
    1                      <EOS>
    2 .. 2M+1              signed lengths -M..-1, 1..M   (M = ``max_length``, default 1500 = MTU)
    2M+2 .. 2M+1+C         <CLASS_x>, one per class, in ``classes`` order

Why the full signed MTU range rather than the lengths seen in training: every valid flow
round-trips exactly (no <UNK>, nothing collapsed), the vocabulary is the same for every data set
(a model can be fine-tuned on new data without resizing), and a generator can emit a length that
the training split happened to miss. The price is the output softmax over ~3000 entries, which is
about a quarter of the per-token compute of the ~1.8M-parameter presets; the embeddings cost
nothing at run time (a lookup). Lengths beyond ``max_length`` (jumbo frames, TSO captures) are an
error in :meth:`encode`, or clipped to +-``max_length`` with ``clip=True``.

Sequence layout: ``<CLASS_x> PL_1 ... PL_k <EOS> <PAD> ...`` of width ``max_packets + 2``.
Zero-payload packets have no signed token (a signed 0 has no direction; see ``FlowSet``): a
FlowSet that keeps them is rejected with :class:`~trafficgen.errors.InputFormatError`.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trafficgen._io import atomic_path
from trafficgen.errors import ConfigError, InputFormatError, UnknownClassError

PAD_ID = 0
EOS_ID = 1
_FIRST_LENGTH_ID = 2


class FlowTokenizer:
    """Map FlowSets to ``(n, max_packets + 2)`` int64 token ids and back.

    Parameters
    ----------
    classes : class names; each gets a ``<CLASS_name>`` token (the prompt of a sequence).
    max_length : largest absolute payload length with its own token (default 1500).
    """

    def __init__(self, *, classes: Sequence[str] = (), max_length: int = 1500):
        self.classes = [str(c) for c in classes]
        self.max_length = int(max_length)
        if self.max_length < 1:
            raise ConfigError(f"max_length must be >= 1, got {max_length}")
        if len(set(self.classes)) != len(self.classes):
            raise ConfigError("class names must be distinct")
        self._class_index = {c: i for i, c in enumerate(self.classes)}

    # ------------------------------------------------------------------ vocabulary
    @property
    def n_length_tokens(self) -> int:
        return 2 * self.max_length

    @property
    def first_class_id(self) -> int:
        return _FIRST_LENGTH_ID + self.n_length_tokens

    @property
    def output_ids(self) -> slice:
        """The token ids a generator may emit: ``<EOS>`` and every length (output row ``i`` of a
        head restricted to them is token ``EOS_ID + i``)."""
        return slice(EOS_ID, self.first_class_id)

    @property
    def first_positive_output(self) -> int:
        """Output row of length +1: rows before it are ``<EOS>`` and the negative lengths, masked at
        step 0 (a flow starts with a client -> server packet)."""
        return self.max_length + 1

    @property
    def vocab_size(self) -> int:
        return self.first_class_id + len(self.classes)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def length_to_id(self, lengths: np.ndarray) -> np.ndarray:
        """Signed non-zero lengths in [-M, M] -> ids (vectorised, no checks)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        return np.where(lengths < 0, lengths + self.max_length + _FIRST_LENGTH_ID,
                        lengths + self.max_length + _FIRST_LENGTH_ID - 1)

    def id_to_length(self, ids: np.ndarray) -> np.ndarray:
        """Length-token ids -> signed lengths (vectorised, no checks)."""
        k = np.asarray(ids, dtype=np.int64) - _FIRST_LENGTH_ID  # 0 .. 2M-1
        return np.where(k < self.max_length, k - self.max_length, k - self.max_length + 1)

    def class_id(self, name: str) -> int:
        """Token id of ``<CLASS_name>``; unknown names raise :class:`UnknownClassError`."""
        try:
            return self.first_class_id + self._class_index[str(name)]
        except KeyError:
            raise UnknownClassError(str(name), self.classes) from None

    def token_names(self, ids: Sequence[int]) -> list[str]:
        """Human-readable tokens, e.g. ``['<CLASS_DNS>', '+74', '-90', '<EOS>']``."""
        out = []
        for t in map(int, ids):
            if t == PAD_ID:
                out.append("<PAD>")
            elif t == EOS_ID:
                out.append("<EOS>")
            elif t < self.first_class_id:
                out.append(f"{int(self.id_to_length(t)):+d}")
            elif t < self.vocab_size:
                out.append(f"<CLASS_{self.classes[t - self.first_class_id]}>")
            else:
                out.append(f"<OUT_OF_VOCAB_{t}>")
        return out

    # ------------------------------------------------------------------ encode / decode
    def encode(self, flows, max_packets: int | None = None, *, clip: bool = False
               ) -> tuple[np.ndarray, np.ndarray]:
        """FlowSet -> ``(ids, attention_mask)``, both ``(n, max_packets + 2)`` int64.

        Flows longer than ``max_packets`` (default: the FlowSet's width) are truncated.
        """
        width = flows.max_packets if max_packets is None else int(max_packets)
        if width < 1:
            raise ConfigError(f"max_packets must be >= 1, got {width}")
        if flows.labels is None:
            raise InputFormatError("the tokenizer needs labelled flows (one <CLASS_x> prompt per flow)")
        n = len(flows)
        lengths = flows.lengths[:, :width].astype(np.int64)  # (n, <=width)
        n_pk = np.minimum(flows.n_packets, width).astype(np.int64)  # (n,)
        valid = np.arange(lengths.shape[1])[None, :] < n_pk[:, None]  # (n, <=width)
        zero = valid & (lengths == 0)
        if zero.any():
            row, col = map(int, np.argwhere(zero)[0])
            raise InputFormatError(
                f"flow {row} has a zero-payload packet at position {col}; the tokenizer has no token "
                "for a signed 0 (no direction): read the captures with keep_zero_payload=False",
                offset=row)
        too_big = valid & (np.abs(lengths) > self.max_length)
        if too_big.any():
            if not clip:
                row, col = map(int, np.argwhere(too_big)[0])
                raise InputFormatError(
                    f"flow {row} packet {col} has payload length {int(lengths[row, col])} beyond "
                    f"+-{self.max_length}; pass clip=True or a larger max_length", offset=row)
            lengths = np.clip(lengths, -self.max_length, self.max_length)
        cls_ids = np.array([self.class_id(c) for c in flows.labels], dtype=np.int64)  # (n,)
        ids = np.full((n, width + 2), PAD_ID, dtype=np.int64)  # (n, W+2)
        ids[:, 0] = cls_ids
        body = np.where(valid, self.length_to_id(np.where(valid, lengths, 1)), PAD_ID)
        ids[:, 1:1 + body.shape[1]] = body
        ids[np.arange(n), n_pk + 1] = EOS_ID
        mask = (np.arange(width + 2)[None, :] < (n_pk + 2)[:, None]).astype(np.int64)
        return ids, mask

    def decode(self, ids: np.ndarray, *, max_packets: int | None = None):
        """Token ids ``(n, T)`` -> FlowSet (labels from the class tokens).

        Each row must start with a class token; the flow is the length tokens up to the first
        <EOS> or <PAD> (or the end of the row). Any other token inside a flow is an error.
        The FlowSet width is ``max_packets`` (default ``T - 2``, the layout of :meth:`encode`).
        """
        from trafficgen.data.flowset import FlowSet

        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] < 1:
            raise InputFormatError(f"ids must be 2-D (n, T) with T >= 1, got shape {ids.shape}")
        n, t = ids.shape
        head = ids[:, 0]
        bad = (head < self.first_class_id) | (head >= self.vocab_size)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputFormatError(f"row {row} does not start with a class token (got id {int(head[row])})",
                                   offset=row)
        labels = [self.classes[i] for i in (head - self.first_class_id)]
        body = ids[:, 1:]  # (n, T-1)
        stop = (body == EOS_ID) | (body == PAD_ID)
        n_pk = np.where(stop.any(axis=1), stop.argmax(axis=1), body.shape[1])  # (n,)
        inside = np.arange(body.shape[1])[None, :] < n_pk[:, None]
        is_len = (body >= _FIRST_LENGTH_ID) & (body < self.first_class_id)
        if np.any(inside & ~is_len):
            row, col = map(int, np.argwhere(inside & ~is_len)[0])
            raise InputFormatError(f"row {row} has non-length token {int(body[row, col])} at position "
                                   f"{col + 1} inside the flow", offset=row)
        # default width: the encode layout (T - 2), widened if some row has no room for <EOS>
        width = max(t - 2, int(n_pk.max(initial=0))) if max_packets is None else int(max_packets)
        if np.any(n_pk > width):
            raise InputFormatError(f"a decoded flow has more than max_packets={width} packets")
        lengths = np.zeros((n, width), dtype=np.int32)
        k = min(width, body.shape[1])
        lengths[:, :k] = np.where(inside, self.id_to_length(np.where(inside, body, _FIRST_LENGTH_ID)), 0)[:, :k]
        return FlowSet(lengths=lengths, n_packets=n_pk.astype(np.int32), labels=labels)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"type": "FlowTokenizer", "version": 1, "max_length": self.max_length,
                "classes": list(self.classes), "pad_id": PAD_ID, "eos_id": EOS_ID,
                "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, d: dict) -> FlowTokenizer:
        if d.get("type") != "FlowTokenizer":
            raise InputFormatError(f"not a FlowTokenizer description (type={d.get('type')!r})")
        tok = cls(classes=d["classes"], max_length=d["max_length"])
        if d.get("vocab_size", tok.vocab_size) != tok.vocab_size:
            raise InputFormatError("tokenizer.json vocab_size disagrees with its classes and max_length")
        return tok

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json`` (atomically)."""
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> FlowTokenizer:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputFormatError(f"invalid JSON: {exc.msg}", path=str(path), offset=exc.pos) from None
        return cls.from_dict(d)

    def __eq__(self, other) -> bool:
        return isinstance(other, FlowTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"FlowTokenizer(classes={len(self.classes)}, max_length={self.max_length}, vocab_size={self.vocab_size})"


def count_clipped(flows, width: int, max_length: int) -> int:
    """Packets among the first ``width`` of each flow whose |length| exceeds the vocabulary's
    ``max_length`` (TSO/GRO captures reach tens of kB); warns when there are any, since the
    tokenizer clips them to +-max_length."""
    import warnings

    valid = np.arange(min(width, flows.lengths.shape[1]))[None, :] < np.minimum(flows.n_packets, width)[:, None]
    big = valid & (np.abs(flows.lengths[:, :valid.shape[1]]) > max_length)
    n = int(big.sum())
    if n:
        warnings.warn(f"{n} packet lengths beyond +-{max_length} (in {int(big.any(axis=1).sum())} flows) are "
                      f"clipped to +-{max_length}", UserWarning, stacklevel=3)
    return n
