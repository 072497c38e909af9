"""`trafficgen export`, run in-process through the console entry point: export -> ingest gives the flows back."""
from __future__ import annotations

import json

import numpy as np

from tests.cli.test_flows_cli import run_cli
from trafficgen.data.flowset import FlowSet


def flows_file(tmp_path, *, iat=True, labels=True):
    seqs = [[100, -1400, -1400, 20], [60, -80], [517, -1300, 90, -40, 40]] * 4
    fs = FlowSet.from_sequences(seqs, labels=["web", "dns", "tls"] * 4 if labels else None,
                                iat=[[0.0, 0.03, 0.0001, 0.2][: len(s)] + [0.01] * (len(s) - 4) for s in seqs]
                                if iat else None)
    path = tmp_path / "flows.parquet"
    fs.to_parquet(path)
    return fs, path


def test_export_then_ingest_gives_the_flows_back(monkeypatch, capsys, tmp_path):
    fs, path = flows_file(tmp_path)
    out, labels = tmp_path / "out" / "x.pcap", tmp_path / "out" / "x.labels.csv"
    code, stdout, err = run_cli(monkeypatch, capsys, "export", path, "-o", out, "--labels-out", labels,
                                "--linktype", "raw", "--payload", "random", "--seed", "3", "--jobs", "2")
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["n_flows"] == 12 and summary["timing"] == "flows" and summary["linktype"] == "raw"
    assert summary["n_bytes"] == out.stat().st_size and summary["labels_path"] == str(labels)
    assert "export: done" in err  # progress lines on stderr (not a terminal here)
    back_path = tmp_path / "back.parquet"
    code, _, err = run_cli(monkeypatch, capsys, "ingest", out, "--labels", labels, "--packets", fs.max_packets,
                           "-o", back_path)
    assert code == 0, err
    back = FlowSet.read(back_path)
    assert back.labels.tolist() == fs.labels.tolist()  # rate-driven starts keep the flows' order
    np.testing.assert_array_equal(back.lengths, fs.lengths)
    assert np.abs(back.iat - fs.iat).max() <= 1e-6


def test_flows_without_timing_say_where_their_iats_come_from(monkeypatch, capsys, tmp_path):
    _, path = flows_file(tmp_path, iat=False)
    code, stdout, err = run_cli(monkeypatch, capsys, "export", path, "-o", tmp_path / "d.pcap")
    assert code == 0 and json.loads(stdout.splitlines()[-1])["timing"] == "default"
    assert "warning: the flows carry no IATs: drawn from the default" in err
    code, stdout, err = run_cli(monkeypatch, capsys, "export", path, "-o", tmp_path / "e.pcap", "--timing-from",
                                "ndpi", "--ports-from", "ndpi")
    assert code == 0, err
    assert json.loads(stdout.splitlines()[-1])["timing"] == "empirical" and "per-class empirical IATs" in err


def test_bad_calls_fail_with_one_line_before_any_work(monkeypatch, capsys, tmp_path):
    (tmp_path / "a_folder").mkdir()
    # -o is checked before the input is read: the missing input is not what is reported
    code, _, err = run_cli(monkeypatch, capsys, "export", tmp_path / "missing.parquet", "-o", tmp_path / "a_folder")
    assert code == 1 and err.startswith("error: cannot write") and "folder" in err and len(err.splitlines()) == 1
    _, unlabelled = flows_file(tmp_path, labels=False)
    code, _, err = run_cli(monkeypatch, capsys, "export", unlabelled, "-o", tmp_path / "u.pcap", "--labels-out",
                           tmp_path / "u.csv")
    assert code == 1 and "needs labelled flows" in err
    for args in (["--ipv6", "most"], ["--linktype", "fddi"], ["--payload", "copy"]):
        code, _, err = run_cli(monkeypatch, capsys, "export", unlabelled, "-o", tmp_path / "v.pcap", *args)
        assert code == 1 and err.startswith("error:") and len(err.splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_folder", "flows.parquet"]


def test_help(monkeypatch, capsys):
    code, stdout, _ = run_cli(monkeypatch, capsys, "export", "--help")
    assert code == 0
    for option in ("--labels-out", "--linktype", "--payload", "--starts", "--rate", "--timing-from", "--ports-from",
                   "--ipv6", "--time-resolution", "--seed"):
        assert option in stdout
