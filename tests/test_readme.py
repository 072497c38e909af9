"""Every ```python block of README.md runs as written (issue 16 item 20: the "Bring your own data"
snippet failed on its last line after 30 epochs of training).

The blocks run in a scratch folder holding what they name: ``my_captures/<app>/*.pcap``,
``caps/*.pcap`` and ``labels.csv`` (copies of shipped nDPI captures and their labels). The only
change to the code as written: generators train for at most one epoch, so the test takes seconds.
"""
from __future__ import annotations

import csv
import functools
import re
import shutil
from pathlib import Path

import pytest

import trafficgen.datasets
from trafficgen import registry

README = Path(__file__).resolve().parents[1] / "README.md"
NDPI = Path(trafficgen.datasets.__file__).parent / "ndpi"
#: Shipped captures the scratch folder is built from: app folder -> captures.
CAPTURES = {"youtube": ["quic.pcap", "youtube_quic.pcap"], "dns": ["dns_fragmented.pcap"]}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of each fenced ```python block."""
    blocks, lines, start = [], text.splitlines(), None
    for i, line in enumerate(lines, 1):
        if start is None and re.fullmatch(r"```\s*python\s*", line.strip()):
            start, body = i + 1, []
        elif start is not None and line.strip() == "```":
            blocks.append((start, "\n".join(body) + "\n"))
            start = None
        elif start is not None:
            body.append(line)
    assert start is None, f"README.md: unterminated ```python block from line {start}"
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    names = [n for files in CAPTURES.values() for n in files]
    for app, files in CAPTURES.items():
        (tmp_path / "my_captures" / app).mkdir(parents=True)
        for name in files:
            shutil.copy(NDPI / "pcap" / name, tmp_path / "my_captures" / app / name)
    (tmp_path / "caps").mkdir()
    for name in names:
        shutil.copy(NDPI / "pcap" / name, tmp_path / "caps" / name)
    with open(NDPI / "labels.csv", newline="") as src, open(tmp_path / "labels.csv", "w", newline="") as dst:
        rows = csv.reader(src)
        out = csv.writer(dst)
        out.writerow(next(rows))
        out.writerows(r for r in rows if r and r[0] in names)
    monkeypatch.chdir(tmp_path)
    text = README.read_text(encoding="utf-8")
    for spec in registry.GENERATORS.values():
        cls = registry.import_object(spec) if spec.rpartition(":")[2] in text else None
        if cls is not None and "epochs" in cls._param_names():
            init = cls.__init__

            @functools.wraps(init)
            def one_epoch(self, *args, _init=init, **kwargs):
                kwargs["epochs"] = min(int(kwargs.get("epochs", 1)), 1)
                _init(self, *args, **kwargs)

            monkeypatch.setattr(cls, "__init__", one_epoch)
    return tmp_path


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_python_block_runs(scratch, line, code):
    namespace = {"__name__": "__readme__"}
    exec(compile(code, f"README.md:{line}", "exec"), namespace)
    if "synth" in namespace and "gen" in namespace:  # the "Bring your own data" snippet
        assert set(namespace["synth"].labels) == {"YouTube"}
        assert (scratch / "runs" / "my-llama" / "config.json").exists()


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Quick start")
    return text[start:text.index("\n## ", start + 1)]


def test_quick_start_says_how_to_reach_the_installed_command():
    """After `make demo`, `trafficgen` is not on the PATH: the README must say so (issue 16 item 21)."""
    section = quick_start()
    assert "make demo" in section
    assert ".venv/bin/trafficgen" in section and "source .venv/bin/activate" in section


def test_shipped_app_count_matches_the_loader():
    from trafficgen.datasets import load_ndpi_apps

    counts = re.findall(r"(\d+)(?: apps)? with ≥ 30 flows", README.read_text(encoding="utf-8"))
    assert counts, "README.md no longer states how many nDPI apps load_ndpi_apps() keeps"
    assert {int(c) for c in counts} == {len(load_ndpi_apps().classes)}


def test_licence_file_and_spdx_metadata():
    """The project is Apache-2.0: a LICENSE file at the root, and pyproject's licence as an SPDX
    string (the TOML table form is deprecated in setuptools >= 77)."""
    import tomllib

    root = README.parent
    assert "Apache License" in (root / "LICENSE").read_text() and "Version 2.0" in (root / "LICENSE").read_text()
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
