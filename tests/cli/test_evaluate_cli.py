"""`trafficgen fidelity` and `trafficgen evaluate`, run in-process through the console entry point."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from trafficgen.cli.main import main
from trafficgen.data.flowset import FlowSet
from trafficgen.generators.fast_retransmit import FastRetransmitGenerator

PNG = b"\x89PNG\r\n\x1a\n"


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["trafficgen", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def flows(seed, n=20, width=6):
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for c, base in (("web", 600), ("dns", 70)):
        for _ in range(n):
            k = int(rng.integers(2, width + 1))
            seqs.append([base + int(rng.integers(0, 30)) * (-1) ** j for j in range(k)])
            labels.append(c)
    return FlowSet.from_sequences(seqs, labels=labels, max_packets=width)


@pytest.fixture
def files(tmp_path):
    real = flows(0)
    real.save(tmp_path / "real.parquet")
    flows(1).save(tmp_path / "syn.parquet")
    FastRetransmitGenerator(p=0.5).fit(real).save_pretrained(tmp_path / "fr")
    return tmp_path


def test_fidelity_from_file_and_from_model(monkeypatch, capsys, files):
    out = files / "rep"
    code, stdout, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "real.parquet",
                                "--synthetic", files / "syn.parquet", "-o", out)
    assert code == 0, err
    assert "length_jsd" in stdout or "length_j" in stdout
    rep = json.loads((out / "report.json").read_text())
    from trafficgen.evaluation.fidelity import LengthJSD

    expected = LengthJSD().compute(FlowSet.read(files / "real.parquet"), FlowSet.read(files / "syn.parquet"))
    assert rep["metrics"]["length_jsd"]["value"] == pytest.approx(expected)
    assert set(rep["metrics"]["length_jsd"]["per_class"]) == {"web", "dns"}
    assert (out / "radar.png").read_bytes()[:8] == PNG and "| length_jsd |" in (out / "report.md").read_text()
    for flag in ("--synthetic", "--model"):
        out2 = files / f"rep{flag}"
        code, _, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "real.parquet",
                               flag, files / "fr", "-o", out2)
        assert code == 0, err
        rep = json.loads((out2 / "report.json").read_text())
        assert rep["info"]["sampled"] and rep["info"]["n_synthetic"] == 40
        assert rep["metrics"]["leakage"]["value"] > 0.1  # Fast Retransmit copies its training flows
    assert json.loads((files / "rep--model" / "report.json").read_text()) == rep  # same seed, same report


def test_fidelity_errors(monkeypatch, capsys, files):
    code, _, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "real.parquet")
    assert code == 1 and "exactly one of --synthetic and --model" in err
    code, _, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "real.parquet",
                           "--synthetic", files, "-o", files / "x")
    assert code == 1 and "not a saved model directory" in err
    code, _, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "missing.parquet",
                           "--synthetic", files / "syn.parquet")
    assert code == 1 and "no such file" in err


def test_evaluate_end_to_end(monkeypatch, capsys, files):
    out = files / "eval"
    args = ["evaluate", "--model", files / "fr", "--seeds", "1", "--fractions", "0.1,1.0",
            "--n-estimators", "10", "-o", out]
    code, stdout, err = run_cli(monkeypatch, capsys, *args, "--real", files / "real.parquet")
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    references = ["smote", "fast_retransmit", "markov", "copy", "independent"]  # every figure sits beside these
    assert [r["name"] for r in rep["fidelity"]] == ["fr", *references, "real_vs_real (floor)"]
    assert set(rep["tstr"]) == {"train_on_real", "fr", *references}
    assert list(rep["augmentation"]["methods"]) == ["none", "smote", "fast_retransmit", "fr"]
    assert rep["split"]["n_train"] == 28 and rep["split"]["n_test"] == 12
    md = (out / "report.md").read_text()
    assert "Leakage is computed against the real *training* part" in md and "## Augmentation" in md
    for png in ("radar.png", "tstr.png", "augmentation.png"):
        assert (out / png).read_bytes()[:8] == PNG
    assert "TSTR macro F1" in stdout
    # without --real: the shipped nDPI apps (replaced by a small set here)
    import trafficgen.datasets.flows as ds

    monkeypatch.setattr(ds, "load_ndpi_apps", lambda **kw: flows(3))
    code, _, err = run_cli(monkeypatch, capsys, *args[:-1], files / "eval2")
    assert code == 0, err
    rep2 = json.loads((files / "eval2" / "report.json").read_text())
    assert rep2["real"] == "trafficgen.datasets.load_ndpi_apps()"
    code, _, err = run_cli(monkeypatch, capsys, *args, "--real", files / "real.parquet", "--fractions", "x")
    assert code == 1 and "--fractions" in err


def test_fidelity_scores_only_the_classes_both_sides_have(monkeypatch, capsys, files):
    """`sample --class dns` then `fidelity`: the macro numbers are dns's own, web is named as left
    out (not silently scored 1.0), per-class counts are shown, too few real flows are flagged."""
    real = FlowSet.read(files / "real.parquet")
    FlowSet.read(files / "syn.parquet").select("dns").save(files / "dns_only.parquet")
    code, stdout, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "real.parquet",
                                "--synthetic", files / "dns_only.parquet", "-o", files / "one")
    assert code == 0, err
    rep = json.loads((files / "one" / "report.json").read_text())
    from trafficgen.evaluation.fidelity import LengthJSD

    dns_only = LengthJSD().compute(real.select("dns"), FlowSet.read(files / "dns_only.parquet"))
    assert rep["metrics"]["length_jsd"]["value"] == pytest.approx(dns_only)
    assert set(rep["metrics"]["length_jsd"]["per_class"]) == {"dns"}
    assert rep["info"]["real_only"] == ["web"]
    assert rep["info"]["class_counts"]["dns"] == {"real": 20, "synthetic": 20}
    assert "warning: 1 real classes have no synthetic flows, left out of the macro means: web" in err
    assert "per class" in stdout and "dns" in stdout
    # few real flows: flagged on stderr and in the per-class table
    real[np.r_[0:5, 20:40]].save(files / "few.parquet")  # 5 of the 20 web flows, all 20 dns flows
    code, stdout, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "few.parquet",
                                "--synthetic", files / "syn.parquet", "-o", files / "few")
    assert code == 0, err
    assert "fewer than 10 real flows" in err and "web (5)" in err and "web *" in stdout


def test_fidelity_model_shows_progress_lines_in_a_log(monkeypatch, capsys, files):
    code, _, err = run_cli(monkeypatch, capsys, "fidelity", "--real", files / "real.parquet",
                           "--model", files / "fr", "-o", files / "prog")
    assert code == 0, err
    lines = err.splitlines()
    assert "sample fast_retransmit: 0/40 flows" in lines
    assert any(line.startswith("sample fast_retransmit: done, 40/40 flows in ") for line in lines)
