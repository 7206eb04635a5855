"""The HTML run report: timeline from the run's events, endpoint panels, the country table, a browser.

The 200-country test is a real updater run (in-process ``main(argv)``) against the stand-in LLM
with the rule-based responder and scripted faults; its figures come from made-up SAMPLE files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import io
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from _programs import logger_restored
from _updater import put_original
from conftest import unreachable_wikipedia

from taxdata import events as ev
from taxdata.cli import commands
from taxdata.config import Settings
from taxdata.events import (
    Event,
    GaveUp,
    LimitChanged,
    ReplyRejected,
    RequestEnded,
    RequestStarted,
    Retry,
)
from taxdata.report.html import build_timeline, render_html
from taxdata.store.taxfile import SourceInfo, compose
from taxdata.testing.browser import check_page, find_chromium, rendered_dom
from taxdata.testing.llm_server import Fault, StandInLLM, is_probe
from taxdata.testing.responder import rule_based_reply
from taxdata.testing.samples import research_answer

URL = "http://127.0.0.1:5001/chat"


def events(*timed: tuple[float, Event]) -> list[Event]:
    """The events as a run records them, ``t`` seconds into it."""
    return [dataclasses.replace(event, at=100.0 + t) for t, event in timed]


def test_timeline_pairs_requests_by_id_and_classifies_outcomes():
    timeline = build_timeline(events(
        (0.0, RequestStarted("Thread-1", URL, "m", "Extracting a", 1)),
        (0.0, RequestStarted("Thread-2", URL, "m", "Extracting b", 2)),
        (1.0, RequestEnded("Thread-1", 1, 503, 1.0, ev.BUSY)),
        (1.0, Retry("Thread-1", "", "HTTP 503", 2, 5, 0.5, 1)),
        (1.5, RequestStarted("Thread-1", URL, "m", "Extracting a", 3)),
        (2.0, RequestEnded("Thread-2", 2, 200, 2.0, ev.REPLY)),
        (2.0, ReplyRejected("Thread-2", "b reply 1 rejected",
                            "vat.standard: 210 is outside 0..100", 2)),
        (2.5, RequestEnded("Thread-1", 3, 200, 1.0, ev.REPLY)),
        (2.6, RequestStarted("Thread-2", URL, "m", "Extracting b", 4)),
        (3.0, RequestEnded("Thread-2", 4, None, 0.4, ev.NO_ANSWER,
                           "Connection failed to http://127.0.0.1:5001/chat")),
        (3.0, GaveUp("Thread-2", "", "Connection failed to http://127.0.0.1:5001/chat",
                     " (attempt 5/5, giving up)", 4)),
        (3.0, Retry("Thread-2", "Wikipedia", "HTTP 429", 2, 5, 1.0)),  # not the LLM's
        (3.1, LimitChanged("127.0.0.1:5001", 4, 2, "HTTP 503")),
    ))
    outcomes = [(b.lane, b.outcome, b.wait) for b in timeline.bars]
    assert outcomes == [("Thread-1", "retried", 0.5), ("Thread-2", "invalid", 0.0),
                        ("Thread-1", "ok", 0.0), ("Thread-2", "failed", 0.0)]
    assert [round(b.end - b.start, 1) for b in timeline.bars] == [1.0, 2.0, 1.0, 0.4]
    endpoint = timeline.endpoints["127.0.0.1:5001"]
    assert endpoint.requests == 4 and endpoint.retries == 1
    assert [limit for _, limit in endpoint.limits] == [4, 2]
    page = render_html({"countries": {}, "counts": {}}, events(
        (0.0, RequestStarted("Thread-1", URL, "m", "", 1)),
        (1.0, RequestEnded("Thread-1", 1, 200, 1.0, ev.REPLY)),
        (1.1, LimitChanged("127.0.0.1:5001", 4, 2, "HTTP 503"))))
    assert 'class="limit"' in page and "1 change(s) logged by [ADAPT]" in page


def test_the_compiled_template_is_kept_between_runs(tmp_path, monkeypatch):
    from jinja2 import Environment

    from taxdata.report import html as report_html

    compiled: list[str] = []
    compile_template = Environment.compile

    def counting(self, source, name=None, *args, **kwargs):
        compiled.append(name)
        return compile_template(self, source, name, *args, **kwargs)

    monkeypatch.setattr(Environment, "compile", counting)
    report = {"countries": {}, "counts": {}}
    cache = tmp_path / "templates"
    for _ in range(2):  # a fresh environment each time: two processes, one after the other
        report_html._environment.cache_clear()
        first = render_html(report, [], cache_dir=str(cache))
    assert compiled == ["run_report.html.j2"]  # compiled once; the second run read it back
    assert any(cache.iterdir())
    for kept in cache.iterdir():  # a cache file cut short is compiled again, not an error
        kept.write_bytes(kept.read_bytes()[:20])
    report_html._environment.cache_clear()
    assert render_html(report, [], cache_dir=str(cache)) == first
    assert compiled == ["run_report.html.j2"] * 2
    report_html._environment.cache_clear()


def test_a_run_without_requests_says_so():
    page = render_html({"countries": {"a": {"status": "UNCHANGED", "reason": "up to date"}},
                        "counts": {"UNCHANGED": 1}}, [])
    assert "No LLM requests in this run" in page
    assert "<rect" not in page
    assert 'id="c-a"' in page


def _write_countries(tmp: Path, count: int) -> tuple[Path, Path]:
    """A SAMPLE registry of ``count`` fictional countries and their taxation files."""
    registry, taxation = {}, tmp / "taxation"
    taxation.mkdir(parents=True)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for i in range(count):
        slug, name = f"sample_{i:03d}", f"Sample {i:03d} (SAMPLE)"
        registry[slug] = {"name": name, "code": "X" + letters[i % 26], "currency": "XTS",
                          "wikipedia_title": f"Taxation in {name}", "coordinates": [0, 0]}
        body = research_answer(name, "XTS")
        if i == 7:  # a gap between brackets: invalid however often the model is asked
            body = body.replace("| 0 | and above | 12 |", "| 0 | 100 | 5 |\n| 500 | and above | 12 |")
            body = body.replace("System: flat", "System: progressive")
        text = compose(body, SourceInfo(
            kind="wikipedia", title=f"Taxation in {name}", url=f"https://example.org/{slug}",
            revision=str(1000 + i)))
        (taxation / f"{slug}.md").write_text(text, encoding="utf-8")
        put_original(tmp, slug, text)  # the article it was written from, in the cache
    path = tmp / "sample-countries.json"
    path.write_text(json.dumps({"_comment": "SAMPLE test registry", "countries": registry}))
    return path, taxation


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """One updater run over 200 SAMPLE countries with 8 workers and scripted faults."""
    tmp = tmp_path_factory.mktemp("big")
    registry, taxation = _write_countries(tmp, 200)
    # Each fault goes to a named country's first request, whatever order requests arrive in:
    # 3 busy answers (retried), 2 broken replies (re-asked), one refusal (fails for good).
    faults = {"Sample 010": Fault.http(503, retry_after="0.05"), "Sample 020": "not json at all",
              "Sample 030": Fault.http(503, retry_after="0.05"), "Sample 040": "also not json",
              "Sample 050": Fault.http(503, retry_after="0.05"),
              "Sample 060": Fault.http(400, "prompt refused")}
    lock = threading.Lock()

    def respond(body: dict) -> Any:
        if is_probe(body):
            return "{}"
        prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
        name = re.search(r"Country: (Sample \d{3})", prompt).group(1)
        with lock:
            fault = faults.pop(name, None)
        return fault if fault is not None else rule_based_reply(body)

    llm = StandInLLM(latency=0.005, responder=respond, models=("sample-rules",))
    printed = io.StringIO()
    with llm, pytest.MonkeyPatch.context() as mp, logger_restored(), \
            contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        unreachable_wikipedia(mp)  # (this module-scoped run comes before conftest's _isolated)
        mp.setenv("TAXDATA_COUNTRIES", str(registry))
        code = commands.update_main(["--data-dir", str(tmp), "--input-dir", str(taxation),
                                     "--llm-url", llm.url(), "--model", "sample-rules",
                                     "-w", "8", "--no-progress"])
        # the chats about a country: not the preflight's model list, context or form probe
        requests = [r for r in llm.requests_to("/chat") if not is_probe(r.json())]
    reports = sorted((tmp / "reports").glob("update-*"))
    return code, reports, requests, tmp, printed.getvalue()


def _small_run(tmp: Path, respond, *, level: str = "INFO") -> tuple[int, str, list, str]:
    """An updater run over 3 SAMPLE countries (2 workers) against the stand-in LLM answering
    with ``respond``: (exit code, the HTML report, the chat requests, stderr)."""
    registry, taxation = _write_countries(tmp, 3)
    llm = StandInLLM(responder=respond, models=("sample-rules",))
    stderr = io.StringIO()
    with llm, pytest.MonkeyPatch.context() as mp, logger_restored(), \
            contextlib.redirect_stderr(stderr):
        mp.setenv("TAXDATA_COUNTRIES", str(registry))
        mp.setenv("TAXDATA_LOG_LEVEL", level)
        code = commands.update_main(["--data-dir", str(tmp), "--input-dir", str(taxation),
                                     "--llm-url", llm.url(), "--model", "sample-rules",
                                     "-w", "2", "--no-progress"])
        requests = [r for r in llm.requests_to("/chat") if not is_probe(r.json())]
    [page] = (tmp / "reports").glob("update-*.html")
    return code, page.read_text(encoding="utf-8"), requests, stderr.getvalue()


def _bars(page: str) -> list[tuple[str, str]]:
    """(outcome, title) of each request's bar in the page."""
    return re.findall(r'<rect class="(ok|retried|invalid|failed)"[^>]*><title>([^<]*)</title>',
                      page)


