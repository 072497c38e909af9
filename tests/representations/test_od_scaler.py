"""The one TM log scale: the options each model uses, by hand, exact round trips, persistence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trafficgen.errors import ConfigError, NotFittedError
from trafficgen.representations.od_scaler import ODLogScaler


def _series(rng, t=50, n=3):
    x = rng.uniform(0, 1e6, size=(t, n, n))
    x[0, 0, 0] = 0.0
    return x


def test_forecasters_default_global_standard_by_hand(rng):
    x = _series(rng)
    x[:, 2, 2] = 7.0  # a flat OD pair
    sc = ODLogScaler().fit(x)
    assert sc.scale_ == x.mean()
    u = np.log1p(x / x.mean())
    np.testing.assert_array_equal(sc.mean_, u.mean(0))
    assert sc.std_[2, 2] == 1e-3 and sc.std_[0, 1] == u.std(0)[0, 1]  # flat pair: clamped at min_std
    np.testing.assert_array_equal(sc.transform(x), (u - u.mean(0)) / sc.std_)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(x)), x, rtol=1e-10, atol=1e-6)
    assert np.all(sc.inverse_transform(np.full((1, 3, 3), -50.0)) == 0.0)  # clipped at 0
    assert ODLogScaler().fit(np.zeros((4, 2, 2))).scale_ == 1.0  # an all-zero series keeps scale 1


def test_estimators_per_od_bounded_unit_std(rng):
    x = _series(rng).reshape(50, 9)
    x[:, 4] = 0.0  # an all-zero flow
    sc = ODLogScaler(scale="per_od", relative_scale=0.5, min_std=1e-6, flat_std="unit", bounded=True).fit(x)
    m = x.mean(0)
    floor = m[m > 0].min() * 1e-3
    np.testing.assert_array_equal(sc.scale_, np.maximum(m, floor) * 0.5)
    assert sc.std_[4] == 1.0  # flat flow: only centred
    u = np.log1p(x / sc.scale_)
    np.testing.assert_array_equal(sc.upper_, u.max(0) + 1.0)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(x)), x, rtol=1e-10)
    huge = sc.inverse_transform(np.full((1, 9), 1e6))  # bounded: at most e * (training max + s)
    assert np.all(np.isfinite(huge)) and np.all(huge <= sc.scale_ * np.expm1(sc.upper_) + 1e-9)
    z = torch.tensor(sc.transform(x))
    np.testing.assert_allclose(sc.torch_inverse(z).numpy(), x, rtol=1e-10)
    zt = torch.zeros(2, 9, requires_grad=True)
    sc.torch_inverse(zt).sum().backward()  # differentiable
    assert zt.grad is not None and torch.all(torch.isfinite(zt.grad))


def test_lead_minmax_with_z_clip(rng):
    x = _series(rng)
    sc = ODLogScaler(normalize="minmax", z_clip=(-1.5, 1.5)).fit(x)
    z = sc.transform(x)
    assert z.min() == pytest.approx(-1.0) and z.max() == pytest.approx(1.0)
    np.testing.assert_allclose(sc.inverse_transform(z), x, rtol=1e-10, atol=1e-6)
    np.testing.assert_array_equal(sc.inverse_transform(np.full((1, 3, 3), 9.0)),
                                  sc.inverse_transform(np.full((1, 3, 3), 1.5)))
    np.testing.assert_allclose(sc.torch_inverse(torch.tensor(z)).numpy(), sc.inverse_transform(z), rtol=1e-12)


@pytest.mark.parametrize("options", [{}, {"normalize": "minmax", "z_clip": (-1.5, 1.5)},
                                     {"scale": "per_od", "flat_std": "unit", "bounded": True}])
def test_state_round_trip(rng, options):
    x = _series(rng)
    sc = ODLogScaler(**options).fit(x)
    state = sc.state()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float64 for v in state.values())
    back = ODLogScaler(**options).load_state({k: torch.as_tensor(v) for k, v in state.items()})
    z = sc.transform(x)
    np.testing.assert_array_equal(back.transform(x), z)
    np.testing.assert_array_equal(back.inverse_transform(z), sc.inverse_transform(z))


def test_errors():
    with pytest.raises(NotFittedError):
        ODLogScaler().transform(np.ones((2, 2, 2)))
    with pytest.raises(ConfigError):
        ODLogScaler(scale="nope").fit(np.ones((3, 2, 2)))
    with pytest.raises(ConfigError):
        ODLogScaler(scale="per_od", relative_scale=0.0).fit(np.ones((3, 2, 2)))
    with pytest.raises(ConfigError):
        ODLogScaler().fit(np.ones((1, 2, 2)))  # one matrix has no spread
