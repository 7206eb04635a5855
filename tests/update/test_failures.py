"""A failed country can be debugged: each ask's raw reply (bounded) in the report and on -v,
words that say whether a record exists, and requests drawn as what they were. FIXTURE data."""

from __future__ import annotations

import json
import re

from _updater import (  # noqa: F401  (pytest fixtures)
    data,
    dataset,
    explain,
    put_taxation,
    reply,
    report_of,
    run_updater,
    server,
)

from taxdata.config import Settings
from taxdata.update.extract import REPLY_LIMIT

ASKS = 1 + Settings().max_reasks


def invalid_reply(slug: str = "germany") -> dict:
    bad = reply(slug)
    bad["vat"]["standard"] = 210  # outside 0..100, however often it is asked
    return bad


def test_a_failed_country_in_a_new_dataset_says_no_record_exists(server, data):
    put_taxation(data, "germany", generic=True)
    server.enqueue(*[invalid_reply()] * ASKS)
    proc = run_updater(data, server.url(), "--countries", "germany")
    assert proc.returncode == 1, explain(proc)
    entry = report_of(proc)["countries"]["germany"]
    assert entry["status"] == "FAILED"
    assert entry["reason"].endswith("; no record exists yet (none written)")
    assert "previous record kept" not in proc.stdout + proc.stderr
    assert "FAILED germany: vat.standard: 210 is outside 0..100" in proc.stdout
    # every ask's reply, verbatim, with why it was rejected
    assert [r["ask"] for r in entry["replies"]] == list(range(1, ASKS + 1))
    for item in entry["replies"]:
        assert json.loads(item["reply"])["vat"]["standard"] == 210
        assert any("210 is outside 0..100" in e for e in item["rejected"])


def test_a_failed_country_with_a_record_keeps_it_and_says_so(server, data):
    put_taxation(data, "germany", generic=True)
    server.enqueue(reply("germany"))
    assert run_updater(data, server.url(), "--countries", "germany").returncode == 0
    before = dataset(data)["countries"]["germany"]
    server.enqueue(*[invalid_reply()] * ASKS)
    proc = run_updater(data, server.url(), "--countries", "germany", "--force")
    assert proc.returncode == 1
    assert report_of(proc)["countries"]["germany"]["reason"].endswith("; previous record kept")
    assert dataset(data)["countries"]["germany"] == before


def test_a_long_reply_is_kept_bounded(server, data):
    put_taxation(data, "germany", generic=True)
    server.enqueue(*["Sure! Here is what I found. " * 1000] * ASKS)
    proc = run_updater(data, server.url(), "--countries", "germany")
    replies = report_of(proc)["countries"]["germany"]["replies"]
    assert len(replies) == ASKS
    for item in replies:
        # The client stops reading a reply past what the schema can need; what it read is kept,
        # bounded to REPLY_LIMIT characters, with its real length.
        assert REPLY_LIMIT < item["chars"] <= len("Sure! Here is what I found. " * 1000)
        assert item["reply"].startswith("Sure! Here is what I found.")
        assert len(item["reply"]) < REPLY_LIMIT + 40  # the text up to the limit, and a marker
        assert item["reply"].endswith("more chars]")


def test_verbose_shows_each_reply(server, data):
    put_taxation(data, "germany", generic=True)
    server.enqueue(invalid_reply(), reply("germany"))
    proc = run_updater(data, server.url(), "--countries", "germany", "-v")
    assert proc.returncode == 0, explain(proc)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[LLM-REPLY]")]
    assert len(lines) == 2
    assert re.match(r"\[LLM-REPLY\] Thread-1 Extracting germany \(\d+ chars\): \{", lines[0])
    assert '"standard": 210' in lines[0] and '"standard": 20' in lines[1]


def test_a_reply_rejected_after_validation_is_drawn_invalid(server, data):
    # "{}" parses and validates (every figure null) but states nothing: the country fails, and
    # its request is an invalid reply in the report's timeline, never a green "ok".
    put_taxation(data, "germany", generic=True)
    server.enqueue("{}")
    proc = run_updater(data, server.url(), "--countries", "germany")
    assert proc.returncode == 1
    entry = report_of(proc)["countries"]["germany"]
    assert entry["reason"].startswith("the reply states no tax facts")
    assert entry["replies"][0]["rejected"] == [
        "the reply states no tax facts (system, brackets, VAT and social security all null)"]
    [page] = (data / "reports").glob("update-*.html")
    bars = re.findall(r'<rect class="(ok|retried|invalid|failed)"', page.read_text())
    assert bars == ["invalid"]