def _vat_210_for_sample_001(body: dict) -> Any:
    """The rule-based reply; Sample 001's VAT at 210% (invalid, however often it is asked)."""
    reply = rule_based_reply(body)
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    if "Country: Sample 001" in prompt:
        reply["vat"]["standard"] = 210
    return reply


def test_a_rejected_reply_is_drawn_invalid_on_its_own_bar(tmp_path):
    code, page, requests, _ = _small_run(tmp_path, _vat_210_for_sample_001)
    assert code == 1  # Sample 001 failed validation on every ask
    bars = _bars(page)
    assert len(bars) == len(requests)
    asks = 1 + Settings().max_reasks
    mine = [(outcome, title) for outcome, title in bars if "sample_001" in title]
    assert [outcome for outcome, _ in mine] == ["invalid"] * asks
    assert all("rejected: vat.standard: 210" in title for _, title in mine)
    others = [outcome for outcome, title in bars if "sample_001" not in title]
    assert others == ["ok"] * 2


def test_the_report_has_every_request_when_the_log_level_hides_them(tmp_path):
    code, page, requests, stderr = _small_run(tmp_path, rule_based_reply, level="WARNING")
    assert code == 0
    assert "[LLM-REQUEST]" not in stderr and "[COMPLETED]" not in stderr
    assert [outcome for outcome, _ in _bars(page)] == ["ok"] * len(requests) == ["ok"] * 3
    assert "No LLM requests in this run" not in page


