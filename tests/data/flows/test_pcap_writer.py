"""pcap export: hand-checked conversations, checksums recomputed by dpkt, TCP state checked packet by
packet, exact round trips through read_pcaps (shipped nDPI flows; 10,000 Markov-sampled flows), and
independent readers (tshark, nfstream) where installed."""
from __future__ import annotations

import csv
import io
import shutil
import subprocess
import warnings
from collections import defaultdict

import dpkt
import numpy as np
import pytest

from trafficgen.data.flows.labels import LabelTable
from trafficgen.data.flows.pcap import read_pcaps
from trafficgen.data.flows.pcap_conversation import ACK, FIN, PSH, SYN
from trafficgen.data.flows.pcap_render import payload_word_sums
from trafficgen.data.flows.pcap_writer import DEFAULT_IAT, ExportWarning, write_pcap
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, InputFormatError

S, SA, A, PA, FA = SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK
# small hand-made flows carry no IATs: the default-timing warning is expected (and tested once)
pytestmark = pytest.mark.filterwarnings("ignore:the flows carry no IATs:UserWarning")


# ---------------------------------------------------------------------- helpers
def read_dpkt(path):
    """[(ts, ip)] of every packet, decoded by dpkt (Ethernet or raw IP)."""
    out = []
    with open(path, "rb") as fh:
        rd = dpkt.pcap.Reader(fh)
        link = rd.datalink()
        for ts, buf in rd:
            if link == dpkt.pcap.DLT_EN10MB:
                ip = dpkt.ethernet.Ethernet(buf).data
            else:
                ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
            assert isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)), type(ip)
            out.append((ts, ip))
    return out


def read_dpkt_bytes(data: bytes):
    """The IP packet of the first record of an Ethernet pcap held in memory."""
    return dpkt.ethernet.Ethernet(next(iter(dpkt.pcap.Reader(io.BytesIO(bytes(data)))))[1]).data


def checksums_ok(ip) -> bool:
    """dpkt recomputes the IPv4 header and TCP/UDP checksums of a copy: they must equal the written ones."""
    raw = bytes(ip)
    copy = dpkt.ip.IP(raw) if raw[0] >> 4 == 4 else dpkt.ip6.IP6(raw)
    written = (getattr(copy, "sum", None), copy.data.sum)
    if isinstance(copy, dpkt.ip.IP):
        copy.sum = 0
    copy.data.sum = 0
    again = dpkt.ip.IP(bytes(copy)) if raw[0] >> 4 == 4 else dpkt.ip6.IP6(bytes(copy))
    udp_zero = isinstance(copy.data, dpkt.udp.UDP) and written[1] == 0  # UDP's 0 = "not computed"
    return written == (getattr(again, "sum", None), again.data.sum) and not udp_zero


def conversations(packets):
    """5-tuple of the first packet -> [(ts, sender +1/-1, l4)] in file order."""
    conv, side = defaultdict(list), {}
    for ts, ip in packets:
        l4 = ip.data
        a, b = (ip.src, l4.sport), (ip.dst, l4.dport)
        key = (ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt, *sorted([a, b]))
        if key not in side:
            side[key] = a
        conv[key].append((ts, 1 if a == side[key] else -1, l4))
    return conv


