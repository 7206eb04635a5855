"""Which revision of a Wikipedia article to use: the newest one that has stood.

Vandalism is mostly reverted within minutes or hours; a run that takes whatever revision is
current when it fetches takes it too. So by default the enhanced generator uses the newest
revision that has **stood** for ``min_age`` seconds (``TAXDATA_WIKIPEDIA_MIN_AGE``, 24 h): one
that stayed the article's current revision that long, until the next edit or until now. A
vandal's edit reverted after ten minutes stood ten minutes and is never used, however old it
is; a fresh edit is used once it has stood a day. :func:`stable_revision` makes that choice
from the article's recent history (``action=query&prop=revisions``, newest first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["Revision", "RevisionChoice", "stable_revision", "parse_history", "HISTORY_LIMIT"]

# Revisions asked for per article: a "Taxation in X" article sees a few edits a month, so 50
# reach back far beyond any edit war; none of them standing that long is reported, not guessed.
HISTORY_LIMIT = 50


@dataclass(frozen=True)
class Revision:
    """One revision of an article: its id and when it was saved (UTC)."""

    id: int
    timestamp: datetime

    @property
    def saved(self) -> str:
        return self.timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RevisionChoice:
    """The revision chosen, the latest one, and how long the chosen one has stood."""

    chosen: Revision
    latest: Revision
    stood_seconds: float

    @property
    def is_latest(self) -> bool:
        return self.chosen.id == self.latest.id

    def describe(self, min_age: float) -> str:
        """For the taxation file's Sources section: why this revision."""
        stood = f"{min_age / 3600:g} h"
        if self.is_latest:
            return f"the latest, saved {self.chosen.saved} (it has stood over {stood})"
        return (f"the newest that has stood {stood}, saved {self.chosen.saved}; the latest, "
                f"rev {self.latest.id} of {self.latest.saved}, has not")


def stable_revision(history: list[Revision], min_age: float,
                    now: datetime | None = None) -> RevisionChoice | None:
    """The newest revision of ``history`` (newest first) that stood ``min_age`` seconds: until
    the next revision was saved, or (the latest) until ``now``; None if none did."""
    if not history:
        return None
    now = now or datetime.now(timezone.utc)
    until = now
    for revision in history:
        stood = (until - revision.timestamp).total_seconds()
        if stood >= min_age:
            return RevisionChoice(revision, history[0], stood)
        until = revision.timestamp
    return None


def parse_history(data: dict[str, Any]) -> tuple[str, list[Revision]] | None:
    """The page title and its revisions (newest first) from a ``prop=revisions`` answer
    (formatversion 2); None when the page is missing. ValueError on an answer of another
    shape."""
    query = data.get("query")
    pages = query.get("pages") if isinstance(query, dict) else None
    if not isinstance(pages, list) or not pages or not isinstance(pages[0], dict):
        raise ValueError("no pages in the answer")
    page = pages[0]
    if page.get("missing") or page.get("invalid"):
        return None
    revisions = []
    entries = page.get("revisions")
    for entry in entries if isinstance(entries, list) else []:
        try:
            saved = datetime.strptime(str(entry["timestamp"]), "%Y-%m-%dT%H:%M:%SZ")
            revisions.append(Revision(int(entry["revid"]), saved.replace(tzinfo=timezone.utc)))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"a revision without id or timestamp: {entry!r:.80}") from None
    if not isinstance(page.get("title"), str) or not page["title"].strip() or not revisions:
        raise ValueError("a page without title or revisions")
    revisions.sort(key=lambda r: (r.timestamp, r.id), reverse=True)
    return page["title"], revisions
