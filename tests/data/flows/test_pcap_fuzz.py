"""Mutated real captures (flip / insert / delete / truncate bytes): only a FlowSet or a PcapError."""
from __future__ import annotations

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.data.flows.test_pcap import C, S, eth, tcp, udp, write_pcap, write_pcapng
from trafficgen.data.flows.pcap import IngestWarning, read_pcap
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import PcapError

_SEEDS: dict[str, bytes] = {}


def _seed_captures(tmp_dir) -> dict[str, bytes]:
    if not _SEEDS:
        pk = [(i * 0.1, eth(tcp(C, S, 1234, 80, 17 * i)) if i % 2 else eth(udp(S, C, 53, 999, 5 + i)))
              for i in range(12)]
        _SEEDS["pcap"] = write_pcap(tmp_dir / "seed.pcap", pk).read_bytes()
        _SEEDS["pcapng"] = write_pcapng(tmp_dir / "seed.pcapng", [(1, None), (101, 9)],
                                        [(i % 2, 10**6 * i, p if i % 2 == 0 else p[14:])
                                         for i, (_, p) in enumerate(pk)]).read_bytes()
    return _SEEDS


mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "truncate", "set32"]),
                     st.integers(0, 10**6), st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["pcap", "pcapng", "real"]), muts=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_captures_give_flowset_or_pcap_error(tmp_path, shared_data_or_none, kind, muts):
    seeds = _seed_captures(tmp_path)
    blob = bytearray(shared_data_or_none if kind == "real" and shared_data_or_none else seeds[
        "pcap" if kind == "real" else kind])
    for op, pos, val in muts:
        pos = pos % (len(blob) + 1)
        if op == "flip" and blob:
            blob[pos % len(blob)] ^= 1 << (val % 8)
        elif op == "insert":
            blob[pos:pos] = bytes([val & 0xFF]) * (1 + val % 5)
        elif op == "delete":
            del blob[pos: pos + 1 + val % 7]
        elif op == "truncate":
            del blob[pos:]
        elif op == "set32" and len(blob) >= 4:
            p = min(pos, len(blob) - 4)
            blob[p: p + 4] = val.to_bytes(4, "little")
    path = tmp_path / "m.pcap"
    path.write_bytes(bytes(blob))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", IngestWarning)
            fs = read_pcap(path, max_packets=8)
    except PcapError as exc:
        assert exc.offset is not None and exc.path == str(path)
        return
    assert isinstance(fs, FlowSet)
    assert len(fs) == 0 or (fs.lengths[:, 0] > 0).all()


@pytest.fixture(scope="module")
def shared_data_or_none():
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "ndpi" / "pcap" / "tls_malicious_sha1.pcapng"
    return path.read_bytes() if path.exists() else None
