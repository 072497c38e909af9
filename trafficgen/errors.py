"""Typed exceptions. Every error says which file, which offset or row, and what was expected."""
from __future__ import annotations


class TrafficgenError(Exception):
    """Base class of every error trafficgen raises on purpose."""


class InputFormatError(TrafficgenError, ValueError):
    """A file or array does not have the expected format.

    ``path`` and ``offset`` (byte offset, or row number for text formats) locate the problem.
    """

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None):
        self.path = None if path is None else str(path)
        self.offset = offset
        where = ""
        if self.path is not None:
            where = self.path
            if offset is not None:
                where += f" at offset {offset}"
            where += ": "
        super().__init__(where + message)


class PcapError(InputFormatError):
    """A capture file cannot be read (bad magic, truncated header, unsupported link type...)."""


class UnknownClassError(TrafficgenError, KeyError):
    """A class name that the model or data set does not know. The message lists the known ones."""

    def __init__(self, name: str, known):
        self.name = name
        self.known = sorted(map(str, known))
        super().__init__(f"unknown class {name!r}; known classes: {', '.join(self.known)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class NotFittedError(TrafficgenError, RuntimeError):
    """A generator or transformer was used before ``fit``."""


class ConfigError(TrafficgenError, ValueError):
    """An invalid hyper-parameter, preset or recipe entry."""
