"""atomic_path: nothing half-written, stale temporaries of killed writers cleaned on the next write,
a folder replaced by renames only (a kill at any moment keeps the old or the new one), errors
that name the user's path, never our temporary."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trafficgen._io import atomic_path, check_output_path, clean_stale_temporaries
from trafficgen.errors import ConfigError


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_folder(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text(text)


def test_file_and_folder_written_atomically(tmp_path):
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("1")
    assert (tmp_path / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert (tmp_path / "a.txt").read_text() == "1"
    write_folder(tmp_path / "m", "old")
    write_folder(tmp_path / "m", "new")
    assert (tmp_path / "m" / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "m"]  # no temporary, no backup


def test_stale_temporaries_cleaned_on_next_write(tmp_path):
    target = tmp_path / "out.parquet"
    legacy = tmp_path / ".out.parquet.k2j4h5g6.tmp"  # the naming before pids were recorded
    legacy.write_text("left by a SIGKILL")
    old = time.time() - 7200
    os.utime(legacy, (old, old))
    dead = tmp_path / f".out.parquet.{dead_pid()}.abcdefgh.tmp"
    dead.mkdir()
    (dead / "part").write_text("x")
    live = tmp_path / f".out.parquet.{os.getppid()}.zzzzzzzz.tmp"  # a writer still running
    live.write_text("in progress")
    fresh_legacy = tmp_path / ".out.parquet.aaaabbbb.tmp"  # recent: may belong to a running old writer
    fresh_legacy.write_text("?")
    foreign = [tmp_path / ".out.parquet.tmp", tmp_path / ".other.parquet.k2j4h5g6.tmp", tmp_path / "notes.tmp"]
    for f in foreign:
        f.write_text("not ours")
        os.utime(f, (old, old))
    with atomic_path(target) as tmp:
        tmp.write_text("data")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["out.parquet", live.name, fresh_legacy.name, *(f.name for f in foreign)])


KILLER = """
import os, signal, sys
from pathlib import Path
import trafficgen._io as io

target, when = Path(sys.argv[1]), sys.argv[2]
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if when == "after-first-rename":
        os.kill(os.getpid(), signal.SIGKILL)
io.os.replace = replace
with io.atomic_path(target) as tmp:
    if target.suffix == ".txt":
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
    tmp.mkdir()
    (tmp / "config.json").write_text("new")
    if when == "inside":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["inside", "after-first-rename"])
def test_sigkill_during_folder_replace_keeps_the_old_model(tmp_path, when):
    target = tmp_path / "model"
    write_folder(target, "old")
    proc = subprocess.run([sys.executable, "-c", KILLER, str(target), when], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    # on disk right after the kill: the old model, in place or as our backup
    kept = [p for p in tmp_path.iterdir() if (p / "config.json").is_file()
            and (p / "config.json").read_text() == "old"]
    assert kept, sorted(p.name for p in tmp_path.iterdir())
    clean_stale_temporaries(target)
    assert (target / "config.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    write_folder(target, "new")
    assert (target / "config.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_sigkill_during_file_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    target = tmp_path / "flows.txt"
    proc = subprocess.run([sys.executable, "-c", KILLER, str(target), "inside"], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr
    assert not target.exists() and len(list(tmp_path.glob(".flows.txt.*.tmp"))) == 1
    with atomic_path(target) as tmp:
        tmp.write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flows.txt"]


def test_bad_output_paths_name_the_users_path(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    cases = [(tmp_path / "afile" / "x.parquet", None, "afile is a file"),
             (tmp_path / "afile" / "deeper" / "x.parquet", "file", "afile is a file"),
             (tmp_path / "adir", "file", "it is a folder"),
             (tmp_path / "afile", "dir", "it is a file")]
    for path, kind, text in cases:
        with pytest.raises(ConfigError, match=text) as info:
            check_output_path(path, kind)
        assert str(path) in str(info.value)
        with pytest.raises(ConfigError) as info, atomic_path(path, kind=kind) as tmp:
            tmp.write_text("never")
        assert str(path) in str(info.value) and ".tmp" not in str(info.value)
    # without kind: the mismatch is found when the block is done, still naming the path
    with pytest.raises(ConfigError, match="it is a folder") as info, atomic_path(tmp_path / "adir") as tmp:
        tmp.write_text("x")
    assert ".tmp" not in str(info.value)
    with pytest.raises(ConfigError, match="it is a file"), atomic_path(tmp_path / "afile") as tmp:
        tmp.mkdir()
    assert (tmp_path / "afile").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]
    assert check_output_path(tmp_path / "new" / "deep" / "x.parquet", "file") == tmp_path / "new" / "deep" / "x.parquet"
    assert not (tmp_path / "new").exists()  # checking creates nothing
