"""Streaming ingestion: windows never change the result; memory stays bounded; jobs; the merge path."""
from __future__ import annotations

import io
import json
import pickle
import random
import struct
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path

import dpkt
import numpy as np
import pytest

import trafficgen.data.flows.pcap_format as pcap_format
from tests.data.flows.pcap_reference import reference_flows
from tests.data.flows.test_pcap import _block, eth, tcp, udp, write_pcap
from tests.data.flows.test_pcap_real import _summaries
from trafficgen.data.flows.batch import IngestProgress, check_jobs
from trafficgen.data.flows.pcap import IngestWarning, list_captures, read_pcap, read_pcaps
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, PcapError

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "trafficgen" / "datasets" / "ndpi" / "pcap"
HOSTS4 = ["10.0.0.1", "10.0.0.2", "192.168.1.9"]
HOSTS6 = ["2001:db8::1", "2001:db8::2", "fe80::9"]
FLAGS = [dpkt.tcp.TH_SYN, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_ACK, dpkt.tcp.TH_ACK,
         dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_RST]


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        return fn(*a, **kw)


def stress_packets(n=1200, seed=0):
    """Few endpoints (keys reused), SYN/FIN/RST, zero payloads, gaps over the idle timeout and
    timestamps going backwards, IPv4 and IPv6: every splitting rule fires, often across windows."""
    rng = random.Random(seed)
    out, t = [], 1000.0
    for _ in range(n):
        hosts = HOSTS6 if rng.random() < 0.3 else HOSTS4
        a, b = rng.sample(hosts, 2)
        pa, pb = rng.choice([1000, 1001, 80]), rng.choice([80, 53])
        pay = 0 if rng.random() < 0.3 else rng.randint(1, 300)
        if rng.random() < 0.6:
            pkt = tcp(a, b, pa, pb, pay, flags=rng.choice(FLAGS))
        else:
            pkt = udp(a, b, pa, pb, pay)
        r = rng.random()
        t += 8.0 if r < 0.05 else -0.7 if r < 0.1 else rng.expovariate(2.0)
        out.append((max(t, 0.0), eth(pkt)))
    return out


