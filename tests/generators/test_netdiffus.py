"""NetDiffusGenerator: padding, loss falls, same seed -> same flows, save/load, class conditioning,
samplers, devices."""
from __future__ import annotations

import numpy as np
import pytest

from tests.generators.test_cvae import (  # the separable set both models are tested on
    predicted_class,
    toy_flows,
)
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError
from trafficgen.generators.netdiffus import PAPER_PARAMS, NetDiffusGenerator, padded_size
from trafficgen.registry import get_generator
from trafficgen.representations.gasf import GasfImageMapper


@pytest.fixture(scope="module")
def fitted():
    # width 7 -> padded to an 8x8 image for the 2-level tiny U-Net; 160 flows x 60 epochs / 32 = 300
    # optimizer steps (~10-20 s on 2 cores), enough for the class-conditioning test below
    return NetDiffusGenerator(preset="tiny", max_packets=7, epochs=60, batch_size=32, learning_rate=3e-3,
                              num_inference_steps=2, random_state=0, progress=False).fit(toy_flows(160))


def test_registry_params_and_padding():
    assert get_generator("netdiffus") is NetDiffusGenerator
    assert {"preset", "epochs", "batch_size", "random_state", "max_packets", "progress", "prediction_type",
            "length_transform", "guidance_scale", "cfg_dropout", "sampler", "end_detection", "ema_decay",
            "device", "max_steps", "sample_precision"} <= set(NetDiffusGenerator().get_params())
    paper = NetDiffusGenerator(**PAPER_PARAMS)  # the seed paper's setting stays reachable
    assert (paper.max_packets, paper.length_transform, paper.sampler, paper.count_condition) == (
        10, "linear", "ddim", False)
    default = NetDiffusGenerator()  # the recorded CPU-budget configuration (ntg_netdiffus.yaml)
    assert (default.preset, default.num_inference_steps, default.prediction_type, default.length_transform,
            default.count_condition, default.end_detection, default.sampler, default.snap, default.ema_decay) == (
        "fast", 10, "v_prediction", "class_count_position_quantile", True, "step", "dpmsolver++", "class", 0.999)
    assert (default.epochs, default.max_steps, default.learning_rate) == (None, None, 2e-3)
    assert [padded_size(s, 3) for s in (8, 23, 32, 1)] == [8, 24, 32, 4]


def test_fit_pads_and_loss_falls(fitted):
    assert fitted.max_packets_ == 7 and fitted.image_size_ == 8
    assert fitted.classes_ == ["large", "small"]
    loss = fitted.history_["train_loss"]
    assert loss[-1] < loss[0]
    out = fitted.sample(6, random_state=0)
    assert out.max_packets == 7 and len(out) == 6
    assert np.all(out.lengths[out.n_packets > 0, 0] > 0)


def test_same_seed_same_flows(fitted):
    a = fitted.sample(8, random_state=1)
    assert a == fitted.sample(8, random_state=1)
    imgs = fitted.sample_images(np.array([0, 1, 0, 1]), random_state=2, num_inference_steps=2)
    # noise is drawn up front: the batch size changes only float summation order
    np.testing.assert_allclose(imgs, fitted.sample_images(np.array([0, 1, 0, 1]), random_state=2,
                                                          num_inference_steps=2, batch_size=3), atol=1e-5)
    assert not np.array_equal(imgs, fitted.sample_images(np.array([0, 1, 0, 1]), random_state=3,
                                                         num_inference_steps=2))
    g1 = fitted.sample_images(np.array([0, 1]), random_state=2, num_inference_steps=2, guidance_scale=2.0)
    assert not np.array_equal(g1, imgs[:2])


