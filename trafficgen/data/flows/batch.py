"""Running the one-capture reader over many captures: in this process or in worker processes.

:func:`run_captures` calls ``task(path)`` for every capture and returns the results *in file order*
whatever order the workers finish in, so ``read_pcaps(..., jobs=N)`` gives the same FlowSet, bit
for bit, for every N. This process reads captures too, beside ``N - 1`` worker processes started
by :func:`start_method`: on Linux, while no other Python thread runs, by ``fork`` (a worker is
ready in milliseconds and imports nothing); otherwise by ``spawn`` (a fresh interpreter that
imports numpy and the reader first, ~0.15-0.25 s of CPU): with Python threads running (``fork``
could copy a lock another thread holds), on macOS (system libraries are not fork-safe) and on
Windows. The task must be a picklable top-level function (or a ``functools.partial`` of one), and
a script that calls ``read_pcaps(jobs=N)`` at import time needs the usual
``if __name__ == "__main__":`` guard (spawned workers import the script).
Captures are handed out largest first so that one big capture does not finish last alone.

Progress (:class:`IngestProgress`) counts megabytes of captures read, through
:class:`trafficgen._progress.ProgressReporter` (a bar on a terminal, plain lines in a log). It
appears only from a second after the first report on (not counting the start of worker
processes), so a quick ingest, or one that fails at once, prints nothing but its result.
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from trafficgen.errors import ConfigError, TrafficgenError

#: Seconds of work (from the first report on) before ingest progress appears.
PROGRESS_DELAY_S = 1.0


class TaskFailure:
    """A task's expected failure, returned (not raised) so that the caller decides in file order."""

    def __init__(self, error: Exception):
        self.error = error


def check_jobs(jobs) -> int:
    """``jobs`` as a worker count: an int >= 1, or 0 for one per CPU core."""
    try:
        n = int(jobs)
    except (TypeError, ValueError):
        raise ConfigError(f"jobs must be an integer >= 0 (0: one per CPU core), got {jobs!r}") from None
    if n != jobs or n < 0:
        raise ConfigError(f"jobs must be an integer >= 0 (0: one per CPU core), got {jobs!r}")
    return n or (os.cpu_count() or 1)


