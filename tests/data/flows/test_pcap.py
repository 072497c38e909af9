"""pcap/pcapng reader on hand-built captures: every rule checked against hand-computed values."""
from __future__ import annotations

import struct
import warnings

import dpkt
import numpy as np
import pytest

from trafficgen.data.flows.pcap import IngestWarning, read_pcap, read_pcaps
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import ConfigError, PcapError

C, S = "10.0.0.1", "10.0.0.2"
C6, S6 = "2001:db8::1", "2001:db8::2"


# ---------------------------------------------------------------- builders (dpkt packets, struct files)
def _ip(a: str) -> bytes:
    import socket

    return socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)


def tcp(src, dst, sport, dport, payload=0, flags=dpkt.tcp.TH_ACK, opts=b""):
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, opts=opts, data=b"x" * payload)
    seg.off = (20 + len(opts)) // 4
    return ip_packet(src, dst, 6, seg)


def udp(src, dst, sport, dport, payload=0):
    dg = dpkt.udp.UDP(sport=sport, dport=dport, data=b"u" * payload)
    dg.ulen = 8 + payload
    return ip_packet(src, dst, 17, dg)


def ip_packet(src, dst, proto, l4):
    if ":" in src:
        return bytes(dpkt.ip6.IP6(src=_ip(src), dst=_ip(dst), nxt=proto, hlim=64, plen=len(bytes(l4)), data=l4))
    return bytes(dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=proto, data=l4))


def eth(ip_bytes: bytes, vlans=()) -> bytes:
    et = 0x86DD if ip_bytes[0] >> 4 == 6 else 0x0800
    out = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"
    for tpid, vid in vlans:
        out += struct.pack(">HH", tpid, vid)
    return out + struct.pack(">H", et) + ip_bytes


