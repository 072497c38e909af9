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
