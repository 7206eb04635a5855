"""Stand-in for the MediaWiki Action API (``GET /w/api.php?action=parse``), for tests.

Answers the way en.wikipedia.org does with ``formatversion=2``: a ``parse`` object (``title``,
``pageid``, ``revid``, ``displaytitle``, ``text``, ``properties``, ``redirects``) holding only the
props asked for, for a page (``page=``, its latest revision) or one revision of it (``oldid=``:
every revision added stays served); a page's revision history (``action=query&prop=revisions``,
``rvprop=ids|timestamp``, newest first, ``rvlimit``, ``redirects``; each revision saved at the
``timestamp`` it was added with, by default long ago, one day apart); HTTP 200 + ``error``
objects (``missingtitle``,
``nosuchrevid``, ``maxlag`` with ``Retry-After``), and injected 429/5xx faults. Recording and
peak in-flight come from :class:`StandInServer`.
"""

from __future__ import annotations

import html as htmllib
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs

from taxdata.testing.samples import REGISTRY_FILE, sample_articles
from taxdata.testing.server import (
    RecordedRequest,
    Reply,
    StandInServer,
    sample_server_parser,
    serve_until_interrupted,
)

API_PATH = "/w/api.php"
LIST_TITLE = "List of countries by tax rates"  # taxdata.references.listpage.LIST_TITLE
SERVED_BY = "mw-api-standin.loopback"
_DOCREF = ("See https://en.wikipedia.org/w/api.php for API usage. Subscribe to the "
           "mediawiki-api-announce mailing list at &lt;https://lists.wikimedia.org/postorius/"
           "lists/mediawiki-api-announce.lists.wikimedia.org/&gt; for notice of API "
           "deprecations and breaking changes.")
_JSON = "application/json; charset=utf-8"
# When a revision added without a timestamp was saved: long ago, each a day after the one before
# (so by default every revision has stood, and the latest is what a revision policy uses).
_EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
# Characters MediaWiki never allows in a title (its $wgLegalTitleChars excludes them).
_ILLEGAL_TITLE_CHARS = re.compile(r"[#<>\[\]|{}]")


@dataclass
class _Page:
    title: str
    html: str
    revid: int
    pageid: int
    properties: dict[str, str] = field(default_factory=dict)
    timestamp: datetime = _EPOCH
    parentid: int = 0


def normalize_title(title: str) -> str:
    """MediaWiki's title normalisation, the part that matters here: ``_`` -> space, Ucfirst."""
    title = " ".join(title.replace("_", " ").split())
    return title[:1].upper() + title[1:]


