"""End-to-end tests for ``scripts/tax_data_updater.py``.

The script's ``main(argv)`` runs in this process (tests/_programs.py: its own environment, working
directory and captured output; the Ctrl-C test starts it as a process) against the stand-in LLM
server (one per test, shared by all the runs of that test). Replies are computed per country from the user message, so the order in which parallel workers
ask does not matter.

Every taxation file (``tests/fixtures/updater/``) and every scripted reply here is FIXTURE data:
invented figures for tests, not real tax data.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from typing import Any

import pytest
from _programs import eventually, script_command, signal_when
from _updater import (  # noqa: F401  (pytest fixtures)
    _COUNTRY,
    _PART,
    ESTONIA_VAT,
    FIXTURES,
    HAPPY,
    HAPPY_EVIDENCE,
    HAPPY_MISSING,
    HAPPY_SOURCES,
    JOURNAL,
    MODEL,
    PROMPT_VERSION,
    RECORD_KEYS,
    REGISTRY,
    SCRIPT,
    SUBPROCESS_TIMEOUT,
    TIMESTAMP,
    Parts,
    Script,
    chat_requests,
    chats_for,
    check_with_node,
    country_chats,
    counts,
    data,
    dataset,
    expected_record,
    explain,
    free_port,
    is_probe,
    js_comments,
    original_text,
    put_original,
    put_taxation,
    records,
    reply,
    report_of,
    run_happy,
    run_updater,
    script_env,
    server,
    snapshot,
    summary_counts,
    validation_errors,
)

from taxdata.store.jsmodule import parse_tax_data_js
from taxdata.testing.llm_server import Fault, structured_form

# -- 1. happy path ----------------------------------------------------------------------------

def test_happy_path_three_countries(server, data, tmp_path):
    proc = run_happy(server, data)
    assert proc.returncode == 0, explain(proc)

    # One chat request per country, asking for structured output, Sources section not sent.
    assert server.responder.calls == {"germany": 1, "france": 1, "estonia": 1}
    assert server.responder.unscripted == []
    assert len(chat_requests(server)) == 3
    # The structured-output form was found once, at preflight, by one tiny request.
    assert sum(is_probe(body) for body in server.chats) == 1
    for slug in HAPPY:
        (body,) = chats_for(server, slug)
        assert structured_form("proxy", body) == "schema"
        # The schema asks for the evidence list: {field, quote} items.
        evidence = body["format"]["properties"]["evidence"]
        assert evidence["items"]["required"] == ["field", "quote"]
        user = body["messages"][1]["content"]
        assert "FIXTURE: invented figures for tests" in user
        assert "## Sources" not in user and HAPPY_SOURCES[slug][1] not in user

    # tax_data.json: sorted by slug, records and provenance.
    stored = dataset(data)
    assert stored["format"] == "taxdata/1"
    assert list(stored["countries"]) == ["estonia", "france", "germany"]
    for slug, rep in HAPPY.items():
        entry = stored["countries"][slug]
        assert entry["record"] == expected_record(slug, rep)
        assert list(entry["record"]) == RECORD_KEYS
        raw = (data / "taxation" / f"{slug}.md").read_bytes()
        kind, url, revision = HAPPY_SOURCES[slug]
        provenance = dict(entry["provenance"])
        assert TIMESTAMP.match(provenance.pop("extracted_at"))
        # Every verified figure is grounded in the original (here: the article in the cache,
        # the extractor's raw page): the original's own characters at the stored offsets.
        original, grounding = provenance.pop("original"), provenance.pop("grounding")
        text = original_text(data, slug)
        assert original["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert original["chars"] == len(text) and original["kind"] == kind
        assert original["revision"] == revision
        assert set(grounding) == set(HAPPY_EVIDENCE[slug])
        for path, found in grounding.items():
            assert text[found["start"]:found["end"]] == found["quote"], path
        assert provenance == {
            "source_file": f"{slug}.md", "source_sha256": hashlib.sha256(raw).hexdigest(),
            "source_url": url, "source_revision": revision, "source_kind": kind,
            "unverified": False, "model": MODEL, "prompt_version": PROMPT_VERSION,
            "evidence": HAPPY_EVIDENCE[slug],
            # which server answered; the name it reported is kept only where it differs
            "endpoint": server.url("proxy"), "server_model": None}

    # taxData.js: parses back to the same records, each marked ADDED; node agrees.
    js_path = data / "taxData.js"
    js = js_path.read_text(encoding="utf-8")
    expected = {slug: expected_record(slug, HAPPY[slug]) for slug in sorted(HAPPY)}
    assert parse_tax_data_js(js) == expected
    assert {slug: c[-1:] for slug, c in js_comments(js).items()} == {
        slug: ["// [ADDED]"] for slug in expected}

    # The report: one entry per country.
    report = report_of(proc)
    assert report["counts"] == counts(added=3)
    assert report["interrupted"] is False and report["model"] == MODEL
    assert report["prompt_version"] == PROMPT_VERSION
    assert sorted(report["countries"]) == ["estonia", "france", "germany"]
    for slug, entry in report["countries"].items():
        assert entry["status"] == "ADDED", entry
        assert entry["missing"] == HAPPY_MISSING[slug]
        assert entry["attempts"] == 1 and entry["http_attempts"] == 1
        assert entry["source_file"] == f"{slug}.md"
        assert entry["source_kind"] == HAPPY_SOURCES[slug][0]
        assert entry["unverified"] is False and entry["model"] == MODEL
        assert entry["evidence"] == HAPPY_EVIDENCE[slug] and entry["unsupported"] == []

    # The summary table on stdout.
    assert summary_counts(proc.stdout) == counts(added=3)
    assert "  UNSUPPORTED figures: 0 in 0 countries (no verified quote; not written)" in proc.stdout
    assert "[UNSUPPORTED]" not in proc.stderr
    assert not re.search(r"^  FAILED \w+:", proc.stdout, re.MULTILINE)
    assert "UNVERIFIED" not in proc.stdout

    check_with_node(js_path, expected, tmp_path)


# -- 2. a second run that changes one country -------------------------------------------------

def test_second_run_reports_only_the_changed_country(server, data):
    first = run_happy(server, data)
    assert first.returncode == 0, explain(first)
    before = dataset(data)

    changed = dict(HAPPY)
    revised = {**HAPPY_EVIDENCE["germany"],
               "brackets[1].rate": "Income from 12,346 EUR up to 50,000 EUR is taxed at 33 %",
               "brackets[1].max": "Income from 12,346 EUR up to 50,000 EUR is taxed at 33 %",
               "brackets[2].rate": "income above 50,000 EUR is taxed at 45 %",
               "vat.standard": "The standard VAT rate is now 18 %"}
    changed["germany"] = reply("germany", brackets=((0, 12345, 0), (12346, 50000, 33),
                                                    (50001, None, 45)),
                               vat=18, reduced=(6,), ss=(11, 12), notes="FIXTURE notes",
                               evidence=[{"field": f, "quote": q} for f, q in revised.items()])
    server.responder = Script(changed)
    # Only germany's source changed: the others are up to date and cost no LLM request.
    source = data / "taxation" / "germany.md"
    source.write_text(source.read_text(encoding="utf-8").replace(
        "## Sources", "FIXTURE: revised text. The standard VAT rate is now 18 %. Income from "
        "12,346 EUR up to 50,000 EUR is taxed at 33 %; income above 50,000 EUR is taxed at "
        "45 %.\n\n## Sources"), encoding="utf-8")
    put_original(data, "germany", source.read_text(encoding="utf-8"))  # its new article
    server.reset_stats()
    proc = run_updater(data, server.url("proxy"), "--countries", "germany,france,estonia")
    assert proc.returncode == 0, explain(proc)
    chats = chat_requests(server)
    assert len(chats) == 1 and "Germany" in chats[0].json()["messages"][1]["content"]

    report = report_of(proc)
    assert report["counts"] == counts(modified=1, unchanged=2)
    assert summary_counts(proc.stdout) == counts(modified=1, unchanged=2)
    germany = report["countries"]["germany"]
    assert germany["status"] == "MODIFIED"
    assert germany["changes"] == [{"path": "brackets", "old": 2, "new": 3},
                                  {"path": "vat.standard", "old": 17, "new": 18}]
    assert germany["reason"] == "brackets 2 -> 3; vat.standard 17 -> 18"
    # Up to date, not sent: listed by name only (the report of an unchanged run stays small).
    assert report["unchanged"]["countries"] == ["estonia", "france"]
    assert "france" not in report["countries"] and "estonia" not in report["countries"]

    after = dataset(data)
    assert after["countries"]["germany"]["record"] == expected_record("germany",
                                                                     changed["germany"])
    for slug in ("france", "estonia"):
        assert after["countries"][slug]["record"] == before["countries"][slug]["record"]

    comments = js_comments((data / "taxData.js").read_text(encoding="utf-8"))
    assert comments["germany"] == ["// [MODIFIED] brackets 2 -> 3; vat.standard 17 -> 18"]
    assert comments["france"] == comments["estonia"] == ["// [UNCHANGED]"]
    assert parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8")) == {
        slug: after["countries"][slug]["record"] for slug in after["countries"]}
    # Each run keeps its own report, even two runs started within the same second.
    assert len(list((data / "reports").glob("update-*.json"))) == 2


def test_force_asks_again_for_unchanged_sources(server, data):
    assert run_happy(server, data).returncode == 0
    server.reset_stats()
    again = run_updater(data, server.url("proxy"), "--countries", "germany,france,estonia")
    assert again.returncode == 0, explain(again)
    assert server.requests_to("/chat") == []  # nothing to ask: not even the form probe
    assert report_of(again)["counts"] == counts(unchanged=3)

    changed = dict(HAPPY)
    changed["france"] = {**HAPPY["france"], "notes": "FIXTURE: other notes"}  # differs
    server.responder = Script(changed)
    forced = run_updater(data, server.url("proxy"), "--countries", "germany,france,estonia",
                         "--force")
    assert forced.returncode == 0, explain(forced)
    assert len(chat_requests(server)) == 3
    assert report_of(forced)["countries"]["france"]["status"] == "MODIFIED"


# -- 3. bad replies: re-asked once with the errors, then FAILED with the old record kept ------

def _prose_wrapped(slug: str) -> str:
    return ("Here is the JSON you asked for:\n" + json.dumps(reply(slug))
            + "\nI hope this helps!")


BAD_REPLIES = {  # slug -> (bad reply, a fragment of the error the updater must report)
    "austria": (reply("austria", vat=190), "vat.standard: 190 is outside 0..100"),
    "belgium": (reply("belgium", brackets=((0, 10000, 10), (20001, 30000, 30), (10001, None, 20))),
                "brackets[2].min: 10001 is below brackets[1].min 20001; brackets must be "
                "sorted by min"),
    "croatia": (reply("croatia", currency="USD"),
                "currency: 'USD' does not match the registry's 'EUR'"),
    "finland": ('{"currency": "EUR", "sys',
                "reply is not a JSON object: invalid JSON: Unterminated string"),
    "greece": (_prose_wrapped("greece"), "reply is not a JSON object: prose before JSON"),
    "ireland": (Fault.length(), "reply cut off at the token limit"),
}


def test_bad_replies_are_reasked_then_fail_keeping_the_old_record(server, data):
    slugs = list(BAD_REPLIES)
    for slug in slugs:
        put_taxation(data, slug, generic=True)
    prep = Script({slug: reply(slug) for slug in slugs})
    server.responder = prep
    first = run_updater(data, server.url("proxy"), "--countries", ",".join(slugs))
    assert first.returncode == 0, explain(first)
    before = {slug: json.dumps(entry) for slug, entry in dataset(data)["countries"].items()}
    assert sorted(before) == sorted(slugs)
    server.history.clear()

    put_taxation(data, "italy", vat=22)  # the generic FIXTURE file, stating 22
    italy_bad = reply("italy", vat=190)
    script = Script({**{slug: [bad, bad] for slug, (bad, _) in BAD_REPLIES.items()},
                     "italy": [italy_bad, reply("italy", vat=22)]})
    server.responder = script
    # --force: the sources are unchanged, so only --force asks the model again.
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(slugs + ["italy"]),
                       "--force", env={"TAXDATA_MAX_REASKS": "1"})
    assert proc.returncode == 1, explain(proc)
    assert script.unscripted == []

    report = report_of(proc)
    assert report["counts"] == counts(failed=6, added=1)
    assert summary_counts(proc.stdout) == counts(failed=6, added=1)
    after = {slug: json.dumps(entry) for slug, entry in dataset(data)["countries"].items()}
    comments = js_comments((data / "taxData.js").read_text(encoding="utf-8"))

    for slug, (bad, fragment) in BAD_REPLIES.items():
        assert script.calls[slug] == 2, slug  # asked once, re-asked once, then given up
        entry = report["countries"][slug]
        assert entry["status"] == "FAILED" and entry["attempts"] == 2, entry
        assert fragment in entry["reason"], (slug, entry["reason"])
        summary_line = re.search(rf"^  FAILED {slug}: (.+)$", proc.stdout, re.MULTILINE)
        assert summary_line and fragment in summary_line.group(1), explain(proc)
        assert after[slug] == before[slug], f"{slug}: the old record changed"
        assert comments[slug] == ["// [UNCHANGED] failed in this run, previous record kept"]

        # The re-ask carries the exact error text of the first reply.
        first_ask, second_ask = chats_for(server, slug)
        retry_text = second_ask["messages"][-1]["content"]
        assert second_ask["messages"][-1]["role"] == "user"
        assert fragment in retry_text
        # The re-ask continues the conversation: the same first turns, the reply, the errors.
        assert second_ask["messages"][:2] == first_ask["messages"]
        shown = second_ask["messages"][2]
        assert shown["role"] == "assistant"
        if isinstance(bad, Fault):  # cut at the token limit: what came is shown back
            assert shown["content"] == bad.content
            assert retry_text.startswith("Your reply was rejected: reply cut off")
        elif slug == "greece":  # prose after the JSON: the client stopped the reply there
            assert _prose_wrapped(slug).startswith(shown["content"])
            assert json.dumps(reply(slug)) in shown["content"]
            assert "- reply is not a JSON object: prose before JSON" in retry_text
        else:
            text = bad if isinstance(bad, str) else json.dumps(bad)
            assert shown["content"] == text
            for error in validation_errors(text, slug):
                assert f"- {error}" in retry_text, (slug, error, retry_text)

    # Bad first reply + good second reply: success on the second attempt.
    italy = report["countries"]["italy"]
    assert italy["status"] == "ADDED" and italy["attempts"] == 2, italy
    assert script.calls["italy"] == 2
    assert records(data)["italy"] == expected_record("italy", reply("italy", vat=22))
    assert "- vat.standard: 190 is outside 0..100" in chats_for(server, "italy")[1]["messages"][-1]["content"]


def test_default_is_two_reasks_each_with_the_errors_of_the_latest_reply(server, data):
    for slug in ("austria", "italy"):
        put_taxation(data, slug)
    first_bad, second_bad = reply("austria", vat=190), reply("austria", vat=-5)
    script = Script({"austria": [first_bad, second_bad, first_bad],
                     "italy": [reply("italy", vat=190), "not json", reply("italy", vat=22)]})
    server.responder = script
    proc = run_updater(data, server.url("proxy"), "--countries", "austria,italy")
    assert proc.returncode == 1, explain(proc)
    report = report_of(proc)
    assert script.calls == {"austria": 3, "italy": 3}
    assert report["countries"]["austria"]["status"] == "FAILED"
    assert report["countries"]["austria"]["attempts"] == 3
    assert report["countries"]["italy"]["status"] == "ADDED"
    assert report["countries"]["italy"]["attempts"] == 3
    asks = chats_for(server, "austria")
    assert "- vat.standard: 190 is outside 0..100" in asks[1]["messages"][-1]["content"]
    assert "- vat.standard: -5 is outside 0..100" in asks[2]["messages"][-1]["content"]


# -- 4. parallelism ---------------------------------------------------------------------------

PARALLEL = ["austria", "belgium", "croatia", "cyprus", "estonia", "finland", "france", "germany"]


def test_eight_workers_put_eight_requests_in_flight(server, data):
    for slug in PARALLEL:
        put_taxation(data, slug, generic=True)
    server.responder = script = Script({slug: reply(slug) for slug in PARALLEL})
    server.latency = 0.3
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(PARALLEL), "-w", "8")
    assert proc.returncode == 0, explain(proc)
    assert report_of(proc)["counts"] == counts(added=8)
    assert dict(script.calls) == {slug: 1 for slug in PARALLEL}
    # The preflight GET finished before the first chat started, so every request counted in
    # the peak is a chat request.
    (models,) = server.requests_to("/models")
    chats = chat_requests(server)
    assert len(chats) == 8 and models.finished <= min(r.started for r in chats)
    assert server.peak_in_flight == 8
    assert "[PARALLEL] Using 8 worker threads" in proc.stderr


def test_no_parallel_sends_one_request_at_a_time(server, data):
    slugs = PARALLEL[:3]
    for slug in slugs:
        put_taxation(data, slug, generic=True)
    server.responder = Script({slug: reply(slug) for slug in slugs})
    server.latency = 0.1  # long enough for parallel requests to overlap, were there any
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(slugs),
                       "--no-parallel")
    assert proc.returncode == 0, explain(proc)
    assert report_of(proc)["counts"] == counts(added=3)
    assert len(chat_requests(server)) == 3
    assert server.peak_in_flight == 1


# -- 5. dry run -------------------------------------------------------------------------------

def test_dry_run_sends_nothing_and_writes_nothing(server, data):
    for slug in HAPPY:
        put_taxation(data, slug)
    server.responder = Script(HAPPY)
    before = snapshot(data)
    url = server.url("proxy")
    proc = run_updater(data, url, "--countries", "germany,france,estonia,spain", "--dry-run")
    assert proc.returncode == 0, explain(proc)
    # The preflight asks (the model list, the model's context size) and sends no work.
    assert [r.path for r in server.requests if r.method != "GET"] in ([], ["/api/show"])
    assert server.chats == []
    assert snapshot(data) == before

    assert (f"Dry run: 3 countries would be sent to {url} (model {MODEL}) with 4 workers"
            in proc.stdout)
    sizes = {}
    for slug in HAPPY:
        match = re.search(rf"^  {slug} +{slug}\.md +1 request\(s\), prompt ([\d,]+) chars "
                          rf"\(~([\d,]+) tokens\)$", proc.stdout, re.MULTILINE)
        assert match, explain(proc)
        chars, tokens = (int(g.replace(",", "")) for g in match.groups())
        assert tokens == chars // 4
        sizes[slug] = chars
    assert "SKIPPED (no taxation file): spain" in proc.stdout

    # The sizes are what a real run then sends.
    real = run_updater(data, url, "--countries", "germany,france,estonia")
    assert real.returncode == 0, explain(real)
    for slug, chars in sizes.items():
        (body,) = chats_for(server, slug)
        assert sum(len(m["content"]) for m in body["messages"]) == chars

    # Now all three are up to date: the dry run predicts what the real run does, sending none.
    again = run_updater(data, url, "--countries", "germany,france,estonia", "--dry-run")
    assert f"Dry run: 0 countries would be sent to {url}" in again.stdout
    assert ("UNCHANGED (up to date, not sent; --force sends them): germany, france, estonia"
            in again.stdout)
    chats = len(server.history)
    real = run_updater(data, url, "--countries", "germany,france,estonia")
    assert len(server.history) == chats and summary_counts(real.stdout)["UNCHANGED"] == 3


def test_dry_run_against_a_dead_server_is_a_preflight_error(data):
    put_taxation(data, "germany")
    url = f"http://127.0.0.1:{free_port()}/chat"
    proc = run_updater(data, url, "--countries", "germany", "--dry-run")
    assert proc.returncode == 2
    assert "refused the connection" in proc.stderr


# -- 6. API dialects --------------------------------------------------------------------------

@pytest.mark.parametrize("dialect, chat_path, models_path, form", [
    ("proxy", "/chat", "/models", "schema"),
    ("ollama", "/api/chat", "/api/tags", "schema"),
    ("openai", "/v1/chat/completions", "/v1/models", "json_schema"),
])
def test_each_api_dialect_end_to_end(server, data, dialect, chat_path, models_path, form):
    slugs = ["germany", "estonia"]
    for slug in slugs:
        put_taxation(data, slug)
    server.responder = Script({slug: HAPPY[slug] for slug in slugs})
    url = server.base_url + chat_path
    assert url == server.url(dialect)
    proc = run_updater(data, url, "--countries", ",".join(slugs))
    assert proc.returncode == 0, explain(proc)
    assert records(data) == {slug: expected_record(slug, HAPPY[slug]) for slug in slugs}
    assert server.requests[0].path == models_path
    chats = chat_requests(server, chat_path)
    assert len(chats) == 2
    assert [structured_form(dialect, r.json()) for r in chats] == [form, form]
    # Before them, one tiny request found the form: the server took the first it was offered.
    assert [structured_form(dialect, b) for b in server.chats if is_probe(b)] == [form]
    report = report_of(proc)
    assert report["counts"] == counts(added=2) and report["llm_url"] == url


def test_openai_json_schema_rejected_falls_back(make_llm_server, data):
    server = make_llm_server(reject_forms=("json_schema",))
    slugs = ["germany", "estonia", "france"]
    for slug in slugs:
        put_taxation(data, slug)
    server.responder = Script({slug: HAPPY[slug] for slug in slugs})
    proc = run_updater(data, server.url("openai"), "--countries", ",".join(slugs),
                       "--no-parallel")
    assert proc.returncode == 0, explain(proc)
    assert records(data) == {slug: expected_record(slug, HAPPY[slug]) for slug in slugs}
    # The preflight's probe was refused json_schema and took the next form; no country's
    # request was ever refused.
    assert [structured_form("openai", b) for b in server.chats if is_probe(b)] == [
        "json_schema", "json_object_schema"]
    assert [structured_form("openai", b) for b in server.chats if not is_probe(b)] == [
        "json_object_schema"] * 3
    assert "[FALLBACK]" in proc.stderr
    report = report_of(proc)
    assert report["counts"] == counts(added=3)
    assert all(entry["attempts"] == 1 for entry in report["countries"].values())


# -- 7. importing an existing taxData.js ------------------------------------------------------

def test_import_only_round_trips_the_calculator_file(server, data, tmp_path):
    sample = FIXTURES / "taxData.sample.js"
    text = sample.read_text(encoding="utf-8")
    parsed = parse_tax_data_js(text)
    assert sorted(parsed) == ["estonia", "germany", "hong_kong"]

    proc = run_updater(data, server.url("proxy"), "--import-js", str(sample), "--import-only")
    assert proc.returncode == 0, explain(proc)
    assert server.requests == []

    stored = dataset(data)
    assert list(stored["countries"]) == ["estonia", "germany", "hong_kong"]
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for slug, entry in stored["countries"].items():
        assert entry["record"] == parsed[slug]
        provenance = entry["provenance"]
        assert provenance["source_kind"] == "imported"
        assert provenance["source_file"] == str(sample)
        assert provenance["source_sha256"] == digest
        assert provenance["unverified"] is True  # nothing checked it against a source
        assert provenance["evidence"] is None

    js_path = data / "taxData.js"
    rendered = js_path.read_text(encoding="utf-8")
    assert parse_tax_data_js(rendered) == parsed
    assert "calculateTax" not in rendered  # only the data is carried over
    check_with_node(js_path, json.loads(json.dumps(parsed)), tmp_path)


CALCULATOR = FIXTURES / "taxData.calculator.js"  # FIXTURE figures, the calculator's fields
CALCULATOR_CHECK = FIXTURES.parent / "references" / "calculator_check.csv"  # FIXTURE rates


def test_calculator_file_imports_with_its_own_fields_and_unverified(server, data, tmp_path):
    parsed = parse_tax_data_js(CALCULATOR.read_text(encoding="utf-8"))
    proc = run_updater(data, server.url("proxy"), "--import-js", str(CALCULATOR),
                       "--import-only", "--reference", str(CALCULATOR_CHECK),
                       "--no-list-reference")
    assert proc.returncode == 1, explain(proc)  # the records that break a rule are FAILED
    assert server.requests == []
    report = report_of(proc)["countries"]
    stored = dataset(data)["countries"]
    assert sorted(stored) == ["belgium", "denmark", "france", "germany", "saudi_arabia",
                              "ukraine", "united_states"]
    # The calculator's own fields are kept exactly as the file has them.
    for slug in stored:
        assert stored[slug]["record"] == parsed[slug], slug
        provenance = stored[slug]["provenance"]
        assert (provenance["source_kind"], provenance["unverified"], provenance["evidence"]) == (
            "imported", True, None)
        assert report[slug]["unverified"] is True
    assert stored["germany"]["record"]["socialSecurity"]["employeeRateTaxDeductible"] is True
    assert stored["belgium"]["record"]["corporateIncomeTax"]["reducedRate"] == 21
    assert stored["ukraine"]["record"]["vat"]["target"] == "consumption"
    assert stored["france"]["record"]["vat"]["zeroRated"] is True
    # Each refused record names the rule it breaks, in the summary and the report.
    assert ("  FAILED hong_kong: not imported, it breaks a rule: vat.standard: 0, but "
            "vat.hasVAT is false (must be null)") in proc.stdout
    assert ("  FAILED mexico: not imported, it breaks a rule: brackets[0].min: 0.01 must be "
            "0") in proc.stdout
    # Cross-checked like any other record: a disputed VAT is held back, a range says so.
    assert report["canada"]["status"] == "FAILED"
    assert report["canada"]["reason"].startswith(
        "DISPUTED vat.standard 16 (taxData.calculator.js (imported)) vs 5 "
        "(calculator_check.csv)")
    assert "canada" not in stored
    assert report["united_states"]["crosscheck"]["classification"] == "IN RANGE"
    assert report["germany"]["crosscheck"]["classification"] == "CORROBORATED"
    assert stored["germany"]["provenance"]["crosscheck"]["classification"] == "CORROBORATED"
    # The last line says what the whole run wrote.
    assert proc.stdout.rstrip().splitlines()[-1] == (
        "  All 7 records written in this run are UNVERIFIED (imported: no source checked "
        "them); review them before publishing")
    # taxData.js writes the calculator's fields back, and says the records are unverified.
    js_path = data / "taxData.js"
    rendered = js_path.read_text(encoding="utf-8")
    assert parse_tax_data_js(rendered) == {slug: parsed[slug] for slug in stored}
    assert js_comments(rendered)["germany"] == [
        "// [ADDED] (UNVERIFIED: imported, not checked against a source)"]
    check_with_node(js_path, json.loads(json.dumps({s: parsed[s] for s in stored})), tmp_path)


def test_accept_disputed_imports_a_disputed_record(server, data):
    proc = run_updater(data, server.url("proxy"), "--import-js", str(CALCULATOR),
                       "--import-only", "--reference", str(CALCULATOR_CHECK),
                       "--no-list-reference", "--accept-disputed")
    assert proc.returncode == 1, explain(proc)  # hong_kong and mexico still break a rule
    canada = dataset(data)["countries"]["canada"]
    assert canada["provenance"]["crosscheck"]["classification"] == "DISPUTED"
    assert "  DISPUTED canada (written): vat.standard 16" in proc.stdout


def test_an_update_keeps_the_calculator_fields_of_the_record_it_replaces(server, data):
    one = data.parent / "germany.js"
    text = CALCULATOR.read_text(encoding="utf-8")
    one.write_text(text[:text.index('    "france"')] + "};\n", encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--import-js", str(one), "--import-only",
                       "--no-list-reference")
    assert proc.returncode == 0, explain(proc)
    put_taxation(data, "germany")
    server.responder = Script({"germany": HAPPY["germany"]})
    proc = run_updater(data, server.url("proxy"), "--countries", "germany",
                       "--no-list-reference")
    assert proc.returncode == 0, explain(proc)
    entry = dataset(data)["countries"]["germany"]
    assert entry["record"]["socialSecurity"]["employeeRateTaxDeductible"] is True
    assert entry["provenance"]["carried_over"] == ["socialSecurity.employeeRateTaxDeductible"]
    assert entry["provenance"]["unverified"] is False  # the figures are the source's
    assert ("kept from the previous record, not from the source: "
            "socialSecurity.employeeRateTaxDeductible") in report_of(proc)["countries"][
                "germany"]["warnings"]
    assert "written in this run" not in proc.stdout  # a checked record: no closing line


def test_import_of_malformed_file_is_one_line_and_writes_nothing(server, data):
    malformed = FIXTURES / "taxData.malformed.js"
    before = snapshot(data)
    proc = run_updater(data, server.url("proxy"), "--import-js", str(malformed),
                       "--import-only")
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert f"{malformed}:10:5: unexpected identifier 'brackets'" in lines[0]
    assert snapshot(data) == before
    assert server.requests == []


# -- 8. usage and preflight errors; skipped countries -----------------------------------------

def test_unknown_country_suggests_the_right_one(server, data):
    put_taxation(data, "germany")
    proc = run_updater(data, server.url("proxy"), "--countries", "germny")
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "did you mean: germany" in lines[0], proc.stderr
    assert server.requests == []
    assert not (data / "tax_data.json").exists()


def test_country_without_file_is_skipped_and_kept(server, data):
    first = run_happy(server, data)
    assert first.returncode == 0, explain(first)
    before = dataset(data)["countries"]
    js_before = (data / "taxData.js").read_bytes()
    (data / "taxation" / "france.md").unlink()
    server.history.clear()

    proc = run_updater(data, server.url("proxy"), "--countries", "germany,france")
    assert proc.returncode == 0, explain(proc)
    report = report_of(proc)
    assert report["counts"] == counts(unchanged=1, skipped=1)
    assert report["countries"]["france"]["status"] == "SKIPPED"
    assert "no taxation file" in report["countries"]["france"]["reason"]
    assert server.chats == []  # germany is up to date, france has no file: nothing to ask
    assert "up to date" not in report["countries"]["france"]["reason"]
    assert report["unchanged"]["countries"] == ["germany"]
    assert "unchanged" in report["unchanged"]["reason"]
    after = dataset(data)["countries"]
    assert list(after) == ["estonia", "france", "germany"]
    assert json.dumps(after["france"]) == json.dumps(before["france"])
    # Nothing changed, so taxData.js is not rewritten: france's record stays in it as it was.
    assert (data / "taxData.js").read_bytes() == js_before
    assert "france: {" in js_before.decode("utf-8")


def test_zero_workers_is_a_usage_error(server, data):
    put_taxation(data, "germany")
    proc = run_updater(data, server.url("proxy"), "--countries", "germany",
                       env={"TAXDATA_MAX_WORKERS": "0"})
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TAXDATA_MAX_WORKERS='0'" in lines[0], proc.stderr
    assert server.requests == []


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"format": "other/9"}'])
def test_broken_dataset_is_a_usage_error_before_any_request(server, data, content):
    put_taxation(data, "germany")
    (data / "tax_data.json").write_text(content, encoding="utf-8")
    proc = run_updater(data, server.url("proxy"), "--countries", "germany")
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tax_data_updater.py: error: "), proc.stderr
    assert "tax_data.json" in lines[0]
    assert server.requests == []
    assert (data / "tax_data.json").read_text(encoding="utf-8") == content


def test_server_down_is_a_one_line_preflight_error(data):
    put_taxation(data, "germany")
    url = f"http://127.0.0.1:{free_port()}/chat"
    proc = run_updater(data, url, "--countries", "germany")
    assert proc.returncode == 2, explain(proc)
    assert proc.stderr.strip().splitlines() == [
        f"tax_data_updater.py: error: LLM server at {url} refused the connection (nothing "
        f"listens on {url.split('/')[2]}) - start your Ollama proxy there, or use Ollama itself: "
        "TAXDATA_LLM_URL=http://localhost:11434"]
    assert not (data / "tax_data.json").exists()


# -- 9. research-sourced (unverified) files ---------------------------------------------------

def test_research_sourced_file_is_marked_unverified(server, data):
    # A research file is the model's own knowledge: there is nothing to hold quotes against, so
    # none are needed, and the record is marked unverified instead.
    albania = reply("albania", brackets=((0, None, 14),), vat=18, reduced=(), ss=None,
                    evidence=[])
    for slug in ("albania", "germany"):
        put_taxation(data, slug)
    server.responder = Script({"albania": albania, "germany": HAPPY["germany"]})
    proc = run_updater(data, server.url("proxy"), "--countries", "albania,germany")
    assert proc.returncode == 0, explain(proc)

    stored = dataset(data)["countries"]
    assert stored["albania"]["record"] == expected_record("albania", albania)
    provenance = stored["albania"]["provenance"]
    assert provenance["source_kind"] == "research" and provenance["unverified"] is True
    assert provenance["source_url"] is None
    assert provenance["evidence"] is None  # quotes were not checked
    assert stored["germany"]["provenance"]["unverified"] is False

    report = report_of(proc)["countries"]
    assert report["albania"]["unverified"] is True
    assert report["albania"]["source_kind"] == "research"
    assert report["albania"]["evidence"] == {} and report["albania"]["unsupported"] == []
    assert report["germany"]["unverified"] is False
    assert re.search(r"^  UNVERIFIED \(model knowledge or imported, not checked against a "
                     r"source; check by hand\): albania$",
                     proc.stdout, re.MULTILINE), explain(proc)
    comments = js_comments((data / "taxData.js").read_text(encoding="utf-8"))
    assert comments["albania"] == [
        "// [ADDED] (UNVERIFIED: from model knowledge, not a cited source)"]
    assert comments["germany"] == ["// [ADDED]"]


def test_a_run_that_wrote_only_unverified_records_says_so_last(server, data):
    albania = reply("albania", brackets=((0, None, 14),), vat=18, reduced=(), ss=None,
                    evidence=[])
    put_taxation(data, "albania")  # a research file (FIXTURE): the model's own knowledge
    server.responder = Script({"albania": albania})
    proc = run_updater(data, server.url("proxy"), "--countries", "albania")
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.rstrip().splitlines()[-1] == (
        "  The one record written in this run is UNVERIFIED (research: no source checked it); "
        "review it before publishing")
    # A run that also wrote a checked record ends as before (the UNVERIFIED line lists the rest).
    put_taxation(data, "germany")
    server.responder = Script({"albania": albania, "germany": HAPPY["germany"]})
    mixed = run_updater(data, server.url("proxy"), "--countries", "albania,germany", "--force")
    assert mixed.returncode == 0, explain(mixed)
    assert "written in this run" not in mixed.stdout


# -- 10. long files are split into parts ------------------------------------------------------

def _austria_part(**fields: Any) -> dict[str, Any]:
    empty = {"currency": "EUR", "countryCode": "AT", "system": None, "brackets": None,
             "vat": None, "socialSecurity": None, "special_taxes": [], "notes": None,
             "evidence": []}
    return {**empty, **fields}


AUSTRIA_EVIDENCE = {  # verbatim from the FIXTURE file; part 1 is income tax, part 2 VAT
    1: {"brackets[0].rate": "Income up to 11,111 EUR a year is taxed at 0 %",
        "brackets[0].max": "Income up to 11,111 EUR a year is taxed at 0 %",
        "brackets[1].rate": "Income above 11,111 EUR is taxed at 37 %"},
    2: {"system": "the personal income tax is progressive",
        "vat.standard": "The standard VAT rate is 18 %",
        "vat.reduced[0]": "a reduced rate of 9 % applies to books"},
}


def _austria_evidence(part: int, **replace: str) -> list[dict[str, str]]:
    return [{"field": f, "quote": q} for f, q in {**AUSTRIA_EVIDENCE[part], **replace}.items()]


AUSTRIA_BRACKETS = [{"min": 0, "max": 11111, "rate": 0, "description": None},
                    {"min": 11112, "max": None, "rate": 37, "description": None}]


def test_long_file_is_split_and_merged(server, data):
    put_taxation(data, "austria")
    # Part 1 (income tax) gives the brackets and says there is a VAT; part 2 (VAT) names the
    # system and gives the rates. Neither part is complete alone; together they are.
    part1 = _austria_part(brackets=AUSTRIA_BRACKETS,
                          vat={"hasVAT": True, "standard": None, "reduced": [],
                               "description": None, "notes": None},
                          evidence=_austria_evidence(1))
    part2 = _austria_part(system="progressive",
                          vat={"hasVAT": None, "standard": 18, "reduced": [9],
                               "description": None, "notes": None},
                          evidence=_austria_evidence(2))
    server.responder = script = Script({"austria": Parts({1: part1, 2: part2})})
    proc = run_updater(data, server.url("proxy"), "--countries", "austria", "--max-chars", "500")
    assert proc.returncode == 0, explain(proc)

    assert dict(script.part_calls) == {("austria", 1): 1, ("austria", 2): 1}
    bodies = chats_for(server, "austria")
    assert len(bodies) == 2
    users = sorted((b["messages"][1]["content"] for b in bodies),
                   key=lambda u: _PART.search(u).group(1))
    assert "This is part 1 of 2" in users[0] and "## Personal Income Tax" in users[0]
    assert "## VAT / GST" not in users[0]
    assert "This is part 2 of 2" in users[1] and "## VAT / GST" in users[1]
    assert all("3000003" not in u for u in users)  # the Sources section is never sent

    merged = {**part1, "system": "progressive",
              "vat": {"hasVAT": True, "standard": 18, "reduced": [9], "description": None,
                      "notes": None}}
    assert records(data) == {"austria": expected_record("austria", merged)}
    entry = report_of(proc)["countries"]["austria"]
    assert entry["status"] == "ADDED" and entry["attempts"] == 2
    assert entry["missing"] == ["socialSecurity"]
    assert entry["evidence"] == {**AUSTRIA_EVIDENCE[1], **AUSTRIA_EVIDENCE[2]}
    assert entry["unsupported"] == []


def test_parts_that_disagree_fail(server, data):
    put_taxation(data, "austria")
    vat = {"hasVAT": True, "standard": 18, "reduced": [], "description": None, "notes": None}
    part1 = _austria_part(system="progressive", brackets=AUSTRIA_BRACKETS, vat=vat)
    part2 = _austria_part(vat={**vat, "standard": 19})
    server.responder = script = Script({"austria": Parts({1: part1, 2: part2})})
    proc = run_updater(data, server.url("proxy"), "--countries", "austria", "--max-chars", "500")
    assert proc.returncode == 1, explain(proc)
    assert dict(script.part_calls) == {("austria", 1): 1, ("austria", 2): 1}
    entry = report_of(proc)["countries"]["austria"]
    assert entry["status"] == "FAILED"
    assert "disagree" in entry["reason"] and "vat.standard" in entry["reason"], entry
    assert re.search(r"^  FAILED austria: parts of the source disagree", proc.stdout,
                     re.MULTILINE), explain(proc)
    assert not (data / "tax_data.json").exists()  # nothing finished, nothing to write
    assert parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8")) == {}


# -- 11. Ctrl-C -------------------------------------------------------------------------------

def test_interrupt_keeps_finished_countries_and_closes_the_streams_in_flight(server, data):
    slugs = PARALLEL[:6]
    for slug in slugs:
        put_taxation(data, slug, generic=True)
    # The first country answers at once; every later one streams a token and then stalls (a
    # slow model), so the second worker's reply is in flight when the signal lands.
    script = Script({slug: reply(slug) for slug in slugs})

    def responder(body: dict) -> Any:
        if is_probe(body):
            return "{}"
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if _COUNTRY.search(user).group(1) != REGISTRY.get(slugs[0]).name:
            script(body)
            return Fault.stall(SUBPROCESS_TIMEOUT, '{"currency": "EUR"}', after=1)
        return script(body)

    server.responder = responder
    command = script_command(SCRIPT.name, "--no-progress", "--countries", ",".join(slugs),
                             "-w", "2")
    # "[COMPLETED] <slug>" comes after the country was saved (runner: on_result, then the line).
    done = signal_when(command, until=lambda lines: any(
        line.startswith(f"[COMPLETED] {slugs[0]} ") for line in lines),
        env=script_env(data, server.url("proxy")), cwd=data.parent)
    assert done.returncode == 130, explain(done)

    stored = dataset(data)["countries"]
    report = report_of(done)
    assert report["interrupted"] is True
    statuses = {slug: entry["status"] for slug, entry in report["countries"].items()}
    assert sorted(statuses) == sorted(slugs)
    # The finished country is saved; the one in flight was cancelled, not waited for: its
    # stream was closed, and the server saw the client go (it stops generating).
    assert sorted(stored) == [slugs[0]]
    assert stored[slugs[0]]["record"] == expected_record(slugs[0], reply(slugs[0]))
    assert [s for s, status in statuses.items() if status == "ADDED"] == [slugs[0]]
    # Worker 2 was on the second country; worker 1 may have started a third before the signal.
    asked = [slug for slug in slugs if script.calls[slug]]
    assert 2 <= len(asked) <= 3 and len(country_chats(server)) == len(asked)
    eventually(lambda: [d.phase for d in server.disconnects] == ["streaming"] * (len(asked) - 1))
    assert server.streams_finished == 2  # the probe's and the first country's
    assert "Request timeout" not in done.stderr

    js = (data / "taxData.js").read_text(encoding="utf-8")
    assert parse_tax_data_js(js) == {slug: stored[slug]["record"] for slug in stored}
    assert list(data.rglob("*.tmp")) == []
    assert not (data / JOURNAL).exists()  # the files are complete: nothing left to replay


# -- 12. evidence: every figure needs a verified quote ----------------------------------------

def _with(slug: str, *, quotes: dict[str, str], **figures: Any) -> dict[str, Any]:
    """HAPPY[slug] with some figures and quotes replaced (a FIXTURE reply with planted errors)."""
    rep = json.loads(json.dumps(HAPPY[slug]))
    for path, value in figures.items():
        target = rep
        keys = [int(k) if k.isdigit() else k for k in re.findall(r"\w+", path.replace("__", "."))]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    rep["evidence"] = [{"field": f, "quote": q}
                       for f, q in {**HAPPY_EVIDENCE[slug], **quotes}.items()]
    return rep


PLANTED = {  # slug -> (reply with one planted wrong figure, its path, the model's quote, reason)
    # A VAT rate the source does not state, with a quote that is not in the source.
    "germany": (_with("germany", vat__standard=19,
                      quotes={"vat.standard": "The standard VAT rate is 19 %"}),
                "vat.standard", 19, "The standard VAT rate is 19 %",
                "the quote is not in the source text"),
    # A bracket rate from another row, quoted from that row.
    "france": (_with("france", brackets__1__rate=44,
                     quotes={"brackets[1].rate": "44 % above 40,000 EUR"}),
               "brackets[1].rate", 44, "44 % above 40,000 EUR",
               "the quote gives 40000 as a lower bound: it is about the next bracket"),
    # A VAT rate the source does not state, with the real sentence as its quote.
    "estonia": (_with("estonia", vat__standard=22, quotes={}),
                "vat.standard", 22, ESTONIA_VAT, "22 is not a number in the quote"),
}


def test_planted_wrong_figures_are_withheld_and_reported(server, data):
    for slug in PLANTED:
        put_taxation(data, slug)
    server.responder = Script({slug: planted[0] for slug, planted in PLANTED.items()})
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(PLANTED))
    # The wrong figures are left out; the rest of each record is sound, so it is written.
    assert proc.returncode == 0, explain(proc)
    report = report_of(proc)
    assert report["counts"] == counts(added=3)
    stored = dataset(data)["countries"]

    for slug, (_, path, value, quote, why) in PLANTED.items():
        entry = report["countries"][slug]
        first = entry["unsupported"][0]
        assert first == {"path": path, "value": value, "quote": quote, "reason": why,
                         "withheld": False}, entry["unsupported"]
        assert path not in entry["evidence"] and path not in stored[slug]["provenance"]["evidence"]
        assert "[UNSUPPORTED] " in proc.stderr and f" {slug} {path} " in proc.stderr
        assert re.search(rf"^  UNSUPPORTED {slug}: {re.escape(path)}$", proc.stdout,
                         re.MULTILINE), explain(proc)

    # germany and estonia: only the VAT standard rate is withheld; everything else is written.
    for slug in ("germany", "estonia"):
        expected = expected_record(slug, HAPPY[slug])
        expected["vat"] = {**expected["vat"], "standard": None}
        assert stored[slug]["record"] == expected
        assert "vat.standard" in report["countries"][slug]["missing"]
        assert len(report["countries"][slug]["unsupported"]) == 1
        assert stored[slug]["provenance"]["evidence"] == {
            p: q for p, q in HAPPY_EVIDENCE[slug].items() if p != "vat.standard"}
    # france: part of a schedule is wrong data, so the whole schedule and its system are held
    # back (listed as withheld), while the VAT rate, which has its quote, is written.
    france = stored["france"]["record"]
    assert france["brackets"] is None and france["system"] is None
    assert france["vat"] == HAPPY["france"]["vat"]
    withheld = report["countries"]["france"]["unsupported"][1:]
    assert sorted(u["path"] for u in withheld) == sorted(
        p for p in HAPPY_EVIDENCE["france"] if p not in ("vat.standard", "brackets[1].rate"))
    assert all(u["withheld"] for u in withheld)
    assert report["countries"]["france"]["evidence"] == {
        "vat.standard": HAPPY_EVIDENCE["france"]["vat.standard"]}
    assert ("  UNSUPPORTED figures: 3 in 3 countries (no verified quote; not written), "
            "5 more withheld with them") in proc.stdout


def test_a_record_without_any_supported_key_figure_fails_and_keeps_the_old_one(server, data):
    assert run_happy(server, data).returncode == 0
    before = json.dumps(dataset(data)["countries"]["germany"])
    # Every quote made up (not in the source): nothing of this reply may be written.
    made_up = {path: f"FIXTURE: made-up quote for {path}" for path in HAPPY_EVIDENCE["germany"]}
    server.responder = Script({"germany": _with("germany", quotes=made_up)})
    proc = run_updater(data, server.url("proxy"), "--countries", "germany", "--force")
    assert proc.returncode == 1, explain(proc)
    entry = report_of(proc)["countries"]["germany"]
    assert entry["status"] == "FAILED"
    assert entry["reason"].startswith("no key figure is supported by a verified quote")
    assert entry["reason"].endswith("previous record kept")
    assert {u["path"] for u in entry["unsupported"]} == set(HAPPY_EVIDENCE["germany"])
    assert json.dumps(dataset(data)["countries"]["germany"]) == before
    assert re.search(r"^  FAILED germany: no key figure is supported", proc.stdout, re.MULTILINE)


def test_a_split_source_checks_each_quote_against_its_own_part(server, data):
    put_taxation(data, "austria")
    # Part 1 (income tax) claims the VAT rate with a quote that only part 2's text holds: the
    # model answering part 1 never saw it, so it is not evidence.
    vat_quote = AUSTRIA_EVIDENCE[2]["vat.standard"]
    part1 = _austria_part(brackets=AUSTRIA_BRACKETS,
                          vat={"hasVAT": True, "standard": 18, "reduced": [],
                               "description": None, "notes": None},
                          evidence=_austria_evidence(1) + [{"field": "vat.standard",
                                                            "quote": vat_quote}])
    part2 = _austria_part(system="progressive",
                          vat={"hasVAT": True, "standard": None, "reduced": [9],
                               "description": None, "notes": None},
                          evidence=[{"field": f, "quote": q} for f, q in AUSTRIA_EVIDENCE[2].items()
                                    if f != "vat.standard"])
    server.responder = Script({"austria": Parts({1: part1, 2: part2})})
    proc = run_updater(data, server.url("proxy"), "--countries", "austria", "--max-chars", "500")
    assert proc.returncode == 0, explain(proc)
    entry = report_of(proc)["countries"]["austria"]
    assert entry["unsupported"] == [{"path": "vat.standard", "value": 18, "quote": vat_quote,
                                     "reason": "the quote is not in the source text",
                                     "withheld": False}]
    record = records(data)["austria"]
    assert record["vat"]["standard"] is None and record["vat"]["reduced"] == [9]
    assert record["brackets"] == AUSTRIA_BRACKETS and record["system"] == "progressive"


# -- a server that goes away mid-run (issue 7) ------------------------------------------------

def test_server_gone_mid_run_ends_quickly_with_one_line_keeping_what_finished(server, data,
                                                                             recorded_waits):
    slugs = PARALLEL[:6]
    for slug in slugs:
        put_taxation(data, slug, generic=True)  # the default reply quotes the generic text
    # The retry waits once it is gone are recorded, not slept (the breaker's wait is real).
    script = Script({slug: reply(slug) for slug in slugs})
    fourth = threading.Event()

    def responder(body: dict) -> Any:
        answer = script(body)
        if sum(script.calls.values()) >= 4:  # with 2 workers, 2 countries have finished by now
            fourth.set()
        return answer

    server.responder = responder
    server.latency = 0.05
    killer = threading.Thread(target=lambda: fourth.wait(30) and server.stop())
    killer.start()
    proc = run_updater(data, server.url("proxy"), "--countries", ",".join(slugs), "-w", "2",
                       env={"TAXDATA_BREAKER_WAIT": "0.3"})
    killer.join(30)
    assert proc.returncode == 1, explain(proc)
    report = report_of(proc)
    added, failed = report["counts"]["ADDED"], report["counts"]["FAILED"]
    assert added >= 2 and failed >= 1 and added + failed == len(slugs), report["counts"]
    gone = [line for line in proc.stderr.splitlines() if "stopped answering" in line]
    assert len(gone) == 1, proc.stderr
    assert gone[0].endswith(f"[ERROR] LLM server at {server.url('proxy')} stopped answering; "
                            f"{failed} countries not processed; re-run to continue"), proc.stderr
    assert sorted(dataset(data)["countries"]) == sorted(
        slug for slug, entry in report["countries"].items() if entry["status"] == "ADDED")
    assert re.search(r"^  LLM 127\.0\.0\.1:\d+: \d+ requests, .*\(gone\)$", proc.stdout, re.M)
