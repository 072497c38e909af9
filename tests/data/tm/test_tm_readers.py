"""Traffic-matrix readers and writers: exact round trips, fixtures built from the published
formats, unit conversions, and clear errors on bad input."""
from __future__ import annotations

import gzip
import json
from datetime import datetime

import numpy as np
import pytest

from trafficgen.data.tm import (
    ABILENE_NODES,
    ABILENE_X_KINDS,
    read_abilene_x,
    read_hist,
    read_sndlib_xml,
    read_tm,
    read_tm_csv,
    read_tm_npy,
    read_totem_xml,
    write_tm_csv,
    write_tm_npy,
)
from trafficgen.data.tmseries import TMSeries
from trafficgen.errors import ConfigError, InputFormatError


def _series(rng, t=5, n=3, unit="bytes", interval=300.0):
    values = rng.gamma(0.5, 1e6, size=(t, n, n)) * (rng.random((t, n, n)) > 0.2)
    return TMSeries(values, [f"n{i}" for i in range(n)], interval, unit, datetime(2004, 3, 1, 0, 5))


def _same(a: TMSeries, b: TMSeries):
    np.testing.assert_array_equal(a.values, b.values)
    assert a.nodes == b.nodes and a.unit == b.unit and a.interval_s == b.interval_s and a.start == b.start


def test_npy_round_trip_exact(tmp_path, rng):
    s = _series(rng)
    write_tm_npy(s, tmp_path / "tm.npy")
    _same(read_tm_npy(tmp_path / "tm.npy"), s)
    _same(read_tm(tmp_path / "tm.npy"), s)
    # without the sidecar: metadata must come from keywords, and flat (T, N*N) arrays work
    np.save(tmp_path / "flat.npy", s.flat)
    with pytest.raises(InputFormatError, match="interval_s and unit"):
        read_tm_npy(tmp_path / "flat.npy")
    back = read_tm_npy(tmp_path / "flat.npy", interval_s=300, unit="bytes", nodes=s.nodes)
    np.testing.assert_array_equal(back.values, s.values)


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_csv_round_trip_exact(tmp_path, rng, layout):
    s = _series(rng)
    s.values[1, 2, 0] = 1 / 3  # needs all 17 digits
    write_tm_csv(s, tmp_path / "tm.csv", layout=layout)
    _same(read_tm_csv(tmp_path / "tm.csv"), s)
    _same(read_tm(tmp_path / "tm.csv"), s)


def test_csv_wide_header_names_nodes_and_long_fills_zeros(tmp_path):
    (tmp_path / "w.csv").write_text("a->a,a->b,b->a,b->b\n0,1,2,3\n4,5,6,7\n")
    s = read_tm_csv(tmp_path / "w.csv", interval_s=60, unit="Mbit/s")
    assert s.nodes == ["a", "b"]
    np.testing.assert_array_equal(s.values, [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])
    (tmp_path / "l.csv").write_text("t,src,dst,value\n1,x,y,2.5\n0,y,x,1\n")
    s = read_tm_csv(tmp_path / "l.csv", interval_s=60, unit="Mbit/s")
    assert s.nodes == ["x", "y"]
    np.testing.assert_array_equal(s.values, [[[0, 0], [1, 0]], [[0, 2.5], [0, 0]]])


@pytest.mark.parametrize("name, row, what", [("tm_nan", 1, "NaN"), ("tm_ragged", 2, "expected 3 values"),
                                             ("tm_negative", 1, "negative")])
def test_bad_shared_csv_names_file_and_row(shared_data, name, row, what):
    path = shared_data / "bad" / f"{name}.csv"
    with pytest.raises(InputFormatError, match=what) as info:
        read_tm(path, interval_s=300, unit="bytes")
    assert info.value.path == str(path) and info.value.offset == row
    assert f"row {row}" in str(info.value) and str(path) in str(info.value)


def test_bad_rows_in_whitespace_files(tmp_path):
    (tmp_path / "x.hist").write_text("1 2 3 4\n1 2 x 4\n")
    with pytest.raises(InputFormatError, match="row 2: 'x' is not a number"):
        read_hist(tmp_path / "x.hist")
    (tmp_path / "y.hist").write_text("1 2 3\n")
    with pytest.raises(InputFormatError, match="not N\\*N"):
        read_hist(tmp_path / "y.hist")
    (tmp_path / "z.hist").write_text("\n")
    with pytest.raises(InputFormatError, match="no data rows"):
        read_hist(tmp_path / "z.hist")


