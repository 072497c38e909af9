"""Issue 16 (items 1, 2, 10, 15): bounded wire lengths, decode failures as PcapError, a batch that
reads nothing is an error, regular files only, bounded options."""
from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import struct
import warnings

import pytest

from tests.data.flows.test_pcap import C6, S6, C, S, _conversation, eth, quiet_read, udp, write_pcap
from trafficgen.data.flows import pcap as pcap_module
from trafficgen.data.flows.pcap import MAX_PACKETS, IngestWarning, read_pcap, read_pcaps
from trafficgen.errors import ConfigError, InputFormatError, PcapError

#: The issue's 86-byte reproducer: one Ethernet/IPv4/UDP record, IPv4 total length 0, wire length
#: 0x800000c8 (>= 2**31: the unbounded payload wrapped negative in int32).
REPRODUCER = bytes.fromhex(
    "d4c3b2a1020004000000000000000000ffff00000100000001000000000000002e000000c800008000000000000000"
    "000000000008004500000000010000401100000a0000010a00000204570035000c000061626364")


def _read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        return read_pcap(path, **kw)


# ---------------------------------------------------------------- item 2: bounded lengths
def test_reproducer_zero_ipv4_total_length_is_bounded_and_flagged(tmp_path):
    assert len(REPRODUCER) == 86
    path = tmp_path / "big.pcap"
    path.write_bytes(REPRODUCER)
    fs = _read(path)
    assert fs.sequences() == [[65535 - 20 - 8]]  # IPv4 maximum minus IPv4 and UDP headers
    flagged = fs.meta["ingest_stats"]["flagged"]
    assert flagged["ip_len_from_wire"] == 1 and flagged["inconsistent_length"] == 1


@pytest.mark.parametrize("wire", [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 70_000])
def test_zero_ipv4_total_length_never_exceeds_65535(tmp_path, wire):
    raw = bytearray(udp(C, S, 1, 2, 20))
    struct.pack_into(">H", raw, 2, 0)
    frame = eth(bytes(raw))
    fs = _read(write_pcap(tmp_path / "w.pcap", [(0.0, frame, wire)]))
    assert fs.sequences() == [[65535 - 28]]


def _ipv6_udp(payload: int, plen: int, hop_by_hop: bytes = b"") -> bytes:
    nh = 0 if hop_by_hop else 17
    hdr = struct.pack(">IHBB", 6 << 28, plen, nh, 64) + _addr(C6) + _addr(S6)
    return hdr + hop_by_hop + struct.pack(">HHHH", 1000, 2000, 0, 0) + b"u" * payload


def _addr(a: str) -> bytes:
    import socket

    return socket.inet_pton(socket.AF_INET6, a)


def _jumbo_hbh(jumbo_len: int) -> bytes:
    # next header UDP, hdr ext len 0 (8 bytes), option 0xC2 (Jumbo Payload), length 4, value
    return struct.pack(">BBBBI", 17, 0, 0xC2, 4, jumbo_len)


@pytest.mark.parametrize("wire", [0x80000000 + 54, 0xFFFFFFFF, 100_000])
def test_zero_ipv6_payload_length_without_jumbo_option_is_bounded(tmp_path, wire):
    frame = eth(_ipv6_udp(20, 0))
    fs = _read(write_pcap(tmp_path / "v6.pcap", [(0.0, frame, wire)]))
    assert fs.sequences() == [[65535 - 8]]
    assert fs.meta["ingest_stats"]["flagged"]["inconsistent_length"] == 1


def test_ipv6_jumbogram_needs_the_jumbo_option(tmp_path):
    jumbo = 100_000  # payload length incl. the 8-byte hop-by-hop header
    frame = eth(_ipv6_udp(20, 0, _jumbo_hbh(jumbo)))
    wire = 14 + 40 + jumbo
    fs = _read(write_pcap(tmp_path / "j.pcap", [(0.0, frame, wire)]))
    assert fs.sequences() == [[jumbo - 8 - 8]]
    # jumbo length above the wire length: clamped to the wire, flagged
    fs = _read(write_pcap(tmp_path / "j2.pcap", [(0.0, frame, 14 + 40 + 70_000)]))
    assert fs.sequences() == [[70_000 - 16]] and fs.meta["ingest_stats"]["flagged"]["inconsistent_length"] == 1
    # absurd jumbo and wire lengths stay inside int32
    fs = _read(write_pcap(tmp_path / "j3.pcap", [(0.0, eth(_ipv6_udp(20, 0, _jumbo_hbh(0xFFFFFFFF))), 0xFFFFFFFF)]))
    assert len(fs) == 1 and 0 < fs.lengths[0, 0] < 2**31


def test_decode_failure_is_a_pcap_error_with_file_and_offset(tmp_path, monkeypatch):
    path = write_pcap(tmp_path / "a.pcap", _conversation())

    def broken(self, *a, **kw):
        raise InputFormatError("directions disagree with the sign of lengths")

    monkeypatch.setattr(pcap_module.FlowAssembler, "add", broken)
    with pytest.raises(PcapError) as e:
        _read(path)
    assert e.value.path == str(path) and e.value.offset is not None
    assert "directions disagree" in str(e.value)


