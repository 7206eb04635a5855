"""WikipediaClient and clean_html against a real loopback stand-in MediaWiki (splitting the
cleaned text: tests/test_taxfile.py)."""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taxdata.clients.htmlclean import clean_html
from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import (
    ArticleNotFound,
    DisambiguationPage,
    RevisionNotFound,
    WikipediaClient,
    WikipediaError,
    cache_relpath,
    revision_relpath,
)
from taxdata.log import logger
from taxdata.store.datadir import DataDir
from taxdata.testing.mediawiki_server import StandInMediaWiki

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wikipedia"
API = "/w/api.php"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture
def wiki():
    server = StandInMediaWiki().start()
    server.add_page("Freedonia", fixture("freedonia.html"), revid=424242,
                    redirect_from=["Republic of Freedonia"])
    server.add_disambiguation("Freedonia (disambiguation)",
                              fixture("freedonia_disambiguation.html"))
    yield server
    server.stop()


@pytest.fixture
def log_lines():
    """Lines logged on the taxdata logger (independent of setup_logging's propagate=False)."""
    lines: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = _Collect()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def client_for(server: StandInMediaWiki, sleeps: list[float] | None = None,
               **kwargs) -> WikipediaClient:
    sleeps = [] if sleeps is None else sleeps
    kwargs.setdefault("retry", RetryPolicy(attempts=5, sleep=sleeps.append))
    return WikipediaClient(server.api_url, **kwargs)


# -- clean_html ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cleaned() -> str:
    return clean_html(fixture("freedonia.html"))


def test_clean_keeps_headings_of_both_markups(cleaned):
    lines = cleaned.splitlines()
    assert "## History" in lines and "## Taxation" in lines            # div.mw-heading > h2
    assert "### Personal income tax" in lines                          # h3 > span.mw-headline
    assert "### Value-added tax" in lines                              # div.mw-heading3 > h3


def test_clean_keeps_paragraphs_and_lists(cleaned):
    assert ("Freedonia, officially the Republic of Freedonia, is an invented country used only "
            "as a test fixture. Its tax system") in cleaned
    assert "The standard VAT rate is 19%, with a reduced rate of 7% on food.\n" in cleaned
    assert ("- pension contributions up to 8,000 ducats;\n- charitable gifts\n"
            "  - to registered charities only\n- mortgage interest on a main home.") in cleaned
    assert ("1. register with the Revenue Office;\n2. file the return by 30 April;\n"
            "3. pay any balance by 31 May.") in cleaned


def test_clean_renders_the_bracket_table_as_markdown(cleaned):
    table = "\n".join([
        "| Taxable income (FDD) | Rate | Notes |",
        "| --- | --- | --- |",
        "| 0 – 10,000 | 0% | Basic band |",
        "| 10,001 – 40,000 | 12% | Basic band |",            # rowspan repeated
        "| 40,001 – 90,000 | 23% | Higher band \\| surcharge |",  # '|' escaped, [5] gone
        "| over 90,000 | 37% | 37% |",                         # colspan repeated
    ])
    assert table in cleaned
    assert "Income tax brackets, 2024 (FIXTURE)\n\n| Taxable" in cleaned  # caption kept


@pytest.mark.parametrize("junk", [
    "[edit]", "edit]", "[1]", "[3]", "REFTEXT", "REFPARA", "NAVBOXTEXT", "Countries of fiction",
    "This article is about", "TOCENTRY", "Contents", "SEEALSOITEM", "EXTLINK", "INFOBOXCAPITAL",
    "INFOBOXGDP", "Republic of Freedonia\n", "AMBOXTEXT", "FIGCAPTION", "SCRIPTTEXT",
    "mw-parser-output", "hatnote{", "citation needed", "FIXTURE country used", "NewPP",
    "## See also", "## References", "## External links",
])
def test_clean_drops_junk(cleaned, junk):
    assert junk not in cleaned


def test_clean_output_is_plain_text(cleaned):
    assert not re.search(r"<[a-zA-Z/!][^>]*>", cleaned)
    assert cleaned.endswith(".\n") and not cleaned.endswith("\n\n")
    assert "\n\n\n" not in cleaned
    assert all(line == line.strip() or line.startswith("  ") for line in cleaned.splitlines())


def test_clean_drops_a_section_until_the_next_heading_of_its_level():
    html = ('<div class="mw-parser-output"><h2>Rates</h2><p>Kept one.</p>'
            '<h3>Notes</h3><p>Dropped note.</p><h4>Deeper</h4><p>Dropped deeper.</p>'
            '<h3>Thresholds</h3><p>Kept two.</p></div>')
    assert clean_html(html) == "## Rates\n\nKept one.\n\n### Thresholds\n\nKept two.\n"


