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

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # .locks/ was just removed as empty: make it again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return False
                raise
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                return True
            os.close(fd)  # the holder before us removed it: lock the current file instead

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still locked: nobody can be holding the new one
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "LockFile":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunLock:
    """The data directory's one-run-at-a-time lock (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_DIR / RUN_LOCK
        self._lock = LockFile(self.path)

    @property
    def held(self) -> bool:
        return self._lock.fd is not None

    def acquire(self, what: str) -> None:
        """Take the lock or raise :class:`RunLocked` naming the holder; never waits."""
        if self.held:
            return
        try:
            got = self._lock.acquire(blocking=False)
        except OSError as exc:
            raise DataDirError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        if not got:
            raise RunLocked(f"{self.path.parent.parent} is in use by "
                            f"{_describe_holder(self.path)}; wait for it to finish "
                            "(one run at a time per data directory)")
        previous = _read_holder(self._lock.fd)
        if previous.get("pid") and not pid_alive(int(previous["pid"])):
            # flock died with its process; only the file (and this note) outlived it.
            from taxdata.log import logger  # log imports nothing of the store, but load it late
            logger.warning("[LOCK] taking over the lock of %s (PID %s, started %s), which ended "
                           "without releasing it", previous.get("what", "a run"),
                           previous["pid"], previous.get("started", "?"))
        holder = {"pid": os.getpid(), "what": what,
                  "started": now_utc()}
        data = (json.dumps(holder) + "\n").encode()
        os.ftruncate(self._lock.fd, 0)
        os.pwrite(self._lock.fd, data, 0)

    def release(self) -> None:
        if self.held:
            self._lock.release()
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only when empty: leave no trace of the run


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 4096, 0)
        holder = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe_holder(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return "another run"
    try:
        holder = _read_holder(fd)
    finally:
        os.close(fd)
    if not holder:
        return "another run (it is starting)"
    return (f"{holder.get('what', 'another run')} (PID {holder.get('pid', '?')}, "
            f"started {holder.get('started', '?')})")


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
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
