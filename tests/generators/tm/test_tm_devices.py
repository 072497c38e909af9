"""Devices on the learned TM baselines: ``device`` is a parameter, CPU results do not depend on
naming it, an absent CUDA is one clear error before any work, saved weights load anywhere."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.generators.tm.test_tm_baselines import _tiny, _toy
from trafficgen.errors import ConfigError

NAMES = ["lstm", "gru", "vit-lstm", "stgcn"]


@pytest.mark.parametrize("name", NAMES)
def test_device_param_cpu_equals_auto_and_saves_cpu_tensors(name, rng, tmp_path):
    s = _toy(rng)
    auto = _tiny(name).fit(s)
    cpu = _tiny(name, device="cpu").fit(s)
    assert auto.get_params()["device"] == "auto"
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():  # auto is the CPU here
        np.testing.assert_array_equal(auto.predict(s.values, [100, 110], [1, 2]),
                                      cpu.predict(s.values, [100, 110], [1, 2]))
    cpu.save_pretrained(tmp_path / name)
    back = type(cpu).from_pretrained(tmp_path / name)
    np.testing.assert_array_equal(back.predict(s.values, [100], [2]), cpu.predict(s.values, [100], [2]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_fails_before_training(rng):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        _tiny("lstm", device="cuda").fit(_toy(rng))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_trains_and_predicts_close_to_cpu(name, rng):
    s = _toy(rng)
    gpu = _tiny(name, device="cuda").fit(s)
    assert next(gpu.network_.parameters()).is_cuda
    out = gpu.predict(s.values, [100], [1, 2])
    assert np.isfinite(out).all() and out.shape == (1, 2, 4, 4)


# ---------------------------------------------------------------- VAE-TME / WGAN-GP-TME (latent_fit.py)
#: Seeded results of the code before ``device`` existed (commit d313c97, the CPU): epoch losses,
#: the first four values of ``sample(5, random_state=1)`` and of ``estimate`` (projected, raw), and
#: the sums of the sample and the raw estimate. Naming the CPU must reproduce them.
LATENT_BEFORE = {
    "vae-tme": dict(loss=[16.115742683410645, 16.04313309987386, 15.839569091796875],
                    sample=[268.66031861949705, 219.76024016333204, 498.0951445183115, 606.4278040744354],
                    est=[319.14595988282997, 319.87096470336263, 710.7294816497895, 640.5363005473348],
                    raw=[243.35311889648438, 247.10696411132812, 495.93927001953125, 541.5155639648438],
                    sample_sum=27127.76254163416, raw_sum=63102.95817565918),
    "wgan-gp-tme": dict(loss=[8.259333928426107, 8.267114321390787, 8.25767739613851],
                        sample=[217.0953450191282, 227.43085337579964, 445.9144287129343, 662.5526134023847],
                        est=[338.77983137496, 314.1255246529196, 688.5906201155376, 648.7867306398995],
                        raw=[238.2897186279297, 238.70423889160156, 476.2174987792969, 617.6903076171875],
                        sample_sum=27629.419428675305, raw_sum=65334.239837646484),
}


def _latent(name, **kw):
    from trafficgen.generators.tm.latent_fit import VAETME, WGANGPTME

    cls = {"vae-tme": VAETME, "wgan-gp-tme": WGANGPTME}[name]
    return cls(epochs=3, latent_dim=4, width=32, batch_size=32, random_state=3, **kw)


def _latent_data():
    from tests.generators.tm.test_ddpm_tme import toy_routing, toy_series

    train, test = toy_series(96, seed=0), toy_series(12, seed=1).flat
    A = toy_routing()
    return train, test @ A, A


@pytest.mark.parametrize("name", list(LATENT_BEFORE))
def test_latent_tme_cpu_reproduces_results_before_device(name, tmp_path):
    train, Y, A = _latent_data()
    m = _latent(name, device="cpu").fit(train)
    assert _latent(name).get_params()["device"] == "auto" and m.get_params()["device"] == "cpu"
    before = LATENT_BEFORE[name]
    sample = m.sample(5, random_state=1)
    est, raw = m.estimate(Y, A, n_init=16, n_opt=5, return_raw=True)
    np.testing.assert_allclose(m.history_["loss"], before["loss"], rtol=1e-6)
    np.testing.assert_allclose(sample.reshape(-1)[:4], before["sample"], rtol=1e-6)
    np.testing.assert_allclose(est.reshape(-1)[:4], before["est"], rtol=1e-6)
    np.testing.assert_allclose(raw.reshape(-1)[:4], before["raw"], rtol=1e-6)
    np.testing.assert_allclose([sample.sum(), raw.sum()], [before["sample_sum"], before["raw_sum"]], rtol=1e-6)
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():  # auto is the CPU here
        auto = _latent(name).fit(train)
        np.testing.assert_array_equal(auto.sample(5, random_state=1), sample)

    # saved weights are CPU tensors; the loaded model reproduces the fitted one exactly
    m.save_pretrained(tmp_path / name)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / name / "model.safetensors"))
    assert saved and all(t.device.type == "cpu" for t in saved.values())
    back = type(m).from_pretrained(tmp_path / name)
    assert back.get_params()["device"] == "cpu"
    np.testing.assert_array_equal(back.sample(5, random_state=1), sample)
    np.testing.assert_array_equal(back.estimate(Y, A, n_init=16, n_opt=5), est)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("name", list(LATENT_BEFORE))
def test_latent_tme_cuda_without_cuda_is_one_error_before_training(name, tmp_path):
    train, Y, A = _latent_data()
    with pytest.raises(ConfigError, match=r"^device='cuda': CUDA is not available on this machine \(torch ") as err:
        _latent(name, device="cuda").fit(train)
    assert "\n" not in str(err.value)
    m = _latent(name, device="cpu").fit(train)
    m.save_pretrained(tmp_path / name)
    back = type(m).from_pretrained(tmp_path / name)
    back.set_params(device="cuda:1")  # a loaded model asked for a device it cannot have
    with pytest.raises(ConfigError, match="CUDA is not available"):
        back.sample(2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", list(LATENT_BEFORE))
def test_latent_tme_cuda_trains_samples_and_estimates(name, tmp_path):
    train, Y, A = _latent_data()
    gpu = _latent(name, device="cuda").fit(train)
    assert next(gpu.decoder_.parameters()).is_cuda
    cpu = _latent(name, device="cpu").fit(train)
    np.testing.assert_allclose(gpu.history_["loss"], cpu.history_["loss"], rtol=1e-2)
    est = gpu.estimate(Y, A, n_init=16, n_opt=5)
    assert est.shape == (len(Y), A.shape[0]) and np.isfinite(est).all() and (est >= 0).all()
    gpu.save_pretrained(tmp_path / name)
    back = type(gpu).from_pretrained(tmp_path / name)
    back.set_params(device="cpu")
    assert np.isfinite(back.sample(3, random_state=0)).all()