def test_clean_handles_section_wrappers_and_two_row_headers():
    html = ('<div class="mw-parser-output"><section data-mw-section-id="1">'
            '<div class="mw-heading mw-heading2"><h2 id="Rates">Rates</h2></div>'
            '<table class="wikitable"><tr><th rowspan="2">Year</th><th colspan="2">Rate</th></tr>'
            '<tr><th>Low</th><th>High</th></tr><tr><td>2024</td><td>5%</td><td>9%</td></tr>'
            '</table></section><section data-mw-section-id="2">'
            '<div class="mw-heading mw-heading2"><h2 id="Notes">Notes</h2></div>'
            '<p>Dropped.</p></section></div>')
    assert clean_html(html) == ("## Rates\n\n| Year | Rate Low | Rate High |\n| --- | --- | --- |\n"
                                "| 2024 | 5% | 9% |\n")


# -- fetch ---------------------------------------------------------------------------------

def test_fetch_returns_the_article_and_asks_the_api_as_specified(wiki):
    article = client_for(wiki).fetch("Freedonia")
    assert article.requested_title == "Freedonia" and article.title == "Freedonia"
    assert article.revision_id == 424242
    assert article.url == f"{wiki.base_url}/wiki/Freedonia"
    assert "mw-parser-output" in article.html
    assert article.text == clean_html(article.html)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", article.fetched_at)
    assert article.from_cache is False
    (request,) = wiki.requests_to(API)
    assert request.method == "GET"
    params = {k: v[0] for k, v in request.query.items()}
    assert params["action"] == "parse" and params["page"] == "Freedonia"
    assert params["prop"].split("|")[:3] == ["text", "revid", "displaytitle"]
    assert (params["redirects"], params["formatversion"], params["format"], params["maxlag"]) \
        == ("1", "2", "json", "5")
    assert "taxdata/" in request.headers["User-Agent"]
    assert "https://" in request.headers["User-Agent"]


def test_default_client_points_at_english_wikipedia():
    client = WikipediaClient()
    assert client.api_url == "https://en.wikipedia.org/w/api.php"
    assert client.article_url("Côte d'Ivoire") == "https://en.wikipedia.org/wiki/C%C3%B4te_d'Ivoire"


@pytest.mark.parametrize("kwargs", [{"max_in_flight": 4}, {"max_in_flight": 0},
                                    {"user_agent": "python-requests/2.32"}])
def test_client_refuses_impolite_settings(kwargs):
    with pytest.raises(ValueError):
        WikipediaClient(**kwargs)


def test_fetch_logs_what_it_gets(wiki, log_lines):
    client_for(wiki).fetch("Freedonia")
    assert any(line.startswith("[FETCH] Main Wikipedia 'Freedonia' rev ") for line in log_lines)


def test_missing_page_raises_article_not_found(wiki):
    with pytest.raises(ArticleNotFound, match=r"no Wikipedia article 'Sylvania'") as info:
        client_for(wiki).fetch("Sylvania")
    assert isinstance(info.value, WikipediaError)
    assert len(wiki.requests_to(API)) == 1  # an answer, not a fault: no retry


def test_redirect_records_the_final_title(wiki, log_lines):
    article = client_for(wiki).fetch("Republic_of_Freedonia")
    assert article.requested_title == "Republic of Freedonia"
    assert article.title == "Freedonia"
    assert article.url.endswith("/wiki/Freedonia")
    assert "## Taxation" in article.text
    assert "[REDIRECT] Main Wikipedia 'Republic of Freedonia' -> 'Freedonia'" in log_lines


def test_disambiguation_page_is_rejected_by_page_prop(wiki):
    with pytest.raises(DisambiguationPage, match="disambiguation"):
        client_for(wiki).fetch("Freedonia (disambiguation)")


def test_disambiguation_page_is_rejected_by_markup(wiki):
    # Registered as an ordinary page: no page prop, only the dmbox markup gives it away.
    wiki.add_page("Fredonia", fixture("freedonia_disambiguation.html"))
    with pytest.raises(DisambiguationPage):
        client_for(wiki).fetch("Fredonia")


def test_other_api_errors_carry_the_api_info(wiki):
    with pytest.raises(WikipediaError, match=r"invalidtitle: Bad title \"Tax\[es\]\"") as info:
        client_for(wiki).fetch("Tax[es]")
    assert not isinstance(info.value, ArticleNotFound)


