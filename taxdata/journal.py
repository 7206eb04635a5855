"""An append-only journal of finished work: what a killed run had finished, for the next start.

The updater writes one JSON line per finished country and fsyncs it, so each result is on disk
as soon as it is known, at a cost that does not grow with the size of the dataset (rewriting
``tax_data.json`` after every country did: quadratic in the run). The whole files are rewritten
now and then and at the end; the journal is removed once they are, so a journal that is still
there at the next start means the last run did not finish its writes: replay it.

A kill can cut the last line short; :func:`read_journal` drops a torn last line (that country
was not finished as far as the file is concerned).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from .files import _fsync_dir


class Journal:
    """One run's journal file, opened for appending."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def open(self) -> "Journal":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fsync_dir(self.path.parent)  # the journal's existence is itself a fact for the next start
        return self

    def append(self, entry: dict[str, Any]) -> None:
        """Add one entry (one JSON line) and make it durable before returning."""
        if self._fd is None:
            raise ValueError("journal is not open")
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode("utf-8"))
        os.fsync(self._fd)

    def clear(self) -> None:
        """Forget the entries (the whole files now hold them); keep appending after this."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)

    def remove(self) -> None:
        """Close and delete: the run's files are complete and in step."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        _fsync_dir(self.path.parent)


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
