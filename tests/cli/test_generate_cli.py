"""`trafficgen train / sample / classes` end to end on a tiny data set with the tiny preset."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.generators.test_llama import separable_flows
from tests.pretrained.test_default_model import TINY
from trafficgen.cli.generate import match_class
from trafficgen.cli.main import app
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, UnknownClassError

runner = CliRunner()




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "flows.parquet"
    separable_flows(60).save(data)
    res = runner.invoke(app, ["train", "--model", "llama", "--data", str(data), "-o", str(root / "m"),
                              "--preset", "tiny", "--epochs", "3", "--batch-size", "16", "--seed", "1",
                              "--packets", "5", "--class-balance", "1", "--repeat-weight", "0.8"])
    assert res.exit_code == 0, res.output
    return root


def test_train_writes_model_and_plot(trained):
    names = {p.name for p in (trained / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "loss.png"} <= names
    assert (trained / "m" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    params = json.loads((trained / "m" / "config.json").read_text())["params"]
    assert params["class_balance"] == 1.0 and params["repeat_weight"] == 0.8 and params["max_packets"] == 5


def test_classes_lists_counts(trained):
    res = runner.invoke(app, ["classes", "--model", str(trained / "m")])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["A\t30", "B\t30"]


def test_sample_case_insensitive_to_file_and_seeded(trained):
    outs = []
    for name in ("a.parquet", "b.parquet"):
        res = runner.invoke(app, ["sample", "--class", "a", "-n", "25", "--model", str(trained / "m"),
                                  "-o", str(trained / name), "--seed", "4", "--top-k", "50"])
        assert res.exit_code == 0, res.output
        outs.append(FlowSet.read(trained / name))
    assert outs[0] == outs[1]
    assert len(outs[0]) == 25 and set(outs[0].labels) == {"A"} and outs[0].n_packets.max() <= 5


def test_sample_summary_table(trained):
    res = runner.invoke(app, ["sample", "-n", "40", "--model", str(trained / "m")])
    assert res.exit_code == 0, res.output
    assert "40 synthetic flows" in res.output and "mean packets" in res.output


def test_sample_bf16_and_bad_dtype(trained):
    res = runner.invoke(app, ["sample", "-n", "30", "--class", "b", "--model", str(trained / "m"),
                              "--dtype", "bfloat16", "-o", str(trained / "bf16.csv")])
    assert res.exit_code == 0, res.output
    flows = FlowSet.read(trained / "bf16.csv")
    assert len(flows) == 30 and set(flows.labels) == {"B"}
    bad = runner.invoke(app, ["sample", "-n", "3", "--model", str(trained / "m"), "--dtype", "int4"])
    assert bad.exit_code != 0 and "float32, bfloat16" in str(bad.exception)


def test_sample_netdiffus_dtype_reaches_the_unet(trained):
    """--dtype bfloat16 samples NetDiffus under bf16 autocast where the CPU has bf16, else one clear error."""
    from trafficgen._device import cpu_has_bf16

    res = runner.invoke(app, ["train", "--model", "netdiffus", "--data", str(trained / "flows.parquet"), "-o",
                              str(trained / "nd"), "--preset", "tiny", "--epochs", "1", "--packets", "5"])
    assert res.exit_code == 0, res.output
    args = ["sample", "-n", "12", "--class", "a", "--model", str(trained / "nd"), "--dtype", "bfloat16",
            "-o", str(trained / "nd_bf16.csv")]
    res = runner.invoke(app, args)
    if cpu_has_bf16():
        assert res.exit_code == 0, res.output
        flows = FlowSet.read(trained / "nd_bf16.csv")
        assert len(flows) == 12 and set(flows.labels) == {"A"}
    else:
        assert res.exit_code != 0 and "no native bf16" in str(res.exception)


def test_unknown_class_exits_nonzero_listing_classes(trained):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-m", "trafficgen.cli.main", "sample", "--class", "zoom",
                           "--model", str(trained / "m"), "-n", "3"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 1
    assert "unknown class 'zoom'; known classes: A, B" in proc.stderr


def test_match_class():
    assert match_class("youtube", ["DNS", "YouTube"]) == "YouTube"
    assert match_class("DNS", ["DNS", "dns"]) == "DNS"
    with pytest.raises(ConfigError, match="ambiguous"):
        match_class("Dns", ["DNS", "dns"])
    with pytest.raises(UnknownClassError, match="known classes: DNS, YouTube"):
        match_class("zoom", ["DNS", "YouTube"])


def test_default_model_used_without_model(monkeypatch, tmp_path):
    monkeypatch.setenv("TRAFFICGEN_CACHE", str(tmp_path))
    monkeypatch.setattr("trafficgen.pretrained.default_model.DEFAULT_CONFIG", TINY)
    monkeypatch.setattr("trafficgen.datasets.flows.load_ndpi_apps", lambda progress=False: separable_flows(40))
    res = runner.invoke(app, ["classes"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-2:] == ["A\t20", "B\t20"]
    (entry,) = (tmp_path / "models").iterdir()
    stamp = (entry / "model.safetensors").stat().st_mtime_ns
    res = runner.invoke(app, ["sample", "--class", "b", "-n", "5", "-o", str(tmp_path / "s.jsonl")])
    assert res.exit_code == 0, res.output
    assert (entry / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained
    assert set(FlowSet.read(tmp_path / "s.jsonl").labels) == {"B"}


def test_output_paths_checked_before_any_work(monkeypatch, tmp_path):
    """`train -o FILE`, `sample -o afile/x.parquet`, `sample -o DIR.parquet`: one ConfigError naming the
    user's path, before anything is trained, loaded or sampled."""
    from trafficgen.generators.fast_retransmit import FastRetransmitGenerator

    data = tmp_path / "flows.parquet"
    separable_flows(10).save(data)
    (tmp_path / "taken").write_text("keep")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir.parquet").mkdir()

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(FastRetransmitGenerator, "fit", no_work)
    monkeypatch.setattr("trafficgen.registry.load_generator", no_work)
    monkeypatch.setattr("trafficgen.pretrained.default_model.get_default_model", no_work)
    calls = [(["train", "--model", "fast_retransmit", "--data", str(data), "-o", str(tmp_path / "taken")], "taken"),
             (["train", "--model", "fast_retransmit", "--data", str(data), "-o", str(tmp_path / "afile" / "m")],
              "afile"),
             (["sample", "-n", "3", "--model", str(tmp_path), "-o", str(tmp_path / "afile" / "x.parquet")], "afile"),
             (["sample", "-n", "3", "-o", str(tmp_path / "adir.parquet")], "adir.parquet")]
    for args, name in calls:
        res = runner.invoke(app, args)
        assert isinstance(res.exception, ConfigError), (args, res.exception)
        assert name in str(res.exception) and ".tmp" not in str(res.exception)
    assert (tmp_path / "taken").read_text() == "keep"