def test_429_with_retry_after_then_success(wiki, log_lines):
    wiki.fail_next(1, status=429, retry_after=2)
    sleeps: list[float] = []
    article = client_for(wiki, sleeps).fetch("Freedonia")
    assert article.revision_id == 424242
    assert len(wiki.requests_to(API)) == 2
    # Retry-After is a lower bound; the jitter on top is at most base * 2**0 = 1 s.
    assert len(sleeps) == 1 and 2.0 <= sleeps[0] <= 3.0
    assert f"[RETRY] Main Wikipedia HTTP 429, attempt 2 in {sleeps[0]:.1f}s" in log_lines


@pytest.mark.parametrize("status", [503, 502])
def test_5xx_without_retry_after_backs_off_with_jitter_above_the_floor(wiki, status):
    wiki.fail_next(2, status=status)
    sleeps: list[float] = []
    client_for(wiki, sleeps, retry=RetryPolicy(attempts=5, base=1.0, floor=0.5,
                                              sleep=sleeps.append)).fetch("Freedonia")
    assert len(wiki.requests_to(API)) == 3
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.5 and 0.5 <= sleeps[1] <= 2.5


def test_retries_used_up_raise_wikipedia_error(wiki):
    wiki.fail_next(3, status=502)
    with pytest.raises(WikipediaError, match="after 3 attempts: HTTP 502"):
        client_for(wiki, retry=RetryPolicy(attempts=3, sleep=lambda s: None)).fetch("Freedonia")
    assert len(wiki.requests_to(API)) == 3


@pytest.mark.parametrize("retry_after, expected", [(5, 5.0), (11, 11.0), (None, 5.0)])
def test_maxlag_then_success(wiki, log_lines, retry_after, expected):
    wiki.maxlag_next(1, lag=7, retry_after=retry_after)
    sleeps: list[float] = []
    article = client_for(wiki, sleeps).fetch("Freedonia")
    assert article.title == "Freedonia"
    assert len(wiki.requests_to(API)) == 2
    assert len(sleeps) == 1 and expected <= sleeps[0] <= expected + 1.0  # + jitter
    assert f"[RETRY] Main Wikipedia maxlag (7 s lagged), attempt 2 in {sleeps[0]:.1f}s" \
        in log_lines


def test_busy_is_bounded_by_the_deadline_not_the_attempts(wiki):
    wiki.fail_next(6, status=503)
    clock = iter(range(0, 1000, 10)).__next__  # every reading 10 s later than the last
    policy = RetryPolicy(attempts=2, deadline=45, sleep=lambda s: None, clock=clock)
    with pytest.raises(WikipediaError, match="HTTP 503"):
        client_for(wiki, retry=policy).fetch("Freedonia")
    # Two attempts are the limit for failures; busy answers went on until 45 s had passed.
    assert len(wiki.requests_to(API)) == 5


def test_never_more_than_three_requests_in_flight(wiki):
    titles = [f"Freedonia Province {n}" for n in range(12)]
    for n, title in enumerate(titles):
        wiki.add_page(title, f"<p>FIXTURE province {n}.</p>")
    wiki.latency = 0.2
    client = client_for(wiki)
    with ThreadPoolExecutor(max_workers=8) as pool:
        articles = list(pool.map(client.fetch, titles))
    assert [a.title for a in articles] == titles
    assert len(wiki.requests_to(API)) == 12
    assert wiki.peak_in_flight <= 3
    assert wiki.peak_in_flight == 3  # the cap is reached, so it is what limits the load


# -- cache ---------------------------------------------------------------------------------

def test_cache_hit_sends_no_request_and_refresh_refetches(wiki, tmp_path):
    data = DataDir(tmp_path)
    first = client_for(wiki, cache_dir=data).fetch("Freedonia")
    assert len(wiki.requests_to(API)) == 1
    # A fresh client (a re-run of the CLI) finds the entry on disk.
    again = client_for(wiki, cache_dir=data).fetch("Freedonia")
    assert len(wiki.requests_to(API)) == 1
    assert again.from_cache is True and again.html == ""
    assert (again.title, again.revision_id, again.text, again.url, again.fetched_at) \
        == (first.title, first.revision_id, first.text, first.url, first.fetched_at)
    refreshed = client_for(wiki, cache_dir=data).fetch("Freedonia", refresh=True)
    assert refreshed.from_cache is False
    assert len(wiki.requests_to(API)) == 2

    entry = json.loads(data.path(cache_relpath("Freedonia")).read_text(encoding="utf-8"))
    assert entry["title"] == "Freedonia" and entry["revision_id"] == 424242
    assert entry["text"] == first.text and "fetched_at" in entry
    assert "<" not in json.dumps(entry)  # html-free


