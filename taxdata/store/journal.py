"""An append-only journal of finished work: what a killed run had finished, for the next start.

The updater writes one JSON line per finished country and fsyncs it, so each result is on disk
as soon as it is known, at a cost that does not grow with the size of the dataset (rewriting
``tax_data.json`` after every country did: quadratic in the run). The whole files are rewritten
now and then and at the end; the journal is removed once they are, so a journal that is still
there at the next start means the last run did not finish its writes: replay it.

Each append is written at once by the caller (one ``write`` of a whole line: once it returns,
the line survives a kill of the process, so the run logs ``[COMPLETED]`` only after it), and a
writer thread fsyncs whatever has been written since its last fsync, so 16 workers finishing
together cost one fsync, not 16 in a row on the thread that collects results.
:meth:`Journal.flush` waits until every line is fsynced. A write that fails (a full disk) is cut
back to the last whole line, so the file never holds half a line followed by more; the error is
raised to the caller, and every later append raises it again.

A kill can still cut the last line short; :func:`read_journal` keeps such a torn last line
apart (that country was not finished as far as the file is concerned).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from taxdata.store import strictjson
from taxdata.store.confined import open_file, unlink

GROUP_WINDOW = 0.002  # seconds the writer gathers lines before one fsync for all of them


class Journal:
    """One run's journal file, opened for appending; see the module docstring."""

    def __init__(self, path: Path, root: Path | None = None) -> None:
        self.path = path
        self.root = root if root is not None else path.parent  # opened below it, no symlinks
        self._relpath = path.relative_to(self.root).as_posix()
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._cond = threading.Condition(threading.Lock())  # never taken twice by one thread
        self._written = 0  # lines written so far
        self._durable = 0  # lines written and fsynced so far
        self._size = 0  # bytes of whole lines in the file
        self._error: OSError | None = None
        self._writer: threading.Thread | None = None
        self._since_clear: list[tuple[str | None, bytes]] = []  # (key, line) since clear()
        self._idle = False  # the writer waits for lines to fsync

    def open(self) -> "Journal":
        self._dir_fd, self._fd = open_file(self.root, self._relpath,
                                           os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        with contextlib.suppress(OSError):  # the journal's existence is a fact for the next start
            os.fsync(self._dir_fd)
        self._writer = threading.Thread(target=self._fsync_loop, name="journal-writer",
                                        daemon=True)
        self._writer.start()
        return self

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    @property
    def size(self) -> int:
        """Bytes of whole lines in the file."""
        with self._cond:
            return self._size

    @property
    def lines(self) -> int:
        """Whole lines in the file (written since it was opened or last cleared)."""
        with self._cond:
            return len(self._since_clear)

    def append(self, entry: dict[str, Any]) -> None:
        """Write one entry (one JSON line) now; the writer thread fsyncs it. Raises OSError if
        this or an earlier write failed (the file then ends with the last whole line)."""
        self.append_line(json.dumps(entry, ensure_ascii=False, separators=(",", ":")))

    def append_line(self, text: str | bytes, key: str | None = None) -> None:
        """:meth:`append` for an entry already encoded as one line of JSON (no newline; str or
        UTF-8); thread-safe. ``key`` names the entry for :meth:`clear`."""
        line = (text if isinstance(text, bytes) else text.encode("utf-8")) + b"\n"
        with self._cond:
            if self._fd is None:
                raise ValueError("journal is not open")
            if self._error is not None:
                raise self._error
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:  # e.g. disk full: cut back to the last whole line
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                self._error = exc
                self._cond.notify_all()
                raise
            self._size += len(line)
            self._written += 1
            self._since_clear.append((key, line))
            if self._idle:  # wake the writer only when it sleeps (one wake per fsync, not line)
                self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every entry appended so far is fsynced."""
        with self._cond:
            target = self._written
            while self._durable < target and self._error is None:
                self._cond.notify_all()
                self._cond.wait(0.05)
            if self._error is not None:
                raise self._error

    def _fsync_loop(self) -> None:
        while True:
            with self._cond:
                while self._durable == self._written and self._fd is not None:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                if self._fd is None:
                    return
            time.sleep(GROUP_WINDOW)  # the lines written meanwhile share this fsync
            with self._cond:
                if self._fd is None:
                    return
                target, fd = self._written, self._fd
            try:
                os.fsync(fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._durable = max(self._durable, target)
                self._cond.notify_all()

    def clear(self, done: set[str] | None = None) -> None:
        """Forget the entries the whole files now hold (those keyed in ``done``; None: all) and
        keep appending. Lines appended since by other threads for entries the files do not
        hold yet are written again, so none is lost."""
        if self._fd is None:
            return
        with self._cond:
            kept = [] if done is None else [(key, line) for key, line in self._since_clear
                                            if key not in done]
            os.ftruncate(self._fd, 0)
            data = b"".join(line for _, line in kept)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
            self._size, self._since_clear = len(data), kept
            self._durable = self._written

    def close(self) -> None:
        """Stop the writer and close the file, which stays (the next start replays it)."""
        if self._fd is None:
            return
        with self._cond:
            fd, self._fd = self._fd, None
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join()
        os.close(fd)
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def remove(self) -> None:
        """Close and delete: the run's files are complete and in step."""
        if self._fd is not None:
            self.flush()
        self.close()
        unlink(self.root, self._relpath)


def read_journal(path: Path) -> list[dict[str, Any]] | None:
    """The entries of a journal left behind, oldest first; None when there is no journal.

    A line that is not a JSON object (torn by a kill, or not ours) comes back as
    ``{"unreadable": why, "raw": its text}``, for the gate to quarantine.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read()
    entries = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = strictjson.loads(line)
        except strictjson.JSONProblem as exc:
            if number == len(lines):  # the last line, without its newline: torn by a kill
                continue
            entries.append({"unreadable": f"line {number}: {exc}",
                            "raw": line.decode("utf-8", errors="replace")})
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            entries.append({"unreadable": f"line {number}: a JSON {type(entry).__name__}, not "
                                          "an object", "raw": line.decode("utf-8", "replace")})
    return entries
