"""Progress a log file can see: a rich bar on a terminal, plain periodic lines (step, loss, rate,
ETA) on stderr otherwise; training and NetDiffus sampling use it, and it changes no result."""
from __future__ import annotations

import io

import numpy as np
import pytest

from trafficgen._progress import ProgressReporter, resolve_mode
from trafficgen.data.flowset import FlowSet


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_resolve_mode(monkeypatch):
    monkeypatch.delenv("TRAFFICGEN_PROGRESS", raising=False)
    assert resolve_mode("auto", io.StringIO()) == "lines"
    assert resolve_mode("auto", Tty()) == "bar"
    monkeypatch.setenv("TRAFFICGEN_PROGRESS", "off")
    assert resolve_mode("auto", Tty()) == "off"
    monkeypatch.setenv("TRAFFICGEN_PROGRESS", "lines")
    assert resolve_mode("auto", Tty()) == "lines"
    assert resolve_mode("bar", io.StringIO()) == "bar"
    with pytest.raises(ValueError):
        resolve_mode("loud")


def test_plain_lines_every_ten_percent_or_ten_seconds(monkeypatch):
    monkeypatch.delenv("TRAFFICGEN_PROGRESS", raising=False)
    out, clock = io.StringIO(), FakeClock()
    with ProgressReporter(100, "train llama", file=out, clock=clock) as p:
        for _ in range(100):
            clock.t += 0.5  # 2 steps/s: a 10 % boundary every 5 s
            p.update(1, loss=2.0)
    lines = out.getvalue().splitlines()
    assert lines[0] == "train llama: 0/100 steps"
    assert lines[1] == "train llama: 10/100 steps (10%), loss 2.0000, 2 steps/s, ETA 0:00:45"
    assert len(lines) == 11  # start, 10 % ... 90 %, done
    assert lines[-1] == "train llama: done, 100/100 steps in 0:00:50 (2 steps/s), loss 2.0000"
    # slow steps: a line every 10 s even between 10 % boundaries
    out, clock = io.StringIO(), FakeClock()
    with ProgressReporter(1000, "sample netdiffus", file=out, clock=clock, unit="flows") as p:
        for _ in range(30):
            clock.t += 4.0
            p.update(1)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("sample netdiffus: 3/1000 flows (0%), 0.25 flows/s, ETA 1:06:28")
    assert len(lines) == 1 + 10 + 1
    # fast work: never more than a line a second
    out, clock = io.StringIO(), FakeClock()
    with ProgressReporter(1000, "fast", file=out, clock=clock) as p:
        for _ in range(1000):
            clock.t += 0.001
            p.update(1)
    assert len(out.getvalue().splitlines()) == 2
    # an exception: the last line says where it stopped
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt), ProgressReporter(10, "x", file=out, clock=FakeClock()) as p:
        p.update(3)
        raise KeyboardInterrupt
    assert out.getvalue().splitlines()[-1].startswith("x: stopped, 3/10 steps in ")


def test_bar_on_a_terminal_and_off():
    out = Tty()
    with ProgressReporter(5, "bar", file=out) as p:
        for _ in range(5):
            p.update(1, loss=0.5)
    assert "bar" in out.getvalue() and "5/5" in out.getvalue()
    out = io.StringIO()
    with ProgressReporter(5, "quiet", file=out, enabled=False) as p:
        p.update(5)
    assert out.getvalue() == ""


def separable(n=24) -> FlowSet:
    rng = np.random.default_rng(0)
    seqs = [[(100 if i % 2 else -900) + int(rng.integers(0, 50)) for _ in range(3)] for i in range(n)]
    seqs = [[abs(s[0]), *s[1:]] for s in seqs]
    return FlowSet.from_sequences(seqs, labels=["A" if i % 2 else "B" for i in range(n)])


def test_training_prints_lines_with_loss_when_stderr_is_a_log(capsys, monkeypatch):
    from trafficgen.generators.cvae import CVAEGenerator

    monkeypatch.delenv("TRAFFICGEN_PROGRESS", raising=False)
    CVAEGenerator(preset="tiny", epochs=2, batch_size=8, random_state=0, progress=True).fit(separable())
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "train cvae: 0/6 steps"
    assert err[-1].startswith("train cvae: done, 6/6 steps in ") and ", loss " in err[-1]


def test_netdiffus_sampling_progress_changes_no_sample(capsys, monkeypatch):
    from trafficgen.generators.netdiffus import NetDiffusGenerator

    monkeypatch.delenv("TRAFFICGEN_PROGRESS", raising=False)
    gen = NetDiffusGenerator(preset="tiny", max_packets=4, epochs=1, batch_size=16, num_inference_steps=3,
                             random_state=0, progress=False).fit(separable())
    capsys.readouterr()
    quiet = gen.sample(12, cls="A", random_state=5)
    assert capsys.readouterr().err == ""
    shown = gen.sample(12, cls="A", random_state=5, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "sample netdiffus (12 flows, 1 batches x 3 DPM-Solver++ steps): 0/3 steps"
    assert err[-1].startswith("sample netdiffus (12 flows, 1 batches x 3 DPM-Solver++ steps): done, 3/3 steps")
    assert np.array_equal(quiet.lengths, shown.lengths) and np.array_equal(quiet.n_packets, shown.n_packets)