def test_cache_keys_by_requested_title_after_a_redirect(wiki, tmp_path):
    data = DataDir(tmp_path)
    client_for(wiki, cache_dir=data).fetch("Republic of Freedonia")
    cached = client_for(wiki, cache_dir=data).fetch("Republic of Freedonia")
    assert cached.from_cache and cached.title == "Freedonia"
    assert len(wiki.requests_to(API)) == 1


def test_damaged_cache_entry_is_refetched(wiki, tmp_path):
    data = DataDir(tmp_path)
    data.write_text(cache_relpath("Freedonia"), "{not json")
    article = client_for(wiki, cache_dir=data).fetch("Freedonia")
    assert article.from_cache is False and len(wiki.requests_to(API)) == 1


def test_missing_page_is_not_cached(wiki, tmp_path):
    data = DataDir(tmp_path)
    for _ in range(2):
        with pytest.raises(ArticleNotFound):
            client_for(wiki, cache_dir=data).fetch("Sylvania")
    assert len(wiki.requests_to(API)) == 2


@pytest.mark.parametrize("title", ["../../etc/passwd", "a/b\\c", "C++", "C#", "Côte d'Ivoire",
                                   "..", "x" * 500, "\u0000nul", "日本"])
def test_cache_key_is_safe_for_any_title(tmp_path, title):
    rel = cache_relpath(title)
    assert re.fullmatch(r"\.cache/wikipedia/[a-z0-9-]+-[0-9a-f]{10}\.json", rel)
    assert DataDir(tmp_path).path(rel).parent == (tmp_path / ".cache" / "wikipedia").resolve()


def test_cache_keys_differ_for_titles_that_slugify_alike():
    assert len({cache_relpath(t) for t in ["C++", "C#", "C", "c"]}) == 4


# -- one exact revision (what the updater verifies a taxation file's figures in) ---------------

def test_fetch_revision_asks_for_exactly_that_revision_and_keeps_it(wiki, tmp_path):
    data = DataDir(tmp_path)
    old = fixture("freedonia.html")
    wiki.add_page("Freedonia", old.replace("19%", "21%"), revid=424243)  # a newer revision
    article = client_for(wiki, cache_dir=data).fetch_revision("Freedonia", 424242)
    (request,) = wiki.requests_to(API)
    assert request.query["oldid"] == ["424242"] and "page" not in request.query
    assert article.revision_id == 424242 and "standard VAT rate is 19%" in article.text
    assert article.url.endswith("/w/index.php?title=Freedonia&oldid=424242")
    kept = json.loads(data.path(revision_relpath(424242)).read_text(encoding="utf-8"))
    assert kept["revision_id"] == 424242 and kept["text"] == article.text
    # Kept: a second client asks nothing; the title's current revision is another matter.
    again = client_for(wiki, cache_dir=data)
    assert again.fetch_revision("Freedonia", 424242).text == article.text
    assert again.cached_revision("Freedonia", 424242) == revision_relpath(424242)
    assert again.cached_revision("Freedonia", 424243) is None
    assert len(wiki.requests_to(API)) == 1


def test_fetch_revision_uses_the_title_entry_when_it_holds_that_revision(wiki, tmp_path):
    data = DataDir(tmp_path)
    client_for(wiki, cache_dir=data).fetch("Freedonia")
    client = client_for(wiki, cache_dir=data)
    assert client.fetch_revision("Freedonia", 424242).from_cache
    assert client.cached_revision("Freedonia", 424242) == cache_relpath("Freedonia")
    assert len(wiki.requests_to(API)) == 1


def test_a_refresh_keeps_the_revision_it_replaces(wiki, tmp_path):
    data = DataDir(tmp_path)
    first = client_for(wiki, cache_dir=data).fetch("Freedonia")
    wiki.add_page("Freedonia", fixture("freedonia.html").replace("19%", "21%"), revid=424243)
    client_for(wiki, cache_dir=data).fetch("Freedonia", refresh=True)
    kept = client_for(wiki, cache_dir=data).fetch_revision("Freedonia", 424242)
    assert kept.text == first.text and len(wiki.requests_to(API)) == 2


def test_a_revision_that_does_not_exist_is_its_own_error(wiki):
    with pytest.raises(RevisionNotFound) as caught:
        client_for(wiki).fetch_revision("Freedonia", 999)
    assert caught.value.revision == 999 and str(caught.value) == "no Wikipedia revision 999"