class StandInMediaWiki(StandInServer):
    """A tiny wiki: register pages, then point a client at :attr:`api_url`."""

    def __init__(self, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.latency = latency  # seconds each answer waits before it is written
        self._pages: dict[str, _Page] = {}
        self._revisions: dict[int, _Page] = {}  # every revision ever added, for oldid=
        self._history: dict[str, list[_Page]] = {}  # each title's revisions, oldest first
        self._redirects: dict[str, str] = {}
        self._faults: list[Reply] = []
        self._state = threading.Lock()
        self._next_id = 1000

    @property
    def api_url(self) -> str:
        return self.base_url + API_PATH

    # -- set-up ----------------------------------------------------------------------------
    def add_page(self, title: str, html: str, revid: int | None = None,
                 redirect_from: list[str] | tuple[str, ...] = (),
                 timestamp: datetime | None = None) -> None:
        """Serve ``html`` as ``title``; ``redirect_from`` titles redirect to it.

        Adding a page again with another ``revid`` makes that the page's latest revision; the
        earlier ones stay served by ``oldid=``. ``html`` may be the whole parser output (a
        ``mw-parser-output`` div, as in the fixtures)
        or just its inside, which is then wrapped the way MediaWiki wraps it. ``timestamp``:
        when the revision was saved (aware, UTC), for the history; by default long ago.
        """
        self._add(title, html, revid, redirect_from, {"wikibase_item": "Q0"}, timestamp)

    def add_tax_rates_list(self, html: str, revid: int | None = None,
                           articles: dict[str, str] | None = None) -> None:
        """Serve ``html`` as "List of countries by tax rates" (the cross-check reference), plus
        ``articles`` ({title: html}) for its "Further reading" links. Give it a FIXTURE page
        (``tests/fixtures/wikipedia/list_of_countries_by_tax_rates.html``): made-up rates."""
        self.add_page(LIST_TITLE, html, revid)
        for title, body in (articles or {}).items():
            self.add_page(title, body)

    def add_disambiguation(self, title: str, html: str, revid: int | None = None) -> None:
        """A disambiguation page: the ``disambiguation`` page prop is set, as the extension does."""
        self._add(title, html, revid, (), {"disambiguation": "", "wikibase_item": "Q0"})

    def _add(self, title: str, html: str, revid: int | None,
             redirect_from: list[str] | tuple[str, ...], properties: dict[str, str],
             timestamp: datetime | None = None) -> None:
        if "mw-parser-output" not in html:
            html = f'<div class="mw-content-ltr mw-parser-output" lang="en" dir="ltr">{html}</div>'
        with self._state:
            self._next_id += 1
            name = normalize_title(title)
            known = self._pages.get(name)
            history = self._history.setdefault(name, [])
            saved = timestamp or _EPOCH + timedelta(days=self._next_id - 1000)
            page = _Page(name, html, revid or self._next_id * 10,
                         known.pageid if known else self._next_id, properties, saved,
                         history[-1].revid if history else 0)
            self._pages[name] = page
            self._revisions[page.revid] = page
            history.append(page)
            for source in redirect_from:
                self._redirects[normalize_title(source)] = name

    # -- fault injection -------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 429, retry_after: float | str | None = None) -> None:
        """The next ``n`` API requests get HTTP ``status`` (with ``Retry-After`` if given).

        The ``meta=siteinfo`` reachability probe is answered normally, never given a fault.
        """
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        body = f"<html><body><h1>Error {status}</h1><p>Stand-in fault.</p></body></html>"
        with self._state:
            self._faults.extend(
                Reply(status, body.encode(),
                      {"Content-Type": "text/html; charset=utf-8", **headers})
                for _ in range(n))

    def maxlag_next(self, n: int, lag: int = 7, retry_after: int | None = 5) -> None:
        """The next ``n`` API requests get the ``maxlag`` error (HTTP 200), like a lagged
        replica."""
        host = "10.64.48.23"
        body = {
            "error": {"code": "maxlag", "info": f"Waiting for {host}: {lag} seconds lagged.",
                      "host": host, "lag": lag, "type": "db", "docref": _DOCREF},
            "servedby": SERVED_BY,
        }
        headers = {"Content-Type": _JSON, "X-Database-Lag": str(lag),
                   "MediaWiki-API-Error": "maxlag"}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        with self._state:
            self._faults.extend(Reply(200, body, dict(headers)) for _ in range(n))

    # -- serving ---------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        reply = self._answer(request)
        reply.hang = self.latency
        return reply

    def _answer(self, request: RecordedRequest) -> Reply:
        if request.path != API_PATH:
            return Reply(404, "Not Found\n")
        if request.query.get("meta") == ["siteinfo"]:  # a client's reachability probe
            return Reply(200, {"batchcomplete": True, "query": {"general": {
                "sitename": "Stand-in wiki", "generator": "StandInMediaWiki"}}},
                {"Content-Type": _JSON})
        with self._state:
            if self._faults:
                return self._faults.pop(0)
        params = {k: v[-1] for k, v in request.query.items()}
        if request.method == "POST":  # the API takes form bodies too
            params.update({k: v[-1] for k, v in parse_qs(request.body.decode()).items()})
        if params.get("action") == "query" and params.get("prop") == "revisions":
            return self._history_reply(params)
        refused = _refuse_params(params)
        if refused is not None:
            return refused
        if params.get("oldid"):
            oldid = params["oldid"]
            with self._state:
                revision = self._revisions.get(int(oldid)) if oldid.isdigit() else None
            if revision is None:
                return _error("nosuchrevid", f"There is no revision with ID {params['oldid']}.")
            return _parse_reply(revision, params, revision.title, redirected=False)
        title = normalize_title(params["page"])
        if _ILLEGAL_TITLE_CHARS.search(title):
            return _error("invalidtitle", f'Bad title "{title}".')
        with self._state:
            target = self._redirects.get(title)
            follow = "redirects" in params  # a boolean parameter: present means true
            page = self._pages.get(target if target and follow else title)
        if target and not follow:
            # Without redirects=1 the API parses the redirect page itself.
            page = _Page(title, _redirect_html(target), 1, 1)
        if page is None:
            return _error("missingtitle", "The page you specified doesn't exist.")
        return _parse_reply(page, params, title, redirected=bool(target and follow))


    def _history_reply(self, params: dict[str, str]) -> Reply:
        """``action=query&prop=revisions``: the page's revisions, newest first."""
        if params.get("format") != "json" or params.get("formatversion") != "2":
            return _error("badvalue", "The stand-in only speaks format=json&formatversion=2.")
        if params.get("rvprop") != "ids|timestamp":
            return _error("badvalue", "The stand-in serves rvprop=ids|timestamp only.")
        asked = normalize_title(params.get("titles", ""))
        limit = int(params.get("rvlimit", "1")) if params.get("rvlimit", "1").isdigit() else 1
        query: dict = {}
        with self._state:
            target = self._redirects.get(asked) if "redirects" in params else None
            name = target or asked
            history = list(self._history.get(name, []))
        if target:
            query["redirects"] = [{"from": asked, "to": target}]
        if not history:
            query["pages"] = [{"ns": 0, "title": name, "missing": True}]
        else:
            newest = sorted(history, key=lambda p: (p.timestamp, p.revid), reverse=True)
            query["pages"] = [{"pageid": history[-1].pageid, "ns": 0, "title": name,
                               "revisions": [{"revid": p.revid, "parentid": p.parentid,
                                              "timestamp": p.timestamp.strftime(
                                                  "%Y-%m-%dT%H:%M:%SZ")}
                                             for p in newest[:max(1, min(limit, 500))]]}]
        return Reply(200, {"batchcomplete": True, "query": query}, {"Content-Type": _JSON})


def _refuse_params(params: dict[str, str]) -> Reply | None:
    """The API's error for parameters the stand-in does not serve; None if they are fine."""
    if params.get("action") != "parse":
        return _error("badvalue",
                      f'Unrecognized value for parameter "action": {params.get("action")}.')
    if params.get("format") != "json" or params.get("formatversion") != "2":
        return _error("badvalue", "The stand-in only speaks format=json&formatversion=2.")
    if not params.get("page") and not params.get("oldid"):
        return _error("missingparam", "One of the parameters page and oldid is required.")
    return None


def _parse_reply(page: _Page, params: dict[str, str], title: str, *, redirected: bool) -> Reply:
    """``action=parse``'s answer for ``page`` with the props asked for."""
    props = set(params.get("prop", "text|langlinks|categories|links|templates|images|"
                                    "externallinks|sections|revid|displaytitle|iwlinks|"
                                    "properties|parsewarnings").split("|"))
    parse: dict = {"title": page.title, "pageid": page.pageid}
    if redirected:
        parse["redirects"] = [{"from": title, "to": page.title}]
    if "revid" in props:
        parse["revid"] = page.revid
    if "displaytitle" in props:
        parse["displaytitle"] = (
            f'<span class="mw-page-title-main">{htmllib.escape(page.title)}</span>')
    if "text" in props:
        parse["text"] = page.html
    if "properties" in props:
        parse["properties"] = dict(page.properties)
    return Reply(200, {"parse": parse}, {"Content-Type": _JSON})


def _error(code: str, info: str) -> Reply:
    body = {"error": {"code": code, "info": info, "docref": _DOCREF}, "servedby": SERVED_BY}
    return Reply(200, body, {"Content-Type": _JSON, "MediaWiki-API-Error": code})


def _redirect_html(target: str) -> str:
    href = "/wiki/" + target.replace(" ", "_")
    return ('<div class="mw-content-ltr mw-parser-output" lang="en" dir="ltr">'
            '<div class="redirectMsg"><p>Redirect to:</p><ul class="redirectText"><li>'
            f'<a href="{htmllib.escape(href)}" title="{htmllib.escape(target)}">'
            f'{htmllib.escape(target)}</a></li></ul></div></div>')


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in wiki alone, serving the bundled SAMPLE articles (made-up figures)."""
    parser = sample_server_parser(
        "python -m taxdata.testing.mediawiki_server",
        "Run the stand-in MediaWiki Action API on 127.0.0.1, serving the bundled SAMPLE articles "
        "(fictional countries, made-up figures). Point TAXDATA_WIKIPEDIA_API at the printed URL.",
        8080, "serve no pages (every title is missing)")
    args = parser.parse_args(argv)
    server = StandInMediaWiki(latency=args.latency, port=args.port)
    titles = []
    if not args.no_samples:
        for article in sample_articles():
            server.add_page(article.title, article.html)
            titles.append(article.title)
    served = ", ".join(titles) or "no pages"
    return serve_until_interrupted(
        server, f"stand-in MediaWiki listening on {{base_url}}{API_PATH} (SAMPLE pages: {served})"
                f"\nuse it with: TAXDATA_WIKIPEDIA_API={{base_url}}{API_PATH} "
                f"TAXDATA_COUNTRIES={REGISTRY_FILE} (the SAMPLE registry)",
        prog=parser.prog, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
