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
    assert {k: r.info[k] for k in ("n_real", "n_synthetic", "n_train")} == {"n_real": 3, "n_synthetic": 2, "n_train": 2}
    assert r.info["class_counts"] == {"a": {"real": 2, "synthetic": 1}, "b": {"real": 1, "synthetic": 1}}
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


def test_classes_missing_from_the_synthetic_set_are_left_out_and_named():
    """The README's `sample --class youtube` then `fidelity`: scored on YouTube alone, not with every
    other class at 1.0 in the macro mean; counts per class; too few real flows flagged."""
    real = fs([[600, -600]] * 20 + [[70, -90]] * 20 + [[5]] * 3, ["web"] * 20 + ["dns"] * 20 + ["rare"] * 3)
    syn = fs([[600, -600]] * 5 + [[600]] * 5 + [[1, 2]] * 2, ["web"] * 10 + ["other"] * 2)
    r = FidelityReport.compute(real, syn)
    only_web = FidelityReport.compute(real.select("web"), syn.select("web"))
    for name, m in r.metrics.items():
        assert list(m["per_class"]) == ["web"], name
        assert m["value"] == only_web.metrics[name]["value"], name
    assert r.info["real_only"] == ["dns", "rare"] and r.info["synthetic_only"] == ["other"]
    assert r.info["class_counts"]["web"] == {"real": 20, "synthetic": 10}
    assert r.info["class_counts"]["dns"] == {"real": 20, "synthetic": 0}
    warnings = r.warnings()
    assert any("dns, rare" in w and "left out" in w for w in warnings)
    assert any("other" in w for w in warnings)
    md = r.to_markdown()
    assert "| class | real flows | synthetic flows |" in md and "| web | 20 | 10 |" in md and "dns, rare" in md
    # "worst": the comparison mode, a missing class scores the metric's worst value (named too)
    worst = FidelityReport.compute(real, syn, missing_classes="worst")
    assert set(worst.metrics["length_jsd"]["per_class"]) == {"web", "dns", "rare"}
    assert worst.metrics["length_jsd"]["per_class"]["dns"] == 1.0
    assert any("scored as missing" in w for w in worst.warnings())
    # few real flows: flagged
    few = FidelityReport.compute(real, fs([[5]] * 4 + [[600, -600]] * 4, ["rare"] * 4 + ["web"] * 4))
    assert few.info["few_real_flows"] == ["rare"] and "rare (3)" in " ".join(few.warnings())
    assert "| rare | 3 (few) | 4 |" in few.to_markdown()
    from trafficgen.errors import InputFormatError

    with pytest.raises(InputFormatError, match="no class in common"):
        FidelityReport.compute(real, fs([[1]], ["zzz"]))