def test_train_warns_only_about_options_given(tmp_path):
    data = tmp_path / "flows.parquet"
    separable_flows(20).save(data)
    res = runner.invoke(app, ["train", "--model", "smote", "--data", str(data), "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    assert "warning" not in res.output  # --seed has a default; SMOTE has no random_state
    res = runner.invoke(app, ["train", "--model", "smote", "--data", str(data), "-o", str(tmp_path / "s2"),
                              "--seed", "3", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "no parameter 'random_state'" in res.output and "no parameter 'epochs'" in res.output


def test_default_model_class_checked_before_training(monkeypatch):
    monkeypatch.setattr("trafficgen.datasets.flows.load_ndpi_apps", lambda progress=False: separable_flows(10))

    def no_training(*args, **kwargs):
        raise AssertionError("the default model was trained before --class was checked")

    monkeypatch.setattr("trafficgen.pretrained.default_model.get_default_model", no_training)
    res = runner.invoke(app, ["sample", "--class", "zoom", "-n", "3"])
    assert isinstance(res.exception, UnknownClassError), res.exception
    assert "known classes: A, B" in str(res.exception)


def test_train_timing_then_sample_writes_iats(tmp_path):
    from tests.generators.test_timing import _timed_flows

    data = tmp_path / "timed.parquet"
    _timed_flows(60).save(data)
    for model, flag, timed in (("markov", "--timing", True), ("markov", "--no-timing", False)):
        out = tmp_path / f"{model}{flag}"
        res = runner.invoke(app, ["train", "--model", model, "--data", str(data), "-o", str(out), flag])
        assert res.exit_code == 0, res.output
        res = runner.invoke(app, ["sample", "-n", "20", "--model", str(out), "-o", str(out / "s.parquet")])
        assert res.exit_code == 0, res.output
        s = FlowSet.read(out / "s.parquet")
        assert (s.iat is not None) is timed
        if timed:
            assert (s.iat[:, 0] == 0).all() and (s.iat[:, 1:][s.valid_mask[:, 1:]] > 0).mean() > 0.5
    res = runner.invoke(app, ["train", "--model", "smote", "--data", str(data), "-o", str(tmp_path / "sm"),
                              "--timing"])
    assert res.exit_code == 0 and "no parameter 'timing'" in res.output
