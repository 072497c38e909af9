"""Data-parallel training (issue 19): ``trafficgen train --num-processes 2`` on the CPU (gloo,
through accelerate's launcher) trains the tiny LLaMA preset, its loss falls, exactly one model
folder is written and it samples; and its arithmetic is one process's with 2-batch gradient
accumulation (the same batches, the same averaged gradient)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
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


# ---------------------------------------------------------------- traffic-matrix models (`tm train`)
def _tm_series():
    from trafficgen.data.tmseries import TMSeries

    rng = np.random.default_rng(0)
    t = np.arange(150)[:, None, None]
    values = 1e4 * (1.5 + np.sin(2 * np.pi * t / 24 + rng.uniform(0, 6, size=(3, 3)))) + rng.uniform(0, 100, (150, 3, 3))
    return TMSeries(values, ["a", "b", "c"], 3600.0, "bytes")


def test_two_process_cpu_tm_training_writes_one_model_that_forecasts(tmp_path):
    from trafficgen.data.tm import write_tm_npy
    from trafficgen.data.windows import chronological_split
    from trafficgen.generators.tm import load_tm_model
    from trafficgen.generators.tm.rnn import LSTMForecaster

    series = _tm_series()
    (tmp_path / "data").mkdir()
    write_tm_npy(series, tmp_path / "data" / "tm.npy")  # + its tm.npy.json sidecar
    out = tmp_path / "model"
    train, val, _ = chronological_split(series, (0.7, 0.15, 0.15))
    n_windows = len(train) - 4 - 2 + 1
    assert n_windows == 100  # 4 batches of (at most) 32 windows per epoch: 2 per process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(SCRIPT), "tm", "train", "--model", "lstm", "--data", str(tmp_path / "data" / "tm.npy"),
                        "--t-in", "4", "--horizons", "1,2", "--epochs", "6", "--device", "cpu",
                        "--num-processes", "2", "-o", str(out)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]  # one folder, no leftovers
    assert {"config.json", "model.safetensors", "train_summary.json"} <= {p.name for p in out.iterdir()}
    assert r.stdout.count(f"wrote {out}") == 1  # only the main process reports
    history = json.loads((out / "train_summary.json").read_text())["history"]
    assert history["processes"] == 2 and history["steps"] == 6 * 2
    assert history["train_loss"][-1] < 0.8 * history["train_loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]

    model = load_tm_model(out)
    fc = model.predict(series.values, [110, 120], [1, 2])
    assert fc.shape == (2, 2, 3, 3) and np.isfinite(fc).all() and (fc >= 0).all()

    # one process, two batches per optimiser step: the same batches and mean gradients
    with warnings.catch_warnings():  # 12 steps: "validation loss still falling", as in the 2 processes
        warnings.simplefilter("ignore", UserWarning)
        one = LSTMForecaster(t_in=4, horizons=(1, 2), epochs=6, gradient_accumulation_steps=2, random_state=0,
                             progress=False, device="cpu").fit(train, val=val)
    np.testing.assert_allclose(one.history_["train_loss"], history["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(one.history_["val_loss"], history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(one.predict(series.values, [110, 120], [1, 2]), fc, rtol=1e-4)


def test_two_process_cpu_ddpm_tme_training_writes_one_model_that_samples(tmp_path):
    """`tm train --model ddpm-tme --num-processes 2`: both phases (E/R pre-training, joint
    diffusion training) step data-parallel; the noise-free pre-training is one process's with
    2-batch gradient accumulation, loss for loss."""
    from trafficgen.data.tm import write_tm_npy
    from trafficgen.data.windows import chronological_split
    from trafficgen.generators.tm import load_tm_model
    from trafficgen.generators.tm.ddpm_tme import DDPMTME

    series = _tm_series()
    (tmp_path / "data").mkdir()
    write_tm_npy(series, tmp_path / "data" / "tm.npy")
    out = tmp_path / "model"
    train, val, _ = chronological_split(series, (0.7, 0.15, 0.15))
    assert len(train) == 105  # 2 batches of (at most) 64 an epoch: 1 per process
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(SCRIPT), "tm", "train", "--model", "ddpm-tme", "--data", str(tmp_path / "data" / "tm.npy"),
                        "--epochs", "3", "--device", "cpu", "--num-processes", "2", "-o", str(out)],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "model"]
    assert r.stdout.count(f"wrote {out}") == 1
    history = json.loads((out / "train_summary.json").read_text())["history"]
    assert history["processes"] == 2 and history["pretrain_steps"] == 50 and history["steps"] == 3
    assert history["pretrain_loss"][-1] < 0.5 * history["pretrain_loss"][0]

    model = load_tm_model(out)
    syn = model.sample(4, random_state=0)
    assert syn.values.shape == (4, 3, 3) and np.isfinite(syn.values).all() and (syn.values >= 0).all()

    one = DDPMTME(epochs=3, gradient_accumulation_steps=2, progress=False, device="cpu").fit(train, val=val)
    assert one.history_["pretrain_steps"] == 50 and one.history_["steps"] == 3 and "processes" not in one.history_
    np.testing.assert_allclose(one.history_["pretrain_loss"], history["pretrain_loss"], rtol=1e-4)


#: One process of a 2-process train_loop whose loss draws noise from the training generator (as
#: VAE-TME, CVAE, NetDiffus and LEAD do): 38 rows in batches of 5, the last batch of 3 rows.
_STREAMS = """
import json, os, sys
import torch
from trafficgen.generators.training import train_loop

torch.manual_seed(0)
model = torch.nn.Linear(1, 1)
gen = torch.Generator().manual_seed(7)
seen, noise = [], []

