"""Efficiency profiling: parameter counts, peak memory, latency, table, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trafficgen.experiments.profiling import (
    PeakMemory,
    count_parameters,
    directory_size,
    efficiency_table_markdown,
    profile_generator,
    write_efficiency,
)


@pytest.fixture(scope="module")
def tiny_llama():
    from trafficgen.datasets import load_ndpi_apps
    from trafficgen.generators.llama import LlamaGenerator

    flows = load_ndpi_apps()
    flows = flows[np.flatnonzero(np.isin(flows.labels, ["DNS", "HTTP"]))[:120]].truncate(8)
    return flows, LlamaGenerator(preset="tiny", epochs=1, random_state=0, progress=False).fit(flows)


def test_peak_memory_sees_allocation():
    import mmap
    import time

    # a fresh anonymous mapping, written: 40 MB of new resident pages whatever malloc kept from
    # earlier tests in this worker (np.ones could reuse freed, still-resident heap: flaky)
    with PeakMemory(interval_s=0.001) as mem:
        block = mmap.mmap(-1, 40 * 2**20)
        block.write(b"\x01" * (40 * 2**20))
        time.sleep(0.05)
    block.close()
    assert 30 <= mem.peak_mb <= 200
    assert mem.peak_rss_mb >= mem.peak_mb + 10  # absolute RSS includes the interpreter itself


def test_count_parameters_and_profile(tiny_llama, tmp_path):
    from trafficgen.generators.quantization import quantize_generator

    flows, gen = tiny_llama
    n = count_parameters(gen)
    assert n == sum(p.numel() for p in gen.model_.parameters())
    q = quantize_generator(gen, mode="weight-only")
    assert count_parameters(q) == n  # int8 weights are still parameters
    row = profile_generator(gen, train_flows=flows, batch_sizes=(1, 16), repeats=1)
    assert row["parameters"] == n and row["precision"] == "fp32"
    assert row["train_s_per_epoch"] > 0 and row["gen_ms_per_sample_b1"] > 0 and row["gen_ms_per_sample_b16"] > 0
    assert row["gen_peak_rss_mb"] > 50 and row["train_peak_rss_mb"] > 50  # a torch process, in MB
    qrow = profile_generator(q, name="llama-int8", train_flows=flows, batch_sizes=(1, 16), repeats=1)
    assert qrow["train_s_per_epoch"] is None and qrow["precision"] == "int8 weight-only"
    assert qrow["disk_mb"] < 0.4 * row["disk_mb"]
    md = efficiency_table_markdown([row, qrow])
    assert md.count("\n") == 4 and "gen ms/sample @16" in md and "| llama-int8 | int8 weight-only |" in md
    paths = write_efficiency([row, qrow], tmp_path)
    assert json.loads(paths["json"].read_text())[1]["model"] == "llama-int8"


def test_cli_quantize_and_profile(tiny_llama, tmp_path):
    from typer.testing import CliRunner

    from trafficgen.cli.main import app

    _, gen = tiny_llama
    gen.save_pretrained(tmp_path / "fp32")
    runner = CliRunner()
    res = runner.invoke(app, ["quantize", "--model", str(tmp_path / "fp32"), "--mode", "dynamic",
                              "-o", str(tmp_path / "int8")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "int8" / "config.json").read_text())["quantization"]["mode"] == "dynamic"
    assert directory_size(tmp_path / "int8") < directory_size(tmp_path / "fp32")
    res = runner.invoke(app, ["profile", "-m", str(tmp_path / "fp32"), "-m", str(tmp_path / "int8"),
                              "--batch-sizes", "1,8", "--repeats", "1", "-o", str(tmp_path / "prof")])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "prof" / "efficiency.json").read_text())
    assert [r["precision"] for r in rows] == ["fp32", "int8 dynamic"]
    assert (tmp_path / "prof" / "efficiency.md").exists()


def test_precision_label_names_the_sampling_autocast():
    from trafficgen.experiments.profiling import precision_label
    from trafficgen.generators.netdiffus import NetDiffusGenerator

    assert precision_label(NetDiffusGenerator()) == "fp32"
    assert precision_label(NetDiffusGenerator(sample_precision="bf16")) == "fp32, bf16 sampling"