def stress_pcapng(path, packets, *, big_block=20_000):
    """Two interfaces (microseconds, nanoseconds) and a custom block larger than small windows."""
    bo = "<"
    out = [_block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for res in (6, 9):
        opts = struct.pack(bo + "HH", 9, 1) + bytes([res]) + b"\x00" * 3 + struct.pack(bo + "HH", 0, 0)
        out.append(_block(bo, 1, struct.pack(bo + "HHI", 1, 0, 0) + opts))
    for i, (ts, frame) in enumerate(packets):
        iface = i % 2
        ticks = int(round(ts * (1e6 if iface == 0 else 1e9)))
        out.append(_block(bo, 6, struct.pack(bo + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                                             len(frame), len(frame)) + frame))
        if i == len(packets) // 2:
            out.append(_block(bo, 0x00000BAD, b"\x00" * big_block))
    path.write_bytes(b"".join(out))
    return path


OPTION_SETS = [
    dict(max_packets=3, idle_timeout=5.0, split_on_fin=True),
    dict(max_packets=8, idle_timeout=1.0, split_on_fin=True, keep_zero_payload=True, min_packets=2),
    dict(max_packets=1, idle_timeout=120.0),
]


def _read_with_window(monkeypatch, chunk, *args, **kw):
    monkeypatch.setattr(pcap_format, "CHUNK_BYTES", chunk)
    return _quiet(read_pcap, *args, **kw)


@pytest.fixture(scope="module")
def stress_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("stress")
    packets = stress_packets()
    return {"pcap": write_pcap(d / "s.pcap", packets), "pcapng": stress_pcapng(d / "s.pcapng", packets)}


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_windows_do_not_change_the_result(monkeypatch, stress_files, fmt):
    path = stress_files[fmt]
    for opts in OPTION_SETS:
        whole = _read_with_window(monkeypatch, 0, path, **opts)  # one window: the whole capture
        assert len(whole) > 10
        for chunk in (64, 1000, 7777) if opts is OPTION_SETS[0] else (300, 5000):  # 64: about a packet each
            part = _read_with_window(monkeypatch, chunk, path, **opts)
            assert part == whole and part.meta == whole.meta, (opts, chunk)
    # and from memory (a file object), windows over the bytes at hand
    with open(path, "rb") as fh:
        mem = _read_with_window(monkeypatch, 500, fh, **OPTION_SETS[0])
    assert mem == _read_with_window(monkeypatch, 0, path, **OPTION_SETS[0])


def test_windows_match_the_dpkt_reference(monkeypatch, stress_files):
    path = stress_files["pcap"]
    for chunk, idle in ((300, 1.0), (2048, 120.0)):
        ours = _summaries(_read_with_window(monkeypatch, chunk, path, max_packets=5, idle_timeout=idle))
        assert ours == Counter(reference_flows(path, max_packets=5, idle_timeout=idle))


def test_window_errors_and_truncation_like_whole_reads(monkeypatch, tmp_path):
    good = write_pcap(tmp_path / "g.pcap", stress_packets(200)).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good[:-7])
    bad = bytearray(good)
    pos, k = 24, 0
    while k < 150:  # the caplen of record 150 made impossible
        pos += 16 + struct.unpack_from("<I", bad, pos + 8)[0]
        k += 1
    struct.pack_into("<I", bad, pos + 8, 10_000_000)
    (tmp_path / "big.pcap").write_bytes(bytes(bad))
    for chunk in (0, 100, 4096):
        monkeypatch.setattr(pcap_format, "CHUNK_BYTES", chunk)
        with pytest.warns(IngestWarning) as caught:
            fs = read_pcap(cut)
        assert f"at offset {pos_last(good)}: last record truncated" in str(caught[0].message)
        assert fs.meta["ingest_stats"]["skipped"]["truncated_records"] == 1
        with pytest.raises(PcapError) as e:
            read_pcap(cut, strict=True)
        assert e.value.offset == pos_last(good)
        with pytest.raises(PcapError, match="exceeds") as e:
            read_pcap(tmp_path / "big.pcap")
        assert e.value.offset == pos


def test_windows_kept_alive_keep_their_bytes_and_give_the_whole_capture(stress_files):
    from trafficgen.data.flows.pcap_format import RecordStream

    path = stress_files["pcap"]
    kept = [(rec, rec.data.tobytes()) for rec in RecordStream(str(path), chunk_bytes=300)]
    assert len(kept) > 50
    assert all(rec.data.tobytes() == snap for rec, snap in kept)  # later windows never overwrite earlier ones
    streamed = b"".join(rec.data[o:o + c].tobytes() for rec, _ in kept
                        for o, c in zip(rec.offset, rec.caplen, strict=True))
    assert streamed == read_records_of(path)


def read_records_of(path) -> bytes:
    from trafficgen.data.flows.pcap_format import read_records

    rec = read_records(str(path))
    return b"".join(rec.data[o:o + c].tobytes() for o, c in zip(rec.offset, rec.caplen, strict=True))


def pos_last(data: bytes) -> int:
    """Offset of the last record of a pcap."""
    pos = last = 24
    while pos < len(data):
        last = pos
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return last


# ---------------------------------------------------------------- bounded memory
RSS_SCRIPT = textwrap.dedent("""
    import resource, sys, warnings
    from trafficgen.data.flows.pcap import read_pcap
    warnings.simplefilter("ignore")
    fs = read_pcap(sys.argv[1], max_packets=10)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    print(int(peak), len(fs), fs.meta["ingest_stats"]["packets"])
""")
#: ru_maxrss survives exec (Linux folds the replaced memory's peak into it, and subprocess starts
#: children with vfork), so a child of this big test process would report this process's peak: the
#: reader runs as a grandchild, under a small launcher interpreter.
LAUNCHER = "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], check=True)"


