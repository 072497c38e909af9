"""`make demo` in a log file: every long step prints plain progress lines on stderr, and the demo
writes the PNG its docstring promises. The default model is replaced by the tiny test preset."""
from __future__ import annotations

import json

from tests.pretrained.test_default_model import TINY

PNG = b"\x89PNG\r\n\x1a\n"


def test_demo_reports_progress_in_a_log_and_writes_its_outputs(monkeypatch, tmp_path, capsys):
    from trafficgen import demo

    monkeypatch.setenv("TRAFFICGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRAFFICGEN_PROGRESS", raising=False)
    monkeypatch.setattr("trafficgen.pretrained.default_model.DEFAULT_CONFIG", TINY)
    out = tmp_path / "demo_out"
    result = demo.main(out, n_per_class=5)
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("train llama: 0/") for line in err)
    assert any(line.startswith("train llama: done, ") and ", loss " in line for line in err)
    assert any(line.startswith("sample llama: done, 20/20 flows") for line in err)
    for name in ("ndpi_flows.parquet", "synthetic.parquet", "fidelity.json", "fidelity.md", "demo.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "radar.png").read_bytes()[:8] == PNG
    assert json.loads((out / "demo.json").read_text())["sampled"] == result["sampled"] == 20