def test_200_country_run_writes_a_readable_html_report(big_run):
    code, reports, requests, _, _ = big_run
    assert code == 1  # the refused country and the invalid one failed
    assert [p.suffix for p in reports] == [".html", ".json"]
    report = json.loads(reports[1].read_text())
    page = reports[0].read_text(encoding="utf-8")
    assert report["counts"]["ADDED"] == 198 and report["counts"]["FAILED"] == 2
    anchors = re.findall(r'id="c-(sample_\d{3})"', page)
    assert sorted(anchors) == sorted(report["countries"])  # every country, once
    # the failed ones first, in full, then the written ones
    sections = re.findall(r'<section class="country" id="c-(sample_\d{3})" '
                          r'data-status="(\w+)">', page)
    assert [s for s, status in sections if status == "FAILED"] == ["sample_007", "sample_060"]
    assert [status for _, status in sections[:2]] == ["FAILED", "FAILED"]
    # one lane per worker thread, one bar per request the server saw
    lanes = re.findall(r'<text class="lane" x="0" y="[\d.]+">(Thread-\d+)<', page)
    assert lanes == [f"Thread-{i}" for i in range(1, 9)]
    bars = re.findall(r'<rect class="(ok|retried|invalid|failed)"', page)
    retried = re.findall(r'<rect class="retried"[^>]*><title>([^<]*)</title>', page)
    assert len(retried) == bars.count("retried")
    # Each busy answer is a retried bar. On a loaded machine a reused loopback connection can
    # also drop now and then (retried at once, the request perhaps never read by the server):
    # such a bar must say so, and no other bar is retried.
    busy = [title for title in retried if "HTTP 503" in title]
    dropped = [title for title in retried if "Connection failed" in title]
    assert len(busy) == sum(r.status == 503 for r in requests) == 3, retried
    assert len(busy) + len(dropped) == len(retried), retried
    assert len(bars) - len(dropped) <= len(requests) <= len(bars)
    assert bars.count("failed") == sum(r.status == 400 for r in requests) == 1
    # 2 broken replies + the gap country, asked once and re-asked TAXDATA_MAX_REASKS times
    assert bars.count("invalid") == 2 + 1 + Settings().max_reasks
    # Each busy answer's wait is drawn; a dropped connection's short jittered wait may be too.
    assert len(busy) <= page.count('<rect class="wait"') <= len(retried)
    assert "leaves a gap" in page
    # revision and source from the provenance
    assert "revision 1042" in page and 'href="https://example.org/sample_042"' in page