def peak_rss_mb_of_read(path: Path) -> tuple[int, int, int]:
    """(peak RSS in MB, flows, packets) of read_pcap(path) in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, RSS_SCRIPT, str(path)], capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    return tuple(map(int, out))


def test_large_capture_streams_in_bounded_memory(tmp_path):
    """300k packets, 14k biflows, a 230 MB capture: the previous whole-file reader peaked at 352 MB
    RSS, the streaming one at 82 MB (interpreter + numpy 29 MB, one window, the flow table)."""
    from tests.data.flows.synthetic_capture import write_synthetic_capture

    path = write_synthetic_capture(tmp_path / "big.pcap", 300_000)
    peak_mb, n_flows, n_packets = peak_rss_mb_of_read(path)
    assert n_packets == 300_000 and n_flows > 10_000
    assert path.stat().st_size > 200e6
    assert peak_mb < 150, f"peak RSS {peak_mb} MB reading a {path.stat().st_size / 1e6:.0f} MB capture"


# ---------------------------------------------------------------- jobs
def test_jobs_2_equals_jobs_1_on_the_shipped_captures(tmp_path):
    one = _quiet(read_pcaps, SHIPPED, progress=False, max_packets=10)
    two = _quiet(read_pcaps, SHIPPED, progress=False, max_packets=10, jobs=2)
    assert one == two and one.meta == two.meta and len(one) > 4000
    one.to_parquet(tmp_path / "1.parquet")
    two.to_parquet(tmp_path / "2.parquet")
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()


def test_worker_start_method(monkeypatch):
    import threading

    from trafficgen.data.flows import batch

    alone = threading.active_count() == 1
    assert batch.start_method() == ("fork" if sys.platform.startswith("linux") and alone else "spawn")
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert batch.start_method() == "spawn"  # a Python thread could hold a lock at the fork
    finally:
        stop.set()
        t.join()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_jobs_2_equals_jobs_1_with_either_start_method(monkeypatch, tmp_path, method):
    import threading

    from trafficgen.data.flows import batch

    if method == "fork" and not sys.platform.startswith("linux"):
        pytest.skip("fork is used on Linux only")
    if method == "fork" and threading.active_count() > 1:
        pytest.skip("another Python thread runs here (e.g. an xdist worker's): read_pcaps would not fork")
    d = tmp_path / "caps"
    d.mkdir()
    for i in range(5):
        write_pcap(d / f"{i}.pcap", stress_packets(300 + 100 * i, seed=10 + i))
    one = _quiet(read_pcaps, d, progress=False, max_packets=8, split_on_fin=True)
    used = []
    monkeypatch.setattr(batch, "start_method", lambda: used.append(method) or method)
    if method == "fork":  # what Python 3.12+ says at a fork while native threads (numpy's OpenBLAS pool) run
        import os

        real_fork, forks = os.fork, []

        def warning_fork():
            forks.append(1)
            warnings.warn(f"This process (pid={os.getpid()}) is multi-threaded, use of fork() may lead to "
                          "deadlocks in the child.", DeprecationWarning, stacklevel=2)
            return real_fork()

        monkeypatch.setattr(os, "fork", warning_fork)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all from starting the workers
        three = read_pcaps(d, progress=False, max_packets=8, split_on_fin=True, jobs=3, on_error="skip")
    assert used == [method] and (method != "fork" or forks == [1, 1])  # two workers, forked once each
    assert one == three and one.meta == three.meta and len(one) > 100
    one.to_parquet(tmp_path / "1.parquet")
    three.to_parquet(tmp_path / "3.parquet")
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "3.parquet").read_bytes()


def test_jobs_failures_in_file_order(tmp_path):
    d = tmp_path / "caps"
    d.mkdir()
    for i in range(4):
        write_pcap(d / f"{i}_ok.pcap", stress_packets(50, seed=i))
    (d / "1_bad.pcap").write_bytes(b"\x00\x11\x22\x33" + b"\x00" * 40)
    (d / "2_bad.pcap").write_bytes(b"")
    results, shown = {}, {}
    for jobs in (1, 2):
        with pytest.raises(PcapError) as e:
            _quiet(read_pcaps, d, progress=False, jobs=jobs)
        assert e.value.path == str(d / "1_bad.pcap") and e.value.offset == 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results[jobs] = read_pcaps(d, progress=False, jobs=jobs, on_error="skip")
        shown[jobs] = [str(w.message) for w in caught]
    assert results[1] == results[2] and results[1].meta == results[2].meta
    assert shown[1] == shown[2] and len(shown[1]) == 3  # two skipped captures + the summary
    assert [f["path"] for f in results[2].meta["ingest_stats"]["failed_files"]] == [
        str(d / "1_bad.pcap"), str(d / "2_bad.pcap")]


def test_jobs_checked():
    assert check_jobs(1) == 1 and check_jobs(3) == 3 and check_jobs(0) >= 1
    for bad in (-1, 1.5, "two"):
        with pytest.raises(ConfigError, match="jobs"):
            check_jobs(bad)
    with pytest.raises(ConfigError, match="jobs"):
        read_pcaps(SHIPPED, jobs=-2)


# ---------------------------------------------------------------- merge path (Dask / Ray recipe)
def test_per_capture_read_pcap_then_concat_equals_read_pcaps(tmp_path):
    files = list_captures(SHIPPED)
    parts = [pickle.loads(pickle.dumps(_quiet(read_pcap, f, max_packets=10))) for f in files]  # as from workers
    merged = FlowSet.concat(parts)
    direct = _quiet(read_pcaps, SHIPPED, progress=False, max_packets=10)
    assert merged == direct and merged.meta == direct.meta
    assert merged.meta["ingest_stats"]["files"] == len(files)
    merged.to_parquet(tmp_path / "m.parquet")
    direct.to_parquet(tmp_path / "d.parquet")
    assert (tmp_path / "m.parquet").read_bytes() == (tmp_path / "d.parquet").read_bytes()
    # labels afterwards, as read_pcaps(labels=...) does
    from trafficgen.data.flows.labels import LabelTable

    table = LabelTable.from_csv(SHIPPED.parent / "labels.csv")
    raw = table.lookup(merged)
    hit = np.asarray([x is not None for x in raw])
    labelled = merged[hit].with_labels(list(raw[hit]))
    assert labelled == _quiet(read_pcaps, SHIPPED, labels=SHIPPED.parent / "labels.csv", progress=False,
                              max_packets=10)


def test_concat_meta():
    a = FlowSet.from_sequences([[1, -2]], ["x"])
    b = FlowSet.from_sequences([[3]], ["y"])
    a.meta, b.meta = {"dataset": "d", "ingest_stats": {"files": 1, "skipped": {"fragment": 2}, "failed_files": [1]}}, \
        {"ingest_stats": {"files": 2, "skipped": {"fragment": 3}, "failed_files": [2]}}
    m = FlowSet.concat([a, b])
    assert m.meta == {"dataset": "d", "ingest_stats": {"files": 3, "skipped": {"fragment": 5}, "failed_files": [1, 2]}}
    b.meta = {"dataset": "other"}  # not every part has counters: the first part's meta, as before
    assert FlowSet.concat([a, b]).meta == a.meta


# ---------------------------------------------------------------- progress
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_progress_lines_only_after_the_delay(monkeypatch):
    monkeypatch.setenv("TRAFFICGEN_PROGRESS", "lines")
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    clock = _Clock()
    with IngestProgress(5e6, 3, clock=clock) as p:  # quick: nothing shown
        p.set(2e6, 1)
        p.set(5e6, 3)
    assert err.getvalue() == ""
    with IngestProgress(50e6, 3, clock=clock) as p:
        p.set(1e6, 0)
        clock.t += 2.0
        p.set(20e6, 1)
        clock.t += 11.0
        p.set(30e6, 2)
    lines = err.getvalue().splitlines()
    assert lines[0] == "ingest: 0/50 MB" and lines[-1].startswith("ingest: done, 50/50 MB")
    assert any("captures 2/3" in line for line in lines)


def test_read_pcaps_progress_is_silent_when_quick(capsys, monkeypatch):
    monkeypatch.setenv("TRAFFICGEN_PROGRESS", "lines")
    _quiet(read_pcaps, SHIPPED / "dns.pcap", progress=True)
    assert capsys.readouterr().err == ""


def test_pickled_flowset_meta_is_json():
    fs = _quiet(read_pcap, SHIPPED / "dns.pcap")
    assert pickle.loads(pickle.dumps(fs)) == fs
    json.dumps(fs.meta)
