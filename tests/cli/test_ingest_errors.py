"""`trafficgen ingest` failures through the installed console script (issue 16, items 1, 2, 10, 15).

Each bad call: a non-zero exit, exactly one line on stderr, no traceback, nothing left at the
output path (no temporaries either). A subprocess, so ``main()``'s error handling is exercised.
"""
from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.flows.test_pcap import C, S, _conversation, eth, udp, write_pcap
from tests.data.flows.test_pcap_robustness import REPRODUCER

SCRIPT = Path(sys.executable).with_name("trafficgen")
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the trafficgen console script is not installed")


def ingest(*args, timeout: float = 120, address_space: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    env = dict(os.environ, COLUMNS="200", TERM="dumb")
    return subprocess.run([str(SCRIPT), "ingest", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=limit)


def assert_one_line_failure(res: subprocess.CompletedProcess, out: Path, *needles: str) -> None:
    assert res.returncode != 0, (res.stdout, res.stderr)
    # progress lines ("ingest: 0/1 MB", "ingest: done, ...") are printed to logs when the work
    # takes a few seconds (a loaded machine); the failure itself must be one line
    lines = [line for line in res.stderr.strip().splitlines() if not line.startswith("ingest: ")]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []


def _bad_captures(d: Path) -> dict[str, bytes]:
    good = write_pcap(d / "good_template.pcap", [(0, eth(udp(C, S, 1, 2, 5)))]).read_bytes()
    (d / "good_template.pcap").unlink()
    return {
        "wrong_magic.pcap": b"\x00\x11\x22\x33" + good[4:],
        "empty.pcap": b"",
        "not_a_pcap.pcap": b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n",
        "unsupported_linktype.pcap": good[:20] + struct.pack("<I", 147) + good[24:],
        "caplen_too_large.pcap": good[:24] + struct.pack("<IIII", 0, 0, 10_000_000, 60) + b"x" * 64,
    }


# ---------------------------------------------------------------- item 1
@pytest.mark.parametrize("name", ["wrong_magic.pcap", "empty.pcap", "not_a_pcap.pcap", "unsupported_linktype.pcap",
                                  "caplen_too_large.pcap"])
def test_unreadable_capture_fails_and_writes_nothing(tmp_path, name):
    blob = _bad_captures(tmp_path)[name]
    (tmp_path / name).write_bytes(blob)
    out = tmp_path / "o.parquet"
    assert_one_line_failure(ingest(tmp_path / name, "-o", out), out, name)


def test_folder_of_unreadable_captures_fails(tmp_path):
    caps = tmp_path / "caps"
    caps.mkdir()
    for name, blob in _bad_captures(tmp_path).items():
        (caps / name).write_bytes(blob)
    out = tmp_path / "o.jsonl"
    assert_one_line_failure(ingest(caps, "-o", out), out, "none of the 5 captures could be read")


def test_empty_folder_fails(tmp_path):
    (tmp_path / "caps").mkdir()
    out = tmp_path / "o.parquet"
    assert_one_line_failure(ingest(tmp_path / "caps", "-o", out), out, "no capture files")


def test_strict_on_truncated_capture_fails(tmp_path):
    path = write_pcap(tmp_path / "t.pcap", _conversation())
    path.write_bytes(path.read_bytes()[:-10])
    out = tmp_path / "o.csv"
    res = ingest(path, "-o", out)
    assert res.returncode == 0 and out.exists() and "truncated" in res.stderr
    out.unlink()
    assert_one_line_failure(ingest(path, "--strict", "-o", out), out, "t.pcap at offset", "truncated")


def test_header_only_capture_is_a_warning(tmp_path):
    path = write_pcap(tmp_path / "h.pcap", [])
    out = tmp_path / "o.parquet"
    res = ingest(path, "-o", out)
    assert res.returncode == 0 and out.exists() and "no packets" in res.stderr


def test_shared_bad_inputs(shared_data, tmp_path):
    bad = shared_data / "bad"
    out = tmp_path / "o.parquet"
    for name in ("wrong_magic.pcap", "empty.pcap", "not_a_pcap.pcap", "unsupported_linktype.pcap",
                 "caplen_too_large.pcap"):
        assert_one_line_failure(ingest(bad / name, "-o", out), out, name)
    assert_one_line_failure(ingest(bad / "truncated_mid_packet.pcap", "--strict", "-o", out), out,
                            "offset 1276463")
    res = ingest(bad / "header_only.pcap", "-o", out)
    assert res.returncode == 0 and "no packets" in res.stderr


# ---------------------------------------------------------------- item 2
def test_reproducer_in_a_folder_of_good_captures(tmp_path):
    caps = tmp_path / "caps"
    caps.mkdir()
    write_pcap(caps / "a.pcap", _conversation())
    (caps / "b.pcap").write_bytes(REPRODUCER)
    out = tmp_path / "o.jsonl"
    res = ingest(caps, "--packets", "4", "-o", out)
    assert res.returncode == 0, res.stderr
    assert "3 flows from 2 captures" in res.stdout and "ip_len_from_wire=1" in res.stderr


# ---------------------------------------------------------------- item 10
def test_dev_zero_is_rejected(tmp_path):
    out = tmp_path / "o.parquet"
    assert_one_line_failure(ingest("/dev/zero", "-o", out, timeout=60, address_space=2 << 30), out, "/dev/zero", "not a regular file")


def test_fifo_is_rejected_without_hanging(tmp_path):
    fifo = tmp_path / "f.pcap"
    os.mkfifo(fifo)
    out = tmp_path / "o.parquet"
    assert_one_line_failure(ingest(fifo, "-o", out, timeout=30), out, "f.pcap", "not a regular file")


def test_packets_is_bounded(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", _conversation())
    out = tmp_path / "o.parquet"
    res = ingest(path, "--packets", "100000000", "-o", out, address_space=3 << 30)
    assert_one_line_failure(res, out, "--packets", "10000")
    help_text = subprocess.run([str(SCRIPT), "ingest", "--help"], capture_output=True, text=True,
                               env=dict(os.environ, COLUMNS="200", TERM="dumb")).stdout
    assert "at most 10000" in " ".join(help_text.split())  # click wraps at 80 columns
    from trafficgen.cli.flows import _MAX_PACKETS
    from trafficgen.data.flows.pcap import MAX_PACKETS

    assert _MAX_PACKETS == MAX_PACKETS == 10_000


def test_memory_error_is_one_line(tmp_path):
    frame = bytearray(eth(udp(C, S, 1, 2, 8)))
    packets = []
    for i in range(12_000):  # 12,000 one-packet flows x 10,000 columns: several GiB of arrays
        struct.pack_into(">H", frame, 14 + 20, 1024 + i % 60_000)
        struct.pack_into(">H", frame, 14 + 20 + 2, 1 + i // 60_000)
        packets.append((float(i), bytes(frame)))
    path = write_pcap(tmp_path / "many.pcap", packets)
    out = tmp_path / "o.parquet"
    res = ingest(path, "--packets", "10000", "-o", out, address_space=768 << 20)
    assert_one_line_failure(res, out, "out of memory", "--packets 10000")


# ---------------------------------------------------------------- item 15 (--min-packets part)
def test_min_packets_larger_than_packets_is_rejected(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", _conversation())
    out = tmp_path / "o.parquet"
    assert_one_line_failure(ingest(path, "--packets", "3", "--min-packets", "5", "-o", out), out,
                            "--min-packets 5", "--packets 3")


# ---------------------------------------------------------------- issue 19: --jobs
def test_jobs_2_failures_are_one_line_like_jobs_1(tmp_path):
    caps = tmp_path / "caps"
    caps.mkdir()
    for name, blob in _bad_captures(tmp_path).items():
        (caps / name).write_bytes(blob)
    out = tmp_path / "o.jsonl"
    assert_one_line_failure(ingest(caps, "--jobs", "2", "-o", out), out, "none of the 5 captures could be read")
    write_pcap(caps / "good.pcap", _conversation())
    res = ingest(caps, "--jobs", "2", "--on-error", "raise", "-o", out)
    assert_one_line_failure(res, out, "caplen_too_large.pcap at offset 24")  # the first failure in file order

