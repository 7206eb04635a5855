"""The locked atomic writer: every file taxdata writes goes through :class:`DataDir`.

A write is a temp file in the same directory, flushed and fsynced, then ``os.replace``d over the
target: a reader (or a crash) sees the old file or the new one, never half of one. Writers of one
path are serialised by a per-path thread lock (cheap, in-process) plus a lock file in ``.locks/``
(other processes; :mod:`taxdata.store.locks`). Paths are confined to the data directory.

One script run at a time per data directory: :meth:`DataDir.acquire_run_lock` takes
``.locks/run.lock`` (:class:`~taxdata.store.locks.RunLock`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from taxdata.errors import DataError
from taxdata.store import confined, strictjson
from taxdata.store.locks import (
    LOCK_DIR,
    LOCK_SUFFIX,
    RUN_LOCK,
    DataDirError,
    LockFile,
    acquire_run_lock,
    pid_alive,
    release_run_lock,
)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_TEMP_SUFFIX = ".tmp"


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it where the kernel says it (Linux >= 4.7);
    elsewhere os.umask is the only way to read it (set and put back at once, on first use)."""
    with contextlib.suppress(OSError, ValueError), \
            open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class UnsafePathError(DataError):
    """A path or slug would escape the data directory."""


def check_slug(slug: str) -> str:
    """Return ``slug`` if it is a plain lowercase name usable as a file name, else raise."""
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise UnsafePathError(
            f"unsafe name {slug!r}: use lowercase letters, digits, '_' or '-' only")
    return slug


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp + fsync + rename); no temp file survives an
    error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp makes the file 0600: keep the target's mode, or what open() would give a new file.
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
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
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
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

    def _locks(self, target: Path) -> tuple[threading.Lock, LockFile]:
        with self._guard:
            lock = self._thread_locks.setdefault(target, threading.Lock())
        rel = target.relative_to(self.root).as_posix().replace("/", "__")
        return lock, LockFile(self.root / LOCK_DIR / f"{rel}{LOCK_SUFFIX}", self.root)

    # -- before any work -------------------------------------------------------------------
    def check_writable(self) -> None:
        """Prove the directory takes files: create (if needed), write, fsync and remove a file.

        A mode check is not enough (read-only mounts, ACLs, root-squashed NFS, a full disk).
        Raises :class:`DataDirError` with one line.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise DataDirError(f"data directory {self.root} is a file, not a directory") from None
        except OSError as exc:
            raise DataDirError(f"cannot create data directory {self.root}: "
                               f"{exc.strerror or exc}") from None
        if not self.root.is_dir():
            raise DataDirError(f"data directory {self.root} is not a directory")
        try:
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=f".write-test.{os.getpid()}.",
                                         suffix=_TEMP_SUFFIX)
        except OSError as exc:
            raise DataDirError(f"data directory {self.root} is not writable: "
                               f"{exc.strerror or exc}") from None
        try:
            os.write(fd, b"taxdata write test\n")
            os.fsync(fd)
        except OSError as exc:
            raise DataDirError(f"data directory {self.root} is not writable: "
                               f"{exc.strerror or exc}") from None
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

    def acquire_run_lock(self, what: str) -> None:
        """One run at a time here: take the run lock (released by :meth:`release_run_lock`,
        or by the kernel when the process dies), else raise :class:`RunLocked`.

        Held per process: a second DataDir on the same root in this process shares it.
        """
        acquire_run_lock(self.root, what)

    def release_run_lock(self) -> None:
        release_run_lock(self.root)

    def write_new_text(self, stem: str, suffix: str, text: str) -> Path:
        """Write ``text`` to a file name nobody else has: ``stem+suffix``, else ``stem-2+suffix``...

        The name is claimed with an exclusive create (O_EXCL), so two runs started in the same
        second can never pick the same name; the content then replaces it atomically.
        """
        number = 1
        while True:
            relpath = f"{stem}{suffix}" if number == 1 else f"{stem}-{number}{suffix}"
            target = self.path(relpath)
            try:  # O_EXCL: never through a symlink, never a name another run claimed
                dir_fd, fd = confined.open_file(self.root, relpath,
                                                os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                number += 1
                continue
            os.close(fd)
            os.close(dir_fd)
            try:
                confined.write_atomic(self.root, relpath, text.encode("utf-8"),
                                      umask=_umask())
            except BaseException:
                with contextlib.suppress(OSError):
                    confined.unlink(self.root, relpath)
                raise
            return target

    # -- text ------------------------------------------------------------------------------
    def write_text(self, relpath: str | Path, text: str) -> Path:
        """Atomically replace ``relpath`` with ``text`` (UTF-8), under the path's locks."""
        return self.write_bytes(relpath, text.encode("utf-8"))

    def write_bytes(self, relpath: str | Path, data: bytes) -> Path:
        """Atomically replace ``relpath`` with ``data``, under the path's locks, through
        directories opened without following symlinks (:mod:`taxdata.store.confined`)."""
        target = self.path(relpath)
        thread_lock, file_lock = self._locks(target)
        with thread_lock, file_lock:
            confined.write_atomic(self.root, target.relative_to(self.root), data,
                                  umask=_umask())
        return target

    def read_text(self, relpath: str | Path) -> str | None:
        """The file's text, or None when it does not exist; ValueError if it is not UTF-8."""
        target = self.path(relpath)
        try:
            return target.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except UnicodeDecodeError as exc:
            raise ValueError(f"{target}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
                             f"offset {exc.start})") from None
        except IsADirectoryError:
            raise ValueError(f"{target}: is a directory, not a file") from None

    # -- JSON ------------------------------------------------------------------------------
    def read_json(self, relpath: str | Path, default: Any = None) -> Any:
        text = self.read_text(relpath)
        if text is None:
            return default
        try:  # nesting bounded, NaN refused: one line, never a RecursionError
            return strictjson.loads(text, duplicates=True)
        except strictjson.JSONProblem as exc:
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
            confined.write_atomic(self.root, target.relative_to(self.root),
                                  dump_json(new).encode("utf-8"), umask=_umask())
            return new

    # -- housekeeping ----------------------------------------------------------------------
    def sweep_stale_temps(self) -> list[Path]:
        """Remove temp files left by writers that crashed (their process is gone); returns them.

        Lock files those writers left in ``.locks/`` are removed too (a free lock is stale).
        """
        removed = []
        if not self.root.is_dir():
            return removed
        for tmp in self.root.rglob(f".*{_TEMP_SUFFIX}"):
            match = re.match(r"^\..+\.(\d+)\.[^.]+\.tmp$", tmp.name)
            if match and not pid_alive(int(match.group(1))):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        # Per-path lock files of a killed writer: free ones are taken and so removed.
        lock_dir = self.root / LOCK_DIR
        if lock_dir.is_dir():
            for lock_path in lock_dir.glob(f"*{LOCK_SUFFIX}"):
                if lock_path.name == RUN_LOCK:
                    continue
                lock = LockFile(lock_path)
                if lock.acquire(blocking=False):
                    lock.release()
            with contextlib.suppress(OSError):
                lock_dir.rmdir()  # only when empty
        return removed


def dump_json(value: Any) -> str:
    """Stable formatting (2-space indent, trailing newline) for readable diffs.

    Keys keep their order: callers sort what should be sorted (countries by slug) and keep the
    calculator's field order inside a record.
    """
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


