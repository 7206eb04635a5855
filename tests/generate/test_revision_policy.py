"""Wikipedia's revision policy against fresh vandalism (issue 18): the enhanced generator uses the
newest revision that has stood TAXDATA_WIKIPEDIA_MIN_AGE hours (24 by default), not whatever was
saved a minute before the run; ``--latest-revision`` (or 0 hours) takes the latest. The revision
used, and why, is in the taxation file's Sources section and so in the record's provenance.

The stand-in MediaWiki serves each article's revision history with the time each revision was
saved. Every text and figure here is FIXTURE data, not real tax data.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from _programs import Run, run_main
from _updater import script_env

from taxdata.clients.revisions import Revision, stable_revision
from taxdata.clients.wikipedia import NoStableRevision, WikipediaClient
from taxdata.store.taxfile import parse_sources
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.update.extract import SYSTEM_PROMPT

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
DAY = 24 * 3600


def history(*hours_ago: float) -> list[Revision]:
    """Revisions saved that many hours before NOW, newest first, ids 100, 99, ..."""
    return [Revision(100 - i, NOW - timedelta(hours=h)) for i, h in enumerate(hours_ago)]


@pytest.mark.parametrize("hours_ago, chosen", [
    ((30, 900), 100),  # the latest has stood 30 h: used
    ((1, 900), 99),  # a fresh edit: the one before it (it stood until that edit, 899 h)
    ((1, 1.2, 900), 98),  # a fresh edit on top of a vandal's that stood 12 minutes
    ((50, 50.1, 900), 100),  # a revert 50 h ago: the vandal's edit before it stood 6 minutes
    ((1, 20, 30), None),  # none stood 24 h: 1 h, 19 h, 10 h
])
def test_the_newest_revision_that_has_stood(hours_ago, chosen):
    choice = stable_revision(history(*hours_ago), DAY, NOW)
    assert (choice.chosen.id if choice else None) == chosen
    if choice:
        assert choice.latest.id == 100 and choice.stood_seconds >= DAY


def test_no_minimum_age_is_the_latest():
    assert stable_revision(history(0.01, 900), 0, NOW).is_latest


# -- the client against the stand-in wiki --------------------------------------------------------

TITLE = "Taxation in Latvia"
GOOD, VANDAL = 555000, 555001


def article(vat: str) -> str:
    return (f'<div class="mw-parser-output"><p>FIXTURE: an invented article.</p>'
            f"<h2>Personal income tax</h2><p>A flat rate of 20% applies to all income.</p>"
            f"<h2>Value-added tax</h2><p>The standard VAT rate is {vat}.</p>"
            f"<h2>Social security</h2><p>Employees contribute 10.5% of gross salary and "
            f"employers 23.59%.</p></div>")


@pytest.fixture
def wiki():
    server = StandInMediaWiki().start()
    now = datetime.now(timezone.utc)
    server.add_page(TITLE, article("21%"), revid=GOOD, timestamp=now - timedelta(days=40))
    server.add_page(TITLE, article("99%"), revid=VANDAL, timestamp=now - timedelta(minutes=20),
                    redirect_from=["Latvian taxation"])
    yield server
    server.stop()


def test_the_client_takes_the_revision_before_a_fresh_edit(wiki, tmp_path):
    client = WikipediaClient(wiki.api_url)
    chosen = client.fetch("Latvian taxation", min_age=DAY)  # a redirect is followed too
    assert chosen.title == TITLE and chosen.revision_id == GOOD
    assert "21%" in chosen.text and "99" not in chosen.text
    assert not chosen.choice.is_latest and chosen.choice.latest.id == VANDAL
    asked = [r.query for r in wiki.requests if r.query.get("action") != ["query"]
             or r.query.get("prop") == ["revisions"]]
    assert [q.get("prop") for q in asked] == [["revisions"], ["text|revid|displaytitle|properties"]]
    assert asked[1]["oldid"] == [str(GOOD)]  # exactly that revision, by id
    latest = client.fetch(TITLE)  # no minimum age: the latest, one request
    assert latest.revision_id == VANDAL and latest.choice is None


def test_the_client_refuses_when_no_revision_has_stood(wiki):
    wiki.add_page("Taxation in Estonia", article("22%"),
                  timestamp=datetime.now(timezone.utc) - timedelta(hours=2))
    with pytest.raises(NoStableRevision, match=r"no revision of 'Taxation in Estonia' among its "
                       r"last 50 has stood 24 h .*--latest-revision to use the latest"):
        WikipediaClient(wiki.api_url).fetch("Taxation in Estonia", min_age=DAY)


# -- the enhanced generator, end to end ----------------------------------------------------------

FILE = """# Taxation in Latvia

## Overview
FIXTURE rewrite; not real tax data.

## Personal Income Tax
- System: flat
- One flat rate of 20 % applies to all income.

## VAT / GST
- Standard rate: {vat} %

## Social Security and Payroll Taxes
- Employee rate: 10.5 %
- Employer rate: 23.59 %

