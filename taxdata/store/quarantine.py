"""Quarantine: dataset entries the gate refused, kept aside with their reason, never written.

A run that refuses an entry (a tampered journal line, a record in ``tax_data.json`` that breaks
a rule, a slug such as ``../../etc/evil`` or ``__proto__``) writes it to
``<data>/quarantine/update-<time>.jsonl`` before the file that held it is rewritten without it:
one JSON line per entry with its slug, where it came from, why it was refused, when, and the
entry itself (or, when it could not even be parsed, the start of its text). Nothing reads these
files back: they are for a person to look at (the run's summary and report list them), and to
delete when done.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taxdata.store import confined
from taxdata.store.datadir import DataDir
from taxdata.timestamps import now_utc

QUARANTINE_DIR = "quarantine"
RAW_KEPT = 65536  # characters of an unparsable line kept (a 100,000-level line is 200 KB)


@dataclass(frozen=True)
class Quarantined:
    """One refused entry, as the summary and the report list it."""

    slug: str  # as a message shows it (a hostile one cut short, repr'd)
    origin: str  # reply, import, journal, dataset
    reason: str

    def report(self) -> dict[str, str]:
        return {"slug": self.slug, "from": self.origin, "reason": self.reason}


def shown_slug(slug: Any) -> str:
    """A slug as one line can show it: plain when it is one, else repr'd and cut."""
    if isinstance(slug, str) and slug.isascii() and slug.isprintable() and len(slug) <= 64:
        return slug
    text = repr(slug)
    return text if len(text) <= 64 else text[:56] + "...'"


class Quarantine:
    """One run's quarantine file: the first :meth:`add` claims it, each one after appends its
    line (fsynced), so 5,000 refused entries cost 5,000 lines, not 5,000 rewrites."""

    def __init__(self, data: DataDir, stamp: str) -> None:
        self.data = data
        self.stamp = stamp
        self.items: list[Quarantined] = []
        self.path: Path | None = None

    def add(self, slug: Any, origin: str, reason: str, entry: Any = None,
            raw: str | None = None) -> Quarantined:
        """Keep ``entry`` (or ``raw``, the text of what could not be parsed) aside; on disk
        before this returns. OSError if the file cannot be written (the caller must then not
        drop the entry from where it was)."""
        item = Quarantined(shown_slug(slug), origin, reason)
        line = {"slug": slug if isinstance(slug, str) else repr(slug), "from": origin,
                "reason": reason, "quarantined_at": now_utc(), "entry": None, "raw": None}
        try:  # ensure_ascii: a lone surrogate stays an escape, the file stays UTF-8
            text = json.dumps({**line, "entry": entry}, ensure_ascii=True, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            text = json.dumps({**line, "raw": (raw if raw is not None else repr(entry))
                               [:RAW_KEPT]}, ensure_ascii=True)
        else:
            if raw is not None:
                text = json.dumps({**line, "raw": raw[:RAW_KEPT]}, ensure_ascii=True)
        if self.path is None:
            self.path = self.data.write_new_text(f"{QUARANTINE_DIR}/update-{self.stamp}",
                                                 ".jsonl", text + "\n")
        else:
            self._append((text + "\n").encode("ascii"))
        self.items.append(item)
        return item

    def _append(self, line: bytes) -> None:
        dir_fd, fd = confined.open_file(self.data.root, self.path.relative_to(self.data.root),
                                        os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
            os.close(dir_fd)

    def report(self) -> list[dict[str, str]]:
        """The refused entries for the run's JSON report (its review page lists them)."""
        where = str(self.path) if self.path else None
        return [{**item.report(), "file": where} for item in self.items]