def check_tcp(pk) -> None:
    """One TCP conversation is what a stack sends: handshake with options, each packet's sequence
    number the sender's next one (keep-alives one below), each ACK all the peer sent before, never
    more than two unacknowledged segments, a FIN/ACK, FIN/ACK, ACK close."""
    flags = [l4.flags for _, _, l4 in pk]
    senders = [s for _, s, _ in pk]
    assert flags[:3] == [S, SA, A] and senders[:3] == [1, -1, 1]
    assert flags[-3:] == [FA, FA, A] and senders[-3:] == [1, -1, 1]
    opts = dict(dpkt.tcp.parse_opts(pk[0][2].opts))
    assert set(opts) >= {dpkt.tcp.TCP_OPT_MSS, dpkt.tcp.TCP_OPT_WSCALE, dpkt.tcp.TCP_OPT_SACKOK}
    syn, synack = pk[0][2], pk[1][2]
    nxt = {1: syn.seq, -1: synack.seq}
    unacked = {1: 0, -1: 0}
    last_pure_ack = {1: None, -1: None}
    probed = False  # the previous packet was a keep-alive probe (its ACK repeats the last ACK)
    for _, s, l4 in pk:
        n = len(l4.data)
        keepalive = n == 0 and l4.flags == A and l4.seq == (nxt[s] - 1) % 2**32
        assert l4.seq == nxt[s] or keepalive, "sequence number is not the sender's next"
        if l4.flags & ACK:
            assert l4.ack == nxt[-s], "ACK does not cover all the peer sent"
            unacked[-s] = 0
        if l4.flags == A and n == 0 and not keepalive and not probed and last_pure_ack[s] is not None:
            assert l4.ack != last_pure_ack[s] or l4 is pk[-1][2], "duplicate ACK"
        if l4.flags == A and n == 0:
            last_pure_ack[s] = l4.ack
        probed = keepalive
        nxt[s] = (nxt[s] + n + bool(l4.flags & (SYN | FIN))) % 2**32
        if n:
            assert l4.flags == PA
            unacked[s] += 1
            assert unacked[s] <= 2, "a receiver holds more than two segments unacknowledged"


def read_back(path, labels, width):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the export must read without a single skipped packet
        return read_pcaps(path, labels=labels, max_packets=width, progress=False)


def assert_round_trip(back: FlowSet, result, original: FlowSet, resolution: float):
    exp = result.flows
    assert len(back) == len(exp) == len(original)
    assert back.labels.tolist() == exp.labels.tolist() == original.labels[result.order].tolist()
    np.testing.assert_array_equal(back.n_packets, original.n_packets[result.order])
    np.testing.assert_array_equal(back.lengths, original.lengths[result.order])
    np.testing.assert_array_equal(back.directions, original.directions[result.order])
    for name in ("protocol", "client_ip", "client_port", "server_ip", "server_port"):
        np.testing.assert_array_equal(getattr(back, name), getattr(exp, name), err_msg=name)
    # IATs: to the capture's resolution (float64 epoch seconds add ~2.4e-7 s of rounding)
    assert np.abs(back.iat - exp.iat).max() <= 0.25 * 1e-6 + 1e-9
    if original.iat is not None:
        assert np.abs(back.iat - original.iat[result.order]).max() <= 0.5 * resolution + 0.25e-6
    assert np.abs(back.first_ts - exp.first_ts).max() <= 0.25e-6


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ndpi():
    from trafficgen.datasets import load_ndpi_apps

    return load_ndpi_apps()


@pytest.fixture(scope="module")
def ndpi_export(ndpi, tmp_path_factory):
    d = tmp_path_factory.mktemp("ndpi_export")
    result = write_pcap(ndpi, d / "ndpi.pcap", labels_path=d / "ndpi.labels.csv", random_state=0)
    return result


@pytest.fixture(scope="module")
def markov_export(ndpi, tmp_path_factory):
    """10,000 flows of a Markov chain fitted on the shipped nDPI flows (the LLaMA generator takes
    minutes to train on 2 cores; any generator's FlowSet goes through the same writer), IATs from
    the nDPI flows, protocols and ports learned from them."""
    from trafficgen.generators.markov import MarkovGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lengths beyond the chain's 1500-byte range are clipped
        samples = MarkovGenerator(timing=False).fit(ndpi).sample(10_000, random_state=0)
    d = tmp_path_factory.mktemp("markov_export")
    with pytest.warns(ExportWarning, match="empirical IATs"):
        result = write_pcap(samples, d / "markov.pcap", labels_path=d / "markov.labels.csv", timing_from=ndpi,
                            ports_from=ndpi, random_state=1)
    return samples, result


