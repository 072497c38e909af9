import json

import yaml

from trafficgen.recipes.runner import resolve_config, run_recipe


def _echo_runner(config, out_dir, quick):
    (out_dir / "summary.md").write_text(f"epochs={config['epochs']}")
    return {"epochs": config["epochs"], "quick": quick}


def test_quick_overrides_and_outputs(tmp_path):
    recipe = {"name": "t", "runner": "tests.test_recipe_runner:_echo_runner", "seed": 3, "epochs": 50,
              "quick": {"epochs": 1}}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(recipe))
    res = run_recipe(path, tmp_path / "out", quick=True, overrides={"seed": 9})
    assert res["epochs"] == 1 and res["quick"] is True
    resolved = yaml.safe_load((tmp_path / "out" / "resolved_config.yaml").read_text())
    assert resolved["seed"] == 9 and resolved["epochs"] == 1 and "quick" not in resolved
    assert json.loads((tmp_path / "out" / "results.json").read_text())["epochs"] == 1
    assert resolve_config(recipe)["epochs"] == 50