def loss_fn(idx):
    seen.append(idx.tolist())
    eps = torch.randn(len(idx), generator=gen)  # (B,)
    noise.append(eps.tolist())
    return ((model(idx.float()[:, None] / 38).squeeze(1) - eps) ** 2).mean(), len(idx)

train_loop(model, loss_fn, n=38, epochs=3, batch_size=5, generator=gen, val_fraction=None, patience=None,
           optimizer=lambda steps: (torch.optim.SGD(model.parameters(), lr=0.01), None), progress=False)
with open(sys.argv[1] + "." + os.environ["RANK"] + ".json", "w") as fh:
    json.dump({"seen": seen, "noise": noise, "weight": model.weight.item()}, fh)
"""


def _launch_two(tmp_path: Path, name: str, source: str, *, timeout: int) -> list[dict]:
    """Run ``source`` in 2 CPU processes through ``accelerate launch`` (gloo on loopback); each
    process writes ``out.RANK.json``; returns both, rank 0 first."""
    script = tmp_path / name
    script.write_text(source)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                        "--main_process_ip", "127.0.0.1", "--main_process_port", str(port), str(script),
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return [json.loads((tmp_path / f"out.{rank}.json").read_text()) for rank in (0, 1)]


def test_loss_noise_streams_differ_per_process_and_epochs_stay_partitions(tmp_path):
    """Every epoch's batches are one partition of the rows over the processes even when the loss
    draws a different amount of noise on each (uneven last batch), the processes' noises differ,
    and the weights stay equal."""
    runs = _launch_two(tmp_path, "streams.py", _STREAMS, timeout=120)
    assert runs[0]["weight"] == runs[1]["weight"]
    for epoch in range(3):  # 8 batches an epoch, 4 per process
        rows = [row for run in runs for batch in run["seen"][4 * epoch:4 * epoch + 4] for row in batch]
        assert sorted(rows) == list(range(38)), f"epoch {epoch}: rows seen {sorted(rows)}"
    for a, b in zip(runs[0]["noise"], runs[1]["noise"], strict=True):
        assert a[:3] != b[:3]


_LEAD = """
import json, os, sys
import numpy as np
import torch
from trafficgen.data.tmseries import TMSeries
from trafficgen.generators.tm.lead import LeadForecaster

rng = np.random.default_rng(0)
t = np.arange(160)[:, None, None]
values = 1e4 * (1.5 + np.sin(2 * np.pi * t / 24 + rng.uniform(0, 6, size=(3, 3)))) + rng.uniform(0, 100, (160, 3, 3))
series = TMSeries(values, ["a", "b", "c"], 3600.0, "bytes")
lead = LeadForecaster(t_in=6, horizons=(1, 2), d_v=4, n_res_blocks=1, d_model=16, adapter_rank=2, unet_channels=(8, 16),
                      layers_per_block=1, batch_size=8, epochs=3, max_train_windows=32, max_val_windows=16,
                      calib_origins=4, n_samples=2, n_inference_steps=2, ablations=("no_llm",), progress=False)
lead.fit(series[:112], val=series[112:136])
checksum = float(sum(p.detach().double().sum() for p in lead.net_.parameters() if p.requires_grad))
with open(sys.argv[1] + "." + os.environ.get("RANK", "0") + ".json", "w") as fh:
    json.dump({"history": lead.history_, "checksum": checksum, "calibrated": lead.calibration_ is not None}, fh)
"""


def test_two_process_lead_training_goes_through_the_data_parallel_loop(tmp_path):
    """LEAD (its own batch order and diffusion noise) in 2 processes: one optimiser step per 2
    batches of the epoch (steps per epoch and the max_steps cap counted that way), equal weights
    on both, calibration fitted on the main process only."""
    runs = _launch_two(tmp_path, "lead.py", _LEAD, timeout=300)
    assert runs[0]["checksum"] == runs[1]["checksum"]
    for run in runs:
        run["history"].pop("epoch_time_s")  # wall clock, each process its own
    assert runs[0]["history"] == runs[1]["history"]
    history = runs[0]["history"]
    # 32 windows in batches of 8: 4 batches an epoch, 2 per process
    assert history["processes"] == 2 and history["n_train_windows"] == 32
    assert history["steps"] == 3 * 2 and len(history["train_loss"]) == 3
    assert [run["calibrated"] for run in runs] == [True, False]


_LEAVE = """
import json, os, sys
import torch
import torch.distributed as dist
from accelerate import PartialState
from trafficgen.generators import training

state = training.distributed_state(torch.device("cpu"))  # joins the group, registers leave_group at exit
registered = training._LEAVE_AT_EXIT == [state]
assert training.distributed_state(torch.device("cpu")) is not None and training._LEAVE_AT_EXIT == [state]  # once
t = torch.tensor([float(state.process_index + 1)])
dist.all_reduce(t)
met = training.leave_group(state, timeout_s=30)
with open(sys.argv[1] + "." + os.environ["RANK"] + ".json", "w") as fh:
    json.dump({"registered": registered, "sum": t.item(), "met": met, "still_initialized": dist.is_initialized(),
               "again": training.leave_group(state)}, fh)
"""


def test_leave_group_meets_every_process_then_destroys_the_group(tmp_path):
    """What each launched process runs at exit: a bounded barrier over gloo, then the group is
    destroyed (a second call finds none); registered once per process."""
    runs = _launch_two(tmp_path, "leave.py", _LEAVE, timeout=120)
    for run in runs:
        assert run == {"registered": True, "sum": 3.0, "met": True, "still_initialized": False, "again": False}


def test_leave_group_without_a_group_does_nothing():
    from trafficgen.generators.training import leave_group

    assert leave_group(object()) is False