# ---------------------------------------------------------------------- hand-checked conversations
def small_flows():
    seqs = [[100, -200, -300, 50], [30, -40], [10, 10, 10, 10, 10], [10, -10]]
    iat = [[0, 0.010, 0.001, 0.100], [0, 0.5], [0, 0.001, 0.001, 0.001, 0.001], [0, 300.0]]
    return FlowSet.from_sequences(seqs, labels=["a", "b", "c", "d"], iat=iat)


def test_hand_checked_conversations(tmp_path):
    result = write_pcap(small_flows(), tmp_path / "s.pcap", protocol={"b": "udp"}, rate=1.0, random_state=0)
    conv = conversations(read_dpkt(tmp_path / "s.pcap"))
    by_label = {}
    for i, lab in enumerate(result.flows.labels):
        key = [k for k in conv if k[1][1] == result.flows.client_port[i] or k[2][1] == result.flows.client_port[i]]
        assert len(key) == 1
        by_label[lab] = conv[key[0]]
    shape = {lab: [(s, l4.flags if isinstance(l4, dpkt.tcp.TCP) else "udp", len(l4.data)) for _, s, l4 in pk]
             for lab, pk in by_label.items()}
    assert shape["a"] == [(1, S, 0), (-1, SA, 0), (1, A, 0), (1, PA, 100), (-1, PA, 200), (-1, PA, 300),
                          (1, A, 0),  # 2nd segment of the burst, next packet 100 ms later: ACK at once
                          (1, PA, 50), (1, FA, 0), (-1, FA, 0), (1, A, 0)]
    assert shape["b"] == [(1, "udp", 30), (-1, "udp", 40)]
    assert shape["c"] == [(1, S, 0), (-1, SA, 0), (1, A, 0), (1, PA, 10), (1, PA, 10), (-1, A, 0), (1, PA, 10),
                          (1, PA, 10), (-1, A, 0), (1, PA, 10), (1, FA, 0), (-1, FA, 0), (1, A, 0)]
    # 300 s idle: delayed ACK after 40 ms, then a keep-alive (seq - 1) and its ACK at 100 s and 200 s
    assert shape["d"] == [(1, S, 0), (-1, SA, 0), (1, A, 0), (1, PA, 10), (-1, A, 0), (1, A, 0), (-1, A, 0),
                          (1, A, 0), (-1, A, 0), (-1, PA, 10), (1, FA, 0), (-1, FA, 0), (1, A, 0)]
    ts = [t for t, _, _ in by_label["d"]]
    t0 = ts[3]
    np.testing.assert_allclose(np.array(ts[3:10]) - t0, [0, 0.04, 100, 100.01, 200, 200.01, 300], atol=2e-6)
    np.testing.assert_allclose(np.array(ts[:3]) - ts[0], [0, 0.01, 0.02], atol=2e-6)  # rtt 20 ms
    for lab in "acd":
        check_tcp(by_label[lab])
    assert result.packets_per_direction.tolist() == [
        [sum(s > 0 for _, s, _ in by_label[lab]), sum(s < 0 for _, s, _ in by_label[lab])]
        for lab in result.flows.labels]
    assert result.timing == "flows" and result.n_packets == sum(len(p) for p in by_label.values())
    assert result.n_bytes == (tmp_path / "s.pcap").stat().st_size


def test_payload_word_sums_match_dpkt(rng):
    buf = rng.integers(0, 256, size=1002, dtype=np.uint8)
    buf[-2:] = 0
    start = np.array([0, 3, 10, 11, 500, 999])
    length = np.array([3, 7, 0, 1, 499, 1])
    sums = payload_word_sums(buf, start, length)
    for s, n, got in zip(start, length, sums, strict=True):
        folded = int(got)
        while folded > 0xFFFF:
            folded = (folded & 0xFFFF) + (folded >> 16)
        assert (~folded & 0xFFFF) == dpkt.in_cksum(bytes(buf[s:s + n]))  # dpkt's checksum of the bytes


