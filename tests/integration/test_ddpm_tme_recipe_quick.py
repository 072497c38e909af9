import json

import pytest

from trafficgen.recipes.runner import run_recipe


@pytest.mark.slow
def test_ddpm_tme_recipe_quick(tmp_path):
    res = run_recipe("ddpm_tme", tmp_path, quick=True, overrides={"synthesis": {"tsne": False}})
    methods = {(r["dataset"], r["method"]) for r in res["table"]}
    for ds in ("abilene", "geant"):
        for m in ("pinv", "gravity", "tomogravity", "vae_tme", "wgan_gp_tme", "ddpm_tme", "ddpm_tme_raw",
                  "mean_prior", "tod_mean_prior", "ridge_prior", "ddpm_tme_cond", "ddpm_tme_cond_raw", "seq_mean_prior", "ddpm_tme_seq",
                  "ddpm_tme_seq_raw", "ddpm_tme_cond_ridge", "ddpm_tme_cond_ridge_raw"):
            assert (ds, m) in methods
        assert (tmp_path / f"{ds}_tre_time.png").stat().st_size > 0
        assert (tmp_path / f"{ds}_pca.png").exists() and (tmp_path / f"ddpm_tme_{ds}" / "config.json").exists()
    rows = {(r["dataset"], r["method"]): r for r in res["table"]}
    assert rows["abilene", "ddpm_tme"]["paper_tre_mean"] == 0.196
    assert rows["abilene", "tomogravity"]["link_residual_mean"] < 0.01
    for m in ("tod_mean_prior", "ridge_prior", "ddpm_tme_cond", "seq_mean_prior", "ddpm_tme_seq", "ddpm_tme_cond_ridge"):  # projected like mean_prior: exact link fit
        assert rows["abilene", m]["link_residual_mean"] < 1e-6
        assert 0 < rows["abilene", m]["tre_mean"] < rows["abilene", "pinv"]["tre_mean"]
    assert (tmp_path / "ddpm_tme_cond_abilene" / "config.json").exists()
    assert (tmp_path / "ddpm_tme_seq_geant" / "config.json").exists()
    assert res["datasets"]["abilene"]["seq_beta"] in (0.0, 0.9, 0.99)
    assert json.loads((tmp_path / "results.json").read_text())["table"]
    assert "| abilene | tomogravity |" in (tmp_path / "summary.md").read_text()
