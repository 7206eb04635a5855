"""The HTML run report: timeline from the run's events, endpoint panels, the country table, a browser.

The 200-country test is a real updater run (in-process ``main(argv)``) against the stand-in LLM
with the rule-based responder and scripted faults; its figures come from made-up SAMPLE files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from _programs import logger_restored
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
from taxdata.testing.browser import check_page, find_chromium
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
        (taxation / f"{slug}.md").write_text(compose(body, SourceInfo(
            kind="wikipedia", title=f"Taxation in {name}", url=f"https://example.org/{slug}",
            revision=str(1000 + i))), encoding="utf-8")
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
    with llm, pytest.MonkeyPatch.context() as mp, logger_restored():
        unreachable_wikipedia(mp)  # (this module-scoped run comes before conftest's _isolated)
        mp.setenv("TAXDATA_COUNTRIES", str(registry))
        code = commands.update_main(["--data-dir", str(tmp), "--input-dir", str(taxation),
                                     "--llm-url", llm.url(), "--model", "sample-rules",
                                     "-w", "8", "--no-progress"])
        # the chats about a country: not the preflight's model list, context or form probe
        requests = [r for r in llm.requests_to("/chat") if not is_probe(r.json())]
    reports = sorted((tmp / "reports").glob("update-*"))
    return code, reports, requests, tmp


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
    code, reports, requests, _ = big_run
    assert code == 1  # the refused country and the invalid one failed
    assert [p.suffix for p in reports] == [".html", ".json"]
    report = json.loads(reports[1].read_text())
    page = reports[0].read_text(encoding="utf-8")
    assert report["counts"]["ADDED"] == 198 and report["counts"]["FAILED"] == 2
    rows = re.findall(r'<tr id="c-(sample_\d{3})">', page)
    assert rows == sorted(report["countries"])
    # one lane per worker thread, one bar per request the server saw
    lanes = re.findall(r'<text class="lane" x="0" y="[\d.]+">(Thread-\d+)<', page)
    assert lanes == [f"Thread-{i}" for i in range(1, 9)]
    bars = re.findall(r'<rect class="(ok|retried|invalid|failed)"', page)
    assert len(bars) == len(requests)
    assert bars.count("retried") == sum(r.status == 503 for r in requests) == 3
    assert bars.count("failed") == sum(r.status == 400 for r in requests) == 1
    # 2 broken replies + the gap country, asked once and re-asked TAXDATA_MAX_REASKS times
    assert bars.count("invalid") == 2 + 1 + Settings().max_reasks
    assert page.count('<rect class="wait"') == 3
    assert "sample_007" in page and "leaves a gap" in page
    # revision and source from the provenance
    assert ">1042<" in page and 'href="https://example.org/sample_042"' in page


def test_report_page_loads_nothing_from_the_network(big_run):
    page = big_run[1][0].read_text(encoding="utf-8")
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", page, re.I)


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium_without_console_errors(big_run, tmp_path):
    html = big_run[1][0]
    result = check_page(html, tmp_path / "report.png", height=3000)
    assert result.problems == [] and result.console == []
    assert result.screenshot is not None and result.screenshot.stat().st_size > 10_000


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
                                                   "quote": "x", "reason": "not found"}]},
        "b": {"status": "ADDED"}}}
    page = render_html(report, [])
    assert "UNSUPPORTED (not written): vat.standard" in page
    assert re.search(r'Needs a look \(1\):\s*<a href="#c-a">a</a> \(unsupported\)', page)
