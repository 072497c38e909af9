"""Data-parallel training (issue 19): ``trafficgen train --num-processes 2`` on the CPU (gloo,
through accelerate's launcher) trains the tiny LLaMA preset, its loss falls, exactly one model
folder is written and it samples; and its arithmetic is one process's with 2-batch gradient
accumulation (the same batches, the same averaged gradient)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet

SCRIPT = Path(sys.executable).with_name("trafficgen")
if not SCRIPT.exists():
    SCRIPT = Path(shutil.which("trafficgen") or SCRIPT)

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the trafficgen console script is not installed")


def separable_flows(n: int = 256) -> FlowSet:
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for i in range(n):
        base = (100, -1400) if i % 2 == 0 else (60, -80)
        seqs.append([base[j % 2] + int(rng.integers(0, 3)) for j in range(int(rng.integers(2, 6)))])
        labels.append("A" if i % 2 == 0 else "B")
    return FlowSet.from_sequences(seqs, labels=labels)


def test_two_process_cpu_training_writes_one_model_that_samples(tmp_path):
    from trafficgen.generators.llama import LlamaGenerator

    flows = separable_flows()
    flows.save(tmp_path / "flows.parquet")
    out = tmp_path / "model"
    # 230 training rows in batches of 23: 10 batches per epoch, 5 per process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(SCRIPT), "train", "--model", "llama", "--preset", "tiny", "--data",
                        str(tmp_path / "flows.parquet"), "--epochs", "4", "--batch-size", "23", "--device", "cpu",
                        "--num-processes", "2", "-o", str(out)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.parquet", "model"]  # one folder, no leftovers
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert r.stdout.count('"model": "llama"') == 1  # only the main process reports
    history = json.loads((out / "config.json").read_text())["history"]
    assert history["processes"] == 2 and history["steps"] == 4 * 5
    assert history["train_loss"][-1] < 0.8 * history["train_loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]

    gen = LlamaGenerator.from_pretrained(out)
    syn = gen.sample(50, cls="A", random_state=0)
    assert len(syn) == 50 and set(syn.labels) == {"A"}

    # one process, two batches per optimiser step: the same batches and mean gradients
    one = LlamaGenerator(preset="tiny", epochs=4, batch_size=23, gradient_accumulation_steps=2, random_state=0,
                         progress=False, device="cpu").fit(flows)
    np.testing.assert_allclose(one.history_["train_loss"], history["train_loss"], rtol=2e-3)
    np.testing.assert_allclose(one.history_["val_loss"], history["val_loss"], rtol=2e-3)
