import networkx as nx
import numpy as np
import pytest
import torch

from trafficgen.data.routing import routing_from_topology
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError, NotFittedError
from trafficgen.estimation.classic import add_access_links, kl_projection, pinv_estimate
from trafficgen.evaluation.tm.estimation_metrics import link_residual, tre
from trafficgen.generators.tm.ddpm_tme.denoiser import ddim_sample, ddim_timesteps, make_schedulers
from trafficgen.generators.tm.ddpm_tme.estimate import refine_to_link_loads
from trafficgen.generators.tm.ddpm_tme.model import DDPMTME
from trafficgen.generators.tm.ddpm_tme.preprocess import flow_scaler


def toy_series(n_t: int = 160, seed: int = 0) -> TMSeries:
    """Rank-2 positive TMs: two fixed OD patterns with log-normal daily-like weights."""
    patterns = np.random.default_rng(0).lognormal(0.0, 1.0, size=(2, 16)) * 100.0  # (2, n_od), fixed
    rng = np.random.default_rng(seed)
    t = np.arange(n_t) + 7 * seed
    w = np.stack([1.5 + np.sin(2 * np.pi * t / 24), 1.5 + np.cos(2 * np.pi * t / 24)], 1)  # (T, 2)
    w = w * rng.lognormal(0.0, 0.05, size=w.shape)
    values = (w @ patterns).reshape(n_t, 4, 4)
    return TMSeries(values, ["a", "b", "c", "d"], 300.0, "bytes")


def toy_routing() -> np.ndarray:
    g = nx.DiGraph()
    for i in range(4):
        g.add_edge(str(i), str((i + 1) % 4))
        g.add_edge(str((i + 1) % 4), str(i))
    A, _ = routing_from_topology(g, ["0", "1", "2", "3"])
    return add_access_links(A)  # (16, 8 + 8)


TINY = dict(latent_dim=8, hidden_dim=32, width=32, n_blocks=2, batch_size=32, sampling_steps=4)




@pytest.fixture(scope="module")
def fitted():
    return DDPMTME(**TINY, epochs=60, pretrain_epochs=30, lr=3e-3, random_state=7).fit(toy_series(128))


