"""The lightweight_ntg recipe end to end in --quick mode (tiny presets, 1 epoch, few flows)."""
from __future__ import annotations

import json

import yaml

from trafficgen.recipes.runner import run_recipe


def test_lightweight_ntg_quick(tmp_path):
    out = tmp_path / "lntg"
    res = run_recipe("lightweight_ntg", out, quick=True)
    assert yaml.safe_load((out / "resolved_config.yaml").read_text())["quick_mode"] is True
    for ds in ("ndpi", "cicdoh20"):
        for f in ("report.md", "report.json", "radar.png", "augmentation.png", "tstr.png"):
            assert (out / ds / f).stat().st_size > 0
        d = res["datasets"][ds]
        assert 0.0 <= d["train_on_real"] <= 1.0 and "smote" in d["tstr"] and "fast_retransmit" in d["tstr"]
        assert {"llama", "mamba"} <= set(d["fidelity"])
    rows = json.loads((out / "efficiency.json").read_text())
    by = {(r["dataset"], r["model"]): r for r in rows}
    for ds in ("ndpi", "cicdoh20"):
        for g in ("llama", "mamba"):
            fp, wo, dyn = by[(ds, g)], by[(ds, f"{g}-int8-wo")], by[(ds, f"{g}-int8-dyn")]
            assert fp["train_s_per_epoch"] > 0 and wo["train_s_per_epoch"] is None
            assert wo["disk_mb"] <= 0.4 * fp["disk_mb"] and dyn["parameters"] == fp["parameters"]
            assert abs(wo["fidelity_delta"] - (wo["fidelity"] - fp["fidelity"])) < 1e-12
            assert "gen_ms_per_sample_b16" in dyn
    summary = (out / "summary.md").read_text()
    assert "RQ4 efficiency" in summary and "llama-int8-dyn" in summary
