"""Where the original of a taxation file is kept, and how the updater finds it again.

A generated taxation file is the model's rewrite of an original; its Sources section names that
original (written by code: taxdata.store.taxfile), and :class:`Originals` finds its text:

* ``wikipedia``: exactly the article revision the file names: from the generator's cache (the
  title's entry when it holds that revision, else the revision cache), else fetched by revision
  from the MediaWiki API (``action=parse&oldid=...``) and kept in the revision cache;
* ``extractor``: the page text the generator read, kept by its SHA-256 in
  ``.cache/originals/<sha256>.txt`` (:func:`keep_original`), or ``raw/<slug>.txt`` when its
  page text has that SHA-256 (a file written before the SHA-256 was recorded: when it names the
  same URL);
* ``manual`` (no Sources section: a person wrote it): the file itself;
* ``research`` (the model's own knowledge): none; nothing is verified, the record is marked
  unverified.

An original that cannot be found is :class:`OriginalUnavailable` (the updater then fails the
country before any LLM request: nothing could be verified).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from pathlib import Path
from typing import Any, Mapping

from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import (
    Article,
    RevisionNotFound,
    WikipediaClient,
    WikipediaError,
    revision_relpath,
)
from taxdata.errors import ServerError
from taxdata.evidence.grounding import Original, sha256_text
from taxdata.store.datadir import DataDir, UnsafePathError
from taxdata.store.hiddenmarkup import strip_hidden_markup
from taxdata.store.rawfile import read_raw
from taxdata.store.taxfile import SourceInfo

__all__ = ["ORIGINALS_DIR", "REVISION_RETRY", "Originals", "OriginalUnavailable", "keep_original",
           "original_relpath"]

ORIGINALS_DIR = ".cache/originals"
# Fetching a revision the cache lacks: a few quick tries; once Wikipedia is found unreachable
# the run stops asking (every such country fails with the same reason).
REVISION_RETRY = RetryPolicy(attempts=2, base=0.5, cap=2.0, max_retry_after=10.0)
RAW_DIR = "raw"  # taxdata.generate.common.RAW_DIR (generate sits above this layer)


_NO_LOCK = contextlib.nullcontext()
_SHA256 = re.compile(r"[0-9a-f]{64}")


class OriginalUnavailable(ServerError):
    """The original a taxation file was written from cannot be found; the message says why."""


def original_relpath(sha256: str) -> str:
    return f"{ORIGINALS_DIR}/{sha256}.txt"


def keep_original(data: DataDir, text: str) -> str:
    """Keep ``text`` (an original the model is about to rewrite) by its SHA-256; returns it."""
    sha = sha256_text(text)
    target = data.path(original_relpath(sha))
    if not target.exists():  # content-addressed: the same text is the same file
        data.write_text(original_relpath(sha), text)
    return sha


def _read_exact(path: Path) -> str | None:
    """A file's text exactly as written (no newline translation: offsets must match)."""
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):  # missing, a directory, unreadable: not the original
        return None


def read_original(data: DataDir, ref: Mapping[str, Any]) -> str | None:
    """The text of the original that ``ref`` (a record's ``provenance.original``) names, from
    where it is kept in the data directory, only if its SHA-256 still matches; else None (a
    reviewer is shown the taxation file instead)."""
    location, sha = ref.get("location"), ref.get("sha256")
    if not isinstance(location, str) or not isinstance(sha, str):
        return None
    try:
        path = data.path(location)
    except UnsafePathError:
        return None
    text = _read_exact(path)
    if text is None:
        return None
    candidates = [text]
    if path.suffix == ".json":  # a Wikipedia cache entry: the article's text is one field
        with contextlib.suppress(ValueError):
            entry = json.loads(text)
            if isinstance(entry, dict) and isinstance(entry.get("text"), str):
                candidates = [entry["text"]]
    elif location.startswith(f"{RAW_DIR}/"):  # a raw page: its text follows the header
        candidates.append(read_raw(text)[1])
    return next((c for c in candidates if sha256_text(c) == sha), None)


