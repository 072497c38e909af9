"""Small I/O helpers: write to a temporary name, rename on success (nothing half-written).

* :func:`check_output_path` - say before any work that an output path cannot be written (its
  folder is a file, a file is wanted where a folder is, ...), naming the user's path.
* :func:`atomic_path` - a temporary path next to the target, renamed onto it when the block
  succeeds. A folder replaces an older one by renames only (old -> backup, new -> target, drop
  the backup), so a kill at any moment leaves the old or the new folder. Temporaries and backups
  left by a killed process (``.<name>.<pid>.XXXXXXXX.tmp`` / ``.old``) are removed (a backup of
  a folder that is missing is put back) on the next write to the same target.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from trafficgen.errors import ConfigError

__all__ = ["atomic_path", "check_output_path", "clean_stale_temporaries"]

#: A temporary or backup without a pid in its name (written before pids were recorded) is stale
#: after this many seconds.
LEGACY_STALE_AFTER_S = 3600.0


def check_output_path(path: str | os.PathLike, kind: str | None = None) -> Path:
    """``path`` as a :class:`~pathlib.Path` if an output can be written there, else a
    :class:`~trafficgen.errors.ConfigError` naming it: a file on the way to it, a folder where
    a file is wanted (``kind="file"``) or a file where a folder is wanted (``kind="dir"``), a
    folder that cannot be written. Creates nothing."""
    if kind not in (None, "file", "dir"):
        raise ValueError(f"kind must be 'file', 'dir' or None, got {kind!r}")
    path = Path(path)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"cannot write {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"cannot write {path}: no permission to write in {parent}")
            break
    if kind == "file" and path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder; give a file name")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a file; give a folder name")
    return path


def _own_pattern(name: str) -> re.Pattern:
    """Our temporaries of target ``name``: ``.<name>.[<pid>.]XXXXXXXX.tmp`` and ``.old`` backups."""
    return re.compile(rf"^\.{re.escape(name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.(tmp|old)$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:  # pragma: no cover
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove what killed writers of ``path`` left next to it (our naming only); a backup of a
    folder whose replacement never arrived is renamed back to ``path``. Returns what was removed
    or restored. A temporary whose writer is still running is left alone."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return []
    pattern = _own_pattern(path.name)
    done = []
    now = time.time()
    for entry in sorted(parent.iterdir()):
        m = pattern.match(entry.name)
        if m is None:
            continue
        pid = None if m.group(1) is None else int(m.group(1))
        try:
            age = now - entry.lstat().st_mtime
        except FileNotFoundError:  # removed meanwhile
            continue
        if pid is not None and _pid_alive(pid) or pid is None and age < LEGACY_STALE_AFTER_S:
            continue
        if m.group(2) == "old" and not path.exists() and not path.is_symlink():
            os.replace(entry, path)  # the swap was killed between its two renames
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        done.append(entry)
    return done


def _sibling(path: Path, suffix: str) -> Path:
    """A fresh unused name ``.<name>.<pid>.XXXXXXXX.<suffix>`` next to ``path`` (reserved by
    creating and removing a file, as :func:`tempfile.mkstemp` does)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f".{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, kind: str | None = None):
    """Yield a temporary path next to ``path``; rename it to ``path`` only if the block succeeds.

    Works for files and for directories (the block may create either at the temporary path).
    ``kind`` ("file" / "dir") checks the target before the block runs (:func:`check_output_path`);
    errors name ``path``, never the temporary.
    """
    path = check_output_path(path, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp = _sibling(path, "tmp")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written for {path}")
        if tmp.is_dir() and not tmp.is_symlink():
            if path.exists() and not path.is_dir():
                raise ConfigError(f"cannot write {path}: it is a file; give a folder name")
            if path.is_dir():
                backup = _sibling(path, "old")
                os.replace(path, backup)  # 1. old -> backup
                os.replace(tmp, path)  # 2. new -> target (a kill before this: the next write restores)
                shutil.rmtree(backup, ignore_errors=True)  # 3. drop the backup
            else:
                os.replace(tmp, path)
        else:
            if path.is_dir():
                raise ConfigError(f"cannot write {path}: it is a folder; give a file name")
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()
