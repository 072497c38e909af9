"""Progress that reaches the reader wherever stderr goes.

On a terminal: a rich bar (description, bar, done/total, optional loss, elapsed, remaining). In a
log file, a pipe or CI, where rich hides its bars: plain lines on stderr, one when the work
starts, then every ``every_s`` seconds (10) or at each further ``every_fraction`` (10 %) of the
total, whichever comes first (never more than one a second), and one at the end::

    train llama: 0/1250 steps
    train llama: 125/1250 steps (10%), loss 2.4121, 41.3 steps/s, ETA 0:00:27
    train llama: done, 1250/1250 steps in 0:00:29 (42.8 steps/s), loss 1.0312

``TRAFFICGEN_PROGRESS`` = ``bar`` / ``lines`` / ``off`` overrides the terminal test. Progress
never touches a random generator: results do not depend on it.
"""
from __future__ import annotations

import os
import sys
import time
from typing import IO

__all__ = ["ProgressReporter", "progress", "resolve_mode", "MODES", "ENV_VAR"]

MODES = ("auto", "bar", "lines", "off")
ENV_VAR = "TRAFFICGEN_PROGRESS"


def resolve_mode(mode: str = "auto", file: IO | None = None) -> str:
    """``bar``, ``lines`` or ``off`` for ``mode`` (``auto``: the environment variable, else a bar
    when ``file`` (default stderr) is a terminal, plain lines otherwise)."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {MODES}, got {mode!r}")
    if mode == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env in ("bar", "lines", "off"):
            return env
        file = sys.stderr if file is None else file
        try:
            return "bar" if file.isatty() else "lines"
        except (AttributeError, ValueError):  # a closed or odd stream
            return "lines"
    return mode


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _rate(x: float) -> str:
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _value(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


class ProgressReporter:
    """``with ProgressReporter(total, "train llama", show_loss=True) as p: p.update(1, loss=x)``.

    ``total`` may be None (unknown): lines then carry no percentage or ETA. ``fields`` passed to
    :meth:`update` (``loss=...``) are shown as the latest value.
    """

    def __init__(self, total: int | None, description: str, *, unit: str = "steps", show_loss: bool = False,
                 enabled: bool = True, mode: str = "auto", file: IO | None = None, every_s: float = 10.0,
                 every_fraction: float = 0.1, min_interval_s: float = 1.0, clock=time.monotonic):
        self.total = None if total is None else max(int(total), 0)
        self.description = description
        self.unit = unit
        self.show_loss = show_loss
        self.mode = mode if enabled else "off"
        self.file = file
        self.every_s = float(every_s)
        self.every_fraction = float(every_fraction)
        self.min_interval_s = float(min_interval_s)
        self._clock = clock
        self.done = 0
        self.fields: dict = {}
        self._bar = None

    # ------------------------------------------------------------------ context
    def __enter__(self) -> ProgressReporter:
        self._file = sys.stderr if self.file is None else self.file
        self.mode = resolve_mode(self.mode, self._file)
        self._t0 = self._last = self._clock()
        self._next_fraction = self.every_fraction
        if self.mode == "bar":
            self._start_bar()
        elif self.mode == "lines":
            self._print(f"{self.description}: 0{self._of_total()} {self.unit}")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.mode == "bar":
            self._bar.stop()
        elif self.mode == "lines":
            elapsed = self._clock() - self._t0
            rate = f" ({_rate(self.done / elapsed)} {self.unit}/s)" if elapsed > 0 and self.done else ""
            what = "done" if exc_type is None else "stopped"
            self._print(f"{self.description}: {what}, {self.done}{self._of_total()} {self.unit} in "
                        f"{_clock(elapsed)}{rate}{self._fields()}")

    # ------------------------------------------------------------------ updates
    def update(self, advance: int = 1, **fields) -> None:
        self.done += int(advance)
        self.fields.update(fields)
        if self.mode == "bar":
            shown = {k: _value(v) for k, v in fields.items()}
            self._bar.update(self._task, advance=advance, **shown)
        elif self.mode == "lines":
            now = self._clock()
            since = now - self._last
            fraction = self.done / self.total if self.total else 0.0
            crossed = self.total is not None and fraction >= self._next_fraction and self.done < self.total
            if since >= self.every_s or (crossed and since >= self.min_interval_s):
                self._last = now
                self._print(self._line(now))
            if crossed:
                while self._next_fraction <= fraction:
                    self._next_fraction += self.every_fraction

    __call__ = update

    # ------------------------------------------------------------------ output
    def _line(self, now: float) -> str:
        elapsed = now - self._t0
        parts = [f"{self.description}: {self.done}{self._of_total()} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        text = parts[0] + self._fields()
        if elapsed > 0 and self.done:
            rate = self.done / elapsed
            text += f", {_rate(rate)} {self.unit}/s"
            if self.total:
                text += f", ETA {_clock(max(self.total - self.done, 0) / rate)}"
        return text

    def _of_total(self) -> str:
        return "" if self.total is None else f"/{self.total}"

    def _fields(self) -> str:
        return "".join(f", {k} {_value(v)}" for k, v in self.fields.items())

    def _print(self, text: str) -> None:
        print(text, file=self._file, flush=True)

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   *([TextColumn("loss {task.fields[loss]}")] if self.show_loss else []),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        self._bar = Progress(*columns, console=Console(file=self._file), transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.description, total=self.total, loss="-")


def progress(total: int | None, description: str, **options) -> ProgressReporter:
    """A :class:`ProgressReporter` (use it as a context manager; it is its own ``update``)."""
    return ProgressReporter(total, description, **options)
