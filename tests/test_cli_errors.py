"""Bad calls of the INSTALLED console script (``trafficgen``, the entry point of pyproject.toml), each
in a subprocess: the exit code, one line on stderr (usage errors: click's short usage and one
error line), never a traceback, and nothing left at the output path.

The in-process CLI tests (``CliRunner``) never pass through ``main()``; these do.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trafficgen.data.flowset import FlowSet

SCRIPT = Path(sys.executable).with_name("trafficgen")
if not SCRIPT.exists():  # an installation whose scripts live elsewhere
    SCRIPT = Path(shutil.which("trafficgen") or SCRIPT)

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the trafficgen console script is not installed")


def tiny_flows(n: int = 12) -> FlowSet:
    rng = np.random.default_rng(0)
    seqs = [[int(rng.integers(40, 1400)) * (-1) ** j for j in range(int(rng.integers(1, 5)))] for _ in range(n)]
    return FlowSet.from_sequences(seqs, labels=["YouTube", "DNS"] * (n // 2))


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    from trafficgen.generators.fast_retransmit import FastRetransmitGenerator

    root = tmp_path_factory.mktemp("cli_errors")
    flows = tiny_flows()
    flows.save(root / "flows.parquet")
    FastRetransmitGenerator().fit(flows).save_pretrained(root / "model")
    (root / "afile").write_text("not a folder\n")
    (root / "adir.parquet").mkdir()
    (root / "taken").write_text("keep me\n")
    broken = root / "broken"
    shutil.copytree(root / "model", broken)
    (broken / "model.safetensors").write_bytes(b"garbage" * 10)
    nomodel = root / "nomodel"
    shutil.copytree(root / "model", nomodel)
    (nomodel / "model.safetensors").unlink()
    badjson = root / "badjson"
    shutil.copytree(root / "model", badjson)
    (badjson / "config.json").write_text("{not json")
    return root


def run(args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TQDM_DISABLE": "1", "TRAFFICGEN_CACHE": str(cwd / "cache"), "COLUMNS": "100"}
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)


USAGE = 2
#: (arguments, exit code, text stderr must hold, output path that must not appear)
BAD_CALLS = [
    ([], USAGE, "Usage: trafficgen", None),
    (["tm"], USAGE, "Usage: trafficgen tm", None),
    (["samp"], USAGE, "No such command 'samp'", None),
    (["train", "--data", "flows.parquet"], USAGE, "Missing option '-o'", None),
    (["sample", "-n", "abc", "--model", "model"], USAGE, "Invalid value for '-n'", None),
    (["sample", "--bogus"], USAGE, "No such option: --bogus", None),
    (["sample", "-n", "3", "--model", "model", "-o", "afile/x.parquet"], 1, "afile", "afile/x.parquet"),
    (["sample", "-n", "3", "--model", "model", "-o", "adir.parquet"], 1, "adir.parquet", None),
    (["sample", "-n", "3", "--model", "model", "-o", "x.txt"], 1, "x.txt", "x.txt"),
    (["sample", "-n", "3", "--model", "model", "-o", "nowhere/deep/../x.parquet", "--class", "nosuch"], 1,
     "unknown class 'nosuch'", "nowhere"),
    (["sample", "-n", "3", "--model", "broken"], 1, "model.safetensors", None),
    (["sample", "-n", "3", "--model", "nomodel"], 1, "not found", None),
    (["sample", "-n", "3", "--model", "badjson"], 1, "config.json", None),
    (["sample", "-n", "3", "--model", "missing_dir"], 1, "missing_dir", None),
    (["train", "--model", "fast_retransmit", "--data", "flows.parquet", "-o", "taken"], 1, "taken", None),
    (["train", "--model", "fast_retransmit", "--data", "flows.parquet", "-o", "afile/m"], 1, "afile", "afile/m"),
    (["train", "--model", "nosuch", "--data", "flows.parquet", "-o", "m_unknown"], 1, "unknown generator",
     "m_unknown"),
    (["train", "--model", "fast_retransmit", "--data", "missing.parquet", "-o", "m_missing"], 1,
     "missing.parquet", "m_missing"),
    (["fidelity", "--real", "flows.parquet", "--synthetic", "flows.parquet", "-o", "afile"], 1, "afile", None),
    (["fidelity", "--real", "flows.parquet", "--model", "broken", "-o", "rep"], 1, "model.safetensors", "rep"),
    (["evaluate", "--model", "model", "--real", "flows.parquet", "-o", "afile"], 1, "it is a file", None),
    (["evaluate", "--model", "nomodel", "--real", "flows.parquet", "-o", "ev"], 1, "not found", "ev"),
    (["quantize", "--model", "model", "-o", "afile"], 1, "it is a file", None),
    (["quantize", "--model", "badjson", "-o", "q"], 1, "config.json", "q"),
    (["quantize", "--model", "model", "-o", "afile/q"], 1, "afile is a file", "afile/q"),
    (["profile", "--model", "model", "-o", "afile"], 1, "it is a file", None),
    (["recipe", "run", "lead", "--quick", "-o", "afile"], 1, "it is a file", None),
]


@pytest.mark.parametrize("args,code,needle,target", BAD_CALLS, ids=[" ".join(a) or "(none)" for a, *_ in BAD_CALLS])
def test_bad_call(ws, args, code, needle, target):
    proc = run(args, ws)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert needle in proc.stderr, proc.stderr
    if code == USAGE:
        assert proc.stderr.strip().splitlines()[0].startswith("Usage:")
    else:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error: ")
        assert ".tmp" not in proc.stderr  # our temporary names never reach the user
    if target is not None:
        assert not (ws / target).exists()
    assert not list(ws.glob(".*.tmp"))
    assert (ws / "taken").read_text() == "keep me\n" and (ws / "afile").read_text() == "not a folder\n"


def test_version_and_help(ws):
    from trafficgen import __version__

    proc = run(["--version"], ws)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"trafficgen {__version__}"
    for args in (["--help"], ["recipe", "run", "--help"], ["evaluate", "--help"], ["tm", "--help"]):
        proc = run(args, ws)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert "<bool>" not in proc.stdout and "Usage:" in proc.stdout
    assert "--version" in run(["--help"], ws).stdout


def test_good_call_still_works(ws):
    proc = run(["sample", "-n", "4", "--model", "model", "--class", "youtube", "-o", "ok.parquet"], ws)
    assert proc.returncode == 0, proc.stderr
    assert set(FlowSet.read(ws / "ok.parquet").labels) == {"YouTube"}


def test_sigint_exits_130_with_interrupted(ws):
    """A real SIGINT in the middle of a command: exit 130 and "interrupted", not a silent 0."""
    code = ("import os, signal, sys, time\n"
            "import trafficgen.registry as r\n"
            "def slow(path):\n"
            "    signal.raise_signal(signal.SIGINT)  # to this (the main) thread: os.kill may pick another\n"
            "    time.sleep(30)\n"
            "r.load_generator = slow\n"
            "sys.argv = ['trafficgen', 'sample', '-n', '3', '--model', 'model', '-o', 'int.parquet']\n"
            "from trafficgen.cli.main import main\n"
            "main()\n")
    # the child must start with SIGINT at its default: a pytest-xdist worker (or anything that ran
    # before in it) may leave SIGINT ignored, which a child inherits, and then Python installs no
    # KeyboardInterrupt handler at all
    proc = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=60,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.returncode == 128 + signal.SIGINT, (proc.stdout, proc.stderr)
    assert proc.stderr.strip() == "interrupted"
    assert not (ws / "int.parquet").exists()