# ---------------------------------------------------------------------- real flows: validity and round trip
def test_every_packet_valid_by_dpkt(ndpi, ndpi_export):
    packets = read_dpkt(ndpi_export.path)
    assert len(packets) == ndpi_export.n_packets
    ts = np.array([t for t, _ in packets])
    assert np.all(np.diff(ts) >= 0)
    assert all(checksums_ok(ip) for _, ip in packets)
    conv = conversations(packets)
    assert len(conv) == len(ndpi)
    n_tcp = 0
    for key, pk in conv.items():
        if key[0] == 6:
            check_tcp(pk)
            n_tcp += 1
        else:
            assert all(isinstance(l4, dpkt.udp.UDP) and l4.ulen == 8 + len(l4.data) for _, _, l4 in pk)
    assert n_tcp == int((ndpi.protocol == 6).sum())


def test_corrupted_byte_fails_the_dpkt_check(ndpi_export):
    raw = ndpi_export.path.read_bytes()
    caplen = int.from_bytes(raw[24 + 8:24 + 12], "little")
    data = bytearray(raw[:24 + 16 + caplen])  # the file header and the first packet
    assert checksums_ok(read_dpkt_bytes(data))
    for at in (24 + 16 + 14 + 8, len(data) - 1):  # its TTL; its last byte (payload or L4 header)
        bad = bytearray(data)
        bad[at] ^= 0x5A
        assert not checksums_ok(read_dpkt_bytes(bad))


def test_round_trip_ndpi(ndpi, ndpi_export):
    back = read_back(ndpi_export.path, ndpi_export.labels_path, ndpi.max_packets)
    assert_round_trip(back, ndpi_export, ndpi, 1e-6)
    assert ndpi_export.timing == "flows" and not ndpi_export.notes


def test_round_trip_raw_ns_random_ipv6(ndpi, tmp_path):
    result = write_pcap(ndpi, tmp_path / "r.pcap", labels_path=tmp_path / "r.csv", linktype="raw", payload="random",
                        time_resolution="ns", ipv6=0.5, random_state=3)
    assert 0.4 < np.mean([":" in ip for ip in result.flows.client_ip]) < 0.6
    back = read_back(result.path, result.labels_path, ndpi.max_packets)
    assert_round_trip(back, result, ndpi, 1e-9)
    packets = read_dpkt(result.path)
    assert all(checksums_ok(ip) for _, ip in packets[::3])
    payload = b"".join(bytes(ip.data.data) for _, ip in packets[:2000])
    assert len(set(payload)) == 256  # random bytes, not zeros


def test_round_trip_markov_samples(markov_export):
    samples, result = markov_export
    assert len(samples) == 10_000 and result.timing == "empirical"
    back = read_back(result.path, result.labels_path, samples.max_packets)
    assert_round_trip(back, result, samples, 1e-6)
    assert all(checksums_ok(ip) for _, ip in read_dpkt(result.path)[::7])


def test_round_trip_markov_samples_with_their_own_timing(ndpi, tmp_path):
    """A generator that models time (Markov's IAT chain): the export writes the sampled IATs, and
    they come back to the capture's resolution."""
    from trafficgen.generators.markov import MarkovGenerator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clipped lengths
        samples = MarkovGenerator().fit(ndpi).sample(2000, random_state=3)
    assert samples.iat is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExportWarning)  # no fallback: nothing to warn about
        result = write_pcap(samples, tmp_path / "t.pcap", labels_path=tmp_path / "t.csv", ports_from=ndpi,
                            random_state=1)
    assert result.timing == "flows"
    back = read_back(result.path, result.labels_path, samples.max_packets)
    assert_round_trip(back, result, samples, 1e-6)


def test_round_trip_10k_default_llama_samples(ndpi, tmp_path):
    """10,000 flows of the shipped default LLaMA (its weights ship with the package: seconds to
    sample), exported with empirical IATs, come back exactly."""
    from trafficgen.pretrained.default_model import get_default_model

    samples = get_default_model(progress=False).sample(10_000, random_state=7)
    with pytest.warns(ExportWarning, match="empirical IATs"):
        result = write_pcap(samples, tmp_path / "l.pcap", labels_path=tmp_path / "l.csv", timing_from=ndpi,
                            ports_from=ndpi, random_state=2)
    back = read_back(result.path, result.labels_path, samples.max_packets)
    assert_round_trip(back, result, samples, 1e-6)


