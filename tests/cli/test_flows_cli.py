"""`trafficgen ingest` / `trafficgen info`, run in-process through the console entry point."""
from __future__ import annotations

import json
import sys

import pytest

from tests.data.flows.test_pcap import C, S, eth, tcp, udp, write_pcap
from trafficgen.cli.main import main
from trafficgen.data.flowset import FlowSet


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["trafficgen", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def captures(tmp_path):
    for app, port in (("web", 80), ("dns", 53)):
        d = tmp_path / "caps" / app
        d.mkdir(parents=True)
        for k in range(3 if app == "web" else 1):
            pk = [(k * 1000.0 + i, eth(tcp(C, S, 40000 + i, port, 10 + i)) if app == "web"
                   else eth(udp(C, S, 40000 + i, port, 30 + i))) for i in range(2)]
            write_pcap(d / f"{app}{k}.pcap", pk)
    return tmp_path / "caps"


def test_ingest_then_info(monkeypatch, capsys, captures, tmp_path):
    out = tmp_path / "flows.parquet"
    code, stdout, err = run_cli(monkeypatch, capsys, "ingest", captures, "--label-by", "folder",
                                "--packets", "4", "-o", out)
    assert code == 0, err
    assert "8 flows, 2 classes from 4 captures" in stdout
    fs = FlowSet.read(out)
    assert fs.max_packets == 4 and fs.class_counts() == {"web": 6, "dns": 2}
    assert sorted(fs.sequences()) == [[10], [10], [10], [11], [11], [11], [30], [31]]

    code, stdout, _ = run_cli(monkeypatch, capsys, "ingest", captures, "--label-by", "folder",
                              "--min-count", "3", "-o", tmp_path / "f.jsonl")
    assert code == 0 and FlowSet.read(tmp_path / "f.jsonl").classes == ["web"]

    code, stdout, _ = run_cli(monkeypatch, capsys, "info", out, "--json")
    summary = json.loads(stdout)
    assert code == 0 and summary["class_counts"] == {"dns": 2, "web": 6}
    assert summary["packets_per_flow"]["histogram"] == [0, 8, 0, 0, 0]
    assert summary["ingest_stats"]["files"] == 4
    code, stdout, _ = run_cli(monkeypatch, capsys, "info", out)
    assert code == 0 and "web" in stdout and "packets per flow" in stdout


def test_bad_capture_fails_cleanly_without_output(monkeypatch, capsys, captures, tmp_path):
    (captures / "web" / "broken.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 10)
    out = tmp_path / "flows.parquet"
    code, stdout, err = run_cli(monkeypatch, capsys, "ingest", captures, "--on-error", "raise", "-o", out)
    assert code == 1 and not out.exists()
    assert err.strip().count("\n") == 0 and "broken.pcap at offset 0" in err and err.startswith("error:")
    assert list(tmp_path.glob(".flows.parquet*")) == []
    code, stdout, err = run_cli(monkeypatch, capsys, "ingest", captures, "-o", out)  # default: skip
    assert code == 0 and out.exists() and "failed_files=1" in err


def test_usage_errors(monkeypatch, capsys, captures, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "ingest", captures, "-o", tmp_path / "x.txt")
    assert code == 1 and "error:" in err and not (tmp_path / "x.txt").exists()
    code, _, err = run_cli(monkeypatch, capsys, "ingest", tmp_path / "nope", "-o", tmp_path / "x.parquet")
    assert code == 1 and "no such file" in err
    code, _, err = run_cli(monkeypatch, capsys, "ingest", captures, "--min-count", "2", "-o", tmp_path / "y.csv")
    assert code == 1 and "--min-count needs labelled flows" in err


def test_ingest_jobs_2_writes_the_bytes_of_jobs_1(monkeypatch, capsys, captures, tmp_path):
    outs = {}
    for jobs in ("1", "2"):
        outs[jobs] = tmp_path / f"j{jobs}.parquet"
        code, stdout, err = run_cli(monkeypatch, capsys, "ingest", captures, "--label-by", "folder", "--jobs", jobs,
                                    "-o", outs[jobs])
        assert code == 0, err
        assert "8 flows, 2 classes from 4 captures" in stdout
    assert outs["1"].read_bytes() == outs["2"].read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, "ingest", captures, "--jobs", "-1", "-o", tmp_path / "x.parquet")
    assert code == 1 and "jobs" in err and err.count("\n") == 1 and not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ingest_progress_is_plain_lines_in_a_log(monkeypatch, capsys, captures, tmp_path, jobs):
    import trafficgen.data.flows.batch as batch

    monkeypatch.setattr(batch, "PROGRESS_DELAY_S", 0.0)  # a real ingest shows it after a second of work
    monkeypatch.setenv("TRAFFICGEN_PROGRESS", "auto")  # stderr is captured here: not a terminal
    code, _, err = run_cli(monkeypatch, capsys, "ingest", captures, "--jobs", jobs, "-o", tmp_path / "f.parquet")
    lines = err.splitlines()
    assert code == 0 and lines[0] == "ingest: 0/1 MB", err
    assert lines[-1].startswith("ingest: done, 1/1 MB in ") and lines[-1].endswith("captures 4/4"), err
    assert "\r" not in err and "\x1b" not in err
