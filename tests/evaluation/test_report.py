"""FidelityReport (JSON / Markdown round trip) and the PNG plots."""
from __future__ import annotations

import json

import pytest

from trafficgen.data.flowset import FlowSet
from trafficgen.evaluation.fidelity import LengthJSD
from trafficgen.evaluation.plots import augmentation_plot, radar_plot
from trafficgen.evaluation.report import FidelityReport, comparison_markdown

PNG = b"\x89PNG\r\n\x1a\n"


def fs(seqs, labels):
    return FlowSet.from_sequences(seqs, labels=labels)


def test_report_values_breakdowns_and_round_trip(tmp_path):
    real = fs([[1, 2], [1, 2], [7, -7]], ["a", "a", "b"])
    syn = fs([[1, 2], [9]], ["a", "b"])
    train = fs([[9], [1, 2]], ["b", "a"])
    r = FidelityReport.compute(real, syn, name="gen", train=train)
    assert list(r.metrics) == ["packet_count_jsd", "length_jsd", "bigram_jsd", "markov_jsd", "uniq_align", "leakage",
                              "novelty"]
    assert r.metrics["length_jsd"]["per_class"] == {"a": 0.0, "b": 1.0}
    assert r.metrics["length_jsd"]["value"] == 0.5
    assert r.metrics["leakage"]["per_class"] == {"a": 1.0, "b": 1.0}  # vs train, not vs real
    assert r.metrics["novelty"]["per_class"] == {"a": 0.0, "b": 0.0}  # vs train: both copied
    # a train class the real part lacks is a reference only: cross-class copies count, its row does not
    wider = FidelityReport.compute(real, fs([[1, 2], [5]], ["a", "b"]), train=fs([[5], [1, 2]], ["c", "a"]))
    assert wider.metrics["novelty"]["per_class"] == {"a": 0.0}
    assert r.scores()["length_jsd"] == 0.5 and r.scores()["leakage"] == 0.0
    assert r.info == {"n_real": 3, "n_synthetic": 2, "n_train": 2}
    r.to_json(tmp_path / "r.json")
    back = FidelityReport.from_dict(json.loads((tmp_path / "r.json").read_text()))
    assert back == r
    md = r.to_markdown()
    assert "| length_jsd | lower is better | [0, 1] | 0.5000 |" in md and "| b |" in md
    only = FidelityReport.compute(real, syn, metrics=[LengthJSD()])
    assert only.values() == {"length_jsd": 0.5}
    assert "| synthetic | 0.5000 |" in comparison_markdown([only])


def test_plots_write_png(tmp_path):
    p = radar_plot({"g1": {"x": 0.9, "y": 0.2, "z": 0.5}, "g2": {"x": 0.1, "y": 0.8, "z": 0.5}}, tmp_path / "radar.png")
    assert p.read_bytes()[:8] == PNG
    res = {"fractions": [0.1, 1.0], "methods": {"none": {"mean": [0.5, 0.9], "std": [0.1, 0.0]}}}
    assert augmentation_plot(res, tmp_path / "aug.png").read_bytes()[:8] == PNG
    assert sorted(x.name for x in tmp_path.iterdir()) == ["aug.png", "radar.png"]  # no temporary left


def test_empty_real_is_an_error():
    from trafficgen.errors import InputFormatError

    with pytest.raises(InputFormatError):
        LengthJSD().compute(fs([], []), fs([[1]], ["a"]))
