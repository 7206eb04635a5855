"""Locks in ``<data dir>/.locks/``: one run at a time per data directory, one writer per file.

:class:`RunLock` is ``.locks/run.lock``, a kernel ``flock`` (so a killed run's lock is free at
once) holding the holder's PID and start time, which a second run names when it stops.
:class:`LockFile` is the per-path lock :class:`~taxdata.store.datadir.DataDir` takes around a
write (other processes); its holder removes it on release, so ``.locks/`` never fills up.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from taxdata.errors import DataError
from taxdata.store.confined import SymlinkRefused, open_file
from taxdata.timestamps import now_utc


class DataDirError(DataError):
    """The data directory cannot be used (not a directory, not writable); one line, exit 2."""


class RunLocked(DataDirError):
    """Another script is running on the same data directory; the message names it."""


LOCK_DIR = ".locks"
RUN_LOCK = "run.lock"
LOCK_SUFFIX = ".lock"


class LockFile:
    """An exclusive ``flock`` on a file that the holder deletes when it releases it.

    Deleting on release keeps ``.locks/`` empty, but a waiter may then hold a lock on the deleted
    file while a newcomer locks a new one at the same path. So after locking, the holder checks
    that the path still names the file it locked, and starts over if it does not. (filelock's
    UnixFileLock keeps its files for exactly this reason; this is the classic fix.)
    """

    def __init__(self, path: Path, root: Path | None = None) -> None:
        self.path = path
        # The data directory: the lock is opened below it without following a symlink
        # (taxdata.store.confined), so a planted .locks -> /etc cannot make us write there.
        self.root = root if root is not None else path.parent.parent
        self.relpath = path.relative_to(self.root).as_posix()
        self.fd: int | None = None
        self._dir_fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        while True:
            try:
                dir_fd, fd = open_file(self.root, self.relpath, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # .locks/ was just removed as empty: make it again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as exc:
                os.close(fd)
                os.close(dir_fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise
            try:
                same = os.stat(self.path.name, dir_fd=dir_fd, follow_symlinks=False
                               ).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd, self._dir_fd = fd, dir_fd
                return True
            os.close(fd)  # the holder before us removed it: lock the current file instead
            os.close(dir_fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            # While still locked: nobody can be holding the new one. Through the directory
            # that was checked when the lock was taken.
            os.unlink(self.path.name, dir_fd=self._dir_fd)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        if self._dir_fd is not None:
            os.close(self._dir_fd)
        self.fd = self._dir_fd = None

    def __enter__(self) -> "LockFile":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunLock:
    """The data directory's one-run-at-a-time lock (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_DIR / RUN_LOCK
        self._lock = LockFile(self.path, root)

    @property
    def held(self) -> bool:
        return self._lock.fd is not None

    def acquire(self, what: str) -> None:
        """Take the lock or raise :class:`RunLocked` naming the holder; never waits."""
        if self.held:
            return
        try:
            got = self._lock.acquire(blocking=False)
        except SymlinkRefused as exc:
            raise DataDirError(f"cannot lock {self.path}: {exc}") from None
        except OSError as exc:
            raise DataDirError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        if not got:
            raise RunLocked(f"{self.path.parent.parent} is in use by "
                            f"{_describe_holder(self.path)}; wait for it to finish "
                            "(one run at a time per data directory)")
        previous = _read_holder(self._lock.fd)
        if holder_pid(previous) and not pid_alive(holder_pid(previous)):
            # flock died with its process; only the file (and this note) outlived it.
            from taxdata.log import logger  # log imports nothing of the store, but load it late
            logger.warning("[LOCK] taking over the lock of %s (PID %s, started %s), which ended "
                           "without releasing it", _note(previous.get("what"), "a run"),
                           holder_pid(previous), _note(previous.get("started"), "?"))
        holder = {"pid": os.getpid(), "what": what,
                  "started": now_utc()}
        data = (json.dumps(holder) + "\n").encode()
        try:
            os.ftruncate(self._lock.fd, 0)
            os.pwrite(self._lock.fd, data, 0)
        except OSError as exc:  # a full disk: the flock holds without its note
            from taxdata.log import logger
            logger.warning("[LOCK] cannot write the holder's note into %s: %s", self.path,
                           exc.strerror or exc)

    def release(self) -> None:
        if self.held:
            self._lock.release()
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only when empty: leave no trace of the run


def holder_pid(holder: dict[str, Any]) -> int | None:
    """The holder's PID if its note has a usable one (a note is only a hint: ``"abc"``, a
    20-digit number or a negative one is no PID)."""
    pid = holder.get("pid")
    if isinstance(pid, str) and pid.isascii() and pid.isdigit() and len(pid) <= 10:
        pid = int(pid)
    if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31:
        return pid
    return None


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        holder = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError, RecursionError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe_holder(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return "another run"
    try:
        holder = _read_holder(fd)
    finally:
        os.close(fd)
    if not holder:
        return "another run (it is starting)"
    return (f"{_note(holder.get('what'), 'another run')} (PID {holder_pid(holder) or '?'}, "
            f"started {_note(holder.get('started'), '?')})")


def _note(value: Any, default: str) -> str:
    """A field of the holder's note as a message shows it: text, one line, short."""
    if not isinstance(value, str) or not value.strip():
        return default
    return " ".join(value.split())[:80]


_HELD_RUN_LOCKS: dict[Path, RunLock] = {}
_HELD_GUARD = threading.Lock()


def acquire_run_lock(root: Path, what: str) -> None:
    """Take ``root``'s run lock for this process (once; a second call is a no-op), or raise
    :class:`RunLocked`. Released by :func:`release_run_lock`, or by the kernel when the process
    dies."""
    with _HELD_GUARD:
        if root in _HELD_RUN_LOCKS:
            return
        lock = RunLock(root)
        lock.acquire(what)
        _HELD_RUN_LOCKS[root] = lock


@contextlib.contextmanager
def run_lock_scope() -> Iterator[None]:
    """Release, on the way out, the run locks taken inside the block (usable as a decorator).

    A pipeline called from Python holds its data directory only while it runs, as a program
    does (``cli.common.run_main`` releases its locks on exit too).
    """
    with _HELD_GUARD:
        before = set(_HELD_RUN_LOCKS)
    try:
        yield
    finally:
        with _HELD_GUARD:
            taken = [root for root in _HELD_RUN_LOCKS if root not in before]
        for root in taken:
            release_run_lock(root)


def release_run_lock(root: Path) -> None:
    with _HELD_GUARD:
        lock = _HELD_RUN_LOCKS.pop(root, None)
    if lock is not None:
        lock.release()


def release_run_locks() -> None:
    """Release every run lock this process holds (the scripts call it on the way out)."""
    with _HELD_GUARD:
        locks = list(_HELD_RUN_LOCKS.values())
        _HELD_RUN_LOCKS.clear()
    for lock in locks:
        lock.release()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (ours counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:
        return True
    return True