def test_abilene_720_column_blocks(tmp_path, rng):
    blocks = rng.integers(0, 10_000, size=(3, 5, 144)).astype(float)  # (T, kind, 144)
    lines = [" ".join(f"{v:.6e}" for v in row.ravel()) for row in blocks]
    path = tmp_path / "X99.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    for k, kind in enumerate(ABILENE_X_KINDS):
        s = read_abilene_x(path, kind=kind)
        assert s.unit == "100bytes" and s.interval_s == 300.0 and s.nodes == ABILENE_NODES
        np.testing.assert_array_equal(s.values, blocks[:, k].reshape(3, 12, 12))
    # 144-column file: realOD only
    (tmp_path / "r.txt").write_text("\n".join(" ".join("1" for _ in range(144)) for _ in range(2)))
    assert read_tm(tmp_path / "r.txt").values.shape == (2, 12, 12)
    with pytest.raises(InputFormatError, match="only realOD"):
        read_abilene_x(tmp_path / "r.txt", kind="generalGravity")
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(InputFormatError, match="144 or 720"):
        read_abilene_x(tmp_path / "bad.txt")


def test_abilene_realod_file_and_units(shared_data):
    s = read_abilene_x(shared_data / "abilene" / "X01_realOD.txt")
    assert s.values.shape == (2016, 12, 12)
    first = np.array(open(shared_data / "abilene" / "X01_realOD.txt").readline().split(), dtype=float)
    np.testing.assert_array_equal(s.values[0], first.reshape(12, 12))  # origin-major
    mbps = s.to_unit("Mbit/s")
    np.testing.assert_allclose(mbps.values, s.values * 800 / 300 / 1e6, rtol=1e-15)
    np.testing.assert_allclose(s.to_unit("bytes").values, s.values * 100, rtol=1e-15)


def test_hist_reads_geant_week7(shared_data):
    s = read_hist(shared_data / "geant" / "week7.hist")
    assert s.values.shape == (677, 22, 22) and s.unit == "bit/s" and s.interval_s == 900.0
    row = np.array(open(shared_data / "geant" / "week7.hist").readline().split(), dtype=float)
    np.testing.assert_array_equal(s.values[0].ravel(), row)
    np.testing.assert_allclose(s.to_unit("Mbit/s").values, s.values / 1e6, rtol=1e-15)


SNDLIB = """<?xml version="1.0" encoding="ISO-8859-1"?>
<network xmlns="http://sndlib.zib.de/network" version="1.0">
 <meta><granularity>15min</granularity><time>{time}</time><unit>MBITPERSEC</unit></meta>
 <networkStructure>
  <nodes coordinatesType="geographical">
   <node id="at1.at"><coordinates><x>16.37</x><y>48.21</y></coordinates></node>
   <node id="be1.be"><coordinates><x>4.35</x><y>50.85</y></coordinates></node>
   <node id="ch1.ch"><coordinates><x>6.14</x><y>46.21</y></coordinates></node>
  </nodes>
  <links><link id="at1.at_be1.be"><source>at1.at</source><target>be1.be</target></link></links>
 </networkStructure>
 <demands>
  <demand id="at1.at_be1.be"><source>at1.at</source><target>be1.be</target><demandValue> {v1} </demandValue></demand>
  <demand id="ch1.ch_at1.at"><source>ch1.ch</source><target>at1.at</target><demandValue>{v2}</demandValue></demand>
 </demands>
</network>
"""


@pytest.mark.filterwarnings("ignore:the SNDLib demands list no node-to-itself")
def test_sndlib_directory_is_a_series(tmp_path):
    d = tmp_path / "sndlib"
    d.mkdir()
    (d / "demandMatrix-20050504-0015.xml").write_text(SNDLIB.format(time="2005-05-04T00:15:00", v1=3, v2=0.5))
    (d / "demandMatrix-20050504-0000.xml").write_text(SNDLIB.format(time="2005-05-04T00:00:00", v1=1.25, v2=2))
    s = read_sndlib_xml(d)
    assert s.nodes == ["at1.at", "be1.be", "ch1.ch"] and s.unit == "Mbit/s" and s.interval_s == 900.0
    assert s.start == datetime(2005, 5, 4, 0, 0)
    expected = np.zeros((2, 3, 3))
    expected[0, 0, 1], expected[0, 2, 0], expected[1, 0, 1], expected[1, 2, 0] = 1.25, 2, 3, 0.5
    np.testing.assert_array_equal(s.values, expected)
    one = read_tm(d / "demandMatrix-20050504-0000.xml")
    np.testing.assert_array_equal(one.values, expected[:1])
    (d / "bad.xml").write_text(SNDLIB.format(time="x", v1="-1", v2=1))
    with pytest.raises(InputFormatError, match="negative"):
        read_sndlib_xml(d / "bad.xml")


