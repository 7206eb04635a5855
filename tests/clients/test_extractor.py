"""ExtractorClient against the loopback stand-in service, and the built-in extractor."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import requests

from taxdata.clients.extractor import (
    ExtractorClient,
    ExtractorError,
    check_file_name,
    extract_builtin,
    wikipedia_title,
)
from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import WikipediaClient
from taxdata.testing.extractor_server import StandInExtractor
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.testing.server import RecordedRequest, Reply, StandInServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wikipedia"
PAGE_URL = "https://revenue.example.invalid/freedonia/income-tax"
NO_WAIT = RetryPolicy(attempts=3, sleep=lambda s: None)


@pytest.fixture
def service():
    server = StandInExtractor().start()
    server.add_page(PAGE_URL, "FIXTURE: Freedonia income tax is 12% to 37%.")
    server.add_file("freedonia.txt", "FIXTURE: invented text – ducats €\n")
    server.add_file("sylvania.txt", "FIXTURE: more invented text\n")
    yield server
    server.stop()


@pytest.fixture
def client(service):
    return ExtractorClient(service.base_url, retry=NO_WAIT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- service client ------------------------------------------------------------------------

def test_extract_returns_the_content(service, client):
    assert client.extract(PAGE_URL) == "FIXTURE: Freedonia income tax is 12% to 37%."
    (request,) = service.requests_to("/extract")
    assert request.method == "POST" and request.json() == {"url": PAGE_URL}


def test_extract_failure_carries_the_service_message(client):
    with pytest.raises(ExtractorError,
                       match="Failed to extract content from https://nowhere.invalid/"):
        client.extract("https://nowhere.invalid/")


def test_extract_retries_a_busy_service(service, client):
    service.fail_next(1, status=503)
    assert client.extract(PAGE_URL).startswith("FIXTURE")
    assert len(service.requests_to("/extract")) == 2


def test_list_txt_files(client):
    assert client.list_txt_files() == ["freedonia.txt", "sylvania.txt"]


def test_get_file_returns_utf8_text(service, client):
    assert client.get_file("freedonia.txt") == "FIXTURE: invented text – ducats €\n"
    assert [r.path for r in service.requests] == ["/files/freedonia.txt"]


def test_get_unknown_file_raises(client):
    with pytest.raises(ExtractorError, match="no file 'missing.txt'"):
        client.get_file("missing.txt")


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", "..", ".hidden", "x\\y", "", "a\x00b",
                                  "a..b", "/etc/passwd"])
def test_hostile_file_names_are_rejected_before_any_request(service, client, name):
    with pytest.raises(ValueError, match="unsafe file name"):
        client.get_file(name)
    assert service.requests == []


def test_plain_file_names_pass_the_check():
    assert check_file_name("Freedonia tax 2024.txt") == "Freedonia tax 2024.txt"


def test_check_passes_against_a_running_service(service, client):
    client.check()
    assert [r.path for r in service.requests] == ["/health"]


def test_service_down_gives_one_line_message():
    url = f"http://127.0.0.1:{free_port()}"
    client = ExtractorClient(url, retry=NO_WAIT)
    expected = (f"Web Content Extractor not reachable at {url} - "
                "start it or set TAXDATA_EXTRACTOR_URL")
    with pytest.raises(ExtractorError) as info:
        client.check()
    assert str(info.value) == expected
    with pytest.raises(ExtractorError) as info:
        client.extract(PAGE_URL)
    assert str(info.value) == expected


# -- built-in extraction -------------------------------------------------------------------

class _StaticSite(StandInServer):
    """A tiny web site: one article page wrapped in navigation and footer boilerplate."""

    PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<title>Freedonia income tax guide</title></head><body>
<nav><ul><li><a href="/">NAVLINK Home</a></li><li><a href="/about">NAVLINK About us</a></li></ul></nav>
<main><article>
<h1>Freedonia income tax guide</h1>
<p>FIXTURE: invented content for tests, not real tax data. Freedonia taxes the worldwide
income of its residents at progressive rates that run from zero to thirty-seven percent.</p>
<p>The first ten thousand ducats of taxable income are free of tax, and the next thirty
thousand ducats are taxed at twelve percent under the basic band of the schedule.</p>
<p>Income above ninety thousand ducats is taxed at thirty-seven percent, and returns are
due by the thirtieth of April each year with payment of any balance by the end of May.</p>
</article></main>
<footer><p>FOOTERTEXT Copyright Freedonian Revenue Office. All rights reserved.</p></footer>
</body></html>"""

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path == "/guide":
            return Reply(200, self.PAGE.encode(), {"Content-Type": "text/html; charset=utf-8"})
        return Reply(404, "not found")


@pytest.fixture
def site():
    server = _StaticSite().start()
    yield server
    server.stop()


@pytest.fixture
def wiki():
    server = StandInMediaWiki().start()
    html = (FIXTURES / "freedonia.html").read_text(encoding="utf-8")
    server.add_page("Freedonia", html, revid=7, redirect_from=["Republic of Freedonia"])
    yield server
    server.stop()


def test_builtin_wikipedia_url_goes_through_the_api(wiki):
    wikipedia = WikipediaClient(wiki.api_url, retry=NO_WAIT)
    with requests.Session() as session:
        text = extract_builtin("https://en.wikipedia.org/wiki/Republic_of_Freedonia#Taxation",
                               session=session, wikipedia=wikipedia)
    assert "### Personal income tax" in text and "| over 90,000 | 37% | 37% |" in text
    (request,) = wiki.requests_to("/w/api.php")
    assert request.query["page"] == ["Republic of Freedonia"]


def test_builtin_plain_page_uses_trafilatura(site):
    with requests.Session() as session:
        text = extract_builtin(f"{site.base_url}/guide", session=session, retry=NO_WAIT)
    assert "progressive rates that run from zero to thirty-seven percent" in text
    assert "returns are due by the thirtieth of April" in text
    assert "NAVLINK" not in text and "FOOTERTEXT" not in text


def test_builtin_page_error_is_an_extractor_error(site):
    with requests.Session() as session, pytest.raises(ExtractorError, match="HTTP 404"):
        extract_builtin(f"{site.base_url}/missing", session=session, retry=NO_WAIT)


def test_builtin_without_trafilatura_says_how_to_install(monkeypatch, site):
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # makes `import trafilatura` fail
    with requests.Session() as session, pytest.raises(ExtractorError,
                                                      match=r"pip install 'taxdata\[extract\]'"):
        extract_builtin(f"{site.base_url}/guide", session=session)
    assert site.requests == []


@pytest.mark.parametrize("url, title", [
    ("https://en.wikipedia.org/wiki/Taxation_in_Freedonia", "Taxation in Freedonia"),
    ("https://en.m.wikipedia.org/wiki/C%C3%B4te_d%27Ivoire", "Côte d'Ivoire"),
    ("https://en.wikipedia.org/w/index.php?title=Freedonia&oldid=1", "Freedonia"),
    ("https://en.wikipedia.org/wiki/", None),
    ("https://example.org/wiki/Freedonia", None),
    ("https://notwikipedia.org/wiki/Freedonia", None),
])
def test_wikipedia_title_from_url(url, title):
    assert wikipedia_title(url) == title
