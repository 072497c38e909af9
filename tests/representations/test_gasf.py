"""GasfImageMapper: exact inverse on real and random flows, noise, hand-computed image, JSON."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError, NotFittedError
from trafficgen.representations.gasf import GasfImageMapper


def _shipped_flows(name: str, width: int) -> FlowSet:
    """Every shipped flow of a data set (packaged with trafficgen: runs on a fresh clone). The
    client is the sender of the first packet, so every flow starts with a positive length."""
    import trafficgen.datasets as ds

    loader = {"ndpi": ds.load_ndpi_apps, "cicdoh20": ds.load_cicdoh20}[name]
    return loader().truncate(width)


@pytest.mark.parametrize("name", ["ndpi", "cicdoh20"])
@pytest.mark.parametrize("width", [16, 32])
def test_shipped_flows_round_trip_exactly(name, width):
    flows = _shipped_flows(name, width)
    assert np.all(flows.lengths[:, 0] > 0)
    mapper = GasfImageMapper(image_size=width).fit(flows)
    assert mapper.scale_ >= np.abs(flows.lengths).max()
    images = mapper.encode(flows)
    assert images.shape == (len(flows), 1, width, width) and images.dtype == np.float64
    back = mapper.decode(images, labels=flows.labels)
    assert np.array_equal(back.lengths, flows.lengths)
    assert np.array_equal(back.n_packets, flows.n_packets)
    assert back == FlowSet(lengths=flows.lengths, n_packets=flows.n_packets, labels=flows.labels)


def test_cicdoh20_scale_is_the_mtu_payload():
    assert GasfImageMapper(image_size=32).fit(_shipped_flows("cicdoh20", 32)).scale_ == 1500.0


def test_slightly_noisy_real_images_decode_to_the_flow():
    flows = _shipped_flows("cicdoh20", 32)
    mapper = GasfImageMapper(image_size=32).fit(flows)
    noisy = mapper.encode(flows) + np.random.default_rng(0).normal(0.0, 3e-5, (len(flows), 1, 32, 32))
    back = mapper.decode(noisy)
    assert np.array_equal(back.lengths, flows.lengths)


def test_noisy_images_with_coarse_lengths_decode_exactly(rng):
    # lengths from a small set: noise well below the gaps between valid lengths is removed by snapping
    seqs = [[int(rng.choice([100, 600, 1200])) * (1 if j == 0 else int(rng.choice([-1, 1])))
             for j in range(int(rng.integers(1, 13)))] for _ in range(200)]
    flows = FlowSet.from_sequences(seqs, max_packets=12)
    mapper = GasfImageMapper(image_size=12).fit(flows)
    noisy = mapper.encode(flows) + rng.normal(0.0, 2e-3, (len(flows), 1, 12, 12))
    assert mapper.decode(noisy) == FlowSet(lengths=flows.lengths, n_packets=flows.n_packets)


sequences = st.lists(st.integers(1, 1500), min_size=0, max_size=10).flatmap(
    lambda mags: st.lists(st.sampled_from([-1, 1]), min_size=len(mags), max_size=len(mags)).map(
        lambda signs: [m * (1 if i == 0 else s) for i, (m, s) in enumerate(zip(mags, signs, strict=True))]))


@settings(max_examples=60, deadline=None)
@given(st.lists(sequences, min_size=1, max_size=8))
def test_random_valid_sequences_round_trip(seqs):
    flows = FlowSet.from_sequences(seqs, max_packets=10)
    for mapper in (GasfImageMapper(image_size=10, scale=1500, snap="range"),
                   GasfImageMapper(image_size=10, scale=1500).fit(flows)):
        assert mapper.decode(mapper.encode(flows)) == FlowSet(lengths=flows.lengths, n_packets=flows.n_packets)


def test_hand_computed_image():
    flows = FlowSet.from_sequences([[3, -1]], max_packets=3)
    mapper = GasfImageMapper(image_size=3).fit(flows)
    assert mapper.scale_ == 3.0 and mapper.valid_lengths_.tolist() == [1, 3] and mapper.min_length_ == 1
    g = mapper.encode(flows)[0, 0]
    # x = [1, -1/3, 0 (padding)], G_ij = x_i x_j - sqrt(1 - x_i^2) sqrt(1 - x_j^2)
    s1 = np.sqrt(8 / 9)
    expected = np.array([[1.0, -1 / 3, 0.0], [-1 / 3, 1 / 9 - 8 / 9, -s1], [0.0, -s1, -1.0]])
    np.testing.assert_allclose(g, expected, atol=1e-15)
    assert mapper.decode(g[None]).sequences() == [[3, -1]]


def test_any_image_decodes_to_a_valid_flow(rng):
    flows = FlowSet.from_sequences([[40, -1500, 300], [1200, 60]], max_packets=8)
    mapper = GasfImageMapper(image_size=8).fit(flows)
    images = rng.uniform(-1.0, 1.0, (50, 1, 8, 8))
    out = mapper.decode(images)
    valid = out.valid_mask
    assert set(np.abs(out.lengths[valid]).tolist()) <= {40, 60, 300, 1200, 1500}
    assert np.all(out.lengths[~valid] == 0)
    assert np.all(out.lengths[out.n_packets > 0, 0] > 0)


def test_json_save_load_and_errors(tmp_path):
    flows = FlowSet.from_sequences([[5, -2, 7], [1]], max_packets=4)
    mapper = GasfImageMapper(image_size=4).fit(flows)
    mapper.save(tmp_path / "gasf.json")
    loaded = GasfImageMapper.load(tmp_path / "gasf.json")
    assert loaded.to_dict() == mapper.to_dict()
    assert loaded.decode(mapper.encode(flows)).sequences() == [[5, -2, 7], [1]]
    with pytest.raises(NotFittedError):
        GasfImageMapper(image_size=4).encode(flows)
    with pytest.raises(InputFormatError):
        mapper.encode(FlowSet.from_sequences([[-5, 2]], max_packets=4))
    with pytest.raises(InputFormatError):
        GasfImageMapper.load(tmp_path / "missing.json")


def test_step_end_detection_fits_the_presence_pattern():
    from trafficgen.representations.gasf import flow_ends

    present = np.array([[1, 1, 0, 1, 1, 1, 0, 0],    # one gap inside: step keeps 6, first_gap cuts at 2
                        [1, 1, 1, 0, 0, 1, 0, 0],    # one stray packet in the padding: both say 3
                        [1, 1, 1, 1, 1, 1, 1, 1],
                        [0, 0, 0, 0, 0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(flow_ends(present, "first_gap"), [2, 3, 8, 0])
    np.testing.assert_array_equal(flow_ends(present, "step"), [6, 3, 8, 0])
    flows = _shipped_flows("ndpi", 16)  # exact prefixes: both rules agree with the data
    np.testing.assert_array_equal(flow_ends(flows.valid_mask, "step"), flows.n_packets)
    with pytest.raises(ConfigError):
        flow_ends(present, "last")


def test_length_counts_are_fitted_and_saved(tmp_path):
    flows = FlowSet.from_sequences([[100, -200, 100], [100, -1448]], ["a", "b"], max_packets=4)
    m = GasfImageMapper(image_size=4).fit(flows)
    np.testing.assert_array_equal(m.valid_lengths_, [100, 200, 1448])
    np.testing.assert_array_equal(m.length_counts_, [3, 1, 1])
    m.save(tmp_path / "g.json")
    back = GasfImageMapper.load(tmp_path / "g.json")
    np.testing.assert_array_equal(back.length_counts_, [3, 1, 1])
    old = m.to_dict()
    del old["length_counts_"]  # mappers saved before the counts existed still load
    assert GasfImageMapper.from_dict(old).length_counts_ is None
    with pytest.raises(InputFormatError):
        GasfImageMapper.from_dict({**m.to_dict(), "length_counts_": [1, 2]})