def file_size(path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def start_method() -> str:
    """How worker processes start: ``"fork"`` on Linux while no other Python thread runs, else
    ``"spawn"``.

    Without another Python thread no Python-level lock (logging, I/O buffers, imports) can be held
    by a thread that the child would not have. Native threads are allowed: numpy's OpenBLAS starts
    an idle pool at import (shut down and restarted around ``fork`` by its own ``pthread_atfork``
    handlers), and a worker only runs the reader (file reads, numpy element-wise work), never
    OpenMP or BLAS. Python 3.12+ warns about *any* thread at ``fork``; :class:`_Parallel`
    silences exactly that warning for this fork.
    """
    import threading

    return "fork" if sys.platform.startswith("linux") and threading.active_count() == 1 else "spawn"


def run_captures(task: Callable, files: Sequence[Path], *, jobs: int = 1, progress: IngestProgress | None = None,
                 stop_on_failure: bool = False) -> list:
    """``[task(path) for path in files]``, in ``jobs`` processes when ``jobs > 1`` (this one and
    ``jobs - 1`` workers).

    A :class:`TaskFailure` result with ``stop_on_failure`` ends the run: later captures are not
    started (or are cancelled) and the list ends with the first failure *in file order*. In this
    process, ``task`` is called with ``on_window=`` (bytes of the capture done, for progress).
    """
    sizes = [file_size(f) for f in files]
    if jobs <= 1 or len(files) < 2:
        out, done = [], 0
        for path, size in zip(files, sizes, strict=True):
            def on_window(b, _done=done):
                if progress is not None:
                    progress.set(_done + b, len(out))
            res = task(path, on_window=on_window)
            out.append(res)
            done += size
            if progress is not None:
                progress.set(done, len(out))
            if stop_on_failure and isinstance(res, TaskFailure):
                break
        return out
    return _Parallel(task, files, sizes, min(jobs, len(files)), progress, stop_on_failure).run()


class _Parallel:
    """``jobs`` processes: this one reads captures too, ``jobs - 1`` workers read the others.

    Captures are taken largest first from one list, by this process whenever it is free and for
    each worker when it is done (checked after every window this process reads, about every 10 ms),
    so no process idles long while captures are left and only ``jobs - 1`` interpreters start.
    """

    def __init__(self, task, files, sizes, jobs, progress, stop_on_failure):
        self.task, self.files, self.sizes = task, files, sizes
        self.progress, self.stop_on_failure = progress, stop_on_failure
        self.workers = jobs - 1
        self.order = sorted(range(len(files)), key=lambda i: (-sizes[i], i))
        self.next = 0
        self.results: list = [None] * len(files)
        self.first_failure = len(files)
        self.done_bytes = self.done_files = 0
        self.partial = 0  # bytes done of the capture this process is reading
        self.pending: dict = {}  # future -> capture index

    def run(self) -> list:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        self.method = start_method()
        self.ex = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context(self.method))
        try:
            with warnings.catch_warnings():  # the first submit starts the workers (all at once with fork)
                warnings.filterwarnings("ignore", r"This process .* is multi-threaded, use of fork\(\)",
                                        DeprecationWarning)
                self._pump()
            while True:
                i = self._take()
                if i is None:
                    break
                res = self.task(self.files[i], on_window=self._on_window)
                self.partial = 0
                self._finished(i, res)
                self._pump()
            while self.pending:
                wait(self.pending, return_when=FIRST_COMPLETED)
                self._pump()
        finally:
            self.ex.shutdown(wait=True, cancel_futures=True)
        n = len(self.files)
        return self.results[: self.first_failure + 1] if self.first_failure < n else self.results

    def _on_window(self, bytes_done: int) -> None:
        self.partial = bytes_done
        self._pump()
        self._report()

    def _take(self) -> int | None:
        while self.next < len(self.order):
            i = self.order[self.next]
            self.next += 1
            if i < self.first_failure:  # after a failure only earlier captures still matter
                return i
        return None

    def _pump(self) -> None:
        """Collect the workers' finished captures; give each idle worker the next one."""
        from concurrent.futures.process import BrokenProcessPool

        for fut in [f for f in self.pending if f.done()]:
            i = self.pending.pop(fut)
            if fut.cancelled():
                continue
            try:
                res = fut.result()
            except BrokenProcessPool as exc:
                why = ("out of memory (use fewer jobs) or killed" if self.method == "fork" else
                       "out of memory (use fewer jobs), killed, or a script that calls read_pcaps(jobs=...) "
                       "outside an 'if __name__ == \"__main__\":' block (spawned workers import the script)")
                raise TrafficgenError(f"a worker process stopped while reading {self.files[i]}: {why}") from exc
            self._finished(i, res)
        while len(self.pending) < self.workers:
            i = self._take()
            if i is None:
                break
            self.pending[self.ex.submit(self.task, self.files[i])] = i

    def _finished(self, i: int, res) -> None:
        self.results[i] = res
        self.done_bytes += self.sizes[i]
        self.done_files += 1
        self._report()
        if self.stop_on_failure and isinstance(res, TaskFailure) and i < self.first_failure:
            self.first_failure = i
            for f, j in list(self.pending.items()):
                if j > i and f.cancel():
                    self.pending.pop(f)

    def _report(self) -> None:
        if self.progress is not None:
            self.progress.set(self.done_bytes + self.partial, self.done_files)


class IngestProgress:
    """Megabytes of captures read, shown through :class:`~trafficgen._progress.ProgressReporter`
    from ``delay_s`` seconds after the first report on (in worker processes a capture reports when
    it is done)."""

    def __init__(self, total_bytes: int, n_files: int, *, enabled: bool = True, delay_s: float | None = None,
                 clock=time.monotonic):
        self.total = max(1, math.ceil(total_bytes / 1e6))
        self.n_files = n_files
        self.enabled = enabled
        self.delay_s = PROGRESS_DELAY_S if delay_s is None else delay_s
        self._clock = clock
        self._reporter = None
        self._mb = 0
        self._files = 0

    def __enter__(self) -> IngestProgress:
        self._t0 = None  # the first report: worker start-up (about a second with jobs > 1) is not counted
        return self

    def set(self, bytes_done: int, files_done: int) -> None:
        if not self.enabled:
            return
        self._mb, self._files = max(self._mb, min(int(bytes_done // 1e6), self.total)), files_done
        if self._reporter is None:
            now = self._clock()
            self._t0 = now if self._t0 is None else self._t0
            if now - self._t0 < self.delay_s:
                return
            from trafficgen._progress import ProgressReporter

            self._reporter = ProgressReporter(self.total, "ingest", unit="MB", clock=self._clock).__enter__()
        self._reporter.update(self._mb - self._reporter.done, captures=f"{self._files}/{self.n_files}")

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._reporter is not None:
            if exc_type is None:
                self._reporter.update(self.total - self._reporter.done, captures=f"{self._files}/{self.n_files}")
            self._reporter.__exit__(exc_type, exc, tb)