def write_pcap(path, packets, *, linktype=1, bo="<", nano=False, snaplen=65535):
    """packets: list of (ts seconds, frame bytes[, wire length])."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(bo + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for p in packets:
        ts, frame = p[0], p[1]
        wire = p[2] if len(p) > 2 else len(frame)
        frame = frame[:snaplen]
        sec = int(ts)
        frac = int(round((ts - sec) * (1e9 if nano else 1e6)))
        out.append(struct.pack(bo + "IIII", sec, frac, len(frame), wire) + frame)
    path.write_bytes(b"".join(out))
    return path


def _block(bo, btype, body):
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def write_pcapng(path, interfaces, packets, *, bo="<"):
    """interfaces: [(linktype, tsresol byte or None)]; packets: [(iface, ticks, frame)]."""
    out = [_block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))]
    for lt, res in interfaces:
        opts = b"" if res is None else struct.pack(bo + "HH", 9, 1) + bytes([res]) + b"\x00" * 3
        out.append(_block(bo, 1, struct.pack(bo + "HHI", lt, 0, 0) + opts + struct.pack(bo + "HH", 0, 0)))
    for iface, ticks, frame in packets:
        out.append(_block(bo, 6, struct.pack(bo + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF,
                                             len(frame), len(frame)) + frame))
    path.write_bytes(b"".join(out))
    return path


def quiet_read(path, **kw) -> FlowSet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        return read_pcap(path, **kw)


# ---------------------------------------------------------------- tests
def _conversation(t0=1000.0):
    return [
        (t0 + 0.0, eth(tcp(C, S, 40000, 80, 0, dpkt.tcp.TH_SYN))),
        (t0 + 0.1, eth(tcp(S, C, 80, 40000, 0, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK))),
        (t0 + 0.2, eth(tcp(C, S, 40000, 80, 0))),
        (t0 + 0.3, eth(tcp(C, S, 40000, 80, 120, opts=b"\x01" * 12))),
        (t0 + 0.5, eth(tcp(S, C, 80, 40000, 1400))),
        (t0 + 0.6, eth(tcp(S, C, 80, 40000, 700))),
        (t0 + 1.0, eth(udp(C, S, 5353, 53, 33))),
        (t0 + 1.5, eth(udp(S, C, 53, 5353, 97))),
    ]


def test_tcp_udp_lengths_directions_provenance(tmp_path):
    fs = quiet_read(write_pcap(tmp_path / "a.pcap", _conversation()), max_packets=4)
    assert len(fs) == 2
    assert fs.sequences() == [[120, -1400, -700], [33, -97]]
    assert fs.protocol.tolist() == [6, 17]
    assert fs.client_ip.tolist() == [C, C] and fs.server_ip.tolist() == [S, S]
    assert fs.client_port.tolist() == [40000, 5353] and fs.server_port.tolist() == [80, 53]
    np.testing.assert_allclose(fs.first_ts, [1000.0, 1001.0])
    np.testing.assert_allclose(fs.iat[0, :3], [0.0, 0.2, 0.1], atol=1e-6)
    assert fs.source.tolist() == [str(tmp_path / "a.pcap")] * 2
    st = fs.meta["ingest_stats"]
    assert st["packets"] == 8 and st["decoded"] == 8 and st["zero_payload_dropped"] == 3


def test_keep_zero_payload_max_packets_min_packets(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", _conversation())
    fs = quiet_read(path, keep_zero_payload=True, max_packets=4)
    assert fs.sequences()[0] == [0, 0, 0, 120]
    assert fs.directions[0].tolist() == [1, -1, 1, 1]
    assert fs.n_packets.tolist() == [4, 2]
    assert fs.meta["ingest_stats"]["packets_beyond_max"] == 2
    fs = quiet_read(path, min_packets=3)
    assert len(fs) == 1 and fs.meta["ingest_stats"]["flows_below_min_packets"] == 1


def test_client_is_sender_of_first_kept_packet(tmp_path):
    pk = [(1.0, eth(tcp(C, S, 1111, 25, 0, dpkt.tcp.TH_SYN))), (1.1, eth(tcp(S, C, 25, 1111, 50))),
          (1.2, eth(tcp(C, S, 1111, 25, 10)))]
    fs = quiet_read(write_pcap(tmp_path / "smtp.pcap", pk))
    assert fs.sequences() == [[50, -10]]
    assert (fs.client_ip[0], fs.client_port[0]) == (S, 25)


def test_idle_timeout_and_split_on_fin(tmp_path):
    A = (C, S, 50000, 443)
    B = (S, C, 443, 50000)
    pk = [(0.0, eth(tcp(*A, 10))), (1.0, eth(tcp(*B, 20))), (200.0, eth(tcp(*A, 30))),  # idle split
          (201.0, eth(tcp(*A, 0, dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK))), (201.5, eth(tcp(*B, 5))),
          (202.0, eth(tcp(*A, 0, dpkt.tcp.TH_SYN))), (202.1, eth(tcp(*B, 0, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK))),
          (203.0, eth(tcp(*A, 40)))]
    path = write_pcap(tmp_path / "a.pcap", pk)
    assert quiet_read(path).sequences() == [[10, -20], [30, -5, 40]]
    assert quiet_read(path, idle_timeout=1000).sequences() == [[10, -20, 30, -5, 40]]
    assert quiet_read(path, split_on_fin=True).sequences() == [[10, -20], [30, -5], [40]]


def test_fragments_first_counted_rest_skipped(tmp_path):
    whole = dpkt.ip.IP(tcp(C, S, 1000, 2000, 100))
    raw = bytes(whole)
    first = bytearray(raw[:20 + 20 + 24])  # IP + TCP + 24 payload bytes
    struct.pack_into(">H", first, 2, len(first))  # total length
    struct.pack_into(">H", first, 6, 0x2000)  # more fragments, offset 0
    second = bytearray(raw[:20] + raw[20 + 20 + 24:])
    struct.pack_into(">H", second, 2, len(second))
    struct.pack_into(">H", second, 6, 5)  # fragment offset 5 (x 8 bytes), last fragment
    pk = [(0.0, eth(bytes(first))), (0.1, eth(bytes(second)))]
    fs = quiet_read(write_pcap(tmp_path / "f.pcap", pk))
    assert fs.sequences() == [[24]]
    st = fs.meta["ingest_stats"]
    assert st["skipped"]["fragment"] == 1 and st["flagged"]["first_fragment"] == 1


def test_ipv6_extension_headers_and_fragments(tmp_path):
    inner = dpkt.udp.UDP(sport=7, dport=9, data=b"z" * 50)
    inner.ulen = 58
    hbh = bytes([60, 0]) + b"\x00" * 6  # hop-by-hop -> destination options
    dst = bytes([44, 1]) + b"\x00" * 14  # dest opts (16 bytes) -> fragment
    frag0 = bytes([17, 0]) + struct.pack(">HI", 0x0001, 7)  # offset 0, M=1 -> UDP
    body = hbh + dst + frag0 + bytes(inner)
    ip6 = dpkt.ip6.IP6(src=_ip(C6), dst=_ip(S6), nxt=0, hlim=1, plen=len(body))
    p1 = bytes(ip6.pack_hdr()) + body
    frag1 = bytes([17, 0]) + struct.pack(">HI", 64 << 3, 7)  # non-first fragment
    ip6b = dpkt.ip6.IP6(src=_ip(C6), dst=_ip(S6), nxt=44, hlim=1, plen=8 + 30)
    p2 = bytes(ip6b.pack_hdr()) + frag1 + b"q" * 30
    fs = quiet_read(write_pcap(tmp_path / "v6.pcap", [(0.0, eth(p1)), (0.2, eth(p2))]))
    assert fs.sequences() == [[50]]
    assert fs.client_ip.tolist() == [C6] and fs.server_port.tolist() == [9]
    assert fs.meta["ingest_stats"]["skipped"]["fragment"] == 1


def test_snaplen_truncation_uses_declared_lengths(tmp_path):
    pk = [(0.0, eth(tcp(C, S, 1, 2, 1000))), (0.1, eth(udp(S, C, 2, 1, 900)))]
    fs = quiet_read(write_pcap(tmp_path / "snap.pcap", pk, snaplen=68))
    assert fs.sequences() == [[1000], [900]]  # separate flows: TCP and UDP


def test_tso_zero_total_length_uses_wire(tmp_path):
    raw = bytearray(tcp(C, S, 1, 2, 300))
    struct.pack_into(">H", raw, 2, 0)
    fs = quiet_read(write_pcap(tmp_path / "tso.pcap", [(0.0, eth(bytes(raw)))]))
    assert fs.sequences() == [[300]]
    assert fs.meta["ingest_stats"]["flagged"]["ip_len_from_wire"] == 1


def test_inconsistent_length_clamped(tmp_path):
    raw = bytearray(tcp(C, S, 1, 2, 10))
    struct.pack_into(">H", raw, 2, 5000)  # declares more than the wire carries
    fs = quiet_read(write_pcap(tmp_path / "bad.pcap", [(0.0, eth(bytes(raw)))]))
    assert fs.sequences() == [[10]]
    assert fs.meta["ingest_stats"]["flagged"]["inconsistent_length"] == 1


@pytest.mark.parametrize("bo", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_byte_orders_and_nanosecond_magic(tmp_path, bo, nano):
    fs = quiet_read(write_pcap(tmp_path / "x.pcap", [(5.123456789, eth(udp(C, S, 1, 2, 7)))], bo=bo, nano=nano))
    assert fs.sequences() == [[7]]
    assert abs(fs.first_ts[0] - 5.123456789) < (2e-9 if nano else 1e-6)


def test_link_types(tmp_path):
    ip4 = udp(C, S, 10, 20, 11)
    ip6 = udp(C6, S6, 10, 20, 12)
    sll = struct.pack(">HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800) + ip4
    sll2 = struct.pack(">HHIHBB8s", 0x86DD, 0, 1, 1, 0, 6, b"\0" * 8) + ip6
    cases = [
        (113, sll, [11]), (276, sll2, [12]), (101, ip4, [11]), (12, ip6, [12]), (228, ip4, [11]),
        (229, ip6, [12]), (0, struct.pack("<I", 2) + ip4, [11]), (0, struct.pack(">I", 30) + ip6, [12]),
        (108, struct.pack(">I", 2) + ip4, [11]), (9, b"\xff\x03\x00\x21" + ip4, [11]),
        (104, b"\x0f\x00\x86\xdd" + ip6, [12]),
        (1, eth(ip4, vlans=[(0x88A8, 5), (0x8100, 7)]), [11]), (1, eth(ip6, vlans=[(0x9100, 1)]), [12]),
    ]
    for i, (lt, frame, expect) in enumerate(cases):
        fs = quiet_read(write_pcap(tmp_path / f"l{i}.pcap", [(0.0, frame)], linktype=lt))
        assert fs.sequences() == [expect], (lt, i)


def test_non_ip_and_other_protocols_counted(tmp_path):
    arp = b"\xff" * 6 + b"\x00" * 6 + b"\x08\x06" + b"\x00" * 28
    icmp = ip_packet(C, S, 1, dpkt.icmp.ICMP(type=8, data=b"ping"))
    gre = ip_packet(C, S, 47, dpkt.gre.GRE())
    trunc = eth(tcp(C, S, 1, 2, 0))[:14 + 20 + 10]
    fs = quiet_read(write_pcap(tmp_path / "o.pcap", [(0, arp), (0, eth(icmp)), (0, eth(gre)), (0, trunc)]))
    sk = fs.meta["ingest_stats"]["skipped"]
    assert len(fs) == 0 and (sk["non_ip"], sk["other_protocol"], sk["tunnel"], sk["truncated"]) == (1, 1, 1, 1)


def test_pcapng_interfaces_with_own_linktype_and_resolution(tmp_path):
    frames = [(0, 1_500_000, eth(udp(C, S, 1, 2, 5))),  # iface 0: Ethernet, microseconds -> 1.5 s
              (1, 2_000_000_000, udp(S, C, 2, 1, 6)),  # iface 1: raw IPv4, nanoseconds -> 2.0 s
              (1, 2_500_000_000, udp(C, S, 1, 2, 7))]
    for bo in "<>":
        path = write_pcapng(tmp_path / f"m{bo == '<'}.pcapng", [(1, None), (101, 9)], frames, bo=bo)
        fs = quiet_read(path)
        assert fs.sequences() == [[5, -6, 7]]
        np.testing.assert_allclose(fs.iat[0, :3], [0, 0.5, 0.5])


def test_truncated_last_record_skipped_or_strict(tmp_path):
    path = write_pcap(tmp_path / "t.pcap", [(0, eth(udp(C, S, 1, 2, 5))), (1, eth(udp(C, S, 1, 2, 6)))])
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(IngestWarning, match="truncated"):
        fs = read_pcap(path)
    assert fs.sequences() == [[5]] and fs.meta["ingest_stats"]["skipped"]["truncated_records"] == 1
    with pytest.raises(PcapError) as e:
        read_pcap(path, strict=True)
    assert e.value.offset == 24 + 16 + len(eth(udp(C, S, 1, 2, 5)))


def test_bad_headers_raise_pcap_error_with_offset(tmp_path):
    good = write_pcap(tmp_path / "g.pcap", [(0, eth(udp(C, S, 1, 2, 5)))]).read_bytes()
    cases = {b"": 0, b"\xd4\xc3\xb2\xa1\x02\x00": 0, b"GET / HTTP/1.1\r\n": 0,
             good[:20] + struct.pack("<I", 147) + good[24:]: 20,
             good[:24] + struct.pack("<IIII", 0, 0, 10_000_000, 60) + b"x" * 64: 24}
    for i, (blob, off) in enumerate(cases.items()):
        p = tmp_path / f"b{i}.pcap"
        p.write_bytes(blob)
        with pytest.raises(PcapError) as e:
            read_pcap(p)
        assert e.value.offset == off and e.value.path == str(p)


def test_options_validated():
    with pytest.raises(ConfigError):
        read_pcap("x.pcap", max_packets=0)
    with pytest.raises(ConfigError):
        read_pcap("x.pcap", idle_timeout=0)


def test_read_pcaps_directory_skip_and_meta_round_trip(tmp_path):
    d = tmp_path / "caps" / "appA"
    d.mkdir(parents=True)
    write_pcap(d / "one.pcap", _conversation())
    write_pcap(d / "two.pcap", _conversation(5000.0))
    (d / "broken.pcap").write_bytes(b"garbage!")
    with pytest.raises(PcapError):
        read_pcaps(tmp_path / "caps", progress=False)
    with pytest.warns(IngestWarning):
        fs = read_pcaps(tmp_path / "caps", progress=False, on_error="skip", label_by="folder", max_packets=8)
    assert len(fs) == 4 and fs.classes == ["appA"]
    st = fs.meta["ingest_stats"]
    assert st["files"] == 2 and len(st["failed_files"]) == 1 and st["packets"] == 16
    fs.save(tmp_path / "f.parquet")
    back = FlowSet.read(tmp_path / "f.parquet")
    assert back == fs and back.meta["ingest_stats"] == st
    by_file = read_pcaps([d / "one.pcap", d / "two.pcap"], label_by="file", progress=False)
    assert by_file.labels.tolist() == ["one", "one", "two", "two"]
