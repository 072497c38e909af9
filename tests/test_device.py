"""Devices (issue 19): names -> torch devices, precision checks, ``device="auto"`` on the torch
models with CPU samples unchanged, device-independent saved weights, and ``--device cuda`` on a
machine without CUDA giving one line and exit code 1 through the installed console script."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trafficgen._device import autocast, resolve_device, resolve_precision, same_device
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError

NO_CUDA = not torch.cuda.is_available()
SCRIPT = Path(sys.executable).with_name("trafficgen")
if not SCRIPT.exists():
    SCRIPT = Path(shutil.which("trafficgen") or SCRIPT)


def test_resolve_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ConfigError):
        resolve_device(3)


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_unavailable_cuda_is_one_clear_line():
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda", option="--device")
    message = str(info.value)
    assert message.startswith("--device cuda: CUDA is not available on this machine (torch ")
    assert "\n" not in message
    with pytest.raises(ConfigError, match="cuda:1: CUDA is not available"):
        resolve_device("cuda:1", option="--device")


def test_precision_checked_per_device():
    assert resolve_precision("fp32", "cpu") is None
    with pytest.raises(ConfigError, match="fp16 mixed precision needs a CUDA device"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="expected one of fp32, bf16, fp16"):
        resolve_precision("int8", "cpu")
    from trafficgen._device import cpu_has_bf16

    if cpu_has_bf16():
        assert resolve_precision("bf16", "cpu") is torch.bfloat16
        with autocast("cpu", "bf16"):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.bfloat16
    else:
        with pytest.raises(ConfigError, match="no native bf16"):
            resolve_precision("bf16", "cpu")


def test_same_device():
    assert same_device("cpu", torch.device("cpu"))
    assert not same_device("cpu", "meta")


def _flows(n: int = 64) -> FlowSet:
    rng = np.random.default_rng(0)
    seqs = [[int(rng.integers(40, 1400)) * (-1) ** j for j in range(int(rng.integers(1, 5)))] for _ in range(n)]
    return FlowSet.from_sequences(seqs, labels=["YouTube", "DNS"] * (n // 2))


@pytest.fixture(scope="module")
def fitted_llama():
    from trafficgen.generators.llama import LlamaGenerator

    return LlamaGenerator(preset="tiny", epochs=2, batch_size=16, random_state=0, progress=False).fit(_flows())


def test_llama_device_default_is_auto_and_cpu_samples_match(fitted_llama):
    from trafficgen.generators.llama import LlamaGenerator

    assert LlamaGenerator().device == "auto"
    a = fitted_llama.sample(20, random_state=3)
    cpu = LlamaGenerator(preset="tiny", epochs=2, batch_size=16, random_state=0, progress=False,
                         device="cpu").fit(_flows())
    b = cpu.sample(20, random_state=3)
    if resolve_device("auto").type == "cpu":  # same device: bit for bit
        np.testing.assert_array_equal(a.lengths, b.lengths)
        assert list(a.labels) == list(b.labels)


def test_saved_weights_are_device_independent(fitted_llama, tmp_path):
    from safetensors.torch import load_file

    from trafficgen.generators.llama import LlamaGenerator

    fitted_llama.save_pretrained(tmp_path / "m")
    assert {t.device.type for t in load_file(str(tmp_path / "m" / "model.safetensors")).values()} == {"cpu"}
    # a model trained on a GPU (params say cuda) loads anywhere; it runs where it is told to
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["params"]["device"] = "cuda"
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    loaded = LlamaGenerator.from_pretrained(tmp_path / "m")
    assert loaded.device == "cuda"
    if NO_CUDA:
        with pytest.raises(ConfigError, match="CUDA is not available"):
            loaded.sample(5, random_state=1)
    loaded.set_params(device="cpu")
    np.testing.assert_array_equal(loaded.sample(20, random_state=3).lengths,
                                  fitted_llama.set_params(device="cpu").sample(20, random_state=3).lengths)


def test_precision_and_accumulation_options_train(fitted_llama):
    from trafficgen._device import cpu_has_bf16
    from trafficgen.generators.llama import LlamaGenerator

    with pytest.raises(ConfigError, match="fp16"):
        LlamaGenerator(preset="tiny", epochs=1, precision="fp16", device="cpu", progress=False).fit(_flows())
    gen = LlamaGenerator(preset="tiny", epochs=3, batch_size=8, gradient_accumulation_steps=2, random_state=0,
                         progress=False, device="cpu",
                         precision="bf16" if cpu_has_bf16() else "fp32").fit(_flows())
    loss = gen.history_["train_loss"]
    assert gen.history_["steps"] == 3 * 4  # 58 training rows: 8 batches of 8 -> 4 steps per epoch
    assert loss[-1] < loss[0]
    assert len(gen.sample(5, random_state=0)) == 5


@pytest.mark.skipif(not SCRIPT.exists(), reason="the trafficgen console script is not installed")
@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize("argv", [
    ["train", "--model", "llama", "--preset", "tiny", "--data", "{flows}", "-o", "{tmp}/out"],
    ["sample", "--model", "{tmp}/none", "-n", "3"],
    ["fidelity", "--real", "{flows}", "--synthetic", "{flows}", "-o", "{tmp}/rep"],
    ["evaluate", "--real", "{flows}", "-o", "{tmp}/rep"],
    ["tm", "train", "--model", "lstm", "--data", "abilene", "-o", "{tmp}/tm"],
    ["tm", "forecast", "--model", "lstm", "--data", "abilene", "-o", "{tmp}/tm"],
    ["tm", "estimate", "--data", "abilene", "--method", "tomogravity", "-o", "{tmp}/est.npy"],
    ["recipe", "run", "lightweight_ntg", "--quick", "-o", "{tmp}/recipe"],
], ids=lambda a: " ".join(a[:2]))
def test_cli_device_cuda_without_cuda(argv, tmp_path):
    flows = tmp_path / "flows.parquet"
    _flows(12).save(flows)
    args = [a.format(flows=flows, tmp=tmp_path) for a in argv] + ["--device", "cuda"]
    r = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda: CUDA is not available on this machine" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not any(p.name in ("out", "rep", "tm", "recipe", "est.npy") for p in tmp_path.iterdir())
