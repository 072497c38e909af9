"""`TrafficAugmenter`: generator-based over-sampling as an imbalanced-learn sampler.

Use it like ``imblearn.over_sampling.SMOTE``; inside ``imblearn.pipeline.Pipeline`` it adds
synthetic flows at ``fit`` time only (pipelines skip samplers at predict time)::

    from imblearn.pipeline import Pipeline
    pipe = Pipeline([("aug", TrafficAugmenter(generator="fast_retransmit", random_state=0)),
                     ("rf", RandomForestClassifier())])
    pipe.fit(X_train, y_train)          # X rows = first N signed lengths (0-padded)

``generator`` may be

* a :class:`~trafficgen.generators.base.FlowGenerator` instance: an unfitted one is cloned and
  fitted on the ``X, y`` it receives; a fitted one (has ``classes_``) is used as is and must
  know every class that needs new samples;
* a saved model directory (``str`` / ``Path`` holding ``config.json``), loaded with
  :func:`trafficgen.registry.load_generator` (prefitted);
* ``"smote"`` or ``"fast_retransmit"``: a fresh :class:`SmoteGenerator` /
  :class:`FastRetransmitGenerator` fitted on ``X, y``.

``X`` is either the fixed-length feature matrix (see :mod:`trafficgen.representations.features`) or a
:class:`FlowSet` (then ``y`` may be ``None`` to use its labels, and a FlowSet is returned).
Feature rows become flows through :func:`features_to_flows`, so arbitrary real-valued rows
are accepted (rounded, made valid); the generated rows are appended after the original ones.
Feature-matrix output is float64 (float32 input stays float32); sparse input is densified for
the generator and returned sparse. Class names reach the generator as ``str(y_value)``, so a
prefitted generator must use those names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from imblearn.over_sampling.base import BaseOverSampler

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError


def make_generator(generator, *, random_state=None):
    """(generator, needs_fit) for any accepted ``generator`` value (module docstring)."""
    from trafficgen.generators.base import FlowGenerator

    if isinstance(generator, str) and generator in ("smote", "fast_retransmit"):
        from trafficgen.registry import get_generator

        return get_generator(generator)(), True
    if isinstance(generator, (str, Path)):
        from trafficgen.registry import load_generator

        return load_generator(generator), False
    if isinstance(generator, FlowGenerator):
        if hasattr(generator, "classes_"):
            return generator, False
        return type(generator)(**generator.get_params()), True
    raise ConfigError("generator must be a FlowGenerator, a saved model directory, 'smote' or "
                      f"'fast_retransmit'; got {type(generator).__name__}")


def oversample_flows(flows: FlowSet, generator, counts: dict[str, int], *, random_state=None) -> FlowSet:
    """``counts[c]`` new flows of each class ``c`` from ``generator`` (fitted on ``flows`` first
    when it is not prefitted), cut/padded to ``flows.max_packets``; classes in a fixed sorted
    order so a seed gives the same flows. Returns the new flows only (possibly empty)."""
    gen, needs_fit = make_generator(generator)
    wanted = {c: int(k) for c, k in sorted(counts.items()) if int(k) > 0}
    if not wanted:
        return flows[:0]
    if needs_fit:
        gen.fit(flows)
    names = [c for c, k in wanted.items() for _ in range(k)]
    new = gen.sample(len(names), cls=names, random_state=random_state)
    new = FlowSet(lengths=new.lengths, n_packets=new.n_packets, directions=new.directions,
                  labels=names)
    if new.max_packets != flows.max_packets:
        new = new.truncate(flows.max_packets)
    return new


class TrafficAugmenter(BaseOverSampler):
    """Over-sample minority classes with a flow generator (see the module docstring).

    Parameters
    ----------
    generator : FlowGenerator, path, "smote" or "fast_retransmit"
    sampling_strategy : as in imbalanced-learn over-samplers ("auto" = every class but the
        majority up to the majority count; a float, a dict or a callable also work).
    random_state : int, numpy RandomState or None (a RandomState seeds one draw of an int seed)

    A subclass of ``imblearn.over_sampling.base.BaseOverSampler`` (itself a ``BaseSampler``),
    which validates ``sampling_strategy`` and computes ``sampling_strategy_``.
    """

    _parameter_constraints: dict = {**BaseOverSampler._parameter_constraints, "generator": "no_validation"}

    def __init__(self, *, generator="fast_retransmit", sampling_strategy="auto", random_state=None):
        super().__init__(sampling_strategy=sampling_strategy)
        self.generator = generator
        self.random_state = random_state

    def fit_resample(self, X, y=None, **params):
        if isinstance(X, FlowSet):
            return self._resample_flowset(X, y)
        return super().fit_resample(X, y, **params)

    def _resample_flowset(self, flows: FlowSet, y):
        from imblearn.utils import check_sampling_strategy

        if y is not None:
            flows = flows.with_labels([str(v) for v in np.asarray(y)])
        if flows.labels is None:
            raise ConfigError("a FlowSet without labels needs y")
        self.sampling_strategy_ = check_sampling_strategy(self.sampling_strategy, flows.labels.astype(str),
                                                          self._sampling_type)
        new = oversample_flows(flows, self.generator, dict(self.sampling_strategy_),
                               random_state=self._seed())
        out = FlowSet.concat([flows, new]) if len(new) else flows
        return out, out.labels.copy()

    def _seed(self):
        if isinstance(self.random_state, np.random.RandomState):
            return int(self.random_state.randint(np.iinfo(np.int32).max))
        return self.random_state

    def _fit_resample(self, X, y):
        from scipy import sparse

        from trafficgen.representations.features import features_to_flows

        is_sparse = sparse.issparse(X)
        dense = X.toarray() if is_sparse else X  # flows are short rows: densify
        classes, y_idx = np.unique(y, return_inverse=True)
        names = [str(c) for c in classes]  # generators use string class names
        if len(set(names)) < len(names):  # e.g. 1 and "1": fall back to class indices
            names = [str(i) for i in range(len(classes))]
        flows = features_to_flows(dense, labels=[names[i] for i in y_idx])
        counts = {names[int(np.flatnonzero(classes == c)[0])]: k for c, k in self.sampling_strategy_.items()}
        new = oversample_flows(flows, self.generator, counts, random_state=self._seed())
        X_new = new.to_features(X.shape[1]).astype(X.dtype if X.dtype.kind == "f" else np.float64)
        lookup = {nm: i for i, nm in enumerate(names)}
        y_new = classes[np.asarray([lookup[v] for v in new.labels], dtype=np.int64)] if len(new) else y[:0]
        if is_sparse:
            X_out = sparse.vstack([X.astype(X_new.dtype), sparse.csr_matrix(X_new)], format=X.format)
        else:
            X_out = np.vstack([X.astype(X_new.dtype, copy=False), X_new])
        return X_out, np.concatenate([y, y_new.astype(y.dtype)])