def test_sample_precision(fitted, monkeypatch):
    """bf16 autocast of the U-Net passes: close to fp32 where the CPU has bf16, one clear error
    line where it has not; fp16 needs CUDA; a bad name fails the config check."""
    import trafficgen._device as device_module

    labels = np.array([0, 1, 0, 1, 1, 0])
    fp32 = fitted.sample_images(labels, random_state=5, num_inference_steps=2)
    assert np.array_equal(fp32, fitted.sample_images(labels, random_state=5, num_inference_steps=2,
                                                     precision="fp32"))
    with pytest.raises(ConfigError, match="sample_precision='fp16': fp16 mixed precision needs a CUDA device"):
        fitted.sample_images(labels, random_state=5, precision="fp16")
    if device_module.cpu_has_bf16():
        bf16 = fitted.sample_images(labels, random_state=5, num_inference_steps=2, precision="bf16")
        assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)
        assert np.abs(bf16 - fp32).max() < 0.1  # bf16 keeps ~3 significant digits per pass
        flows = fitted.sample(6, random_state=5, dtype="bfloat16")  # the CLI's --dtype
        assert len(flows) == 6 and flows.n_packets.min() >= 1
    with pytest.raises(ConfigError, match="dtype must be one of float32, bfloat16"):
        fitted.sample(2, dtype="float16")
    assert fitted.sample(4, random_state=5, dtype="float32") == fitted.sample(4, random_state=5)
    monkeypatch.setattr(device_module, "cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="no native bf16"):
        fitted.sample_images(labels, random_state=5, precision="bf16")
    with pytest.raises(ConfigError, match="sample_precision must be one of"):
        NetDiffusGenerator(preset="tiny", progress=False, sample_precision="int8").fit(toy_flows(4))


def test_noise_scale(fitted):
    """``noise_scale`` scales the initial noise (a sampling temperature): 1 is the default path bit
    for bit, a smaller scale gives images that vary less around their class's, 0 is refused."""
    labels = np.zeros(64, dtype=np.int64)
    full = fitted.sample_images(labels, random_state=3, num_inference_steps=2)
    assert np.array_equal(full, fitted.sample_images(labels, random_state=3, num_inference_steps=2, noise_scale=1.0))
    spread = [fitted.sample_images(labels, random_state=3, num_inference_steps=10, noise_scale=s).std(axis=0).mean()
              for s in (1.0, 0.3, 1e-4)]  # (a 2-step solver is too coarse to show it)
    assert spread[1] < 0.8 * spread[0] and spread[2] < 0.01 * spread[0]
    with pytest.raises(ConfigError, match="noise_scale"):
        fitted.sample_images(labels, random_state=3, noise_scale=0.0)
    with pytest.raises(ConfigError, match="noise_scale must be > 0"):
        NetDiffusGenerator(preset="tiny", progress=False, noise_scale=-1).fit(toy_flows(4))


def test_save_load_equal(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "nd")
    assert {p.name for p in (tmp_path / "nd").iterdir()} == {"config.json", "model.safetensors", "gasf.json"}
    loaded = NetDiffusGenerator.from_pretrained(tmp_path / "nd")
    assert loaded.get_params() == fitted.get_params()
    assert loaded.sample(8, random_state=4) == fitted.sample(8, random_state=4)


@pytest.mark.parametrize("length_transform", ["log", "linear", "quantile"])
def test_images_invert_exactly(length_transform):
    """Flows -> padded GASF images -> flows is exact (float64), and with the log map also from the
    float32 images the U-Net is trained on; a 1-byte packet beside a 37,440-byte one survives."""
    flows = FlowSet.concat([toy_flows(20), FlowSet.from_sequences([[1, -37440, 2, -1], [5]], ["small", "large"],
                                                                  max_packets=8)])
    gen = NetDiffusGenerator(preset="tiny", max_packets=7, length_transform=length_transform)
    gen.mapper_ = GasfImageMapper(image_size=7).fit(flows)
    gen.max_packets_, gen.image_size_, gen.classes_ = 7, 8, ["large", "small"]
    flows = flows.truncate(7)
    for dtype in (np.float64, np.float32) if length_transform == "log" else (np.float64,):
        out = gen.decode_images(gen._images(flows, dtype=dtype), labels=flows.labels)
        np.testing.assert_array_equal(out.lengths, flows.lengths)
        np.testing.assert_array_equal(out.n_packets, flows.n_packets)


@pytest.mark.parametrize("guidance_scale,sampler,steps", [(1.0, "ddim", 50), (2.0, "ddim", 50),
                                                           (1.0, "dpmsolver++", 10), (1.0, "unipc", 10)])
def test_class_conditioning(fitted, guidance_scale, sampler, steps):
    # plain conditional and classifier-free guidance; DDIM and the multistep solvers at 10 steps
    fitted.set_params(sampler=sampler)
    try:
        out = fitted.sample(200, cls=["small", "large"], random_state=11, num_inference_steps=steps,
                            guidance_scale=guidance_scale)
    finally:
        fitted.set_params(sampler="ddim")
    pred = predicted_class(out)
    for c in ("small", "large"):
        assert (pred[out.labels == c] == c).mean() >= 0.9, c
    # the GASF inverse keeps the direction pattern (+ - + - + -) of the large-payload class
    large = out.lengths[out.labels == "large", :6]
    assert np.mean(np.all(np.sign(large) == [1, -1, 1, -1, 1, -1], axis=1)) >= 0.9
    if guidance_scale == 1.0:  # the log length map keeps the flow end (6 of 7 packets) detectable
        assert np.mean(out.n_packets == 6) >= 0.9


def test_step_end_detection_and_samplers(fitted):
    ids, _ = fitted.draw_conditions(["small", "large"] * 20, np.random.default_rng(0))
    images = fitted.sample_images(ids, random_state=5, num_inference_steps=2)
    labels = ["small", "large"] * 20  # no packet counts given: the end is detected from the images
    step = fitted.decode_images(images, labels=labels, end_detection="step")
    first = fitted.decode_images(images, labels=labels, end_detection="first_gap")
    assert np.all(step.n_packets >= first.n_packets)  # a gap inside no longer cuts the flow
    for sampler in ("dpmsolver++", "unipc"):
        a = fitted.sample_images(np.array([0, 1]), random_state=6, sampler=sampler, num_inference_steps=4)
        np.testing.assert_array_equal(a, fitted.sample_images(np.array([0, 1]), random_state=6, sampler=sampler,
                                                              num_inference_steps=4))
        assert np.all(np.abs(a) <= 1.0 + 1e-6)  # the solvers clip their image estimate


def test_device(fitted, tmp_path):
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            NetDiffusGenerator(preset="tiny", device="cuda", progress=False).fit(toy_flows(4))
        with pytest.raises(ConfigError, match="CUDA is not available"):
            NetDiffusGenerator.from_pretrained(_saved(fitted, tmp_path)).set_params(device="cuda").sample(2)
    with pytest.raises(ConfigError, match="unknown device"):
        NetDiffusGenerator(preset="tiny", device="tpu", progress=False).fit(toy_flows(4))
    # explicit CPU = auto on a CPU machine, bit for bit; saved weights are CPU tensors
    auto = fitted.sample(8, random_state=4)
    fitted.set_params(device="cpu")
    try:
        assert fitted.sample(8, random_state=4) == auto
    finally:
        fitted.set_params(device="auto")
    from safetensors.torch import load_file

    tensors = load_file(str(_saved(fitted, tmp_path) / "model.safetensors"))
    assert {t.device.type for t in tensors.values()} == {"cpu"}


def _saved(gen, tmp_path):
    path = tmp_path / "saved"
    if not path.exists():
        gen.save_pretrained(path)
    return path


def test_ema_and_step_budget():
    gen = NetDiffusGenerator(preset="tiny", max_packets=7, epochs=50, max_steps=6, batch_size=32, ema_decay=0.99,
                             random_state=0, progress=False).fit(toy_flows(64))
    assert gen.history_["steps"] == 6
    plain = NetDiffusGenerator(preset="tiny", max_packets=7, epochs=50, max_steps=6, batch_size=32, ema_decay=0.0,
                               random_state=0, progress=False).fit(toy_flows(64))
    w_ema, w_plain = (next(iter(g.model_.parameters())).detach() for g in (gen, plain))
    assert not torch_equal(w_ema, w_plain)  # sampling uses the moving average, not the last weights


def test_default_budget_is_steps_unless_epochs_given(monkeypatch):
    import trafficgen.generators.netdiffus as netdiffus

    monkeypatch.setattr(netdiffus, "DEFAULT_MAX_STEPS", 5)
    flows = toy_flows(64)  # 2 batches of 32 per epoch
    by_default = NetDiffusGenerator(preset="tiny", max_packets=7, batch_size=32, random_state=0, progress=False)
    assert by_default.fit(flows).history_["steps"] == 5  # neither epochs nor max_steps: the step budget
    by_epochs = NetDiffusGenerator(preset="tiny", max_packets=7, epochs=2, batch_size=32, random_state=0,
                                   progress=False)
    assert by_epochs.fit(flows).history_["steps"] == 4  # 2 epochs x 2 batches


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


@pytest.mark.parametrize("bad", [{"prediction_type": "noise"}, {"length_transform": "sqrt"}, {"sampler": "euler"},
                                 {"end_detection": "last"}, {"ema_decay": 1.0}, {"snap": "nearest"}])
def test_bad_config(bad):
    with pytest.raises(ConfigError):
        NetDiffusGenerator(preset="tiny", progress=False, **bad).fit(toy_flows(4))


def test_class_snapping_keeps_each_class_on_its_own_lengths(fitted, tmp_path):
    """snap="class": every decoded length is one the sampled class had in training; saved and loaded."""
    out = fitted.sample(40, cls=["small", "large"], random_state=7)
    fitted.set_params(snap="class")
    try:
        own = fitted.sample(40, cls=["small", "large"], random_state=7)
        fitted.save_pretrained(tmp_path / "snap")
        assert NetDiffusGenerator.from_pretrained(tmp_path / "snap").sample(6, random_state=3) == fitted.sample(
            6, random_state=3)
    finally:
        fitted.set_params(snap="train")
    for c in ("small", "large"):
        rows = own.labels == c
        seen = set(fitted.class_lengths_[c])
        assert set(np.abs(own.lengths[rows][own.valid_mask[rows]]).tolist()) <= seen
    np.testing.assert_array_equal(out.n_packets, own.n_packets)  # only the lengths move


def _class_quantile_generator(flows, width):
    from trafficgen.representations.length_tables import class_length_tables

    gen = NetDiffusGenerator(preset="tiny", max_packets=width, length_transform="class_quantile")
    gen.mapper_ = GasfImageMapper(image_size=width).fit(flows)
    gen.max_packets_, gen.image_size_, gen.classes_ = width, 8, flows.classes
    gen.class_lengths_, gen.class_counts_ = class_length_tables(flows, flows.classes)
    return gen


def test_class_quantile_inverts_exactly_and_needs_labels():
    flows = FlowSet.concat([toy_flows(20), FlowSet.from_sequences([[1, -37440, 2, -1], [5]], ["small", "large"],
                                                                  max_packets=8)]).truncate(7)
    gen = _class_quantile_generator(flows, 7)
    images = gen._images(flows, dtype=np.float64)
    out = gen.decode_images(images, labels=flows.labels)
    np.testing.assert_array_equal(out.lengths, flows.lengths)
    np.testing.assert_array_equal(out.n_packets, flows.n_packets)
    with pytest.raises(ConfigError, match="needs the class"):
        gen.decode_images(images)


def test_class_quantile_gives_a_small_class_wide_intervals():
    """A class with two lengths owns half of v's packet range per length under its own table; in the
    global table (98 more lengths of another class) each owns 10 / 118 of it, so an error of
    0.05 in v moves them to a neighbour there and not in the class table."""
    from trafficgen.representations.length_maps import quantile_decode, quantile_encode

    seqs = [[100], [101]] * 10 + [[L] for L in range(102, 200)]
    flows = FlowSet.from_sequences(seqs, ["a"] * 20 + ["c"] * 98, max_packets=1)
    gen = _class_quantile_generator(flows, 1)
    x = np.array([[100.0], [101.0]]) / gen.mapper_.scale_  # (2, 1)
    v_class = gen.encode_lengths(x, ["a", "a"])  # a's table: {100, 101}, 10 packets each
    np.testing.assert_allclose(v_class[:, 0], [0.625, 0.875])  # (1 + mid-rank CDF) / 2
    np.testing.assert_allclose(gen.decode_lengths(v_class + 0.05, ["a", "a"]) * gen.mapper_.scale_, x * gen.mapper_.scale_)
    m = gen.mapper_
    v_global = quantile_encode(x, m.scale_, m.valid_lengths_, m.length_counts_)
    moved = quantile_decode(v_global + 0.05, m.scale_, m.valid_lengths_, m.length_counts_) * m.scale_
    assert np.all(moved != x * m.scale_)


def test_class_quantile_saves_and_loads(tmp_path):
    import json

    gen = NetDiffusGenerator(preset="tiny", max_packets=7, epochs=1, batch_size=32, length_transform="class_quantile",
                             num_inference_steps=2, random_state=0, progress=False).fit(toy_flows(32))
    out = gen.sample(12, random_state=1)
    for c in gen.classes_:  # every sampled length is one its class had in training
        rows = out.labels == c
        assert set(np.abs(out.lengths[rows][out.valid_mask[rows]]).tolist()) <= set(gen.class_lengths_[c])
    gen.save_pretrained(tmp_path / "cq")
    assert NetDiffusGenerator.from_pretrained(tmp_path / "cq").sample(12, random_state=1) == out
    config = json.loads((tmp_path / "cq" / "config.json").read_text())
    config["class_counts_"][gen.classes_[0]] = config["class_counts_"][gen.classes_[0]][:-1]
    (tmp_path / "cq" / "config.json").write_text(json.dumps(config))
    from trafficgen.errors import InputFormatError

    with pytest.raises(InputFormatError, match="class_quantile"):
        NetDiffusGenerator.from_pretrained(tmp_path / "cq")


def _fit_save_reload(tmp_path, length_transform):
    """(a tiny fitted model, its saved folder, the folder's config.json): the reloaded model samples
    the same flows."""
    import json

    fitted = NetDiffusGenerator(preset="tiny", max_packets=7, epochs=1, batch_size=32, num_inference_steps=2,
                                length_transform=length_transform, random_state=0, progress=False).fit(toy_flows(32))
    out = fitted.sample(12, random_state=1)
    fitted.save_pretrained(tmp_path / length_transform)
    assert NetDiffusGenerator.from_pretrained(tmp_path / length_transform).sample(12, random_state=1) == out
    return fitted, tmp_path / length_transform, json.loads((tmp_path / length_transform / "config.json").read_text())


def test_class_position_quantile_gives_each_position_its_lengths(tmp_path):
    """Class a sends 100 then answers 1400 in every flow: at position 0 the table is (almost all)
    100, at position 1 (almost all) 1400, so each owns nearly the whole packet range of v there and
    an error of 0.2 in v keeps it; the class-wide table splits the range between the two. Exact
    inverse, save / load, and a damaged table is one clear error."""
    import json

    from trafficgen.errors import InputFormatError
    from trafficgen.representations.length_tables import class_position_counts

    flows = FlowSet.from_sequences([[100, -1400]] * 20 + [[7, -9, 7]] * 10, ["a"] * 20 + ["b"] * 10, max_packets=3)
    gen = _class_quantile_generator(flows, 3)
    gen.set_params(length_transform="class_position_quantile")
    gen.class_position_counts_ = class_position_counts(flows, gen.class_lengths_, 3)
    assert gen.class_position_counts_["a"].tolist() == [[20, 0], [0, 20], [0, 0]]  # a's table: 100, 1400
    assert gen.class_position_counts_["b"].tolist() == [[10, 0], [0, 10], [10, 0]]  # b's table: 7, 9
    x = gen.mapper_.scale_flows(flows, 3)  # (30, 3)
    v = gen.encode_lengths(x, flows.labels)
    np.testing.assert_allclose(gen.decode_lengths(v, flows.labels), x)  # exact on the training flows
    # a's weights: position 0 (20 + 0.1 * 20 * 0.5, 0 + 1) = (21, 1), position 1 (1, 21): mid-ranks 10.5 / 22, 11.5 / 22
    np.testing.assert_allclose(v[0, :2], [0.5 * (1 + 10.5 / 22), -0.5 * (1 + 11.5 / 22)])
    shift = np.array([[0.2, -0.2, 0.0]])  # towards the other length in both
    moved = gen.decode_lengths(v[:1] + shift, ["a"]) * gen.mapper_.scale_
    np.testing.assert_allclose(moved[0, :2], [100, -1400])
    gen.set_params(length_transform="class_quantile")
    v_class = gen.encode_lengths(x[:1], ["a"])  # 100 and 1400 each own half of the range: v = 0.625, -0.875
    np.testing.assert_allclose(v_class[0, :2], [0.625, -0.875])
    assert gen.decode_lengths(v_class + shift, ["a"])[0, 0] * gen.mapper_.scale_ == 1400

    fitted, folder, config = _fit_save_reload(tmp_path, "class_position_quantile")
    assert config["class_position_counts_"][fitted.classes_[0]][0][-1] > 0  # sparse rows [position, length, count]
    config["class_position_counts_"][fitted.classes_[0]][0][0] = 7  # a position outside max_packets_
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputFormatError, match="class_position_counts_"):
        NetDiffusGenerator.from_pretrained(folder)


