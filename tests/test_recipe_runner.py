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


def test_unknown_recipe_keys_are_errors_not_dropped(tmp_path):
    import pytest

    from trafficgen.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such_key"):
        run_recipe("lightweight_ntg", tmp_path / "a", quick=True, overrides={"no_such_key": 1})
    with pytest.raises(ConfigError, match="epochz"):
        run_recipe("lightweight_ntg", tmp_path / "b", quick=True,
                   overrides={"generators": {"llama": {"epochz": 1}}})
    with pytest.raises(ConfigError, match="seedz"):
        run_recipe("lightweight_ntg", tmp_path / "c", quick=True, overrides={"evaluation": {"seedz": 1}})


def test_every_shipped_recipe_declares_its_keys():
    import pytest

    from trafficgen.errors import ConfigError
    from trafficgen.recipes.runner import available_recipes, check_config_keys, load_recipe
    from trafficgen.registry import import_object

    for name in available_recipes():
        for quick in (False, True):
            config = resolve_config(load_recipe(name), quick=quick)
            runner = import_object(config["runner"])
            check_config_keys(config, runner)  # the shipped configs use only declared keys
            with pytest.raises(ConfigError, match="typo_key"):
                check_config_keys({**config, "typo_key": 1}, runner)
