"""`Metric`: the base class of flow-level evaluation metrics.

A metric has a ``name``, a ``direction`` ("lower" or "higher" is better) and a ``range``
``(low, high)``. ``compute(real, synthetic)`` returns one number: the macro average over the real
classes of :meth:`Metric.compute_breakdown` (or the value on all flows when either side is
unlabelled). Both FlowSets are first cut to their common width
(``min(real.max_packets, synthetic.max_packets)``), so a generator trained on shorter prefixes
is compared on the prefix it models.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError

#: Key of the breakdown entry used when the data is unlabelled.
ALL = "__all__"


class Metric:
    """Base class. Subclasses set ``name``, ``direction``, ``range`` and implement ``_compute``
    (one real part vs one synthetic part, both non-empty FlowSets of the same width).

    ``missing_value`` is the score of a real class that the synthetic set does not contain
    (the worst value of the range by default: a generator that cannot produce a class is
    maximally unfaithful to it).
    """

    name: ClassVar[str] = ""
    direction: ClassVar[str] = "lower"
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    #: "real": compared with the held-out real flows; "train": with the generator's training
    #: flows when a report is given them (privacy metrics).
    reference: ClassVar[str] = "real"

    @property
    def missing_value(self) -> float:
        return self.range[1] if self.direction == "lower" else self.range[0]

    def _compute(self, real: FlowSet, synthetic: FlowSet) -> float:
        raise NotImplementedError

    @staticmethod
    def _align(real: FlowSet, synthetic: FlowSet) -> tuple[FlowSet, FlowSet]:
        for nm, fs in (("real", real), ("synthetic", synthetic)):
            if not isinstance(fs, FlowSet):
                raise InputFormatError(f"{nm} must be a FlowSet, got {type(fs).__name__}")
        width = min(real.max_packets, synthetic.max_packets)
        if real.max_packets != width:
            real = real.truncate(width)
        if synthetic.max_packets != width:
            synthetic = synthetic.truncate(width)
        return real, synthetic

    def compute_breakdown(self, real: FlowSet, synthetic: FlowSet) -> dict[str, float]:
        """Per real class: ``{class: value}``; ``{"__all__": value}`` when either side is unlabelled."""
        real, synthetic = self._align(real, synthetic)
        if len(real) == 0:
            raise InputFormatError("the real FlowSet is empty")
        if real.labels is None or synthetic.labels is None:
            if len(synthetic) == 0:
                return {ALL: float(self.missing_value)}
            return {ALL: float(self._compute(real, synthetic))}
        out = {}
        for c in real.classes:
            r = real[real.labels == c]
            s = synthetic[synthetic.labels == c]
            out[c] = float(self.missing_value) if len(s) == 0 else float(self._compute(r, s))
        return out

    def compute(self, real: FlowSet, synthetic: FlowSet) -> float:
        """Macro average of :meth:`compute_breakdown` over the real classes."""
        return float(np.mean(list(self.compute_breakdown(real, synthetic).values())))

    def describe(self) -> dict:
        return {"name": self.name, "direction": self.direction, "range": list(self.range)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