class Originals:
    """Finds the original of each taxation file; shared by the updater's worker threads."""

    def __init__(self, data: DataDir, wikipedia: WikipediaClient | None) -> None:
        self.data = data
        self.wikipedia = wikipedia
        # Wikipedia is asked for one revision at a time until it has answered once; if it did
        # not, it is asked no more in this run (every such country fails with that reason).
        self._probe = threading.Lock()
        self._reachable: bool | None = None
        self._down: str | None = None

    def find(self, slug: str, file_name: str, text: str, info: SourceInfo) -> Original | None:
        """The original of the taxation file ``file_name`` (``text``, its Sources ``info``);
        None for research files. Raises :class:`OriginalUnavailable`."""
        if info.kind == "research":
            return None
        if info.kind == "wikipedia":
            return self._article(info)
        if info.kind == "extractor":
            return self._page(slug, info)
        return Original.of(text, "manual", file_name, location=f"taxation/{file_name}")

    def _article(self, info: SourceInfo) -> Original:
        if not info.title or not (info.revision or "").isdigit():
            raise OriginalUnavailable("its Sources section names no Wikipedia title and revision "
                                      "to verify against; regenerate the file")
        if self.wikipedia is None:
            raise OriginalUnavailable("no Wikipedia client to fetch the article revision")
        title, revision = info.title, int(info.revision)
        location = self.wikipedia.cached_revision(title, revision)
        if location is None:  # a fetch: the first one alone, until Wikipedia has answered once
            with self._probe if self._reachable is None else _NO_LOCK:
                if self._down is not None:  # said once in full, for the first article
                    raise OriginalUnavailable(self._missing(
                        title, revision, f"Wikipedia did not answer this run: {self._down}"))
                article = self._fetch(title, revision)
        else:
            article = self.wikipedia.fetch_revision(title, revision)
        return Original.of(article.text, "wikipedia", f"{article.title} rev {revision}",
                           url=info.url or article.url, revision=str(revision),
                           location=location or revision_relpath(revision))

    def _fetch(self, title: str, revision: int) -> Article:
        assert self.wikipedia is not None
        try:
            article = self.wikipedia.fetch_revision(title, revision)
        except RevisionNotFound:
            self._reachable = True
            raise OriginalUnavailable(f"Wikipedia has no revision {revision} of {title!r} "
                                      "(deleted?); regenerate the file") from None
        except WikipediaError as exc:
            self._down = self._down or _reason_only(exc)
            raise OriginalUnavailable(self._missing(title, revision, str(exc))) from None
        self._reachable = True
        return article

    @staticmethod
    def _missing(title: str, revision: int, why: str) -> str:
        return (f"the article revision it was written from ({title} rev {revision}) is not in "
                f"the cache and Wikipedia did not give it ({why})")

    def _page(self, slug: str, info: SourceInfo) -> Original:
        label = info.url or info.title or "the extractor's page"
        if info.original_sha256 and not _SHA256.fullmatch(info.original_sha256):
            raise OriginalUnavailable(f"its Sources section gives {info.original_sha256!r} as the "
                                      "original's SHA-256, which is not one; regenerate the file")
        if info.original_sha256:
            text = _read_exact(self.data.path(original_relpath(info.original_sha256)))
            if text is not None and sha256_text(text) == info.original_sha256:
                return Original.of(text, "extractor", label, url=info.url,
                                   location=original_relpath(info.original_sha256))
        raw = self._raw(slug)
        if raw is not None:
            fields, content = raw
            if (sha256_text(content) == info.original_sha256 if info.original_sha256
                    else bool(info.url) and fields.get("Source URL") == info.url):
                return Original.of(content, "extractor", label, url=info.url,
                                   location=f"{RAW_DIR}/{slug}.txt")
        named = (f"page text with SHA-256 {info.original_sha256[:12]}..." if info.original_sha256
                 else f"page of {label}")
        raise OriginalUnavailable(f"the {named} it was written from is not in "
                                  f"{ORIGINALS_DIR}/ or {RAW_DIR}/{slug}.txt; regenerate the file")

    def _raw(self, slug: str) -> tuple[dict[str, str], str] | None:
        text = _read_exact(self.data.path(f"{RAW_DIR}/{slug}.txt"))
        # As the generator read it (taxdata.generate.common.checked_source): hidden markup out.
        return None if text is None else read_raw(strip_hidden_markup(text))


def _reason_only(exc: WikipediaError) -> str:
    """Why Wikipedia failed, without the article the failure was about (the message is reused
    for the other countries: it must not name another country's article)."""
    text = str(exc)
    _, found, why = text.rpartition(" failed after ")
    return f"failed after {why}" if found else text
