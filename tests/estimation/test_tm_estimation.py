import numpy as np
import pytest

from tests.generators.tm.test_ddpm_tme import toy_routing, toy_series
from trafficgen.errors import ConfigError
from trafficgen.estimation.classic import (
    add_access_links,
    find_access_links,
    gravity_estimate,
    pinv_estimate,
    tomogravity_estimate,
    weighted_projection,
)
from trafficgen.evaluation.tm.estimation_metrics import link_residual, tre
from trafficgen.generators.tm.latent_fit import VAETME, WGANGPTME


def _two_node():
    X = np.array([[1.0, 2.0, 3.0, 4.0]])  # [[1, 2], [3, 4]]
    backbone = np.array([[0.0], [1.0], [0.0], [0.0]])  # one link carrying OD 0->1
    A = add_access_links(backbone)  # (4, 5)
    return X, A, X @ A


def test_access_links_layout():
    _, A, Y = _two_node()
    np.testing.assert_array_equal(Y, [[2.0, 3.0, 4.0, 7.0, 6.0]])  # link, out0, in0, out1, in1
    out_cols, in_cols = find_access_links(A)
    assert list(out_cols) == [1, 3] and list(in_cols) == [2, 4]
    assert find_access_links(A[:, :3]) is None


def test_gravity_hand_computed():
    _, A, Y = _two_node()
    # out = [3, 7], in = [4, 6], total 10 -> x_ij = out_i in_j / 10
    np.testing.assert_allclose(gravity_estimate(Y, A), [[1.2, 1.8, 2.8, 4.2]])


def test_tomogravity_hand_computed():
    X, A, Y = _two_node()
    # the link + node totals determine X exactly: x01 = 2, x00 = 1, x10 = 3, x11 = 4
    np.testing.assert_allclose(tomogravity_estimate(Y, A, ipf_iters=0), X, atol=1e-9)
    np.testing.assert_allclose(tomogravity_estimate(Y, A), X, atol=1e-9)


def test_weighted_projection_hand_computed():
    A = np.array([[1.0], [1.0], [0.0], [0.0]])
    prior = np.array([[2.0, 6.0, 1.0, 1.0]])
    # x = p + W 1 (1^T W 1)^-1 (10 - 8) = p + p * 2 / 8 on the linked flows
    np.testing.assert_allclose(weighted_projection(prior, [[10.0]], A), [[2.5, 7.5, 1.0, 1.0]])


def test_tomogravity_fits_links_and_beats_gravity():
    X = toy_series(40).flat
    A = toy_routing()
    Y = X @ A
    tg, g = tomogravity_estimate(Y, A, ipf_iters=0), gravity_estimate(Y, A)
    assert link_residual(tg, Y, A).max() < 1e-3
    assert np.nanmean(tre(X, tg)) < np.nanmean(tre(X, g))
    assert np.all(tg >= 0)


def test_pinv_consistent_and_errors():
    X = toy_series(10).flat
    A = toy_routing()
    x = pinv_estimate(X @ A, A)
    assert x.shape == X.shape and np.all(x >= 0)
    with pytest.raises(ConfigError):
        pinv_estimate(np.ones((2, 3)), A)
    with pytest.raises(ConfigError):
        gravity_estimate(np.ones((1, 1)), np.ones((4, 1)))  # no access links


@pytest.mark.parametrize("cls", [VAETME, WGANGPTME])
def test_latent_fit_estimation(cls):
    train, test = toy_series(96, seed=0), toy_series(12, seed=1).flat
    A = toy_routing()
    Y = test @ A
    m = cls(epochs=3, latent_dim=4, width=32, batch_size=32, random_state=3).fit(train)
    assert len(m.history_["loss"]) == 3
    est, raw = m.estimate(Y, A, n_init=16, n_opt=5, return_raw=True)
    assert est.shape == test.shape and np.all(est >= 0) and np.all(raw >= 0)
    assert link_residual(est, Y, A).mean() < link_residual(raw, Y, A).mean()
    m2 = cls(epochs=3, latent_dim=4, width=32, batch_size=32, random_state=3).fit(train)
    np.testing.assert_array_equal(m.sample(5, random_state=1), m2.sample(5, random_state=1))
    np.testing.assert_array_equal(est, m2.estimate(Y, A, n_init=16, n_opt=5))