def _summary_number(printed: str, pattern: str) -> int:
    return int(re.search(pattern, printed, re.M).group(1))


def test_the_page_header_says_what_the_summary_printed(big_run):
    _, reports, _, _, printed = big_run
    page = reports[0].read_text(encoding="utf-8")
    header = page.split("<h2>Countries</h2>")[0]
    shown = dict((status, int(n)) for n, status in re.findall(
        r'<span class="n">(\d+)</span> <span class="status st-\w+">(\w+)</span>', header))
    printed_counts = {status: _summary_number(printed, rf"^  {status}\s+(\d+)$")
                      for status in shown}
    assert shown == printed_counts and shown["FAILED"] == 2
    unsupported = _summary_number(printed, r"^  UNSUPPORTED figures: (\d+) in")
    assert f'<span class="n">{unsupported}</span> unsupported figure' in header
    assert re.search(r'<span class="n">0</span> disputed', header)
    assert re.search(r'<span class="n">0</span> unverified', header)
    assert re.search(r"\(\d+\.\ds wall time\)", header)
    # the servers' lines as the summary printed them
    [line] = re.findall(r"^  LLM (127\.0\.0\.1:\d+: .*)$", printed, re.M)
    assert f"<code>{line}</code>" in page
    # the last lines name the report and its page
    assert printed.rstrip().splitlines()[-2:] == [f"  Report: {reports[1]}",
                                                  f"  Review page: {reports[0]}"]


def test_written_figures_stand_highlighted_in_their_source_passage(big_run):
    _, reports, _, tmp, _ = big_run
    page = reports[0].read_text(encoding="utf-8")
    dataset = json.loads((tmp / "tax_data.json").read_text())
    entry = dataset["countries"]["sample_042"]
    section = page.split('id="c-sample_042"')[1].split("</section>")[0]
    quotes = entry["provenance"]["evidence"]
    assert quotes and all(f"<mark>{html.escape(q, quote=True)}</mark>" in section
                          for q in quotes.values())
    assert f'<td class="value">{entry["record"]["vat"]["standard"]}</td>' in section
    assert "DEMO / SAMPLE DATA" in page  # the SAMPLE registry's countries


def test_a_failed_country_shows_the_models_raw_replies(big_run):
    _, reports, _, _, _ = big_run
    page = reports[0].read_text(encoding="utf-8")
    section = page.split('id="c-sample_007"')[1].split("</section>")[0]
    asks = 1 + Settings().max_reasks
    assert section.count('<pre class="reply">') == asks
    assert "no record exists yet" in section
    assert "leaves a gap" in section


