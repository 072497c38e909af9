"""pcap reader on the real nDPI captures and the shared bad inputs (skipped without ../shared/data)."""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

from tests.data.flows.pcap_reference import reference_flows
from trafficgen.data.flows.pcap import IngestWarning, read_pcap, read_pcaps
from trafficgen.errors import PcapError

#: Diverse captures checked packet-for-packet against the dpkt reference.
REFERENCE_SAMPLE = [
    "1kxun.pcap",  # Ethernet, IPv4 + IPv6, many flows
    "whatsapp_login_chat.pcap",
    "nfsv2.pcap",  # big-endian pcap
    "nfsv3.pcap",
    "tls_malicious_sha1.pcapng",  # pcapng, IPv6
    "youtubeupload.pcap",  # pcapng despite its name
    "upnp.pcap",
    "hsrp0.pcap",  # 802.1Q
    "mongodb.pcap",  # 802.1Q
    "ultrasurf.pcap",  # 802.1Q
    "syslog.pcap",  # PPPoE
    "log4j-webapp-exploit.pcap",  # Linux cooked (SLL)
    "quic-v2.pcapng",  # SLL in pcapng
    "ocs.pcap",  # raw IP (101)
    "psiphon3.pcap",
    "ossfuzz_seed_fake_traces_1.pcapng",  # raw IPv4 (228)
    "opc-ua.pcap",  # BSD null/loopback
    "openwire.pcapng",  # null in pcapng
    "fuzz-2006-09-29-28586.pcap",  # fragments, big-endian, malformed packets
    "ip_fragmented_garbage.pcap",  # 1248 non-first fragments
]


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        return fn(*a, **kw)


def _summaries(fs) -> Counter:
    out = []
    for i in range(len(fs)):
        seq = fs.lengths[i, : fs.n_packets[i]]
        c2s, s2c = seq[seq > 0], -seq[seq < 0]
        client = (fs.client_ip[i], int(fs.client_port[i]))
        ends = frozenset([client, (fs.server_ip[i], int(fs.server_port[i]))])
        out.append((int(fs.protocol[i]), ends, len(c2s), len(s2c), int(c2s.sum()), int(s2c.sum()), client))
    return Counter(out)


@pytest.mark.parametrize("name", REFERENCE_SAMPLE)
def test_matches_dpkt_reference(shared_data, name):
    path = shared_data / "ndpi" / "pcap" / name
    for max_packets in (5, 32):
        ours = _summaries(_quiet(read_pcap, path, max_packets=max_packets))
        ref = Counter(reference_flows(path, max_packets=max_packets))
        assert ours == ref
    assert sum(ours.values()) > 0 or name == "ip_fragmented_garbage.pcap"


def test_bad_inputs(shared_data):
    bad = shared_data / "bad"
    expect_offset = {"empty.pcap": 0, "wrong_magic.pcap": 0, "not_a_pcap.pcap": 0,
                     "unsupported_linktype.pcap": 20, "caplen_too_large.pcap": 24}
    for name, off in expect_offset.items():
        with pytest.raises(PcapError) as e:
            read_pcap(bad / name)
        assert e.value.offset == off and name in str(e.value)
    with pytest.warns(IngestWarning, match="no packets"):
        fs = read_pcap(bad / "header_only.pcap")
    assert len(fs) == 0 and fs.max_packets == 32
    with pytest.warns(IngestWarning, match="truncated"):
        fs = read_pcap(bad / "truncated_mid_packet.pcap")
    assert len(fs) > 0 and fs.meta["ingest_stats"]["skipped"]["truncated_records"] == 1
    with pytest.raises(PcapError) as e:
        read_pcap(bad / "truncated_mid_packet.pcap", strict=True)
    assert e.value.offset == 1276463


def test_all_ndpi_captures(shared_data):
    """Every capture reads; only malformed ones (and the README) may raise, and only PcapError."""
    files = sorted((shared_data / "ndpi" / "pcap").iterdir())
    assert len(files) >= 541
    errors, flows, packets = {}, 0, 0
    for f in files:
        try:
            fs = _quiet(read_pcap, f, max_packets=10)
        except PcapError as exc:
            errors[f.name] = exc
            continue
        assert fs.lengths.shape[1] == 10 and np.all(fs.lengths[:, 0] > 0)
        flows += len(fs)
        packets += fs.meta["ingest_stats"]["packets"]
    assert set(errors) <= {"README.txt", "fuzz-2021-10-13.pcap"}, errors
    assert all(e.offset is not None for e in errors.values())
    assert packets > 100_000 and flows > 6000


def test_labels_join_on_ndpi(shared_data):
    fs = _quiet(read_pcaps, shared_data / "ndpi" / "pcap", labels=shared_data / "ndpi" / "labels.csv",
                on_error="skip", progress=False, max_packets=10)
    st = fs.meta["ingest_stats"]
    assert len(fs) > 6000 and st["unlabelled_flows"] < 0.05 * (len(fs) + st["unlabelled_flows"])
    counts = fs.class_counts()
    assert counts["HTTP"] > 500 and counts["DNS"] > 200 and len(counts) > 300
    src = str(shared_data / "ndpi" / "pcap" / "1kxun.pcap")
    ends = {(str(a), int(b)) for a, b in zip(fs.client_ip, fs.client_port, strict=True)} | {
        (str(a), int(b)) for a, b in zip(fs.server_ip, fs.server_port, strict=True)}
    assert ("192.168.2.126", 45380) in ends
    hit = [i for i in range(len(fs)) if fs.source[i] == src and 45380 in (fs.client_port[i], fs.server_port[i])]
    assert hit and all(fs.labels[i] == "1kxun" for i in hit)  # labels.csv row 2