TOTEM = """<?xml version="1.0" encoding="UTF-8"?>
<TrafficMatrixFile>
 <info><date>2005-01-01T00:30:00</date><duration>900</duration></info>
 <IntraTM ASID="20965">
  <src id="10"><dst id="2">25871.5</dst><dst id="10">7</dst></src>
  <src id="2"><dst id="10"><value>1.5</value></dst></src>
 </IntraTM>
</TrafficMatrixFile>
"""


def test_totem_intratm(tmp_path):
    (tmp_path / "IntraTM-2005-01-01-00-30.xml").write_text(TOTEM)
    s = read_totem_xml(tmp_path / "IntraTM-2005-01-01-00-30.xml")
    assert s.nodes == ["2", "10"] and s.interval_s == 900.0 and s.unit == "kbit/s"
    assert s.start == datetime(2005, 1, 1, 0, 30)
    np.testing.assert_array_equal(s.values, [[[0, 1.5], [25871.5, 7]]])
    s2 = read_tm(tmp_path, unit="bytes")  # directory dispatch + unit override
    assert s2.unit == "bytes"
    np.testing.assert_array_equal(s2.values, s.values)
    (tmp_path / "broken.xml").write_text("<IntraTM><src id='1'>")
    with pytest.raises(InputFormatError, match="not well-formed"):
        read_totem_xml(tmp_path / "broken.xml")


def test_read_tm_unknown_or_missing(tmp_path):
    with pytest.raises(InputFormatError, match="no such file"):
        read_tm(tmp_path / "nope.csv")
    (tmp_path / "a.parquet").write_text("x")
    with pytest.raises(InputFormatError, match="unknown TM file type"):
        read_tm(tmp_path / "a.parquet")


def test_corrupt_gzip_and_bad_npy(tmp_path):
    (tmp_path / "x.hist.gz").write_bytes(b"not gzip at all")
    with pytest.raises(InputFormatError, match="cannot read text"):
        read_hist(tmp_path / "x.hist.gz")
    np.save(tmp_path / "neg.npy", -np.ones((2, 2, 2)))
    with pytest.raises(InputFormatError, match="negative"):
        read_tm_npy(tmp_path / "neg.npy", interval_s=1, unit="bytes")
    np.save(tmp_path / "cube.npy", np.ones((2, 2, 3)))
    with pytest.raises(InputFormatError, match="expected shape"):
        read_tm_npy(tmp_path / "cube.npy", interval_s=1, unit="bytes")


# ----------------------------------------------------------------------------- issue 16, item 9

@pytest.mark.parametrize("field,value,expected", [
    ("nodes", 5, "list of node names"), ("nodes", ["a", "a"], "distinct"), ("nodes", ["a", "b", "c"], "3 nodes"),
    ("interval_s", "abc", "positive number"), ("interval_s", -1, "positive number"),
    ("unit", "furlongs", "one of"), ("start", "not a time", "ISO 8601"), ("start", 7, "ISO 8601"),
])
def test_bad_sidecar_field_names_the_sidecar(tmp_path, rng, field, value, expected):
    path = write_tm_npy(_series(rng, n=2), tmp_path / "tm.npy")
    side = tmp_path / "tm.npy.json"
    meta = json.loads(side.read_text())
    meta[field] = value
    side.write_text(json.dumps(meta))
    with pytest.raises(InputFormatError, match=expected) as info:
        read_tm_npy(path)
    assert info.value.path == str(side)
    write_tm_csv(_series(rng, n=2), tmp_path / "tm.csv", layout="long")
    (tmp_path / "tm.csv.json").write_text(json.dumps(meta))
    with pytest.raises(InputFormatError) as info:
        read_tm(tmp_path / "tm.csv")
    assert info.value.path == str(tmp_path / "tm.csv.json")


def test_sidecar_not_an_object(tmp_path, rng):
    path = write_tm_npy(_series(rng, n=2), tmp_path / "tm.npy")
    (tmp_path / "tm.npy.json").write_text("[1, 2]")
    with pytest.raises(InputFormatError, match="JSON object"):
        read_tm_npy(path)


# ----------------------------------------------------------------------------- issue 16, item 12

