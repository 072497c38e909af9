"""LEAD Traffic-to-Image: Eq. 1 and Eq. 2 by hand, the first-frame cases, one definition for numpy
and torch (series and batches of windows), exact inverse."""
from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from trafficgen.errors import ConfigError
from trafficgen.representations.traffic_image import TrafficImageMapper, traffic_frames


def test_eq1_eq2_by_hand():
    x = np.array([[[0.0, 10.0], [5.0, 20.0]],     # min 0, max 20
                  [[2.0, 2.0], [4.0, 6.0]],       # min 2, max 6
                  [[1.0, 1.0], [1.0, 1.0]]])      # constant
    images, mins, maxs = TrafficImageMapper().encode(x)
    assert images.shape == (3, 3, 2, 2)
    np.testing.assert_array_equal(mins, [0, 2, 1])
    np.testing.assert_array_equal(maxs, [20, 6, 1])
    g = np.array([[[1.0, 0.5], [0.75, 0.0]],      # 1 - (x - min) / (max - min)
                  [[1.0, 1.0], [0.5, 0.0]],
                  [[1.0, 1.0], [1.0, 1.0]]])      # constant matrix: normalised 0 -> X^G = 255
    np.testing.assert_array_equal(images[:, 0], g)
    np.testing.assert_array_equal(images[0, 1], 0.0)  # no predecessor
    np.testing.assert_array_equal(images[0, 2], 0.0)
    d1_1 = g[1] - g[0]
    np.testing.assert_array_equal(images[1, 1], d1_1)
    np.testing.assert_array_equal(images[1, 2], 0.0)  # D2_1 needs the matrix before the first one
    d1_2 = g[2] - g[1]
    np.testing.assert_array_equal(images[2, 1], d1_2)
    np.testing.assert_array_equal(images[2, 2], d1_2 - d1_1)
    assert images[2, 2].min() < 0  # difference channels are signed


def test_traffic_frames_hand_computed_numpy_and_torch_agree():
    v = np.array([1.0, 3.0, 4.0, 10.0]).reshape(4, 1, 1)
    f = traffic_frames(v)
    assert f.shape == (4, 3, 1, 1) and isinstance(f, np.ndarray)
    assert f[:, 0, 0, 0].tolist() == [1, 3, 4, 10]
    assert f[:, 1, 0, 0].tolist() == [0, 2, 1, 6]
    assert f[:, 2, 0, 0].tolist() == [0, 0, -1, 5]  # D2_0 = D2_1 = 0
    assert traffic_frames(v, grayscale=True).shape == (4, 1, 1, 1)
    t = traffic_frames(torch.tensor(v, dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_array_equal(t.numpy(), f)
    # a batch of windows (B, T, N, N): the differences start again at each window's first matrix
    series = np.random.default_rng(0).random((9, 3, 3))
    windows = np.stack([series[i:i + 4] for i in range(6)])  # (6, 4, 3, 3)
    batch = traffic_frames(torch.tensor(windows))  # (6, 4, 3, 3, 3)
    assert batch.shape == (6, 4, 3, 3, 3)
    for i in range(6):
        np.testing.assert_array_equal(batch[i].numpy(), traffic_frames(windows[i]))
    # the mapper's frames are traffic_frames of its value channel
    images, _, _ = TrafficImageMapper().encode(series)
    np.testing.assert_array_equal(images, traffic_frames(images[:, 0]))


def test_exact_inverse_to_real_units(rng):
    x = rng.gamma(0.4, 3e6, size=(50, 12, 12)) * (rng.random((50, 12, 12)) > 0.1)
    x[7] = 42.0  # a constant matrix decodes exactly too
    mapper = TrafficImageMapper()
    images, mins, maxs = mapper.encode(x)
    back = mapper.decode(images, mins, maxs)
    np.testing.assert_allclose(back, x, rtol=1e-13, atol=1e-9 * x.max())
    np.testing.assert_array_equal(back[7], 42.0)
    # (B, H, N, N) gray predictions with (B, H) scales decode with broadcasting
    gray = images[:, 0].reshape(10, 5, 12, 12)
    np.testing.assert_allclose(mapper.decode_gray(gray, mins.reshape(10, 5), maxs.reshape(10, 5)),
                               x.reshape(10, 5, 12, 12), rtol=1e-13, atol=1e-9 * x.max())


def test_grayscale_and_config(tmp_path, rng):
    x = rng.random((4, 3, 3))
    rgb, _, _ = TrafficImageMapper().encode(x)
    gray, mins, maxs = TrafficImageMapper(grayscale=True).encode(x)
    assert gray.shape == (4, 1, 3, 3)
    np.testing.assert_array_equal(gray[:, 0], rgb[:, 0])
    m = TrafficImageMapper.from_dict(TrafficImageMapper(grayscale=True).to_dict())
    assert m.grayscale and m.n_channels == 1
    with pytest.raises(ConfigError):
        TrafficImageMapper().encode(np.zeros((2, 3, 4)))
    TrafficImageMapper().save_png(rgb, tmp_path / "frames.png", max_frames=2)
    assert (tmp_path / "frames.png").read_bytes()[:4] == b"\x89PNG"


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 4), st.just(3), st.just(3)),
              elements=st.floats(0, 1e12, allow_nan=False, allow_infinity=False)))
def test_inverse_property(x):
    mapper = TrafficImageMapper()
    images, mins, maxs = mapper.encode(x)
    assert np.all((images[:, 0] >= 0) & (images[:, 0] <= 1))
    np.testing.assert_allclose(mapper.decode(images, mins, maxs), x, rtol=1e-12, atol=1e-12 * (x.max() + 1))