def test_one_corrupt_capture_does_not_abort_a_folder_under_skip(tmp_path, monkeypatch):
    d = tmp_path / "caps"
    d.mkdir()
    write_pcap(d / "a.pcap", _conversation())
    (d / "b_big.pcap").write_bytes(REPRODUCER)
    write_pcap(d / "c.pcap", _conversation(5000.0))
    with pytest.warns(IngestWarning):
        fs = read_pcaps(d, on_error="skip", progress=False, max_packets=4)
    assert len(fs) == 5 and fs.meta["ingest_stats"]["failed_files"] == []
    # a capture whose decoding fails is skipped and listed, the others are kept
    real_add = pcap_module.FlowAssembler.add

    def fail_on_big(self, dec, ts):
        if len(ts) == 1:
            raise InputFormatError("directions disagree with the sign of lengths")
        return real_add(self, dec, ts)

    monkeypatch.setattr(pcap_module.FlowAssembler, "add", fail_on_big)
    with pytest.warns(IngestWarning):
        fs = read_pcaps(d, on_error="skip", progress=False, max_packets=4)
    failed = fs.meta["ingest_stats"]["failed_files"]
    assert len(fs) == 4 and [f["path"] for f in failed] == [str(d / "b_big.pcap")]


# ---------------------------------------------------------------- item 1: nothing read is an error
def test_batch_where_no_capture_could_be_read_raises(tmp_path):
    (tmp_path / "x.pcap").write_bytes(b"\x00\x11\x22\x33" + b"\x00" * 40)
    (tmp_path / "y.pcap").write_bytes(b"")
    with pytest.raises(PcapError, match="none of the 2 captures could be read") as e:
        read_pcaps(tmp_path, on_error="skip", progress=False)
    assert e.value.path is not None and e.value.offset == 0
    with pytest.raises(PcapError, match="not a pcap"):  # one capture: its own error
        read_pcaps(tmp_path / "x.pcap", on_error="skip", progress=False)


def test_empty_folder_raises(tmp_path):
    (tmp_path / "notes.txt").write_text("no captures here")
    with pytest.raises(PcapError, match="no capture files") as e:
        read_pcaps(tmp_path, progress=False)
    assert e.value.path == str(tmp_path)
    with pytest.raises(PcapError, match="no capture files"):
        read_pcaps([], progress=False)


def test_header_only_capture_is_a_warning_not_an_error(tmp_path):
    path = write_pcap(tmp_path / "h.pcap", [])
    with pytest.warns(IngestWarning, match="no packets"):
        fs = read_pcaps(path, on_error="skip", progress=False)
    assert len(fs) == 0 and fs.meta["ingest_stats"]["files"] == 1


# ---------------------------------------------------------------- item 10: regular files, bounds
@contextlib.contextmanager
def _guarded(seconds: int = 10, extra_bytes: int = 1 << 30):
    """Fail instead of hanging or eating the machine's memory (what an unfixed reader does on
    /dev/zero or a FIFO): an alarm and, for the duration, an address-space limit."""
    def on_alarm(signum, frame):
        raise TimeoutError("blocked")

    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as fh:
        vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, old_handler)


@pytest.mark.skipif(not os.path.exists("/dev/zero") or not hasattr(os, "mkfifo"), reason="POSIX only")
def test_non_regular_files_are_rejected(tmp_path):
    with _guarded(), pytest.raises(PcapError, match="not a regular file") as e:
        read_pcap("/dev/zero")
    assert e.value.path == "/dev/zero"
    with _guarded(), pytest.raises(PcapError, match="not a regular file"):
        read_pcaps(["/dev/zero"], on_error="skip", progress=False)
    fifo = tmp_path / "fifo.pcap"
    os.mkfifo(fifo)
    with _guarded(), pytest.raises(PcapError, match="not a regular file"):
        read_pcap(fifo)  # must not block waiting for a writer
    with pytest.raises(PcapError, match="no capture files"):
        read_pcaps([tmp_path], progress=False)  # a FIFO inside a folder is not picked up either


def test_max_packets_and_min_packets_bounded(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", _conversation())
    with pytest.raises(ConfigError, match=f"at most {MAX_PACKETS}"):
        read_pcap(path, max_packets=100_000_000)
    assert len(quiet_read(path, max_packets=MAX_PACKETS)) == 2
    with pytest.raises(ConfigError, match="min_packets"):
        read_pcap(path, max_packets=3, min_packets=5)
    with pytest.raises(ConfigError, match="min_packets"):
        read_pcaps(path, max_packets=3, min_packets=5, progress=False)
    assert len(quiet_read(path, max_packets=3, min_packets=3)) == 1


# ---------------------------------------------------------------- from memory (what the fuzz benchmark uses)
def test_read_pcap_from_a_binary_file_object(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", _conversation())
    ref = quiet_read(path, max_packets=4)
    with open(path, "rb") as fh:
        named = quiet_read(fh, max_packets=4)
    assert named == ref and named.source.tolist() == [str(path)] * 2
    anon = quiet_read(io.BytesIO(path.read_bytes()), max_packets=4)
    assert anon.sequences() == ref.sequences() and anon.source.tolist() == ["<stream>"] * 2
    with pytest.raises(PcapError) as e:
        read_pcap(io.BytesIO(REPRODUCER[:30]), strict=True)
    assert e.value.path == "<stream>" and e.value.offset == 24
    with pytest.raises(ConfigError, match="binary file object"):
        read_pcap(io.StringIO("text"))