SNDLIB_ABILENE = """<?xml version="1.0" encoding="ISO-8859-1"?>
<network xmlns="http://sndlib.zib.de/network" version="1.0">
 <meta><granularity>5min</granularity><time>2004-03-01T00:00:00</time><unit>MBITPERSEC</unit></meta>
 <networkStructure><nodes>{nodes}</nodes></networkStructure>
 <demands>{demands}</demands>
</network>
"""


def _sndlib_abilene(demands: dict) -> str:
    order = list(reversed(ABILENE_NODES))  # a file order other than the shipped one
    nodes = "".join(f'<node id="{n}"><coordinates><x>0</x><y>0</y></coordinates></node>' for n in order)
    body = "".join(f'<demand id="{a}_{b}"><source>{a}</source><target>{b}</target><demandValue>{v}</demandValue>'
                   "</demand>" for (a, b), v in demands.items())
    return SNDLIB_ABILENE.format(nodes=nodes, demands=body)


def test_sndlib_without_demands_is_an_error(tmp_path):
    (tmp_path / "empty.xml").write_text(SNDLIB.replace(SNDLIB[SNDLIB.index("<demands>"):SNDLIB.index("</demands>")],
                                                       "<demands>"))
    with pytest.raises(InputFormatError, match="no <demand>") as info:
        read_sndlib_xml(tmp_path / "empty.xml")
    assert info.value.path == str(tmp_path / "empty.xml")


@pytest.mark.filterwarnings("ignore:the SNDLib demands list no node-to-itself")
def test_sndlib_series_names_files_without_demands(tmp_path):
    from trafficgen.data.tm import TMReadWarning

    (tmp_path / "a.xml").write_text(SNDLIB.format(time="2005-05-04T00:00:00", v1=1, v2=2))
    (tmp_path / "b.xml").write_text(SNDLIB.replace(SNDLIB[SNDLIB.index("<demands>"):SNDLIB.index("</demands>")],
                                                   "<demands>").format(time="2005-05-04T00:15:00"))
    with pytest.warns(TMReadWarning, match="b.xml"):
        s = read_sndlib_xml(tmp_path)
    assert s.meta["files_without_demands"] == [str(tmp_path / "b.xml")]
    np.testing.assert_array_equal(s.values[1], 0)


def test_sndlib_says_self_demands_are_absent(tmp_path):
    from trafficgen.data.tm import TMReadWarning

    (tmp_path / "a.xml").write_text(SNDLIB.format(time="2005-05-04T00:00:00", v1=1, v2=2))
    with pytest.warns(TMReadWarning, match="node-to-itself"):
        s = read_sndlib_xml(tmp_path / "a.xml")
    assert s.meta["self_demands_in_file"] is False
    with_self = SNDLIB.replace("</demands>", '<demand id="x"><source>at1.at</source><target>at1.at</target>'
                                             "<demandValue>4</demandValue></demand></demands>")
    (tmp_path / "b.xml").write_text(with_self.format(time="2005-05-04T00:00:00", v1=1, v2=2))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TMReadWarning)
        s = read_sndlib_xml(tmp_path / "b.xml")
    assert s.meta["self_demands_in_file"] is True and s.values[0, 0, 0] == 4


def test_sndlib_abilene_maps_to_the_shipped_node_order(tmp_path):
    from trafficgen.data.tm import sndlib_node_map

    assert sndlib_node_map("abilene") == {n: n for n in ABILENE_NODES}
    (tmp_path / "ab.xml").write_text(_sndlib_abilene({("STTLng", "ATLAM5"): 2.5, ("ATLAng", "WASHng"): 1.0}))
    with pytest.warns(UserWarning, match="node-to-itself"):
        plain = read_sndlib_xml(tmp_path / "ab.xml")
    assert plain.nodes == list(reversed(ABILENE_NODES))  # the file's own order
    with pytest.warns(UserWarning, match="node-to-itself"):
        s = read_sndlib_xml(tmp_path / "ab.xml", topology="abilene")
    assert s.nodes == ABILENE_NODES and s.meta["topology"] == "abilene"
    assert s.values[0, ABILENE_NODES.index("STTLng"), 0] == 2.5 and s.values.sum() == 3.5
    (tmp_path / "bad.xml").write_text(_sndlib_abilene({("XXXXng", "ATLAM5"): 1.0}))
    with pytest.raises(InputFormatError, match="XXXXng"):
        read_sndlib_xml(tmp_path / "bad.xml", topology="abilene")
    with pytest.raises(ConfigError, match="GEANT"):
        read_sndlib_xml(tmp_path / "ab.xml", topology="geant")
    with pytest.raises(ConfigError):
        read_sndlib_xml(tmp_path / "ab.xml", topology="abilene", nodes=ABILENE_NODES)