## Additional Information
- Notes: FIXTURE
"""


def respond(body: dict) -> Any:
    system = body["messages"][0]["content"]
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    if system.startswith(SYSTEM_PROMPT.splitlines()[0]):  # the updater: faithful extraction
        vat = 99 if "Standard rate: 99 %" in prompt else 21
        quotes = {"system": "- One flat rate of 20 % applies to all income.",
                  "brackets[0].rate": "- One flat rate of 20 % applies to all income.",
                  "vat.standard": f"- Standard rate: {vat} %",
                  "socialSecurity.employeeRate": "- Employee rate: 10.5 %",
                  "socialSecurity.employerRate": "- Employer rate: 23.59 %"}
        return {"currency": "EUR", "countryCode": "LV", "system": "flat",
                "brackets": [{"min": 0, "max": None, "rate": 20}],
                "vat": {"hasVAT": True, "standard": vat, "reduced": []},
                "socialSecurity": {"employeeRate": 10.5, "employerRate": 23.59},
                "special_taxes": [], "evidence": [{"field": f, "quote": q}
                                                  for f, q in quotes.items()]}
    return FILE.format(vat=99 if "99%" in prompt else 21)  # the formatter: what it is sent


@pytest.fixture
def env(tmp_path, llm_server, wiki) -> dict[str, str]:
    llm_server.responder = respond
    return script_env(tmp_path / "data", llm_server.url(),
                      {"TAXDATA_WIKIPEDIA_API": wiki.api_url, "TAXDATA_MAX_RETRIES": "1"})


def run(script: str, env: dict[str, str], *args: str) -> Run:
    return run_main(script, ["--no-progress", "--countries", "latvia", *args], env=env,
                    cwd=Path.cwd())


def sources(env: dict[str, str]):
    path = Path(env["TAXDATA_DATA_DIR"]) / "taxation" / "latvia.md"
    return parse_sources(path.read_text(encoding="utf-8"))


def test_the_generator_uses_the_revision_that_has_stood_and_says_so(env, wiki):
    generated = run("generate_enhanced_taxation_files.py", env)
    assert generated.returncode == 0, generated.stderr
    info = sources(env)
    assert info.revision == str(GOOD)
    assert re.fullmatch(rf"the newest that has stood 24 h, saved \S+Z; the latest, rev {VANDAL} "
                        r"of \S+Z, has not", info.revision_policy), info.revision_policy
    assert re.search(rf"\[REVISION\] \S+ Wikipedia 'Taxation in Latvia': rev {GOOD} \(saved "
                     rf"\S+, stood \d+ h\) instead of the latest rev {VANDAL}", generated.stderr)
    # The updater verifies the figures in that same revision (the cache holds it) and records it.
    before = len(wiki.requests)
    updated = run("tax_data_updater.py", env, "--no-list-reference")
    assert updated.returncode == 0, updated.stderr
    assert len(wiki.requests) == before
    # A run from the cache writes the same revision and the same reason.
    rerun = run("generate_enhanced_taxation_files.py", env, "--force")
    assert rerun.returncode == 0 and "[CACHE]" in rerun.stderr, rerun.stderr
    assert sources(env).revision == str(GOOD) and sources(env).revision_policy == (
        info.revision_policy)
    data = Path(env["TAXDATA_DATA_DIR"])
    stored = json.loads((data / "tax_data.json").read_text())["countries"]["latvia"]
    assert stored["record"]["vat"]["standard"] == 21
    assert stored["provenance"]["original"]["revision"] == str(GOOD)
    assert stored["provenance"]["source_revision"] == str(GOOD)


@pytest.mark.parametrize("how", ["--latest-revision", "TAXDATA_WIKIPEDIA_MIN_AGE=0"])
def test_the_latest_revision_when_asked(env, how):
    if how.startswith("--"):
        generated = run("generate_enhanced_taxation_files.py", env, how)
    else:
        generated = run("generate_enhanced_taxation_files.py",
                        {**env, "TAXDATA_WIKIPEDIA_MIN_AGE": "0"})
    assert generated.returncode == 0, generated.stderr
    info = sources(env)
    assert info.revision == str(VANDAL)
    assert info.revision_policy == "the latest (--latest-revision)"


def test_a_shorter_minimum_age_takes_a_revision_once_it_has_stood_that_long(env):
    generated = run("generate_enhanced_taxation_files.py",
                    {**env, "TAXDATA_WIKIPEDIA_MIN_AGE": "0.25h"})  # 15 minutes
    assert generated.returncode == 0, generated.stderr
    info = sources(env)
    assert info.revision == str(VANDAL)
    assert info.revision_policy.startswith("the latest, saved ")


def test_an_article_with_no_revision_that_has_stood_is_skipped(env):
    fresh = StandInMediaWiki().start()  # a new article: every revision is minutes old
    try:
        now = datetime.now(timezone.utc)
        fresh.add_page(TITLE, article("21%"), revid=1, timestamp=now - timedelta(minutes=50))
        fresh.add_page(TITLE, article("99%"), revid=2, timestamp=now - timedelta(minutes=5))
        generated = run("generate_enhanced_taxation_files.py",
                        {**env, "TAXDATA_WIKIPEDIA_API": fresh.api_url})
    finally:
        fresh.stop()
    assert generated.returncode == 0, generated.stderr
    assert ("  SKIPPED latvia: no revision of 'Taxation in Latvia' among its last 50 has stood "
            "24 h (the latest is rev 2); not used (TAXDATA_WIKIPEDIA_MIN_AGE, or "
            "--latest-revision to use the latest)") in generated.stdout
    assert not (Path(env["TAXDATA_DATA_DIR"]) / "taxation" / "latvia.md").exists()


@pytest.mark.parametrize("value, ok", [("24", True), ("0", True), ("1.5h", True),
                                       ("abc", False), ("-1", False), ("9000", False)])
def test_the_setting_is_checked(env, value, ok):
    proc = run("generate_enhanced_taxation_files.py", {**env, "TAXDATA_WIKIPEDIA_MIN_AGE": value},
               "--dry-run")
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2
        assert f"TAXDATA_WIKIPEDIA_MIN_AGE={value!r}: must be a number of hours" in proc.stderr
