import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError, UnknownClassError


def _example():
    return FlowSet.from_sequences(
        [[100, -1400, 20], [5, -7], [300, 1, -2, -3]], ["a", "b", "a"], max_packets=5,
        iat=[[0.0, 0.1, 0.25], [0.0, 1e-6], [0, 0.5, 0.5, 3.75]],
        source=["x.pcap", "y.pcap", "x.pcap"], protocol=[6, 17, 6], client_ip=["10.0.0.1", "::1", "10.0.0.2"],
        client_port=[1234, 53, 40000], server_ip=["1.1.1.1", "::2", "8.8.8.8"], server_port=[80, 5353, 443],
        first_ts=[1.5, 2.25, 1e9 + 0.123456],
    )


def test_columns_and_padding():
    fs = _example()
    assert fs.lengths.shape == (3, 5)
    assert fs.n_packets.tolist() == [3, 2, 4]
    assert fs.lengths[1].tolist() == [5, -7, 0, 0, 0]
    assert fs.directions[0].tolist() == [1, -1, 1, 0, 0]
    assert fs.classes == ["a", "b"]
    assert fs.class_counts() == {"a": 2, "b": 1}


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_exact_round_trip(tmp_path, suffix):
    fs = _example()
    fs.save(tmp_path / f"f{suffix}")
    back = FlowSet.read(tmp_path / f"f{suffix}")
    assert back == fs
    assert back.max_packets == 5
    assert back.first_ts[2] == 1e9 + 0.123456


def test_csv_round_trip_of_lengths_and_labels(tmp_path):
    fs = _example()
    fs.save(tmp_path / "f.csv")
    back = FlowSet.read(tmp_path / "f.csv")
    assert back.sequences() == fs.sequences()
    assert back.labels.tolist() == fs.labels.tolist()


def test_zero_payload_needs_directions():
    with pytest.raises(InputFormatError):
        FlowSet.from_sequences([[10, 0, -3]])
    fs = FlowSet(lengths=[[10, 0, -3]], n_packets=[3], directions=[[1, -1, -1]])
    assert fs.directions[0, 1] == -1


def test_explicit_directions_survive_round_trip(tmp_path):
    fs = FlowSet(lengths=[[10, 0, -3]], n_packets=[3], directions=[[1, -1, -1]])
    fs.to_parquet(tmp_path / "z.parquet")
    assert FlowSet.read(tmp_path / "z.parquet") == fs
    fs.to_jsonl(tmp_path / "z.jsonl")
    assert FlowSet.read(tmp_path / "z.jsonl") == fs


def test_select_and_unknown_class():
    fs = _example()
    assert fs.select("a").n_packets.tolist() == [3, 4]
    with pytest.raises(UnknownClassError, match="known classes: a, b"):
        fs.select("youtube")


def test_stratified_split_is_seeded_and_covers_classes():
    seqs = [[i + 1] for i in range(100)]
    labels = ["a"] * 70 + ["b"] * 30
    fs = FlowSet.from_sequences(seqs, labels)
    tr1, te1 = fs.train_test_split(0.3, random_state=7)
    tr2, te2 = fs.train_test_split(0.3, random_state=7)
    assert tr1 == tr2 and te1 == te2
    assert te1.class_counts() == {"a": 21, "b": 9}
    assert len(tr1) + len(te1) == 100
    assert not set(tr1.lengths[:, 0]) & set(te1.lengths[:, 0])


def test_truncate_features_and_back():
    fs = _example()
    t = fs.truncate(2)
    assert t.n_packets.tolist() == [2, 2, 2]
    X = fs.to_features(4)
    assert X.shape == (3, 4) and X[1].tolist() == [5, -7, 0, 0]
    back = FlowSet.from_features(X)
    assert back.sequences() == [s[:4] for s in fs.sequences()]


def test_concat_and_getitem():
    fs = _example()
    both = FlowSet.concat([fs[:1], fs[1:]])
    assert both == fs
    assert fs[np.array([2, 0])].labels.tolist() == ["a", "a"]


def test_bad_jsonl_names_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"lengths": [1, -2]}\n{"lengths": [1, "x"]}\n')
    with pytest.raises(InputFormatError, match="offset 2"):
        FlowSet.read(p)


def test_shipped_bad_jsonl_is_a_typed_error(shared_data):
    with pytest.raises(InputFormatError):
        FlowSet.read(shared_data / "bad" / "flows_bad.jsonl")


nonzero = st.integers(-1500, 1500).filter(lambda x: x != 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(nonzero, min_size=1, max_size=12), min_size=1, max_size=20))
def test_property_round_trip(tmp_path_factory, seqs):
    seqs = [[abs(s[0])] + s[1:] for s in seqs]
    fs = FlowSet.from_sequences(seqs, [str(len(s) % 3) for s in seqs])
    d = tmp_path_factory.mktemp("rt")
    fs.to_parquet(d / "a.parquet")
    fs.to_jsonl(d / "a.jsonl")
    assert FlowSet.read(d / "a.parquet") == fs
    assert FlowSet.read(d / "a.jsonl") == fs
    assert FlowSet.read(d / "a.parquet").sequences() == seqs
