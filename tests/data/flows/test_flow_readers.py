import gzip
import json

import numpy as np
import pandas as pd
import pytest

from trafficgen.data.flows.certta import read_certta_json
from trafficgen.data.flows.cesnet import from_cesnet_dataframe
from trafficgen.data.flows.mirage import read_mirage_json
from trafficgen.errors import InputFormatError


def test_certta_reader_signs_labels_and_iat(tmp_path):
    recs = [
        {"timestamp": [10.0, 10.5, 11.0], "direction_length": [60, -1500, 52], "packet_num": 3, "label": 1,
         "source_file": "a.pcap"},
        {"timestamp": [3.0, 3.25], "direction_length": [-80, 90], "packet_num": 2, "label": 0,
         "source_file": "b.pcap"},
    ]
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "x.json").write_text(json.dumps(recs))
    (tmp_path / "labels.json").write_text(json.dumps({"Benign": 0, "Iodine": 1}))
    fs = read_certta_json(tmp_path / "json" / "x.json", max_packets=4)
    assert fs.sequences() == [[60, -1500, 52], [80, -90]]  # second flipped: client sends first
    assert fs.labels.tolist() == ["Iodine", "Benign"]
    assert fs.iat[0, :3].tolist() == [0.0, 0.5, 0.5]
    assert fs.first_ts.tolist() == [10.0, 3.0]
    assert fs.meta["length_kind"] == "ip"
    gz = tmp_path / "json" / "x.json.gz"
    gz.write_bytes(gzip.compress(json.dumps(recs).encode()))
    assert read_certta_json(gz, max_packets=4) == fs


def test_certta_reader_rejects_bad_records(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps([{"timestamp": [0], "label": 0}]))
    with pytest.raises(InputFormatError, match="offset 0"):
        read_certta_json(p)
    p.write_text("{not json")
    with pytest.raises(InputFormatError):
        read_certta_json(p)


def test_shipped_cicdoh20_matches_source(shared_data):
    from trafficgen.datasets import load_cicdoh20

    fs = load_cicdoh20("test")
    src = json.loads((shared_data / "certta" / "CICDOH20" / "json" / "test.json").read_text())
    assert len(fs) == len(src) == 600
    assert fs.class_counts() == {"Benign": 300, "DNS2TCP": 100, "DNSCat2": 100, "Iodine": 100}
    first = src[0]["direction_length"][:32]
    sign = 1 if first[0] > 0 else -1
    assert fs.sequences()[0] == [sign * v for v in first]


def _mirage_record(dirs, sizes, iat, label=None):
    rec = {"packet_data": {"src_port": [1] * len(dirs), "dst_port": [2] * len(dirs), "packet_dir": dirs,
                           "L4_payload_bytes": sizes, "iat": iat, "TCP_win_size": [0] * len(dirs)},
           "flow_features": {}}
    if label:
        rec["flow_metadata"] = {"BF_label": label}
    return rec


def test_mirage_reader(tmp_path):
    data = {
        "192.168.20.101,51221,216.58.205.42,443,6": _mirage_record(
            [0, 1, 0, 1, 1], [0, 0, 517, 1400, 0], [0, 0.01, 0.02, 0.03, 0.04], "com.google.android.youtube"),
        "192.168.20.101,5353,224.0.0.251,5353,17": _mirage_record([1, 0], [33, 40], [0, 1.5]),
    }
    p = tmp_path / "Nexus6_com.waze_20190101.json"
    p.write_text(json.dumps(data))
    fs = read_mirage_json(p, max_packets=8)
    assert fs.sequences() == [[517, -1400], [33, -40]]
    assert fs.labels.tolist() == ["com.google.android.youtube", "com.waze"]
    assert fs.protocol.tolist() == [6, 17] and fs.server_port.tolist() == [443, 5353]
    assert np.allclose(fs.iat[0, :2], [0.0, 0.03])  # times 0.03 -> 0.06 after dropping empty packets
    kept = read_mirage_json(p, max_packets=8, keep_zero_payload=True)
    assert kept.sequences()[0] == [0, 0, 517, -1400, 0]
    assert kept.directions[0, :5].tolist() == [1, -1, 1, -1, -1]
    with pytest.raises(InputFormatError):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"x": {"packet_data": {"L4_payload_bytes": [1, 2], "packet_dir": [0]}}}))
        read_mirage_json(bad)


def test_cesnet_adapter():
    ppi = np.zeros((3, 30))
    ppi[:, :4] = [[0, 12.5, 3, 100], [-1, 1, -1, -1], [120, 1400, 60, 0]]
    ppi2 = np.zeros((3, 30))
    ppi2[:, :2] = [[0, 1], [1, 1], [5, 6]]
    df = pd.DataFrame({"PPI": [ppi, ppi2], "APP": [3, 0], "SRC_IP": ["10.0.0.1", "10.0.0.2"],
                       "DST_IP": ["1.1.1.1", "8.8.8.8"], "SRC_PORT": [1, 2], "DST_PORT": [443, 53],
                       "PROTOCOL": [6, 17]})
    fs = from_cesnet_dataframe(df, class_names=["dns", "b", "c", "youtube"])
    assert fs.sequences() == [[120, -1400, 60], [5, 6]]
    assert fs.labels.tolist() == ["youtube", "dns"]
    assert fs.iat[0, :3].tolist() == [0.0, 0.0125, 0.003]
    with pytest.raises(InputFormatError):
        from_cesnet_dataframe(pd.DataFrame({"x": [1]}))


def test_shipped_ndpi_apps():
    from trafficgen.datasets import load_ndpi_apps

    fs = load_ndpi_apps(max_packets=16)
    counts = fs.class_counts()
    assert len(counts) >= 25 and min(counts.values()) >= 30
    assert {"YouTube", "NetFlix", "Zoom", "DNS"} <= set(counts)
    assert fs.max_packets == 16
    assert np.all(fs.lengths[:, 0] > 0)  # the client sends the first packet
    assert np.all(fs.lengths[fs.valid_mask] != 0)  # zero-payload packets dropped
    assert fs.meta["ingest_stats"]["files"] >= 200
