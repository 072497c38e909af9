"""Label joins: nDPI-format CSV (unordered endpoint pair, first row wins), file/folder names, nfstream."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

from tests.data.flows.test_pcap import C, S, eth, tcp, udp, write_pcap
from trafficgen.data.flows.labels import LabelTable, labels_from_paths, require_nfstream
from trafficgen.data.flows.pcap import IngestWarning, read_pcaps
from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError, TrafficgenError

HEADER = "pcap,l4,client_ip,client_port,server_ip,server_port,ndpi_proto,app,category\n"


def _flows(source="dir/cap.pcap"):
    return FlowSet.from_sequences(
        [[5, -3], [7], [9], [1]], source=[source, source, source, "other.pcap"], protocol=[6, 17, 6, 6],
        client_ip=["10.0.0.2", "10.0.0.1", "2001:db8::1", "10.0.0.2"], client_port=[80, 53, 443, 80],
        server_ip=["10.0.0.1", "10.0.0.9", "2001:db8::2", "10.0.0.1"], server_port=[1234, 5000, 999, 1234])


def test_csv_join_unordered_first_row_wins(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER
                   + "cap.pcap,TCP,10.0.0.1,1234,10.0.0.2,80,HTTP.Foo,Foo,Web\n"
                   + "cap.pcap,TCP,10.0.0.2,80,10.0.0.1,1234,TLS,Second,Web\n"  # same key: ignored
                   + "cap.pcap,UDP,10.0.0.1,53,10.0.0.9,5001,DNS,DNS,Net\n"  # port differs: no match
                   + "cap.pcap,TCP,2001:0db8:0:0::2,999,2001:db8::1,443,TLS,TLS,\n")  # long IPv6 form
    table = LabelTable.from_csv(csv)
    assert len(table) == 3
    assert table.lookup(_flows()).tolist() == ["Foo", None, "TLS", None]
    cat = LabelTable.from_csv(csv, column="category").lookup(_flows())
    assert cat.tolist() == ["Web", None, None, None]  # empty category -> unlabelled


def test_csv_errors(tmp_path):
    with pytest.raises(InputFormatError):
        LabelTable.from_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("pcap,l4\nx.pcap,TCP\n")
    with pytest.raises(InputFormatError, match="lacks columns"):
        LabelTable.from_csv(bad)
    bad.write_text(HEADER + "x.pcap,SCTP,1.1.1.1,1,2.2.2.2,2,A,A,\n")
    with pytest.raises(InputFormatError) as e:
        LabelTable.from_csv(bad)
    assert e.value.offset == 2


def test_labels_from_paths():
    src = ["/data/YouTube/cap1.pcap", "/data/Zoom/x.y.pcapng"]
    assert labels_from_paths(src, by="file").tolist() == ["cap1", "x.y"]
    assert labels_from_paths(src, by="folder").tolist() == ["YouTube", "Zoom"]


def test_read_pcaps_with_labels_drops_unmatched(tmp_path):
    pk = [(0.0, eth(tcp(C, S, 40000, 80, 10))), (0.1, eth(tcp(S, C, 80, 40000, 20))),
          (0.2, eth(udp(C, S, 5353, 53, 30)))]
    write_pcap(tmp_path / "cap.pcap", pk)
    csv = tmp_path / "labels.csv"
    csv.write_text(HEADER + f"cap.pcap,TCP,{S},80,{C},40000,HTTP,HTTP,Web\n")
    with pytest.warns(IngestWarning, match="unlabelled_flows_dropped=1"):
        fs = read_pcaps(tmp_path / "cap.pcap", labels=csv, progress=False)
    assert fs.labels.tolist() == ["HTTP"] and fs.sequences() == [[10, -20]]
    assert fs.meta["ingest_stats"]["unlabelled_flows"] == 1


def test_missing_nfstream_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "nfstream", None)
    with pytest.raises(TrafficgenError, match=r"pip install trafficgen\[pcap\]"):
        require_nfstream()


def test_ndpi_labels_with_nfstream(shared_data):
    pytest.importorskip("nfstream")
    path = shared_data / "ndpi" / "pcap" / "1kxun.pcap"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IngestWarning)
        fs = read_pcaps(path, label_by="ndpi", progress=False)
        ref = read_pcaps(path, labels=shared_data / "ndpi" / "labels.csv", progress=False)
    assert len(fs) > 50
    # nDPI through nfstream agrees with the shipped nDPI labels on most shared flows
    key = lambda f, i: (f.client_ip[i], f.client_port[i], f.server_ip[i], f.server_port[i])  # noqa: E731
    mine = {key(fs, i): fs.labels[i] for i in range(len(fs))}
    agree = [mine[key(ref, i)] == ref.labels[i] for i in range(len(ref)) if key(ref, i) in mine]
    assert len(agree) > 50 and np.mean(agree) > 0.8