def test_scaler_round_trip_exact():
    x = toy_series(50).flat
    sc = flow_scaler().fit(x)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(x)), x, rtol=1e-10)
    z = torch.as_tensor(sc.transform(x))
    np.testing.assert_allclose(sc.torch_inverse(z).numpy(), x, rtol=1e-10)
    assert np.all(sc.inverse_transform(np.full_like(x, 1e6)) < np.inf)  # bounded, no overflow


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_matches_diffusers_eta0(prediction_type):
    from torch import nn

    class Lin(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(3, 3)

        def forward(self, x, t):
            return self.w(x) * (1 + t[:, None].float() / 1000)

    torch.manual_seed(0)
    net = Lin()
    ddpm, ddim = make_schedulers(1000, prediction_type=prediction_type)
    x = torch.randn(5, 3)
    ours = ddim_sample(net, x, None, ddpm.alphas_cumprod, ddim_timesteps(ddim, 5), eta=0.0,
                       prediction_type=prediction_type)
    ddim.set_timesteps(5)
    ref = x
    for t in ddim.timesteps:
        ref = ddim.step(net(ref, torch.full((5,), int(t))), t, ref, eta=0.0).prev_sample
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_er_round_trip_after_pretraining():
    m = DDPMTME(**TINY, epochs=0, pretrain_epochs=40, lr=3e-3, random_state=0).fit(toy_series(128))
    h = m.history_["pretrain_loss"]
    assert h[-1] < 0.05 * h[0]
    assert m.reconstruction_error(toy_series(20, seed=5).flat) < 0.1  # relative L1, real units


def test_training_loss_falls_and_sample_units(fitted):
    d = fitted.history_["diffusion_loss"]
    assert d[-1] < d[0]
    s = fitted.sample(6, random_state=1)
    assert s.values.shape == (6, 4, 4) and s.unit == "bytes" and np.all(s.values >= 0)
    np.testing.assert_array_equal(s.values, fitted.sample(6, random_state=1).values)
    assert not np.array_equal(s.values, fitted.sample(6, random_state=2).values)


def test_seeded_fit_reproducible():
    a = DDPMTME(**TINY, epochs=2, pretrain_epochs=1, random_state=3).fit(toy_series(64))
    b = DDPMTME(**TINY, epochs=2, pretrain_epochs=1, random_state=3).fit(toy_series(64))
    np.testing.assert_array_equal(a.sample(4, random_state=0).values, b.sample(4, random_state=0).values)
    # random_state=None is fresh entropy (the package's one rule), not the fit seed
    assert not np.array_equal(a.sample(4).values, a.sample(4).values)


def _toy_targets():
    X = toy_series(24, seed=1).flat[8:]
    A = toy_routing()
    return X, A, X @ A


def test_estimation_beats_pinv(fitted):
    X, A, Y = _toy_targets()
    est, raw = fitted.estimate(Y, A, n_init=64, n_starts=4, n_opt=15, steps=4, batch_size=8, return_raw=True)
    err_pinv = np.nanmean(tre(X, pinv_estimate(Y, A)))  # ~0.25 on the toy ring
    assert np.nanmean(tre(X, raw)) < 0.5 * err_pinv  # the diffusion fit alone, before any projection
    assert np.nanmean(tre(X, est)) < 0.5 * err_pinv
    # the learned prior beats a constant one (training mean) given the same projection
    mean_prior = np.tile(toy_series(128).flat.mean(0), (len(X), 1))
    assert np.nanmean(tre(X, est)) < np.nanmean(tre(X, refine_to_link_loads(mean_prior, Y, A, projection="kl")))


def test_estimation_fits_links(fitted):
    X, A, Y = _toy_targets()
    est, raw = fitted.estimate(Y, A, n_init=64, n_opt=15, steps=4, batch_size=8, return_raw=True)
    assert est.shape == X.shape and np.all(est >= 0) and np.all(raw >= 0)
    assert link_residual(est, Y, A).mean() < link_residual(raw, Y, A).mean()
    assert link_residual(est, Y, A).max() < 1e-2  # within 1% after the final clip at 0
    np.testing.assert_array_equal(est, fitted.estimate(Y, A, n_init=64, n_opt=15, steps=4, batch_size=8))


def test_kl_projection_hand_computed():
    # flows a, b, c; link 1 = a + b, link 2 = b + c; prior (1, 1, 1), loads (4, 2).
    # x = p * exp(A lam): a = u, b = u v, c = v with u (1 + v) = 4, v (u + 1) = 2 -> v^2 + 3 v - 2 = 0
    A = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    v = (-3 + np.sqrt(17)) / 2
    x = kl_projection(np.ones((1, 3)), [[4.0, 2.0]], A)
    np.testing.assert_allclose(x, [[v + 2, (v + 2) * v, v]], rtol=1e-9)
    # one link over two of four flows: the linked flows scale by the same factor
    x = refine_to_link_loads(np.array([[2.0, 6.0, 1.0, 1.0]]), [[10.0]], np.array([[1.0], [1.0], [0.0], [0.0]]),
                             projection="kl")
    np.testing.assert_allclose(x, [[2.5, 7.5, 1.0, 1.0]], rtol=1e-9)
    with pytest.raises(ConfigError):
        refine_to_link_loads(x, [[10.0]], np.ones((4, 1)), projection="nope")


def test_save_load_equal(fitted, tmp_path):
    fitted.save_pretrained(tmp_path / "m")
    m2 = DDPMTME.from_pretrained(tmp_path / "m")
    assert m2.get_params() == fitted.get_params()
    np.testing.assert_array_equal(m2.sample(5, random_state=4).values, fitted.sample(5, random_state=4).values)
    A = toy_routing()
    Y = toy_series(4, seed=2).flat @ A
    kw = dict(n_init=8, n_opt=2, steps=2)
    np.testing.assert_array_equal(m2.estimate(Y, A, **kw), fitted.estimate(Y, A, **kw))


def test_errors(fitted):
    with pytest.raises(NotFittedError):
        DDPMTME().sample(2)
    with pytest.raises(ConfigError):
        fitted.estimate(np.ones((2, 3)), np.ones((16, 4)))
    with pytest.raises(ConfigError):
        DDPMTME(beta_start=0.1, beta_end=0.01).fit(toy_series(8))
    with pytest.raises(ConfigError):
        DDPMTME(prediction_type="sample").fit(toy_series(8))
    with pytest.raises(ConfigError):
        fitted.estimate(np.ones((1, 16)), toy_routing()[:, :16], projection="nope")


def test_fit_with_validation_scores_it_and_stays_bit_identical():
    """Issue 16 item 11: ``fit(train, val=...)`` scored ``val`` before marking itself fitted and
    raised NotFittedError after training, so `tm train --model ddpm-tme` (which always passes a
    validation split) saved nothing. Scoring ``val`` must not change the learned weights."""
    kw = dict(TINY, epochs=2, pretrain_epochs=2, random_state=3)
    with_val = DDPMTME(**kw).fit(toy_series(48), val=toy_series(16, seed=5))
    plain = DDPMTME(**kw).fit(toy_series(48))
    (score,) = with_val.history_["val_recon_loss"]
    assert np.isfinite(score) and score == with_val.reconstruction_error(toy_series(16, seed=5).flat, scaled=True)
    np.testing.assert_array_equal(with_val.sample(3, random_state=1).values, plain.sample(3, random_state=1).values)


def test_training_shows_progress_by_default(capsys):
    """Issue 16 item 18: DDPM-TME training showed nothing (progress=False by default)."""
    assert DDPMTME().progress is True
    DDPMTME(**TINY, epochs=1, pretrain_epochs=1).fit(toy_series(16))
    out = capsys.readouterr()
    assert "DDPM-TME" in out.out + out.err


# ---------------------------------------------------------------------- device (issue 19)
def _tiny_fit(**kw):
    return DDPMTME(**TINY, epochs=3, pretrain_epochs=2, random_state=3, progress=False, **kw).fit(toy_series(64))


def test_device_cpu_equals_auto_and_saved_weights_load(tmp_path):
    auto, cpu = _tiny_fit(), _tiny_fit(device="cpu")
    assert auto.get_params()["device"] == "auto"
    Y = toy_series(8, seed=2).flat @ toy_routing()
    kw = dict(n_init=16, n_starts=2, n_opt=2, steps=3, random_state=1)
    est_cpu = cpu.estimate(Y, toy_routing(), **kw)
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():  # auto is the CPU here
        np.testing.assert_array_equal(auto.estimate(Y, toy_routing(), **kw), est_cpu)
        np.testing.assert_array_equal(auto.sample(5, random_state=0).values, cpu.sample(5, random_state=0).values)
    cpu.save_pretrained(tmp_path / "m")
    back = DDPMTME.from_pretrained(tmp_path / "m")
    assert back.device == "cpu"
    np.testing.assert_array_equal(back.estimate(Y, toy_routing(), **kw), est_cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_fails_before_training():
    model = DDPMTME(**TINY, epochs=3, pretrain_epochs=2, device="cuda", progress=False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        model.fit(toy_series(64))
    assert not hasattr(model, "n_nodes_")  # nothing half-fitted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("condition", ["none", "links"])
def test_cuda_fits_estimates_and_loads_on_cpu(condition, tmp_path):
    A = toy_routing()
    kw = dict(routing=A) if condition == "links" else {}
    gpu = DDPMTME(**TINY, epochs=40, pretrain_epochs=20, lr=3e-3, random_state=7, condition=condition,
                  device="cuda", progress=False).fit(toy_series(128), **kw)
    assert next(gpu.denoiser_.parameters()).is_cuda
    test = toy_series(16, seed=3).flat
    est = gpu.estimate(test @ A, A, n_init=64, n_starts=4, n_opt=3, steps=3)
    assert np.isfinite(est).all() and np.median(tre(test, est)) < np.median(tre(test, pinv_estimate(test @ A, A)))
    gpu.save_pretrained(tmp_path / "g")
    back = DDPMTME.from_pretrained(tmp_path / "g")
    back.device = "cpu"
    est_cpu = back.estimate(test @ A, A, n_init=64, n_starts=4, n_opt=0, steps=3)
    est_gpu = gpu.estimate(test @ A, A, n_init=64, n_starts=4, n_opt=0, steps=3)
    np.testing.assert_allclose(est_cpu, est_gpu, rtol=1e-3, atol=1e-3 * float(test.mean()))


# ---------------------------------------------------------------------- link-load-conditional prior
@pytest.fixture(scope="module")
def fitted_cond():
    return DDPMTME(**TINY, epochs=60, pretrain_epochs=30, lr=3e-3, random_state=7, condition="links",
                   progress=False).fit(toy_series(128), routing=toy_routing())


def test_conditional_estimation_fits_links_and_beats_pinv(fitted_cond):
    A = toy_routing()
    test = toy_series(32, seed=3).flat
    est, raw = fitted_cond.estimate(test @ A, A, n_starts=4, n_opt=0, steps=4, return_raw=True)
    assert est.shape == raw.shape == test.shape and (est >= 0).all()
    assert np.max(link_residual(est, test @ A, A)) < 1e-6
    assert np.median(tre(test, est)) < 0.5 * np.median(tre(test, pinv_estimate(test @ A, A)))


def test_conditional_needs_routing_and_link_loads(fitted_cond, tmp_path):
    with pytest.raises(ConfigError, match="routing"):
        DDPMTME(**TINY, epochs=1, pretrain_epochs=1, condition="links", progress=False).fit(toy_series(32))
    with pytest.raises(ConfigError, match="condition must be"):
        DDPMTME(condition="time").fit(toy_series(32))
    with pytest.raises(ConfigError, match="link_loads"):
        fitted_cond.sample(3)
    Y = toy_series(3, seed=5).flat @ toy_routing()
    assert fitted_cond.sample(3, link_loads=Y, random_state=0).values.shape == (3, 4, 4)
    fitted_cond.save_pretrained(tmp_path / "c")
    back = DDPMTME.from_pretrained(tmp_path / "c")
    kw = dict(n_starts=2, n_opt=1, steps=3, random_state=4)
    np.testing.assert_array_equal(back.estimate(Y, toy_routing(), **kw), fitted_cond.estimate(Y, toy_routing(), **kw))


# ---------------------------------------------------------------------- refinement start and the recipe's rivals
def test_refine_from_projected_mean(fitted, tmp_path):
    A = toy_routing()
    test = toy_series(24, seed=3).flat
    Y = test @ A
    kw = dict(n_starts=4, steps=3, start="projected_mean", random_state=2)
    est, raw = fitted.estimate(Y, A, t_start=50, return_raw=True, **kw)
    assert (est >= 0).all() and np.max(link_residual(est, Y, A)) < 1e-6
    mean_prior = refine_to_link_loads(np.tile(fitted.train_mean_, (len(Y), 1)), Y, A, projection="kl")
    assert np.median(tre(test, est)) < np.median(tre(test, pinv_estimate(Y, A)))
    assert not np.allclose(est, mean_prior)  # the prior moved it
    fitted.save_pretrained(tmp_path / "r")
    np.testing.assert_array_equal(DDPMTME.from_pretrained(tmp_path / "r").estimate(Y, A, t_start=50, **kw), est)
    with pytest.raises(ConfigError, match="t_start"):
        fitted.estimate(Y, A, t_start=10_000, **kw)
    with pytest.raises(ConfigError, match="start must be"):
        fitted.estimate(Y, A, start="tomogravity")


def test_recipe_rivals_tod_mean_and_ridge():
    from trafficgen.recipes.ddpm_tme import ridge_prior, tod_mean_prior

    x = np.arange(12, dtype=float)[:, None] * np.ones((1, 3))  # (12, 3), 4 intervals per "day"
    pos = np.arange(12)
    out = tod_mean_prior(x, pos, np.array([12, 13, 15]), per_day=4, hours=6)  # 4 bins of one interval
    np.testing.assert_allclose(out[:, 0], [4.0, 5.0, 7.0])  # means of rows {0,4,8}, {1,5,9}, {3,7,11}
    s = toy_series(96)
    A = toy_routing()
    test = toy_series(16, seed=4).flat
    prior, alpha = ridge_prior(s.flat, A, test @ A, alphas=(0.1, 1000.0))
    assert alpha in (0.1, 1000.0) and prior.shape == test.shape and (prior >= 0).all()
    est = refine_to_link_loads(prior, test @ A, A, projection="kl")
    mean_est = refine_to_link_loads(np.tile(s.flat.mean(0), (len(test), 1)), test @ A, A, projection="kl")
    assert np.mean(tre(test, est)) < np.mean(tre(test, mean_est))  # the rank-2 toy is predictable from y


# ---------------------------------------------------------------------- sequential estimation (previous estimate as condition)
@pytest.fixture(scope="module")
def fitted_prev():
    return DDPMTME(**TINY, epochs=60, pretrain_epochs=30, lr=3e-3, random_state=7, condition="previous",
                   progress=False).fit(toy_series(128), routing=toy_routing())


def test_previous_condition_noise_is_the_projected_mean_error():
    s, A = toy_series(64), toy_routing()
    kw = dict(**TINY, epochs=1, pretrain_epochs=1, random_state=3, condition="previous", progress=False)
    one = DDPMTME(**kw).fit(s, routing=A)
    two = DDPMTME(**kw, prev_noise=2.0).fit(s, routing=A)
    est = kl_projection(np.tile(s.flat.mean(0), (len(s), 1)), s.flat @ A, A)
    err = one.scaler_.transform(est) - one.scaler_.transform(s.flat)
    np.testing.assert_allclose(one.cond_prev_std_, err.std(0), rtol=1e-12)
    np.testing.assert_allclose(two.cond_prev_std_, 2.0 * one.cond_prev_std_, rtol=1e-12)
    assert one.denoiser_config_.cond_dim == A.shape[1] + 16


def test_sequential_estimation_fits_links_and_uses_previous(fitted_prev, tmp_path):
    A = toy_routing()
    test = toy_series(24, seed=3).flat
    Y = test @ A
    for start in ("pool", "projected_mean"):
        kw = dict(n_starts=4, steps=3, start=start, t_start=50, random_state=2)
        est, raw = fitted_prev.estimate(Y, A, return_raw=True, **kw)
        assert est.shape == raw.shape == test.shape and (est >= 0).all()
        assert np.max(link_residual(est, Y, A)) < 1e-6
        assert np.median(tre(test, est)) < 0.5 * np.median(tre(test, pinv_estimate(Y, A)))
        np.testing.assert_array_equal(fitted_prev.estimate(Y, A, **kw), est)  # same seed, same estimate
        other = fitted_prev.estimate(Y, A, previous=10 * test[0], **kw)
        assert not np.allclose(other[0], est[0])  # the first interval is conditioned on `previous`
    # interval t only sees intervals <= t: estimating the first 10 alone gives the same 10 estimates
    kw = dict(n_starts=4, steps=3, start="pool", random_state=2)
    np.testing.assert_allclose(fitted_prev.estimate(Y[:10], A, **kw), fitted_prev.estimate(Y, A, **kw)[:10])
    fitted_prev.save_pretrained(tmp_path / "p")
    back = DDPMTME.from_pretrained(tmp_path / "p")
    np.testing.assert_array_equal(back.cond_prev_std_, fitted_prev.cond_prev_std_)
    np.testing.assert_array_equal(back.estimate(Y, A, **kw), fitted_prev.estimate(Y, A, **kw))
    with pytest.raises(ConfigError, match="previous must be"):
        fitted_prev.estimate(Y, A, previous=np.ones(3), **kw)
    with pytest.raises(ConfigError, match="previous"):
        fitted_prev.sample(3, link_loads=Y[:3])


def test_training_free_sequential_projection():
    from trafficgen.estimation.sequential import sequential_kl_estimate

    A = toy_routing()
    test = toy_series(20, seed=3).flat
    Y = test @ A
    prior = toy_series(64).flat.mean(0)
    direct = kl_projection(np.tile(prior, (len(Y), 1)), Y, A, iters=20)
    # beta = 0: projecting the previous projected estimate = projecting the first prior (same family)
    np.testing.assert_allclose(sequential_kl_estimate(Y, A, prior, beta=0.0), direct, rtol=1e-6)
    mixed = sequential_kl_estimate(Y, A, prior, beta=0.5)
    assert np.max(link_residual(mixed, Y, A)) < 1e-6 and not np.allclose(mixed, direct, rtol=1e-3)
    np.testing.assert_allclose(mixed[0], direct[0], rtol=1e-9)  # the first interval has only the prior
    with pytest.raises(ConfigError, match="beta"):
        sequential_kl_estimate(Y, A, prior, beta=1.0)
    with pytest.raises(ConfigError, match="prior"):
        sequential_kl_estimate(Y, A, prior[:3])


def test_previous_start_needs_a_sequential_model_and_recipe_rival_picks_beta(fitted):
    from trafficgen.estimation.sequential import sequential_kl_estimate
    from trafficgen.recipes.ddpm_tme import sequential_prior

    A = toy_routing()
    test = toy_series(12, seed=3).flat
    with pytest.raises(ConfigError, match="sequential model"):
        fitted.estimate(test @ A, A, start="previous")
    s = toy_series(64).flat
    est, beta = sequential_prior(s, A, test @ A, betas=(0.0, 0.5), val_fraction=0.25)
    x_val = s[48:]
    val = [np.mean(tre(x_val, sequential_kl_estimate(x_val @ A, A, s[:48].mean(0), beta=b))) for b in (0.0, 0.5)]
    assert beta == (0.0, 0.5)[int(np.argmin(val))]
    np.testing.assert_allclose(est, sequential_kl_estimate(test @ A, A, s.mean(0), beta=beta))


def test_refine_from_a_given_init(fitted, fitted_prev):
    A = toy_routing()
    test = toy_series(12, seed=3).flat
    Y = test @ A
    for model in (fitted, fitted_prev):
        kw = dict(n_starts=4, steps=3, start="projected_mean", t_start=50, random_state=2)
        same = model.estimate(Y, A, init=np.tile(model.train_mean_, (len(Y), 1)), **kw)
        np.testing.assert_array_equal(same, model.estimate(Y, A, **kw))  # init = the training mean: the default
        other = model.estimate(Y, A, init=test * 1.5, **kw)
        assert np.max(link_residual(other, Y, A)) < 1e-6 and not np.allclose(other, same)
        with pytest.raises(ConfigError, match="init must be"):
            model.estimate(Y, A, init=test[:3], **kw)
        with pytest.raises(ConfigError, match="init must be"):
            model.estimate(Y, A, init=test, start="pool")