def test_class_count_position_quantile_splits_by_packet_count(tmp_path):
    """In class a the 1-packet flows are 300 bytes and the longer flows start with 100: per count
    bucket each owns (nearly) all of position 0, so an error of 0.2 keeps both; the class-and-position
    table shares position 0 between them. The bucket is the given count, else the decoded end."""
    import json

    from trafficgen.errors import InputFormatError
    from trafficgen.representations.length_tables import class_position_counts

    flows = FlowSet.from_sequences([[300]] * 10 + [[100, -1400]] * 10, ["a"] * 20, max_packets=2)
    gen = _class_quantile_generator(flows, 2)
    gen.set_params(length_transform="class_count_position_quantile")
    gen.class_position_counts_ = class_position_counts(flows, gen.class_lengths_, 2)
    gen.class_count_position_counts_ = class_position_counts(flows, gen.class_lengths_, 2, by_count=True)
    assert gen.class_lengths_["a"] == [100, 300, 1400]
    assert gen.class_count_position_counts_["a"][:2].tolist() == [[[0, 10, 0], [0, 0, 0]], [[10, 0, 0], [0, 0, 10]]]
    x = gen.mapper_.scale_flows(flows, 2)  # (20, 2)
    v = gen.encode_lengths(x, flows.labels, flows.n_packets)
    np.testing.assert_allclose(gen.decode_lengths(v, flows.labels, flows.n_packets), x)
    shift = np.where(v[:, :1] > 0.75, -0.2, 0.2)  # 300 towards 100's side of the range, 100 towards 300's
    moved = gen.decode_lengths(v[:, :1] + shift, flows.labels, flows.n_packets)[:, 0] * gen.mapper_.scale_
    np.testing.assert_allclose(moved, np.abs(flows.lengths[:, 0]))
    gen.set_params(length_transform="class_position_quantile")
    v_pos = gen.encode_lengths(x, flows.labels)
    moved = gen.decode_lengths(v_pos[:, :1] + np.where(v_pos[:, :1] > 0.75, -0.2, 0.2), flows.labels)[:, 0]
    assert np.all(moved * gen.mapper_.scale_ != np.abs(flows.lengths[:, 0]))
    gen.set_params(length_transform="class_count_position_quantile")
    with pytest.raises(ConfigError, match="packet count"):
        gen.decode_lengths(v, flows.labels)
    images = gen._images(flows, dtype=np.float64)  # without the counts (count_condition off) the end sets the bucket
    np.testing.assert_array_equal(gen.decode_images(images, labels=flows.labels).lengths, flows.lengths)

    fitted, folder, config = _fit_save_reload(tmp_path, "class_count_position_quantile")
    assert "class_position_counts_" not in config  # the sum of the per-bucket tables
    config["class_count_position_counts_"][fitted.classes_[0]][0][-1] = 0  # a count of 0
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputFormatError, match="class_count_position_counts_"):
        NetDiffusGenerator.from_pretrained(folder)