def test_starts_from_the_flows_keep_times_and_order(ndpi, tmp_path):
    result = write_pcap(ndpi, tmp_path / "f.pcap", labels_path=tmp_path / "f.csv", starts="flows", random_state=0)
    order = np.argsort(ndpi.first_ts, kind="stable")
    np.testing.assert_array_equal(result.order, order)
    back = read_back(result.path, result.labels_path, ndpi.max_packets)
    assert_round_trip(back, result, ndpi, 1e-6)
    assert np.abs(back.first_ts - ndpi.first_ts[order]).max() <= 1e-6


# ---------------------------------------------------------------------- independent readers
def tshark(path, *args):
    out = subprocess.run(["tshark", "-r", str(path), "-d", "tcp.port==1-65535,data", "-d", "udp.port==1-65535,data",
                          "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
                          "-o", "udp.check_checksum:TRUE", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (Debian package tshark)")
def test_tshark_finds_no_malformed_packet_and_no_tcp_problem(ndpi_export, markov_export, tmp_path):
    """Payloads are dissected as plain data: zero or random bytes are no DNS or TLS message, and
    judging them by the application dissector of the port would test the payload, not the packet."""
    problems = ("_ws.malformed || _ws.expert.severity >= warning || ip.checksum.status == 0 || "
                "tcp.checksum.status == 0 || udp.checksum.status == 0 || "
                "(tcp.analysis.flags && !tcp.analysis.keep_alive && !tcp.analysis.keep_alive_ack)")
    assert len(tshark(ndpi_export.path, "-T", "fields", "-e", "frame.number")) == ndpi_export.n_packets
    for result in (ndpi_export, markov_export[1]):
        assert tshark(result.path, "-Y", problems) == []
    data = bytearray(ndpi_export.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.pcap").write_bytes(bytes(data))
    assert len(tshark(tmp_path / "bad.pcap", "-Y", problems)) >= 1  # the check does catch a broken packet


def nfstream_counts(path):
    nfstream = pytest.importorskip("nfstream")
    df = nfstream.NFStreamer(source=str(path), idle_timeout=3600, active_timeout=10**6, n_dissections=0,
                             statistical_analysis=False).to_pandas()
    return {(r.protocol, r.src_ip, r.src_port, r.dst_ip, r.dst_port): (r.src2dst_packets, r.dst2src_packets)
            for r in df.itertuples()}


def test_nfstream_sees_the_same_flows_and_packets(ndpi_export, markov_export):
    for result in (ndpi_export, markov_export[1]):
        got = nfstream_counts(result.path)
        e = result.flows
        assert len(got) == len(e)
        want = {(int(e.protocol[i]), e.client_ip[i], int(e.client_port[i]), e.server_ip[i], int(e.server_port[i])):
                tuple(result.packets_per_direction[i].tolist()) for i in range(len(e))}
        assert got == want


# ---------------------------------------------------------------------- options
def test_same_seed_same_bytes(tmp_path):
    flows = small_flows()
    a = write_pcap(flows, tmp_path / "a.pcap", payload="random", random_state=7)
    b = flows.to_pcap(tmp_path / "b.pcap", payload="random", random_state=7)
    c = write_pcap(flows, tmp_path / "c.pcap", payload="random", random_state=8)
    assert a.path.read_bytes() == b.path.read_bytes() != c.path.read_bytes()


def test_labels_file_is_the_ingest_format(ndpi_export):
    with open(ndpi_export.labels_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["pcap", "l4", "client_ip", "client_port", "server_ip", "server_port", "ndpi_proto",
                             "app", "category"]
    assert len(rows) == ndpi_export.n_flows and {r["pcap"] for r in rows} == {"ndpi.pcap"}
    assert len(LabelTable.from_csv(ndpi_export.labels_path)) == ndpi_export.n_flows


def test_ports_and_protocols(ndpi, tmp_path):
    gen = FlowSet.from_sequences([[10, -20]] * 6, labels=["DNS", "DNS", "HTTP", "HTTP", "new", "new"])
    learned = write_pcap(gen, tmp_path / "l.pcap", ports_from=ndpi, random_state=0).flows
    by = {lab: (int(p), int(q)) for lab, p, q in zip(learned.labels, learned.protocol, learned.server_port,
                                                      strict=True)}
    http = ndpi.server_port[(ndpi.labels == "HTTP") & (ndpi.protocol == 6)]
    assert np.bincount(http).argmax() == 8080  # nDPI's HTTP flows mostly go to port 8080
    assert by == {"DNS": (17, 53), "HTTP": (6, 8080), "new": (6, 443)}
    given = write_pcap(gen, tmp_path / "g.pcap", ports_from=ndpi, server_ports={"HTTP": 8000}, default_port=9999,
                       protocol={"new": "udp"}, random_state=0).flows
    by = {lab: (int(p), int(q)) for lab, p, q in zip(given.labels, given.protocol, given.server_port, strict=True)}
    assert by == {"DNS": (17, 53), "HTTP": (6, 8000), "new": (17, 9999)}
    plain = write_pcap(gen, tmp_path / "p.pcap", protocol="udp", random_state=0).flows
    assert set(plain.protocol.tolist()) == {17} and set(plain.server_port.tolist()) == {443}
    # real flows keep their own protocol and server port
    own = write_pcap(ndpi[:50], tmp_path / "o.pcap", server_ports=1, random_state=0).flows
    np.testing.assert_array_equal(np.sort(own.server_port), np.sort(ndpi.server_port[:50]))


def test_address_pools_and_unique_endpoints(tmp_path):
    flows = FlowSet.from_sequences([[5]] * 3000, labels=["x"] * 3000)
    r = write_pcap(flows, tmp_path / "a.pcap", client_pool="192.168.7.0/30", server_pool=["203.0.113.9/32"],
                   server_ports=53, protocol="udp", random_state=0).flows
    assert set(r.client_ip.tolist()) <= {"192.168.7.1", "192.168.7.2"} and set(r.server_ip.tolist()) == {
        "203.0.113.9"}
    assert len(set(zip(r.client_ip.tolist(), r.client_port.tolist(), strict=True))) == 3000
    v6 = write_pcap(flows[:10], tmp_path / "b.pcap", ipv6=1.0, client_pool="2001:db8:1::/120",
                    server_pool="2001:db8:2::/64", random_state=0).flows
    assert all(ip.startswith("2001:db8:1::") for ip in v6.client_ip)
    with pytest.raises(ConfigError, match="no IPv6 network"):
        write_pcap(flows[:10], tmp_path / "c.pcap", ipv6=1.0, client_pool="10.0.0.0/8")
    with pytest.raises(ConfigError, match="larger client_pool"):
        # one client address has 16,384 ephemeral ports: 16,385 flows to one server cannot all differ
        write_pcap(FlowSet.from_sequences([[5]] * 16385), tmp_path / "d.pcap", client_pool="10.0.0.1/32",
                   server_pool="10.0.0.2/32", server_ports=53, random_state=0)
    half = write_pcap(FlowSet.from_sequences([[5]] * 8192), tmp_path / "e.pcap", client_pool="10.0.0.1/32",
                      server_pool="10.0.0.2/32", server_ports=53, protocol="udp", random_state=0).flows
    assert len(set(half.client_port.tolist())) == 8192
    assert not (tmp_path / "c.pcap").exists() and not (tmp_path / "d.pcap").exists()


def test_flows_without_iats(tmp_path, ndpi):
    flows = FlowSet.from_sequences([[100, 200, -300, -40, 5]] * 400, labels=["DNS"] * 200 + ["zzz"] * 200)
    with pytest.warns(ExportWarning, match="default"):
        r = write_pcap(flows, tmp_path / "d.pcap", random_state=0)
    assert r.timing == "default" and "default" in r.notes[0]
    gaps = r.flows.iat[:, 1:]
    change = np.array([False, True, False, True])[None, :].repeat(400, 0)
    assert gaps[change].mean() == pytest.approx(DEFAULT_IAT["direction_change"], rel=0.15)
    assert gaps[~change].mean() == pytest.approx(DEFAULT_IAT["same_direction"], rel=0.15)
    with pytest.warns(ExportWarning, match="empirical"):
        e = write_pcap(flows, tmp_path / "e.pcap", timing_from=ndpi, random_state=0)
    assert e.timing == "empirical"
    # every drawn IAT is one of the reference's of the same class and condition (to the microsecond)
    dns = ndpi[ndpi.labels == "DNS"]
    later = dns.valid_mask.copy()
    later[:, 0] = False
    chg = np.zeros(later.shape, dtype=bool)
    chg[:, 1:] = dns.directions[:, 1:] != dns.directions[:, :-1]
    pools = {c: set(np.rint(dns.iat[later & (chg == c)] * 1e6).astype(np.int64).tolist()) for c in (False, True)}
    got = np.rint(e.flows.iat[e.flows.labels == "DNS"][:, 1:] * 1e6).astype(np.int64)
    assert set(got[change[:200]].tolist()) <= pools[True] and set(got[~change[:200]].tolist()) <= pools[False]
    with pytest.raises(ConfigError, match="no IATs"):
        write_pcap(flows, tmp_path / "x.pcap", timing_from=flows)


def test_udp_long_gap_and_no_keepalive_warn(tmp_path):
    flows = FlowSet.from_sequences([[10, -10]], labels=["a"], iat=[[0, 200.0]])
    with pytest.warns(ExportWarning, match="idle gap over 120 s"):
        write_pcap(flows, tmp_path / "u.pcap", protocol="udp")
    with pytest.warns(ExportWarning, match="idle gap over 120 s"):
        r = write_pcap(flows, tmp_path / "t.pcap", keepalive=None)
    assert r.n_packets == 3 + 2 + 1 + 3  # handshake, data, delayed ACK, close: no keep-alives


def test_bad_options_fail_before_writing(tmp_path, ndpi):
    flows = small_flows()
    out = tmp_path / "o.pcap"
    cases = [dict(linktype="token-ring"), dict(payload="training"), dict(starts="flows"), dict(rate=0),
             dict(time_resolution="ms"), dict(ipv6=2.0), dict(protocol="sctp"), dict(server_ports=70000),
             dict(keepalive=0.01), dict(client_pool="not-a-network")]
    for kw in cases:
        with pytest.raises(ConfigError):
            write_pcap(flows, out, **kw)
    with pytest.raises(ConfigError, match="labelled"):
        write_pcap(FlowSet.from_sequences([[1]]), out, labels_path=tmp_path / "l.csv")
    with pytest.raises(ConfigError, match="payload bytes"):
        write_pcap(FlowSet.from_sequences([[70000]]), out)
    with pytest.raises(InputFormatError, match="IATs"):
        write_pcap(FlowSet.from_sequences([[1, 2]], iat=[[0, -1.0]]), out)
    (tmp_path / "folder.pcap").mkdir()
    with pytest.raises(ConfigError, match="folder"):
        write_pcap(flows, tmp_path / "folder.pcap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.pcap"]  # nothing written, no temporaries


def test_first_packet_from_the_server_and_zero_payloads_are_said(tmp_path):
    flows = FlowSet.from_sequences([[-10, 20]], labels=["a"])
    with pytest.warns(ExportWarning, match="signs flipped"):
        write_pcap(flows, tmp_path / "s.pcap")
    # explicit 1 ms IATs: no delayed-ACK timer fires between the packets (fresh random IATs could)
    kept = FlowSet(lengths=[[10, 0, -20]], n_packets=[3], directions=[[1, -1, -1]],
                   iat=[[0.0, 0.001, 0.001]], labels=["a"])
    with pytest.warns(ExportWarning, match="1 zero-payload packets are written as pure ACKs"):
        r = write_pcap(kept, tmp_path / "z.pcap", random_state=0)
    shape = [(s, l4.flags, len(l4.data)) for _, s, l4 in next(iter(conversations(read_dpkt(r.path)).values()))]
    assert shape[3:6] == [(1, PA, 10), (-1, A, 0), (-1, PA, 20)]
    back = read_back(r.path, None, 3)
    assert back.sequences() == [[10, -20]]


def test_chunks_and_threads_do_not_change_the_bytes(ndpi, tmp_path):
    from trafficgen.data.flows.pcap_render import write_capture
    from trafficgen.data.flows.pcap_writer import plan_export

    plan = plan_export(ndpi[:400], ipv6=0.5, random_state=0)
    e = plan.endpoints
    kw = dict(family=plan.family, proto=plan.proto, client_addr=e["client_addr"], server_addr=e["server_addr"],
              client_port=e["client_port"], server_port=e["server_port"], linktype="ethernet",
              time_resolution="us")
    files = {}
    for name, payload, n_jobs, chunk in (("zeros_one", "zeros", 1, 1 << 30), ("zeros_many", "zeros", 2, 4096),
                                         ("random_1", "random", 1, 4096), ("random_2", "random", 2, 4096)):
        path = tmp_path / f"{name}.pcap"
        write_capture(path, plan.packets, payload=payload, n_jobs=n_jobs, chunk_bytes=chunk,
                      rng=np.random.default_rng(5), **kw)
        files[name] = path.read_bytes()
    assert files["zeros_one"] == files["zeros_many"]
    assert files["random_1"] == files["random_2"] != files["zeros_one"]
    packets = read_dpkt(tmp_path / "random_2.pcap")
    assert len(packets) == len(plan.packets) and all(checksums_ok(ip) for _, ip in packets)


def test_empty_flows_and_empty_sets(tmp_path):
    with pytest.warns(ExportWarning, match="1 flows without packets"):
        r = write_pcap(FlowSet.from_sequences([[], [5, -6]], labels=["a", "b"], max_packets=3), tmp_path / "e.pcap",
                       labels_path=tmp_path / "e.csv")
    assert r.n_flows == 1 and r.order.tolist() == [1] and r.flows.labels.tolist() == ["b"]
    none = write_pcap(FlowSet.from_sequences([], labels=[]), tmp_path / "n.pcap", labels_path=tmp_path / "n.csv")
    assert none.n_packets == 0 and none.n_bytes == 24 == (tmp_path / "n.pcap").stat().st_size and not none.notes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a capture without packets is a warning
        assert len(read_pcaps(tmp_path / "n.pcap", labels=tmp_path / "n.csv")) == 0


def test_empirical_starts_follow_the_training_arrivals(ndpi, tmp_path):
    from trafficgen.data.flows.pcap_timing import start_gaps

    pool = start_gaps(ndpi)
    assert pool.size == len(ndpi) - len(set(ndpi.source.tolist())) and pool.min() >= 0
    flows = FlowSet.from_sequences([[10, -20]] * 500, labels=["DNS"] * 500, iat=[[0, 0.01]] * 500)
    r = write_pcap(flows, tmp_path / "s.pcap", starts="empirical", timing_from=ndpi, t0=1e9, random_state=0)
    gaps = np.diff(r.flows.first_ts)
    assert r.flows.first_ts[0] == 1e9 and np.all(gaps >= 0)
    drawn = set(np.rint(gaps * 1e6).astype(np.int64).tolist())
    assert drawn <= set(np.rint(pool * 1e6).astype(np.int64).tolist())
    with pytest.raises(ConfigError, match="first_ts"):
        write_pcap(flows, tmp_path / "x.pcap", starts="empirical")
