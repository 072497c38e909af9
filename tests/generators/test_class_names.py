"""One class-name rule for library and CLI: the exact name, else the unique case-insensitive match
(resolved to the canonical name); several matches -> ConfigError; none -> UnknownClassError."""
from __future__ import annotations

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, UnknownClassError
from trafficgen.generators.base import match_class, match_classes
from trafficgen.registry import get_generator


def flows() -> FlowSet:
    rng = np.random.default_rng(0)
    seqs = [[int(rng.integers(100, 900)) * (-1) ** j for j in range(int(rng.integers(1, 4)))] for _ in range(30)]
    return FlowSet.from_sequences(seqs, labels=["YouTube", "DNS", "dns"] * 10)


def test_match_class_rule():
    known = ["DNS", "YouTube", "dns"]
    assert match_class("youtube", known) == "YouTube" and match_class("YOUTUBE", known) == "YouTube"
    assert match_class("DNS", known) == "DNS" and match_class("dns", known) == "dns"  # exact first
    with pytest.raises(ConfigError, match="ambiguous: DNS, dns"):
        match_class("Dns", known)
    with pytest.raises(UnknownClassError, match="known classes: DNS, YouTube, dns"):
        match_class("zoom", known)
    assert match_classes(["youtube", "DNS", "youtube"], known) == ["YouTube", "DNS", "YouTube"]


@pytest.mark.parametrize("name,params", [("fast_retransmit", {}), ("smote", {"k_neighbors": 2}),
                                         ("llama", dict(preset="tiny", epochs=1, progress=False, random_state=0))])
def test_sample_takes_any_case_and_returns_canonical_labels(name, params):
    gen = get_generator(name)(**params).fit(flows())
    exact = gen.sample(8, cls="YouTube", random_state=1)
    lower = gen.sample(8, cls="youtube", random_state=1)
    assert set(lower.labels) == {"YouTube"}
    assert np.array_equal(exact.lengths, lower.lengths)  # same classes, same draws
    mixed = gen.sample(4, cls=["youtube", "DNS"], random_state=0)
    assert mixed.labels.tolist() == ["YouTube", "DNS", "YouTube", "DNS"]
    with pytest.raises(ConfigError, match="ambiguous"):
        gen.sample(2, cls="Dns", random_state=0)
    with pytest.raises(UnknownClassError):
        gen.sample(2, cls="zoom", random_state=0)
