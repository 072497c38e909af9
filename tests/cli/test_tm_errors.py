"""Bad `trafficgen tm ...` calls through the INSTALLED console script (not CliRunner): each one exits
non-zero with one line on stderr, no traceback, and leaves no file (nor a temporary) at the target.

Issue 16, items 7, 8, 9, 13 and 23 (the traffic-matrix side)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.generators.tm.test_ddpm_tme import toy_routing, toy_series
from trafficgen.estimation.classic import tomogravity_estimate

SCRIPT = Path(sys.executable).parent / "trafficgen"
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the trafficgen console script is not installed")


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([str(SCRIPT), *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def assert_one_line_error(r: subprocess.CompletedProcess, *, contains: str = "") -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert contains in lines[0], lines[0]
    return lines[0]


def assert_nothing_written(folder: Path, *names: str) -> None:
    for name in names:
        assert not (folder / name).exists(), f"{name} was left behind"
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")], "temporary left behind"


@pytest.fixture
def loads(tmp_path):
    X = toy_series(6, seed=2).flat  # (6, 16)
    A = toy_routing()  # (16, 16): 8 backbone links + 8 access links
    np.savetxt(tmp_path / "Y.csv", X @ A, delimiter=",")
    np.savetxt(tmp_path / "A.csv", A, delimiter=",")
    backbone = A[:, :8]
    np.savetxt(tmp_path / "Yb.csv", X @ backbone, delimiter=",")
    np.savetxt(tmp_path / "Ab.csv", backbone, delimiter=",")
    return X, A


# ----------------------------------------------------------------------------- item 7

def test_pinv_routing_rows_not_square(tmp_path):
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "A10.csv", (rng.random((10, 5)) > 0.5).astype(float), delimiter=",")
    np.savetxt(tmp_path / "Y10.csv", rng.random((3, 5)), delimiter=",")
    r = run_cli("tm", "estimate", "--method", "pinv", "--link-loads", "Y10.csv", "--routing", "A10.csv",
                "-o", "e.npy", cwd=tmp_path)
    line = assert_one_line_error(r, contains="A10.csv")
    assert "10 rows" in line and "N*N" in line
    assert_nothing_written(tmp_path, "e.npy", "e.json")


# ----------------------------------------------------------------------------- item 8

def test_truth_with_other_node_count_writes_nothing(tmp_path, loads):
    np.save(tmp_path / "truth9.npy", np.ones((6, 3, 3)))
    r = run_cli("tm", "estimate", "--method", "pinv", "--link-loads", "Y.csv", "--routing", "A.csv",
                "--truth", "truth9.npy", "-o", "e.npy", cwd=tmp_path)
    line = assert_one_line_error(r, contains="truth9.npy")
    assert "4" in line and "3" in line
    assert_nothing_written(tmp_path, "e.npy", "e.json")
    np.save(tmp_path / "truth_t.npy", np.ones((5, 4, 4)))  # 5 matrices for 6 rows of link loads
    r = run_cli("tm", "estimate", "--method", "pinv", "--link-loads", "Y.csv", "--routing", "A.csv",
                "--truth", "truth_t.npy", "-o", "e.npy", cwd=tmp_path)
    assert_one_line_error(r, contains="truth_t.npy")
    assert_nothing_written(tmp_path, "e.npy", "e.json")


def test_truth_scored_when_it_matches(tmp_path, loads):
    X, _ = loads
    np.save(tmp_path / "truth.npy", X.reshape(6, 4, 4))
    r = run_cli("tm", "estimate", "--method", "tomogravity", "--link-loads", "Y.csv", "--routing", "A.csv",
                "--truth", "truth.npy", "-o", "e.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["tre"]["mean"] >= 0 and "rmse" in report


# ----------------------------------------------------------------------------- item 9

@pytest.mark.parametrize("bad", [{"nodes": 5}, {"interval_s": "abc"}, {"start": "not a time"}, [1, 2],
                                 {"unit": 3}])
def test_bad_sidecar_is_one_line(tmp_path, bad):
    np.save(tmp_path / "tm.npy", np.ones((40, 2, 2)))
    side = {"nodes": ["a", "b"], "interval_s": 300.0, "unit": "bytes", "start": None}
    side = {**side, **bad} if isinstance(bad, dict) else bad
    (tmp_path / "tm.npy.json").write_text(json.dumps(side))
    r = run_cli("tm", "evaluate", "--model", "persistence", "--data", "tm.npy", "-o", "out", "--horizons", "1",
                cwd=tmp_path)
    assert_one_line_error(r, contains="tm.npy.json")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- item 13

def test_tomogravity_and_gravity_on_plain_routing_need_node_totals(tmp_path, loads):
    for method in ("tomogravity", "gravity"):
        r = run_cli("tm", "estimate", "--method", method, "--link-loads", "Yb.csv", "--routing", "Ab.csv",
                    "-o", "e.npy", cwd=tmp_path)
        line = assert_one_line_error(r, contains="--node-totals")
        assert "access" in line
        assert_nothing_written(tmp_path, "e.npy", "e.json")


def test_node_totals_option(tmp_path, loads):
    X, A = loads
    x3 = X.reshape(6, 4, 4)
    totals = np.concatenate([x3.sum(2), x3.sum(1)], axis=1)  # (T, 2N): egress then ingress
    np.savetxt(tmp_path / "totals.csv", totals, delimiter=",")
    r = run_cli("tm", "estimate", "--method", "tomogravity", "--link-loads", "Yb.csv", "--routing", "Ab.csv",
                "--node-totals", "totals.csv", "-o", "e.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    Yb = np.loadtxt(tmp_path / "Yb.csv", delimiter=",")
    ref = tomogravity_estimate(Yb, A[:, :8], egress=x3.sum(2), ingress=x3.sum(1))
    np.testing.assert_allclose(np.load(tmp_path / "e.npy").reshape(6, -1), ref)
    # on a routing matrix with access rows the totals come from the link loads: same answer
    r = run_cli("tm", "estimate", "--method", "tomogravity", "--link-loads", "Y.csv", "--routing", "A.csv",
                "-o", "e2.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "e2.npy").reshape(6, -1),
                               tomogravity_estimate(np.loadtxt(tmp_path / "Y.csv", delimiter=","), A))
    np.savetxt(tmp_path / "bad_totals.csv", totals[:, :5], delimiter=",")
    r = run_cli("tm", "estimate", "--method", "gravity", "--link-loads", "Yb.csv", "--routing", "Ab.csv",
                "--node-totals", "bad_totals.csv", "-o", "e3.npy", cwd=tmp_path)
    assert_one_line_error(r, contains="bad_totals.csv")
    assert_nothing_written(tmp_path, "e3.npy", "e3.json")


# ----------------------------------------------------------------------------- item 23

def test_estimate_from_shipped_abilene_in_mbps(tmp_path):
    from trafficgen.data.routing import link_loads
    from trafficgen.data.windows import chronological_split
    from trafficgen.datasets import load_abilene, load_abilene_routing

    r = run_cli("tm", "estimate", "--method", "tomogravity", "--data", "abilene", "--max-matrices", "20",
                "-o", "e.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["unit"] == "Mbit/s" and report["n_matrices"] == 20
    _, _, test = chronological_split(load_abilene(), (0.7, 0.15, 0.15))
    X = test.flat[:20]
    A = load_abilene_routing()
    est = np.load(tmp_path / "e.npy")
    ref = tomogravity_estimate(link_loads(X, A), A)
    np.testing.assert_allclose(est.reshape(20, -1), ref)
    mbit = 800 / 300 / 1e6  # 100 bytes per 300 s -> Mbit/s
    assert report["rmse_mbps"] == pytest.approx(np.sqrt(np.mean((ref - X) ** 2)) * mbit, rel=1e-9)
    assert "Mbit/s" in r.stdout
    r = run_cli("tm", "estimate", "--method", "pinv", "--data", "abilene", "--link-loads", "Y.csv",
                "-o", "x.npy", cwd=tmp_path)
    assert_one_line_error(r, contains="--data")
    assert_nothing_written(tmp_path, "x.npy", "x.json")


def test_estimate_unit_option_reports_mbps(tmp_path, loads):
    X, _ = loads
    np.save(tmp_path / "truth.npy", X.reshape(6, 4, 4))
    r = run_cli("tm", "estimate", "--method", "pinv", "--link-loads", "Y.csv", "--routing", "A.csv",
                "--truth", "truth.npy", "--unit", "bytes", "--interval-s", "300", "-o", "e.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    est = np.load(tmp_path / "e.npy").reshape(6, -1)
    assert report["unit"] == "Mbit/s"
    assert report["rmse_mbps"] == pytest.approx(np.sqrt(np.mean((est - X) ** 2)) * 8 / 300 / 1e6, rel=1e-9)
