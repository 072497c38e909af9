"""Where a capture's bytes come from: memory or a regular file, handed out in windows.

:class:`Source` gives :class:`~trafficgen.data.flows.pcap_format.RecordStream` windows of about
``chunk`` bytes that start where the previous one's complete records ended; from a file, each
window is read straight into a new buffer, so the file never sits in memory whole. Only regular
files are opened (a device such as ``/dev/zero``, a FIFO or a socket raises
:class:`~trafficgen.errors.PcapError` at once instead of reading forever or blocking).
"""
from __future__ import annotations

import mmap
import os
import stat
from dataclasses import dataclass

from trafficgen.errors import PcapError

_MMAP_MIN = 4 << 20  # load(): files from 4 MiB on are memory-mapped


@dataclass
class Window:
    buf: bytes | bytearray | mmap.mmap  # the bytes at hand
    start: int  # where the walk resumes in buf
    limit: int  # records must end at or before buf[limit]
    base: int  # file offset of buf[0]
    eof: bool  # limit is the end of the file


class Source:
    """A capture's bytes handed out in windows: from memory (``data``) or read from the file."""

    def __init__(self, path: str, data, chunk_bytes: int | None):
        self.path = path
        self.chunk = chunk_bytes
        self.fh = None
        if data is not None:
            self.mem = data
            self.size = len(data)
        else:
            self.fh, self.size = open_regular(path)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def _read(self, n: int, head: bytes = b"") -> tuple[bytearray, int]:
        """(``head`` + up to ``n`` bytes read into one new buffer, bytes read): the kernel copies
        straight into the buffer."""
        buf = bytearray(len(head) + n)
        buf[: len(head)] = head
        got, view = 0, memoryview(buf)
        try:
            while got < n:  # a regular file returns short reads only at its end
                k = self.fh.readinto(view[len(head) + got:])
                if not k:
                    break
                got += k
        except OSError as exc:
            raise PcapError(f"cannot read capture ({exc.strerror or exc})", path=self.path) from exc
        finally:
            view.release()
        if got < n:
            del buf[len(head) + got:]
        return buf, got

    def first(self) -> Window:
        return self.seek(0)

    def seek(self, offset: int) -> Window:
        """The window starting at file ``offset``."""
        if self.fh is None:
            end = self.size if self.chunk is None else min(offset + self.chunk, self.size)
            return Window(self.mem, offset, end, 0, end >= self.size)
        self.fh.seek(offset)
        want = self._want(offset, self.chunk)
        buf, got = self._read(want)
        return Window(buf, 0, got, offset, got < want)

    def advance(self, win: Window, pos: int, need: int = 0) -> Window:
        """The next window: the bytes of ``win`` from ``pos`` on, then at least ``chunk`` (and enough
        for a record of ``need`` bytes at ``pos``) new ones."""
        if self.fh is None:
            end = min(pos + max(self.chunk, need), self.size)
            return Window(self.mem, pos, end, 0, end >= self.size)
        rest = bytes(win.buf[pos:win.limit])  # less than one record
        want = self._want(win.base + win.limit, max(self.chunk, need - len(rest)))
        buf, got = self._read(want, rest)
        return Window(buf, 0, len(rest) + got, win.base + pos, got < want)

    def _want(self, offset: int, n: int | None) -> int:
        """Bytes to ask for at file ``offset``: ``n`` (None: all), but no more than the rest of the
        file and one byte (a short read then says "end of file" without another call)."""
        rest = max(self.size - offset, 0) + 1
        return rest if n is None else min(n, rest)


def open_regular(path):
    """(binary file object, size) of a regular file; anything else raises :class:`PcapError`.

    A device (``/dev/zero`` never ends), a FIFO (``open`` would block until a writer appears) or a
    socket is refused. The file is opened non-blocking so that the check itself cannot hang; for a
    regular file the flag changes nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError, TypeError) as exc:
        raise PcapError(f"cannot read capture ({getattr(exc, 'strerror', None) or exc})", path=str(path)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PcapError(f"not a regular file ({_file_kind(st.st_mode)}); give a pcap/pcapng file",
                            path=str(path))
        fh = os.fdopen(fd, "rb", buffering=0)  # windows are read straight into their buffers
        fd = -1  # owned by fh now
        return fh, st.st_size
    except OSError as exc:
        raise PcapError(f"cannot read capture ({exc.strerror or exc})", path=str(path)) from exc
    finally:
        if fd >= 0:
            os.close(fd)


def load(path) -> bytes | mmap.mmap:
    """The whole file's bytes (regular files only); large files are memory-mapped read-only."""
    fh, size = open_regular(path)
    try:
        with fh:
            if size < _MMAP_MIN:
                return fh.read()
            populate = getattr(mmap, "MAP_POPULATE", 0)  # Linux: fault all pages in at once
            if populate and hasattr(mmap, "MAP_SHARED"):
                return mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ)
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise PcapError(f"cannot read capture ({getattr(exc, 'strerror', None) or exc})", path=str(path)) from exc


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"
