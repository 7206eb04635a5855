"""A hostile or broken MediaWiki answer (issue 18, no traceback on any input): every answer of
another shape, HTML nested beyond reason, a lone surrogate, a malformed revision history is a
:class:`WikipediaError` with one line (the country fails, the run goes on), never another
exception. The stand-in MediaWiki serves the hostile bodies over real HTTP."""

from __future__ import annotations

import json

import pytest

from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import WikipediaClient, WikipediaError
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.testing.server import Reply

GOOD_HISTORY = {"query": {"pages": [{"title": "T", "revisions": [
    {"revid": 1, "timestamp": "2020-01-01T00:00:00Z"}]}]}}

HOSTILE_PARSES = {
    "revid text": {"parse": {"title": "T", "revid": "abc", "text": "<p>x</p>"}},
    "revid bool": {"parse": {"title": "T", "revid": True, "text": "<p>x</p>"}},
    "revid infinite": {"parse": {"title": "T", "revid": 1e400}},
    "title number": {"parse": {"title": 5, "revid": 1, "text": "<p>x</p>"}},
    "title empty": {"parse": {"title": " ", "revid": 1, "text": "<p>x</p>"}},
    "text number": {"parse": {"title": "T", "revid": 1, "text": 7}},
    "text list": {"parse": {"title": "T", "revid": 1, "text": ["a"]}},
    "deep divs": {"parse": {"title": "T", "revid": 1, "text": "<div>" * 100_000}},
    "deep spans": {"parse": {"title": "T", "revid": 1, "text": "<span>" * 100_000}},
    "deep lists": {"parse": {"title": "T", "revid": 1, "text": "<ul><li>" * 5000}},
    "deep tables": {"parse": {"title": "T", "revid": 1, "text": "<table><tr><td>" * 3000}},
    "error text": {"error": "x"},
    "error code number": {"error": {"code": 5}},
    "a list": [1, 2],
    "parse list": {"parse": [1]},
}
HOSTILE_HISTORIES = {
    "revid text": {"query": {"pages": [{"title": "T", "revisions": [
        {"revid": "x", "timestamp": "2020"}]}]}},
    "no revisions": {"query": {"pages": [{"title": "T", "revisions": []}]}},
    "revisions text": {"query": {"pages": [{"title": "T", "revisions": "x"}]}},
    "pages text": {"query": {"pages": "x"}},
    "query number": {"query": 5},
    "page list": {"query": {"pages": [[1]]}},
    "no title": {"query": {"pages": [{"revisions": [{"revid": 1, "timestamp":
                                                      "2020-01-01T00:00:00Z"}]}]}},
}


class HostileWiki(StandInMediaWiki):
    parse: object = None
    history: object = GOOD_HISTORY

    def _answer(self, request):
        if request.query.get("meta"):
            return super()._answer(request)
        body = self.history if request.query.get("action") == ["query"] else self.parse
        return Reply(200, json.dumps(body, allow_nan=True).encode(),
                     {"Content-Type": "application/json"})


@pytest.fixture(scope="module")
def wiki():
    server = HostileWiki().start()
    yield server
    server.stop()


@pytest.mark.parametrize("min_age", [0, 3600], ids=["latest", "policy"])
@pytest.mark.parametrize("case", list(HOSTILE_PARSES))
def test_a_hostile_parse_answer_is_one_wikipedia_error(wiki, case, min_age):
    wiki.parse, wiki.history = HOSTILE_PARSES[case], GOOD_HISTORY
    client = WikipediaClient(wiki.api_url, retry=RetryPolicy(attempts=1))
    with pytest.raises(WikipediaError) as caught:
        client.fetch("T", min_age=min_age)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize("case", list(HOSTILE_HISTORIES))
def test_a_hostile_revision_history_is_one_wikipedia_error(wiki, case):
    wiki.parse = {"parse": {"title": "T", "revid": 1, "text": "<p>x</p>"}}
    wiki.history = HOSTILE_HISTORIES[case]
    client = WikipediaClient(wiki.api_url, retry=RetryPolicy(attempts=1))
    with pytest.raises(WikipediaError, match="Wikipedia history of 'T'"):
        client.fetch("T", min_age=3600)


def test_a_lone_surrogate_in_the_answer_is_shown_as_a_replacement_character(wiki, tmp_path):
    from taxdata.store.datadir import DataDir
    wiki.parse = {"parse": {"title": "T\ud800", "revid": 1, "text": "<p>VAT \udfff 21%</p>"}}
    wiki.history = GOOD_HISTORY
    client = WikipediaClient(wiki.api_url, cache_dir=DataDir(tmp_path), retry=RetryPolicy(
        attempts=1))
    article = client.fetch("T")
    assert article.title == "T\ufffd" and article.text == "VAT \ufffd 21%\n"
    assert client.fetch("T").from_cache  # and it could be written to the cache
