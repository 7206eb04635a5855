"""Wikipedia fetcher: one article through the MediaWiki Action API, cleaned to markdown-like text.

:class:`WikipediaClient` asks ``action=parse`` for an article's rendered HTML, follows redirects
server-side, rejects missing and disambiguation pages, retries politely (429, 5xx, ``maxlag``)
and never has more than ``max_in_flight`` (at most 3) requests open, however many worker threads
share it; :func:`taxdata.clients.htmlclean.clean_html` turns the parser output into the
article's text.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from taxdata.clients.http import (
    BUSY,
    DONE,
    FAIL,
    RETRY,
    Outcome,
    RetryPolicy,
    is_busy,
    make_session,
    parse_retry_after,
    send,
)
from taxdata.config import DEFAULT_USER_AGENT, Settings
from taxdata.errors import PreflightError, ServerError
from taxdata.log import logger, thread_label
from taxdata.store.datadir import DataDir, dump_json
from taxdata.timestamps import now_utc

# Wikimedia's User-Agent policy asks for a name/version plus a way to reach the operator.
WIKIPEDIA_USER_AGENT = f"{DEFAULT_USER_AGENT} python-requests/{requests.__version__}"

# Wikimedia's API etiquette: a few parallel requests at most, whatever our worker count.
MAX_IN_FLIGHT = 3

# When a maxlag answer comes without Retry-After, the Manual:Maxlag parameter says wait >= 5 s.
MAXLAG_DEFAULT_WAIT = 5.0

CACHE_DIR = ".cache/wikipedia"


class WikipediaError(ServerError):
    """Wikipedia could not give us the article (API error, or retries used up)."""


class ArticleNotFound(WikipediaError):
    """No article by that title (the API's ``missingtitle``)."""

    def __init__(self, title: str) -> None:
        super().__init__(f"no Wikipedia article {title!r}")
        self.title = title


class RevisionNotFound(WikipediaError):
    """No revision by that id (the API's ``nosuchrevid``: never existed, or deleted)."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"no Wikipedia revision {revision}")
        self.revision = revision


class DisambiguationPage(WikipediaError):
    """The title names a disambiguation page: a list of other articles, not an article."""

    def __init__(self, title: str) -> None:
        super().__init__(f"{title!r} is a Wikipedia disambiguation page; name the specific article")
        self.title = title


@dataclass
class Article:
    """One fetched (or cached) article. ``html`` is empty for cache hits: the cache keeps text
    only."""

    requested_title: str
    title: str
    revision_id: int
    url: str
    html: str
    text: str
    fetched_at: str
    from_cache: bool


class WikipediaClient:
    """Fetch articles from a MediaWiki Action API (English Wikipedia by default).

    Caching: with ``cache_dir`` set, every fetched article's cleaned text is kept in
    ``<cache_dir>/.cache/wikipedia/<safe title>.json``. A cached entry is returned as is, with no
    request at all, unless ``refresh=True``: knowing whether the article changed would itself
    cost a request per title, so freshness is the user's call (``--refresh``), not a guess.

    Old revisions (:meth:`fetch_revision`, what the updater grounds figures in) are kept in
    ``<cache_dir>/.cache/wikipedia/revisions/<revision>.json``: a revision never changes, so that
    entry is final. When a refresh replaces a title's entry with a newer revision, the old entry
    moves there first, so the text a taxation file was written from is not lost.

    Thread-safe: one client is shared by all workers; its semaphore caps the requests in flight.
    """

    def __init__(
        self,
        api_url: str = Settings.wikipedia_api,
        user_agent: str = WIKIPEDIA_USER_AGENT,
        *,
        cache_dir: DataDir | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = (10, 60),
        session: requests.Session | None = None,
    ) -> None:
        if not 1 <= max_in_flight <= MAX_IN_FLIGHT:
            raise ValueError(f"max_in_flight must be 1..{MAX_IN_FLIGHT}, got {max_in_flight}")
        if not _has_contact(user_agent):
            raise ValueError(
                "user_agent must name the tool and give contact info (a URL or e-mail), "
                f"as Wikimedia's User-Agent policy requires; got {user_agent!r}")
        self.api_url = api_url
        self.user_agent = user_agent
        self.cache_dir = cache_dir
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        # The User-Agent goes on each request, so a session shared with other clients is untouched.
        self.session = session or make_session(pool_size=max_in_flight, user_agent=user_agent)
        self._slots = threading.BoundedSemaphore(max_in_flight)
        # Article links point at the wiki that served them (same host as the API).
        self._wiki_base = re.sub(r"/w/api\.php$", "", api_url) + "/wiki/"

    # -- public ----------------------------------------------------------------------------
    def check(self, connect_timeout: float = 10.0) -> None:
        """Preflight: one request to the API before any work; PreflightError if it fails.

        Like the LLM and extractor checks, and without retries: an unreachable wiki should say so
        at once, not after every country has waited out its retries. A busy answer (429, 5xx) is
        an answer: the fetches wait and retry as usual.
        """
        hint = ("check the network, or set TAXDATA_WIKIPEDIA_API to a reachable MediaWiki API "
                "(--from-raw works without Wikipedia)")
        try:
            response = self.session.get(
                self.api_url, params={"action": "query", "meta": "siteinfo", "format": "json",
                                      "formatversion": "2"},
                headers={"User-Agent": self.user_agent}, timeout=(connect_timeout, 30))
        except requests.RequestException as exc:
            raise PreflightError(f"Wikipedia not reachable at {self.api_url} "
                                 f"({type(exc).__name__}) - {hint}") from None
        if response.status_code == 403:
            raise PreflightError(f"Wikipedia at {self.api_url} answered HTTP 403 - set "
                                 "TAXDATA_USER_AGENT to name yourself with contact details")
        if response.status_code != 200 and response.status_code not in self.retry.statuses:
            raise PreflightError(f"Wikipedia at {self.api_url} answered HTTP "
                                 f"{response.status_code} - {hint}")

    def fetch(self, title: str, *, refresh: bool = False) -> Article:
        """The article ``title`` (redirects followed), from the cache unless ``refresh``."""
        requested = " ".join(title.replace("_", " ").split())
        if not requested:
            raise ValueError("empty Wikipedia title")
        # MediaWiki ignores the case of a title's first letter; so does the cache.
        cache_key = cache_relpath(_canonical(requested))
        if self.cache_dir is not None and not refresh:
            cached = self._read_cache(cache_key, requested)
            if cached is not None:
                logger.info("[CACHE] %s Wikipedia %r rev %d from cache (fetched %s)",
                            thread_label(), cached.title, cached.revision_id, cached.fetched_at)
                return cached
        # Callers log "[FETCH] ... for <country>"; the title is in the result line below.
        logger.debug("[FETCH] %s GET %s page=%s", thread_label(), self.api_url, requested)
        parse = self._request_parse({"page": requested, "redirects": "1"}, requested)
        final = parse["title"]
        redirects = parse.get("redirects") or []
        if redirects or final != _canonical(requested):
            logger.info("[REDIRECT] %s Wikipedia %r -> %r", thread_label(), requested, final)
        html = parse.get("text") or ""
        if _is_disambiguation(parse, html):
            raise DisambiguationPage(final)
        article = Article(
            requested_title=requested,
            title=final,
            revision_id=int(parse["revid"]),
            url=self.article_url(final),
            html=html,
            text=clean_html(html),
            fetched_at=now_utc(),
            from_cache=False,
        )
        logger.info("[FETCH] %s Wikipedia %r rev %d: %d chars of text",
                    thread_label(), final, article.revision_id, len(article.text))
        if self.cache_dir is not None:
            self._write_cache(cache_key, article)
        return article

    def cached(self, title: str) -> Article | None:
        """The cached article for ``title``, without a request (None: not cached, no cache)."""
        requested = " ".join(title.replace("_", " ").split())
        if self.cache_dir is None or not requested:
            return None
        return self._read_cache(cache_relpath(_canonical(requested)), requested)

    def fetch_revision(self, title: str, revision: int) -> Article:
        """Exactly revision ``revision`` of ``title``: from the title's cache entry if it holds
        that revision, else from the revision cache, else the API (``action=parse&oldid=``),
        then kept in the revision cache."""
        requested = " ".join(title.replace("_", " ").split())
        relpath = self.cached_revision(requested, revision)
        cached = self._read_cache(relpath, requested) if relpath is not None else None
        if cached is not None:
            logger.debug("[CACHE] %s Wikipedia %r rev %d from %s", thread_label(), cached.title,
                         revision, relpath)
            return cached
        logger.info("[FETCH] %s Wikipedia %r rev %d (the revision a taxation file names)",
                    thread_label(), requested, revision)
        parse = self._request_parse({"oldid": str(revision)}, f"{requested} rev {revision}")
        html = parse.get("text") or ""
        article = Article(requested_title=requested, title=parse["title"],
                          revision_id=int(parse.get("revid") or revision),
                          url=self.revision_url(parse["title"], revision), html=html,
                          text=clean_html(html), fetched_at=now_utc(), from_cache=False)
        if self.cache_dir is not None:
            self._write_entry(revision_relpath(revision), article)
        return article

    def cached_revision(self, title: str, revision: int) -> str | None:
        """Where the cache holds revision ``revision`` of ``title`` (a path relative to the
        cache's data directory), or None."""
        if self.cache_dir is None:
            return None
        requested = " ".join(title.replace("_", " ").split())
        for relpath in (revision_relpath(revision), cache_relpath(_canonical(requested))):
            cached = self._read_cache(relpath, requested)
            if cached is not None and cached.revision_id == revision:
                return relpath
        return None

    def revision_url(self, title: str, revision: int) -> str:
        """The reader-facing URL of one revision (``index.php?title=...&oldid=...``)."""
        return (re.sub(r"/api\.php$", "/index.php", self.api_url) + "?title="
                + quote(title.replace(" ", "_"), safe="/:(),'!*;@$-._~") + f"&oldid={revision}")

    def article_url(self, title: str) -> str:
        """The reader-facing URL of ``title`` on the wiki this client talks to."""
        return self._wiki_base + quote(title.replace(" ", "_"), safe="/:(),'!*;@$-._~")

    # -- HTTP ------------------------------------------------------------------------------
    def _request_parse(self, which: dict[str, str], title: str) -> dict[str, Any]:
        """``action=parse`` of ``which`` (``page`` + ``redirects``, or ``oldid``); ``title``
        names it in errors."""
        revision = int(which["oldid"]) if "oldid" in which else None
        params = {
            "action": "parse",
            **which,
            # ``properties`` is the one extra: it carries the ``disambiguation`` page prop.
            "prop": "text|revid|displaytitle|properties",
            "formatversion": "2",
            "format": "json",
            "maxlag": "5",
        }

        def attempt(number: int) -> Outcome:
            try:
                with self._slots:  # held only while the request is on the wire, never while waiting
                    response = self.session.get(
                        self.api_url, params=params, timeout=self.timeout,
                        headers={"User-Agent": self.user_agent})
                    body = response.content
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                return self._retry(RETRY, title, number, type(exc).__name__)
            status = response.status_code
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if is_busy(status):
                return self._retry(BUSY, title, number, f"HTTP {status}", retry_after)
            if status in self.retry.statuses:
                return self._retry(RETRY, title, number, f"HTTP {status}", retry_after)
            if status != 200:
                return Outcome(FAIL, error=WikipediaError(
                    f"Wikipedia HTTP {status} for {title!r}: {body[:200]!r}"))
            data = _json_or_none(body)
            if data is None:
                return self._retry(RETRY, title, number, "invalid JSON")
            if (data.get("error") or {}).get("code") == "maxlag":
                # A lagged replica is a busy server; Manual:Maxlag asks for at least 5 s.
                lag = data["error"].get("lag", "?")
                return self._retry(BUSY, title, number, f"maxlag ({lag} s lagged)",
                                   MAXLAG_DEFAULT_WAIT if retry_after is None else retry_after)
            try:
                return Outcome(DONE, value=_parse_or_raise(data, title, revision))
            except WikipediaError as exc:
                return Outcome(FAIL, error=exc)

        # Every caller reports a failed fetch itself ([FAILED] country line, one-line error).
        return send(attempt, self.retry, what="Wikipedia", log_giveup=False).value

    @staticmethod
    def _retry(kind: str, title: str, attempts: int, reason: str,
               retry_after: float | None = None) -> Outcome:
        error = WikipediaError(f"Wikipedia request for {title!r} failed after {attempts} "
                               f"attempt{'' if attempts == 1 else 's'}: {reason}")
        return Outcome(kind, error=error, reason=reason, retry_after=retry_after)

    # -- cache -----------------------------------------------------------------------------
    def _read_cache(self, relpath: str, requested: str) -> Article | None:
        assert self.cache_dir is not None
        try:
            entry = self.cache_dir.read_json(relpath)
        except ValueError as exc:  # a damaged entry is refetched, not fatal
            logger.warning("[CACHE] %s ignoring damaged cache entry: %s", thread_label(), exc)
            return None
        if not isinstance(entry, dict):
            return None
        try:
            return Article(
                requested_title=requested,
                title=entry["title"],
                revision_id=int(entry["revision_id"]),
                url=entry["url"],
                html="",
                text=entry["text"],
                fetched_at=entry["fetched_at"],
                from_cache=True,
            )
        except (KeyError, TypeError, ValueError):
            return None

    def _write_cache(self, relpath: str, article: Article) -> None:
        assert self.cache_dir is not None
        try:  # the revision this entry held may be what a taxation file was written from
            old = self.cache_dir.read_json(relpath)
        except ValueError:
            old = None
        if (isinstance(old, dict) and isinstance(old.get("revision_id"), int)
                and old["revision_id"] != article.revision_id):
            self.cache_dir.write_text(revision_relpath(old["revision_id"]), dump_json(old))
        self._write_entry(relpath, article)

    def _write_entry(self, relpath: str, article: Article) -> None:
        assert self.cache_dir is not None
        entry = {
            "requested_title": article.requested_title,
            "title": article.title,
            "revision_id": article.revision_id,
            "url": article.url,
            "fetched_at": article.fetched_at,
            "text": article.text,
        }
        self.cache_dir.write_text(relpath, dump_json(entry))


def cache_relpath(title: str) -> str:
    """``.cache/wikipedia/<slug>-<hash>.json``: safe for any title, distinct for distinct titles.

    The slug keeps the file recognisable; the hash (of the exact title) keeps titles that slugify
    alike (``C++`` / ``C#``, or case variants) apart and makes an empty slug harmless.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-") or "article"
    digest = hashlib.sha256(title.encode("utf-8")).hexdigest()[:10]
    return f"{CACHE_DIR}/{slug}-{digest}.json"


def revision_relpath(revision: int) -> str:
    """``.cache/wikipedia/revisions/<revision>.json``: one revision's cleaned text (final)."""
    return f"{CACHE_DIR}/revisions/{int(revision)}.json"


def _has_contact(user_agent: str) -> bool:
    return bool(user_agent) and bool(re.search(r"https?://|@|\bmailto:", user_agent))


def _canonical(title: str) -> str:
    # MediaWiki upper-cases the first letter of a title; only a real change is a redirect.
    return title[:1].upper() + title[1:]


def _json_or_none(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _parse_or_raise(data: dict[str, Any], title: str,
                    revision: int | None = None) -> dict[str, Any]:
    error = data.get("error")
    if error:
        if error.get("code") == "missingtitle":
            raise ArticleNotFound(title)
        if error.get("code") == "nosuchrevid" and revision is not None:
            raise RevisionNotFound(revision)
        raise WikipediaError(
            f"Wikipedia API error for {title!r}: {error.get('code')}: {error.get('info')}")
    parse = data.get("parse")
    if not isinstance(parse, dict) or "title" not in parse or "revid" not in parse:
        raise WikipediaError(f"Wikipedia answer for {title!r} has no parse result")
    return parse


_DISAMBIG_HTML = re.compile(r'id="disambigbox"|\bdmbox-disambig\b|\bmw-disambig\b')


def _is_disambiguation(parse: dict[str, Any], html: str) -> bool:
    # The Disambiguation extension sets the ``disambiguation`` page prop; the template's box
    # markup is the fallback for wikis without the extension.
    properties = parse.get("properties")
    if isinstance(properties, dict) and "disambiguation" in properties:
        return True
    return bool(_DISAMBIG_HTML.search(html))


def clean_html(html: str) -> str:
    """:func:`taxdata.clients.htmlclean.clean_html`, loaded (with bs4 and lxml) when an article's
    HTML is cleaned: a program that never parses HTML never imports them."""
    from taxdata.clients import htmlclean

    return htmlclean.clean_html(html)
