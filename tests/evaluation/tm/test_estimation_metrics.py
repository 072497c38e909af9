import numpy as np
import pytest

from trafficgen.errors import ConfigError
from trafficgen.evaluation.tm.estimation_metrics import (
    discriminator_score,
    error_cdf,
    estimation_report,
    link_residual,
    mmd_rbf,
    rmse,
    rmse_t,
    sre,
    summary_stats,
    tre,
)

X = np.array([[1.0, 3.0], [2.0, 0.0]])
XH = np.array([[2.0, 3.0], [1.0, 1.0]])


def test_hand_computed():
    assert rmse(X, XH) == pytest.approx(np.sqrt(3 / 4))
    np.testing.assert_allclose(tre(X, XH), [1 / 4, 2 / 2])
    np.testing.assert_allclose(rmse_t(X, XH), [np.sqrt(1 / 2), 1.0])
    np.testing.assert_allclose(sre(X, XH), [2 / 3, 1 / 3])
    assert summary_stats([1.0, 2.0, 6.0]) == {"mean": 3.0, "median": 2.0, "std": pytest.approx(np.std([1, 2, 6])),
                                               "max": 6.0}
    A = np.array([[1.0], [1.0]])
    np.testing.assert_allclose(link_residual(XH, X @ A, A), [1 / 4, 0.0])
    rep = estimation_report(X, XH, X @ A, A)
    assert rep["tre"]["max"] == 1.0 and rep["link_residual"]["mean"] == pytest.approx(0.125)
    assert rep["rmse_t"]["max"] == 1.0


def test_sre_drops_zero_flows_and_cdf():
    x = np.array([[0.0, 2.0], [0.0, 2.0]])
    np.testing.assert_allclose(sre(x, x + 1), [0.5])
    thr, frac = error_cdf(X, XH)
    assert thr[0] == 0.0 and thr[-1] == 1.0 and frac[-1] == 1.0 and frac[0] == 0.25
    with pytest.raises(ConfigError):
        rmse(X, XH[:1])


def test_mmd_and_discriminator(rng):
    a = rng.lognormal(2.0, 0.5, size=(200, 6))
    b = rng.lognormal(2.0, 0.5, size=(200, 6))
    c = rng.lognormal(4.0, 0.5, size=(200, 6))
    assert mmd_rbf(a, a) == pytest.approx(0.0, abs=1e-12)
    assert mmd_rbf(a, b) < 0.05 < mmd_rbf(a, c)
    assert discriminator_score(a, c) == 1.0
    assert discriminator_score(a, b) < 0.7
    assert discriminator_score(a, b, random_state=3) == discriminator_score(a, b, random_state=3)
