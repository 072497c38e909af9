"""FlowTokenizer: exact round trips, layout, special tokens, errors, JSON persistence."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trafficgen.data.flowset import FlowSet
from trafficgen.errors import InputFormatError, UnknownClassError
from trafficgen.representations.tokenizer import EOS_ID, PAD_ID, FlowTokenizer

CLASSES = ["DNS", "TLS", "YouTube"]
lengths_st = st.integers(-1500, 1500).filter(lambda x: x != 0)
flow_st = st.tuples(st.lists(lengths_st, min_size=1, max_size=12), st.sampled_from(CLASSES))


@settings(max_examples=60, deadline=None)
@given(st.lists(flow_st, min_size=1, max_size=20))
def test_round_trip_property(flows):
    # the first packet of a flow is client->server (+) by FlowSet convention; the tokenizer must
    # not rely on it, so any signs are allowed here
    fs = FlowSet.from_sequences([f for f, _ in flows], [c for _, c in flows])
    tok = FlowTokenizer(classes=CLASSES)
    ids, mask = tok.encode(fs)
    assert ids.dtype == np.int64 and ids.shape == (len(fs), fs.max_packets + 2)
    assert np.array_equal(mask.sum(axis=1), fs.n_packets + 2)
    back = tok.decode(ids)
    assert back == FlowSet(lengths=fs.lengths, n_packets=fs.n_packets, labels=fs.labels)


def test_layout_by_hand():
    tok = FlowTokenizer(classes=["A", "B"], max_length=1500)
    assert tok.vocab_size == 2 + 3000 + 2
    fs = FlowSet.from_sequences([[1, -1500, 1500], [-1]], ["B", "A"], max_packets=4)
    ids, mask = tok.encode(fs)
    # -1500 -> 2, -1 -> 1501, +1 -> 1502, +1500 -> 3001, classes at 3002, 3003
    assert ids.tolist() == [[3003, 1502, 2, 3001, EOS_ID, PAD_ID], [3002, 1501, EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert mask.tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]
    assert tok.token_names(ids[0]) == ["<CLASS_B>", "+1", "-1500", "+1500", "<EOS>", "<PAD>"]


def test_truncation_and_full_row_without_eos():
    tok = FlowTokenizer(classes=["A"])
    fs = FlowSet.from_sequences([[5, -6, 7, -8]], ["A"])
    ids, _ = tok.encode(fs, max_packets=2)
    assert tok.decode(ids).sequences() == [[5, -6]]
    # a row that reaches the end without <EOS> is a full-length flow
    assert tok.decode(ids[:, :3]).sequences() == [[5, -6]]


def test_unknown_class_lists_known():
    tok = FlowTokenizer(classes=CLASSES)
    with pytest.raises(UnknownClassError, match="known classes: DNS, TLS, YouTube"):
        tok.class_id("Zoom")
    fs = FlowSet.from_sequences([[10]], ["Zoom"])
    with pytest.raises(UnknownClassError):
        tok.encode(fs)


def test_zero_payload_and_oversize_rejected_or_clipped():
    tok = FlowTokenizer(classes=["A"])
    zero = FlowSet(lengths=[[10, 0, -5]], n_packets=[3], directions=[[1, -1, -1]], labels=["A"])
    with pytest.raises(InputFormatError, match="zero-payload"):
        tok.encode(zero)
    big = FlowSet.from_sequences([[10, -9000, 2000]], ["A"])
    with pytest.raises(InputFormatError, match="beyond"):
        tok.encode(big)
    ids, _ = tok.encode(big, clip=True)
    assert tok.decode(ids).sequences() == [[10, -1500, 1500]]


def test_decode_rejects_special_tokens_inside_flow():
    tok = FlowTokenizer(classes=["A", "B"])
    cls_a = tok.class_id("A")
    with pytest.raises(InputFormatError, match="non-length token"):
        tok.decode(np.array([[cls_a, 1600, tok.class_id("B"), EOS_ID]]))
    with pytest.raises(InputFormatError, match="class token"):
        tok.decode(np.array([[1600, 1601, EOS_ID]]))


def test_json_round_trip(tmp_path):
    tok = FlowTokenizer(classes=CLASSES, max_length=1400)
    tok.save(tmp_path / "tokenizer.json")
    back = FlowTokenizer.load(tmp_path / "tokenizer.json")
    assert back == tok and back.vocab_size == 2 + 2800 + 3
    fs = FlowSet.from_sequences([[1400, -3], [7]], ["TLS", "DNS"])
    assert np.array_equal(back.encode(fs)[0], tok.encode(fs)[0])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputFormatError, match="bad.json"):
        FlowTokenizer.load(tmp_path / "bad.json")