def test_report_page_loads_nothing_from_the_network(big_run):
    page = big_run[1][0].read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=|<link|<img|<iframe|@import|url\(", page, re.I)
    assert page.count("<script>") == 1  # the one inline filter


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_without_console_errors(big_run, tmp_path):
    _, reports, _, tmp, _ = big_run
    html_page = reports[0]
    result = check_page(html_page, tmp_path / "report.png", height=3000)
    assert result.problems == [] and result.console == []
    assert result.screenshot is not None and result.screenshot.stat().st_size > 10_000
    dom = rendered_dom(html_page)
    assert re.search(r'<div id="filter">', dom)  # the script ran: the filter shows
    text = html.unescape(re.sub(r"<[^>]+>", "", dom))
    dataset = json.loads((tmp / "tax_data.json").read_text())
    for slug in ("sample_000", "sample_123", "sample_199"):
        for quote in dataset["countries"][slug]["provenance"]["evidence"].values():
            assert quote in text, (slug, quote)


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (.ci/run installs it)")
def test_browser_check_reports_console_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('boom'); missing();</script></body></html>")
    result = check_page(page, tmp_path / "broken.png", width=400, height=300)
    assert not result.ok
    assert any("boom" in line for line in result.console)
    assert any("missing is not defined" in line for line in result.console)


def test_unsupported_figures_are_listed_and_flagged():
    report = {"counts": {"ADDED": 2}, "countries": {
        "a": {"status": "ADDED", "unsupported": [{"path": "vat.standard", "value": 5,
                                                   "quote": "x", "reason": "not found",
                                                   "withheld": False}]},
        "b": {"status": "ADDED"}}}
    page = render_html(report, [])
    section = page.split('id="c-a"')[1].split("</section>")[0]
    assert "UNSUPPORTED, not written" in section
    assert re.search(r'<td class="path">vat.standard</td><td class="value">5</td>'
                     r'<td>&ldquo;x&rdquo;</td><td>not found</td>', section)
    assert re.search(r'Look at these first \(1\):\s*<a href="#c-a">a</a> \(unsupported\)', page)
    assert re.search(r'<span class="n">1</span> unsupported figure ', page)
    assert "DEMO / SAMPLE" not in page


TEXT = """# Taxation in Examplia (FIXTURE)

## VAT

The standard VAT rate is **21 %**. A reduced rate of 9 % applies to food.

## Social security

| Contribution | Employee | Employer |
|---|---|---|
""" + "".join(f"| Fund {i} | 1.{i} % | 2.{i} % |\n" for i in range(20)) + """| Pension | 10 % | 20 % |
"""
RECORD = {"name": "Examplia", "system": None, "brackets": [],
          "vat": {"standard": 21, "reduced": [9]},
          "socialSecurity": {"employeeRate": 10, "employerRate": 20}}


ORIGINAL = {"kind": "wikipedia", "label": "Taxation in Examplia rev 7",
            "url": "https://example.org/a", "revision": "7", "sha256": "0" * 64, "chars": 999,
            "location": ".cache/wikipedia/revisions/7.json"}


def _report_with(evidence: dict, grounding: dict | None = None, old: dict | None = None):
    provenance = {"evidence": evidence, "source_kind": "wikipedia",
                  "source_url": "http://127.0.0.1:8080/wiki/Taxation_in_Examplia"}
    if grounding is not None:  # as the updater writes them (taxdata.record.models)
        provenance["grounding"], provenance["original"] = grounding, ORIGINAL
    report = {"counts": {"MODIFIED": 1}, "model": "m", "countries": {"examplia": {
        "status": "MODIFIED", "evidence": evidence, "source_file": "examplia.md",
        "changes": [{"path": "vat.standard", "old": 20, "new": 21},
                    {"path": "notes", "old": None, "new": "x"}]}}}
    dataset = {"countries": {"examplia": {"record": RECORD, "provenance": provenance}}}
    previous = {"examplia": {"record": old or dict(RECORD, vat={"standard": 20, "reduced": [9]})}}
    return report, dataset, previous


def test_a_quote_is_found_across_markdown_and_shown_with_its_context():
    evidence = {"vat.standard": "The standard VAT rate is 21 %",
                "socialSecurity.employerRate": "| Pension | 10 % | 20 % |"}
    report, dataset, previous = _report_with(evidence)
    seen = []

    def sources(slug, source):
        seen.append((slug, source))
        return TEXT

    page = render_html(report, [], dataset, previous=previous, sources=sources)
    assert seen == [("examplia", None)]  # one read per source text
    assert '<mark>The standard VAT rate is **21 %</mark>**. A reduced rate' in page
    assert '<span class="old">20</span> &rarr; 21' in page  # old -> new
    # a long table: the row, and the header row that labels its cells
    assert "| Contribution | Employee | Employer |\n&hellip;" in page
    assert "<mark>| Pension | 10 % | 20 % |</mark>" in page
    assert "Also changed: notes" in page
    # a stand-in's URL is named, not linked
    assert 'href="http://127.0.0.1:8080' not in page and "a server on this machine" in page


def test_grounding_offsets_are_used_when_they_point_at_the_quote():
    start = TEXT.index("A reduced rate of 9 %")
    grounding = {"vat.reduced[0]": {"quote": "A reduced rate of 9 %", "start": start,
                                    "end": start + len("A reduced rate of 9 %")}}
    report, dataset, previous = _report_with({}, grounding)
    asked = []

    def sources(slug, source):
        asked.append(source)
        return TEXT if source else None

    page = render_html(report, [], dataset, previous=previous, sources=sources)
    assert asked[0] == ORIGINAL  # the original the offsets point into
    assert "(at its recorded offsets)" in page
    assert "<mark>A reduced rate of 9 %</mark>" in page
    # offsets that no longer point at the quote: found by search instead
    grounding["vat.reduced[0]"]["start"] += 3
    page = render_html(report, [], dataset, previous=previous, sources=sources)
    assert "(at its recorded offsets)" not in page and "<mark>A reduced rate of 9 %</mark>" in page


def test_a_quote_that_is_not_in_the_text_says_so():
    report, dataset, previous = _report_with({"vat.standard": "VAT is 22 percent"})
    page = render_html(report, [], dataset, previous=previous, sources=lambda *_: TEXT)
    assert ("&ldquo;VAT is 22 percent&rdquo; <span class=\"small\">(quote not located in the "
            "source text available here)</span>") in page