def test_class_count_embedding_ids_and_null():
    import torch

    from trafficgen.generators.count_embedding import ClassCountEmbedding

    emb = ClassCountEmbedding(n_classes=3, width=4, dim=5)
    ids = emb.ids([0, 2, 1], [1, 4, 3])
    assert ids.tolist() == [0, 11, 6] and emb.null_id == 12
    out = emb(torch.tensor([11, 12]))  # (2, 5)
    torch.testing.assert_close(out[0], emb.class_table.weight[2] + emb.count_table.weight[3])
    torch.testing.assert_close(out[1], emb.class_table.weight[3] + emb.count_table.weight[4])
    with pytest.raises(ValueError):
        emb.ids([0], [5])


def _counted_flows(n: int) -> FlowSet:
    """'small' flows of 2 or 5 packets (alternating), 'large' flows of 3."""
    base = toy_flows(n)
    counts = np.where(base.labels == "large", 3, np.where(np.arange(n) % 4 == 0, 2, 5))
    return FlowSet.from_sequences([row[:k].tolist() for row, k in zip(base.lengths, counts, strict=True)],
                                  base.labels, max_packets=8)


def test_count_condition_draws_each_class_counts_and_saves(tmp_path):
    """count_condition: every sampled flow has a packet count its class had in training, in about
    the training proportions, and exactly the count it was generated for; saved and loaded."""
    flows = _counted_flows(64)
    gen = NetDiffusGenerator(preset="tiny", max_packets=7, epochs=2, batch_size=32, count_condition=True,
                             num_inference_steps=2, random_state=0, progress=False).fit(flows)
    assert gen.class_packet_counts_ == {"large": [0, 0, 32, 0, 0, 0, 0], "small": [0, 16, 0, 0, 16, 0, 0]}
    out = gen.sample(400, cls=["small", "large"], random_state=3)
    small = out.n_packets[out.labels == "small"]
    assert set(small.tolist()) == {2, 5} and 0.4 <= np.mean(small == 2) <= 0.6
    assert set(out.n_packets[out.labels == "large"].tolist()) == {3}
    ids, counts = gen.draw_conditions(["small"] * 3, np.random.default_rng(0))
    images = gen.sample_images(ids, random_state=1, num_inference_steps=2)
    np.testing.assert_array_equal(gen.decode_images(images, labels=["small"] * 3, packet_counts=counts).n_packets,
                                  counts)
    gen.save_pretrained(tmp_path / "cc")
    assert NetDiffusGenerator.from_pretrained(tmp_path / "cc").sample(20, random_state=4) == gen.sample(
        20, random_state=4)
    import json

    from trafficgen.errors import InputFormatError

    config = json.loads((tmp_path / "cc" / "config.json").read_text())
    del config["class_packet_counts_"]
    (tmp_path / "cc" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputFormatError, match="class_packet_counts_"):
        NetDiffusGenerator.from_pretrained(tmp_path / "cc")


def test_count_condition_off_is_a_plain_class_model():
    """Without count_condition the U-Net keeps diffusers' class embedding (n_classes + 1 rows), the
    condition ids are the class ids and draw_conditions draws nothing."""
    import torch

    gen = NetDiffusGenerator(preset="tiny", max_packets=7, epochs=1, batch_size=32, count_condition=False,
                             num_inference_steps=2, random_state=0, progress=False).fit(toy_flows(16))
    assert isinstance(gen.model_.class_embedding, torch.nn.Embedding) and gen.model_.class_embedding.num_embeddings == 3
    ids, counts = gen.draw_conditions(["small", "large"], np.random.default_rng(0))
    assert ids.tolist() == [1, 0] and counts is None
