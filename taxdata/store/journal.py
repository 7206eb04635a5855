"""An append-only journal of finished work: what a killed run had finished, for the next start.

The updater writes one JSON line per finished country and fsyncs it, so each result is on disk
as soon as it is known, at a cost that does not grow with the size of the dataset (rewriting
``tax_data.json`` after every country did: quadratic in the run). The whole files are rewritten
now and then and at the end; the journal is removed once they are, so a journal that is still
there at the next start means the last run did not finish its writes: replay it.

Appends are group-committed: the caller's line is queued and a writer thread writes whatever
has queued up with one ``write`` and one ``fsync``, so 16 workers finishing together cost one
fsync, not 16 in a row on the thread that collects results. A line is durable within one fsync
of its append (:meth:`Journal.flush` waits for it); a kill in that window loses only countries
whose results were still arriving, like the ones in flight.

A kill can cut the last line short; :func:`read_journal` drops a torn last line (that country
was not finished as far as the file is concerned).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from taxdata.store.datadir import fsync_dir


class Journal:
    """One run's journal file, opened for appending; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._cond = threading.Condition()
        self._pending: list[bytes] = []
        self._queued = 0  # lines appended so far
        self._durable = 0  # lines written and fsynced so far
        self._error: OSError | None = None
        self._writer: threading.Thread | None = None

    def open(self) -> "Journal":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fsync_dir(self.path.parent)  # the journal's existence is itself a fact for the next start
        self._writer = threading.Thread(target=self._write_loop, name="journal-writer",
                                        daemon=True)
        self._writer.start()
        return self

    def append(self, entry: dict[str, Any]) -> None:
        """Queue one entry (one JSON line) for the writer; raises if an earlier write failed."""
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._cond:
            if self._fd is None:
                raise ValueError("journal is not open")
            if self._error is not None:
                raise self._error
            self._pending.append(line.encode("utf-8"))
            self._queued += 1
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every entry appended so far is written and fsynced."""
        with self._cond:
            target = self._queued
            while self._durable < target and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and self._fd is not None:
                    self._cond.wait()
                if self._fd is None:
                    return
                batch, self._pending = self._pending, []
                fd = self._fd
            try:
                os.write(fd, b"".join(batch))
                os.fsync(fd)
            except OSError as exc:  # e.g. disk full: the next append and flush say so
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._durable += len(batch)
                self._cond.notify_all()

    def clear(self) -> None:
        """Forget the entries (the whole files now hold them); keep appending after this."""
        if self._fd is not None:
            self.flush()
            with self._cond:
                os.ftruncate(self._fd, 0)
                os.fsync(self._fd)

    def remove(self) -> None:
        """Close and delete: the run's files are complete and in step."""
        if self._fd is not None:
            self.flush()
            with self._cond:
                fd, self._fd = self._fd, None
                self._cond.notify_all()
            if self._writer is not None:
                self._writer.join()
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        fsync_dir(self.path.parent)


def read_journal(path: Path) -> list[dict[str, Any]] | None:
    """The entries of a journal left behind, oldest first; None when there is no journal."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    entries = []
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue  # a line torn by a kill: that entry never finished
        if isinstance(entry, dict):
            entries.append(entry)
    return entries
