"""The MediaWiki Action API's answers, read defensively, and the errors a fetch ends in.

Whatever a server sends (a broken proxy, a hostile stand-in, a future API change) is checked
before it is used: an answer of another shape, HTML nested beyond any article's, a lone
surrogate, each is one :class:`WikipediaError` line or a harmless replacement character, never
another exception (issue 18: no traceback on any input).
"""

from __future__ import annotations

import json
import re
from typing import Any

from taxdata.clients.revisions import HISTORY_LIMIT
from taxdata.errors import ServerError

__all__ = ["WikipediaError", "ArticleNotFound", "RevisionNotFound", "NoStableRevision",
           "DisambiguationPage", "json_or_none", "parse_result", "article_text",
           "is_disambiguation"]


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


class NoStableRevision(WikipediaError):
    """No recent revision of the article has stood as long as the revision policy asks."""

    def __init__(self, title: str, min_age: float, latest: int) -> None:
        super().__init__(
            f"no revision of {title!r} among its last {HISTORY_LIMIT} has stood "
            f"{min_age / 3600:g} h (the latest is rev {latest}); not used "
            "(TAXDATA_WIKIPEDIA_MIN_AGE, or --latest-revision to use the latest)")
        self.title = title


class DisambiguationPage(WikipediaError):
    """The title names a disambiguation page: a list of other articles, not an article."""

    def __init__(self, title: str) -> None:
        super().__init__(f"{title!r} is a Wikipedia disambiguation page; name the specific article")
        self.title = title


def json_or_none(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def parse_result(data: dict[str, Any], title: str,
                    revision: int | None = None) -> dict[str, Any]:
    error = data.get("error")
    if error:
        if not isinstance(error, dict):
            error = {"code": "?", "info": str(error)[:200]}
        if error.get("code") == "missingtitle":
            raise ArticleNotFound(title)
        if error.get("code") == "nosuchrevid" and revision is not None:
            raise RevisionNotFound(revision)
        raise WikipediaError(
            f"Wikipedia API error for {title!r}: {error.get('code')}: {error.get('info')}")
    parse = data.get("parse")
    if not isinstance(parse, dict) or "title" not in parse or "revid" not in parse:
        raise WikipediaError(f"Wikipedia answer for {title!r} has no parse result")
    # What an answer of another shape (a hostile or broken server) holds is never used as is.
    revid = parse["revid"]
    if (not isinstance(parse["title"], str) or not parse["title"].strip()
            or not isinstance(revid, int) or isinstance(revid, bool) or revid < 0
            or not isinstance(parse.get("text", ""), str)):
        raise WikipediaError(f"Wikipedia answer for {title!r} is malformed (title, revid or "
                             "text of another type)")
    parse = {**parse, "title": _SURROGATE.sub("\ufffd", parse["title"]),
             "text": _SURROGATE.sub("\ufffd", parse.get("text") or "")}
    for key, kind in (("properties", dict), ("redirects", list)):
        if not isinstance(parse.get(key), kind):
            parse.pop(key, None)
    return parse


# A lone surrogate (a JSON escape of half a pair) cannot be written as UTF-8: shown as U+FFFD.
_SURROGATE = re.compile("[\ud800-\udfff]")


def article_text(html: str, title: str) -> str:
    """The article's text (taxdata.clients.htmlclean); WikipediaError for HTML nested too
    deeply to walk (no article is; a hostile answer may be). bs4 and lxml load here, when an
    article's HTML is cleaned: a program that never parses HTML never imports them."""
    from taxdata.clients.htmlclean import HTMLTooDeep, clean_html

    try:
        return clean_html(html)
    except (HTMLTooDeep, RecursionError):
        raise WikipediaError(f"Wikipedia answer for {title!r}: its HTML is nested too deeply "
                             "to read") from None


_DISAMBIG_HTML = re.compile(r'id="disambigbox"|\bdmbox-disambig\b|\bmw-disambig\b')


def is_disambiguation(parse: dict[str, Any], html: str) -> bool:
    # The Disambiguation extension sets the ``disambiguation`` page prop; the template's box
    # markup is the fallback for wikis without the extension.
    properties = parse.get("properties")
    if isinstance(properties, dict) and "disambiguation" in properties:
        return True
    return bool(_DISAMBIG_HTML.search(html))
