"""Default-model cache: trained once, reused, keyed by data + config, root overridable."""
from __future__ import annotations

import pytest

from tests.generators.test_llama import separable_flows
from trafficgen.generators.llama import LlamaGenerator
from trafficgen.pretrained import default_model as dm

TINY = {"preset": "tiny", "epochs": 2, "batch_size": 32, "learning_rate": 1e-2, "val_fraction": 0.0,
        "patience": None, "random_state": 0, "max_packets": 8}




def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAFFICGEN_CACHE", str(tmp_path))
    assert dm.cache_root() == tmp_path
    monkeypatch.delenv("TRAFFICGEN_CACHE")
    import platformdirs

    assert dm.cache_root() == __import__("pathlib").Path(platformdirs.user_cache_dir("trafficgen"))


def test_trained_once_then_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAFFICGEN_CACHE", str(tmp_path))
    flows = separable_flows(40)
    first = dm.get_default_model(progress=False, flows=flows, config=TINY)
    path = dm.default_model_dir(flows, TINY)
    assert path.parent == tmp_path / "models" and path.name.startswith("default-llama-")
    assert (path / "config.json").exists() and (path / "tokenizer.json").exists()

    def no_training(self, flows):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(LlamaGenerator, "fit", no_training)
    again = dm.get_default_model(progress=False, flows=flows, config=TINY)
    assert again.sample(30, random_state=2) == first.sample(30, random_state=2)
    # other data or another config -> another cache entry (and training, which is blocked here)
    assert dm.default_model_dir(separable_flows(40, seed=1), TINY) != path
    assert dm.default_model_dir(flows, {**TINY, "epochs": 3}) != path
    with pytest.raises(AssertionError, match="reused"):
        dm.get_default_model(progress=False, flows=flows, config=TINY, refresh=True)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [path.name]  # nothing half-written
