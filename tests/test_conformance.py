"""Conformance suite over every registry entry (in the spirit of imbalanced-learn's check_estimator).

For every model: keyword-only ``__init__`` that only stores its arguments; fit on a tiny real slice;
sample / predict shapes and validity; same seed -> same output; save/load equality; an unknown config
key -> ConfigError. Metrics, representations, classic estimators and datasets: they resolve and do
what their table promises. Golden values (``tests/golden_values.json``) pin a seeded tiny model's
first outputs per family, so a refactor that changes behaviour fails loudly; regenerate them only for
an intended change (``TRAFFICGEN_REGEN_GOLDEN=1``) and say so in the commit.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest

from trafficgen import registry
from trafficgen.errors import ConfigError

GOLDEN_FILE = Path(__file__).with_name("golden_values.json")
REGEN = os.environ.get("TRAFFICGEN_REGEN_GOLDEN") == "1"

#: Tiny settings per registry entry (seconds to fit on the tiny real slices below).
FLOW_CONFIGS: dict[str, dict] = {
    "llama": dict(preset="tiny", epochs=2, batch_size=16, progress=False),
    "mamba": dict(preset="tiny", epochs=1, batch_size=16, progress=False),
    "netdiffus": dict(preset="tiny", epochs=1, batch_size=16, num_inference_steps=2, progress=False),
    "cvae": dict(preset="tiny", epochs=2, batch_size=16, progress=False),
    "smote": dict(),
    "fast_retransmit": dict(),
    "markov": dict(order=2),
    "copy": dict(),
    "independent": dict(),
}
TM_CONFIGS: dict[str, dict] = {
    "persistence": dict(),
    "seasonal": dict(),
    "historical-average": dict(t_in=4),
    "lstm": dict(t_in=4, horizons=(1, 2), hidden=8, epochs=1, progress=False),
    "gru": dict(t_in=4, horizons=(1, 2), hidden=8, epochs=1, progress=False),
    "vit-lstm": dict(t_in=4, horizons=(1, 2), vit_hidden=16, vit_layers=1, hidden=8, epochs=1, progress=False),
    "stgcn": dict(t_in=12, horizons=(1, 2), hidden=8, epochs=1, progress=False),
    "lead": dict(t_in=4, horizons=(1, 2), ablations=("no_llm",), d_v=8, n_res_blocks=1, d_model=32,
                 adapter_rank=4, unet_channels=(16, 32), layers_per_block=1, epochs=1, batch_size=8,
                 max_train_windows=8, max_val_windows=8, n_inference_steps=2, n_samples=2, progress=False),
    "persistence-prob": dict(),
    "historical-average-prob": dict(t_in=4),
    "linear-anchor": dict(t_in=4, horizons=(1, 2)),
}
TM_ESTIMATOR_CONFIGS: dict[str, dict] = {
    "ddpm-tme": dict(latent_dim=8, hidden_dim=32, n_blocks=2, batch_size=32, sampling_steps=2, epochs=1,
                     pretrain_epochs=1),
    "vae-tme": dict(latent_dim=4, width=16, epochs=1, batch_size=32),
    "wgan-gp-tme": dict(latent_dim=4, width=16, epochs=1, batch_size=32),
}


def test_every_registry_entry_has_a_conformance_config():
    assert set(FLOW_CONFIGS) == set(registry.GENERATORS)
    assert set(TM_CONFIGS) == set(registry.TM_FORECASTERS)
    assert set(TM_ESTIMATOR_CONFIGS) == set(registry.TM_ESTIMATORS)


@pytest.mark.parametrize(("kind", "name"), [(k, n) for k, t in registry.TABLES.items() for n in t])
def test_every_entry_resolves(kind, name):
    assert registry.resolve(kind, name) is not None


def _check_init_only_stores(cls, config):
    params = inspect.signature(cls.__init__).parameters
    user = [p for k, p in params.items() if k != "self"]
    assert all(p.kind is p.KEYWORD_ONLY for p in user), f"{cls.__name__}: __init__ must be keyword-only"
    model = cls(**config)
    stored = {k for k in vars(model) if not k.startswith("__")}
    assert not [k for k in stored if k.endswith("_")], f"{cls.__name__}: __init__ sets learned attributes"
    assert set(model.get_params()) == {p.name for p in user}
    for k, v in config.items():
        assert model.get_params()[k] == v
    return model


def _golden(key: str, value) -> None:
    """Compare ``value`` (list of numbers) with the recorded golden value (or record it)."""
    golden = json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.exists() else {}
    value = np.asarray(value, dtype=np.float64).ravel()[:12].tolist()
    if REGEN or key not in golden:
        if not REGEN and os.environ.get("CI"):
            pytest.fail(f"no golden value for {key}; run with TRAFFICGEN_REGEN_GOLDEN=1")
        golden[key] = value
        GOLDEN_FILE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    np.testing.assert_allclose(value, golden[key], rtol=1e-5, atol=1e-6, err_msg=f"golden value {key} changed")


# ---------------------------------------------------------------------- flow generators
@pytest.fixture(scope="module")
def flow_slice():
    """3 classes x 12 real nDPI flows, 8 packets."""
    from trafficgen.datasets import load_ndpi_apps

    flows = load_ndpi_apps(max_packets=8)
    keep = [c for c in ("DNS", "HTTP", "TLS") if c in flows.classes]
    idx = np.concatenate([np.flatnonzero(flows.labels == c)[:12] for c in keep])
    return flows[np.sort(idx)]


@pytest.mark.parametrize("name", sorted(FLOW_CONFIGS))
def test_flow_generator_conformance(name, flow_slice, tmp_path):
    cls = registry.get_generator(name)
    config = {**FLOW_CONFIGS[name]}
    if "random_state" in cls._param_names():
        config["random_state"] = 0
    model = _check_init_only_stores(cls, config)
    with pytest.raises(ConfigError):
        registry.build("generator", name, **config, no_such_option=1)
    assert model.fit(flow_slice) is model
    cls_name = flow_slice.classes[0]
    a = model.sample(6, cls=cls_name, random_state=0)
    b = model.sample(6, cls=cls_name, random_state=0)
    assert len(a) == 6 and a.labels.tolist() == [cls_name] * 6
    assert np.array_equal(a.lengths, b.lengths) and np.array_equal(a.n_packets, b.n_packets)
    assert a.lengths.shape[1] <= 8 and np.all((a.n_packets >= 1) & (a.n_packets <= a.lengths.shape[1]))
    valid = np.arange(a.lengths.shape[1])[None, :] < a.n_packets[:, None]
    assert np.all(a.lengths[valid] != 0) and np.all(a.lengths[~valid] == 0)
    model.save_pretrained(tmp_path / name)
    back = registry.load_generator(tmp_path / name)
    assert type(back) is cls and back.get_params() == json.loads(json.dumps(model.get_params()))
    c = back.sample(6, cls=cls_name, random_state=0)
    assert np.array_equal(a.lengths, c.lengths)
    _golden(f"flow/{name}", a.lengths[:2])


# ---------------------------------------------------------------------- TM forecasters
@pytest.fixture(scope="module")
def tm_slice():
    """Abilene, the first 400 five-minute matrices (real, 12 x 12; seasonal naive needs a day)."""
    from trafficgen.datasets import load_abilene

    return load_abilene(weeks=(1,))[:400]


@pytest.mark.parametrize("name", sorted(TM_CONFIGS))
def test_tm_forecaster_conformance(name, tm_slice, tmp_path):
    cls = registry.resolve("tm_forecaster", name)
    config = {**TM_CONFIGS[name]}
    if "random_state" in cls._param_names():
        config["random_state"] = 0
    model = _check_init_only_stores(cls, config)
    with pytest.raises(ConfigError):
        registry.build("tm_forecaster", name, **config, no_such_option=1)
    train, val = tm_slice[:300], tm_slice[300:340]
    assert model.fit(train, val=val) is model
    values = tm_slice.values
    origins = np.arange(350, 360)
    horizons = [1, 2]
    point = model.predict(values, origins, horizons)
    assert point.shape == (10, 2, 12, 12) and np.all(np.isfinite(point))
    assert np.array_equal(point, model.predict(values, origins, horizons))
    samples = model.predict_samples(values, origins[:3], horizons, 2, random_state=0)
    assert samples.shape == (3, 2, 2, 12, 12)
    assert np.array_equal(samples, model.predict_samples(values, origins[:3], horizons, 2, random_state=0))
    model.save_pretrained(tmp_path / name)
    from trafficgen.generators.tm import load_tm_model

    back = load_tm_model(tmp_path / name)
    assert type(back) is cls
    np.testing.assert_array_equal(back.predict(values, origins, horizons), point)
    _golden(f"tm_forecast/{name}", point[0, 0, 0, :6] / 1e3)


# ---------------------------------------------------------------------- TM estimators
@pytest.mark.parametrize("name", sorted(TM_ESTIMATOR_CONFIGS))
def test_tm_estimator_conformance(name, tm_slice, tmp_path):
    from trafficgen.datasets import load_abilene_routing

    cls = registry.resolve("tm_estimator", name)
    config = {**TM_ESTIMATOR_CONFIGS[name], "random_state": 0}
    model = _check_init_only_stores(cls, config)
    with pytest.raises(ConfigError):
        registry.build("tm_estimator", name, **config, no_such_option=1)
    assert model.fit(tm_slice[:300]) is model
    synth = model.sample(4, random_state=0)
    synth = getattr(synth, "values", synth)
    assert np.asarray(synth).reshape(4, -1).shape == (4, 144) and np.all(np.asarray(synth) >= 0)
    A = load_abilene_routing()
    Y = tm_slice.flat[300:304] @ A  # (4, 54)
    kw = dict(random_state=0) if "random_state" in inspect.signature(model.estimate).parameters else {}
    if name == "ddpm-tme":
        kw["n_opt"] = 2
    else:
        kw.update(n_init=8, n_opt=2)
    est = np.asarray(model.estimate(Y, A, **kw))
    assert est.shape == (4, 144) and np.all(np.isfinite(est)) and np.all(est >= 0)
    assert np.linalg.norm(est @ A - Y) < 0.5 * np.linalg.norm(Y)  # the projection onto the link loads
    np.testing.assert_array_equal(est, np.asarray(model.estimate(Y, A, **kw)))
    model.save_pretrained(tmp_path / name)
    back = cls.from_pretrained(tmp_path / name)
    np.testing.assert_array_equal(np.asarray(back.estimate(Y, A, **kw)), est)
    _golden(f"tm_estimate/{name}", est[0, :6] / 1e3)


@pytest.mark.parametrize("name", sorted(registry.TM_CLASSIC_ESTIMATORS))
def test_classic_estimators(name, tm_slice):
    from trafficgen.datasets import load_abilene_routing

    fn = registry.resolve("tm_classic_estimator", name)
    A = load_abilene_routing()
    X = tm_slice.flat[:5]
    Y = X @ A
    est = fn(Y, A)
    assert est.shape == (5, 144) and np.all(np.isfinite(est)) and np.all(est >= -1e-9 * float(X.max()))
    # better than guessing zero, and (the point of the projection) close to the observed loads
    assert np.linalg.norm(est @ A - Y) < {"gravity": 0.5, "pinv": 0.2}.get(name, 0.05) * np.linalg.norm(Y)


# ---------------------------------------------------------------------- metrics, representations, datasets
@pytest.mark.parametrize("name", sorted(registry.METRICS))
def test_metric_conformance(name, flow_slice):
    metric = registry.resolve("metric", name)()
    assert metric.name == name and metric.direction in ("lower", "higher")
    lo, hi = metric.range
    half = flow_slice[::2]
    value = metric.compute(flow_slice, half)
    assert lo <= value <= hi
    breakdown = metric.compute_breakdown(flow_slice, half)
    assert set(breakdown) <= set(flow_slice.classes) and all(lo <= v <= hi for v in breakdown.values())
    if name.endswith("_jsd"):
        assert metric.compute(flow_slice, flow_slice) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", sorted(registry.REPRESENTATIONS))
def test_representations_construct(name):
    cls = registry.resolve("representation", name)
    assert inspect.isclass(cls) and cls.__name__


@pytest.mark.parametrize("name", sorted(registry.DATASETS))
def test_datasets_load(name):
    from trafficgen.data.flowset import FlowSet
    from trafficgen.data.tmseries import TMSeries

    data = registry.resolve("dataset", name)()
    assert isinstance(data, (FlowSet, TMSeries)) and len(data) > 0
