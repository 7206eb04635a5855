"""The locked atomic writer: every file taxdata writes goes through :class:`DataDir`.

A write is a temp file in the same directory, flushed and fsynced, then ``os.replace``d over the
target: a reader (or a crash) sees the old file or the new one, never half of one. Writers of one
path are serialised by a per-path thread lock (cheap, in-process) plus a ``filelock`` lock (other
processes, e.g. two scripts run at once). Paths are confined to the data directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TEMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it) ...
os.umask(_UMASK)  # ... and put back at once


class UnsafePathError(ValueError):
    """A path or slug would escape the data directory."""


def check_slug(slug: str) -> str:
    """Return ``slug`` if it is a plain lowercase name usable as a file name, else raise."""
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise UnsafePathError(
            f"unsafe name {slug!r}: use lowercase letters, digits, '_' or '-' only")
    return slug


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp + fsync + rename); no temp file survives an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file 0600: keep the target's mode, or what open() would give a new file.
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    # The pid in the name lets sweep_stale_temps() tell a crashed writer's leftovers from live ones.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


class DataDir:
    """A data directory: confined paths, atomic writes, locked read-modify-write of JSON."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._guard = threading.Lock()
        self._thread_locks: dict[Path, threading.Lock] = {}

    def __repr__(self) -> str:
        return f"DataDir({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------
    def path(self, *parts: str | Path) -> Path:
        """``root/parts...``, refusing anything that would land outside the root."""
        for part in parts:
            text = str(part)
            if not text or Path(text).is_absolute() or "\x00" in text:
                raise UnsafePathError(f"unsafe path {text!r}: must be relative to {self.root}")
            if any(piece == ".." for piece in re.split(r"[\\/]", text)):
                raise UnsafePathError(f"unsafe path {text!r}: '..' is not allowed")
        candidate = self.root.joinpath(*map(str, parts)).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise UnsafePathError(f"unsafe path {'/'.join(map(str, parts))!r}: outside {self.root}")
        return candidate

    def _locks(self, target: Path) -> tuple[threading.Lock, FileLock]:
        with self._guard:
            lock = self._thread_locks.setdefault(target, threading.Lock())
        rel = target.relative_to(self.root).as_posix().replace("/", "__")
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        return lock, FileLock(str(lock_dir / f"{rel}.lock"))

    # -- text ------------------------------------------------------------------------------
    def write_text(self, relpath: str | Path, text: str) -> Path:
        """Atomically replace ``relpath`` with ``text`` (UTF-8), under the path's locks."""
        target = self.path(relpath)
        thread_lock, file_lock = self._locks(target)
        with thread_lock, file_lock:
            atomic_write_bytes(target, text.encode("utf-8"))
        return target

    def read_text(self, relpath: str | Path) -> str | None:
        """The file's text, or None when it does not exist."""
        try:
            return self.path(relpath).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    # -- JSON ------------------------------------------------------------------------------
    def read_json(self, relpath: str | Path, default: Any = None) -> Any:
        text = self.read_text(relpath)
        if text is None:
            return default
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path(relpath)}: not valid JSON ({exc})") from None

    def update_json(self, relpath: str | Path, update: Callable[[Any], Any],
                    default: Any = None) -> Any:
        """Read-modify-write a JSON file as one locked step; returns what was written.

        ``update`` gets the current value (``default`` when the file is missing) and returns the
        new one. Concurrent updaters in threads or processes never lose each other's changes.
        """
        target = self.path(relpath)
        thread_lock, file_lock = self._locks(target)
        with thread_lock, file_lock:
            current = self.read_json(relpath, default)
            new = update(current)
            atomic_write_bytes(target, dump_json(new).encode("utf-8"))
            return new

    # -- housekeeping ----------------------------------------------------------------------
    def sweep_stale_temps(self) -> list[Path]:
        """Remove temp files left by writers that crashed (their process is gone)."""
        removed = []
        if not self.root.is_dir():
            return removed
        for tmp in self.root.rglob(f".*{_TEMP_SUFFIX}"):
            match = re.match(r"^\..+\.(\d+)\.[^.]+\.tmp$", tmp.name)
            if match and not _pid_alive(int(match.group(1))):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return removed


def dump_json(value: Any) -> str:
    """Stable formatting (2-space indent, trailing newline) for readable diffs.

    Keys keep their order: callers sort what should be sorted (countries by slug) and keep the
    calculator's field order inside a record.
    """
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
