"""Every figure verified in the ORIGINAL: one test per grounding path, end to end.

The real scripts run (their ``main`` in this process, tests/_programs.py) against the stand-ins:
the generators fetch a FIXTURE article (stand-in MediaWiki) or page (stand-in extractor) and a
stand-in "model" rewrites it into a taxation file that states one wrong figure (a VAT of 25
where the original says 21) beside correct ones; then the updater, whose "model" extracts
faithfully from that file with genuine quotes, must write the correct figures with their
grounding in the original and hold the wrong one back as UNSUPPORTED, naming the original.

Paths: the article revision in the cache; the same revision fetched by ``oldid`` when the cache
lacks it (while the wiki's current revision says something else); the extractor's page; a
hand-written file (its own original); a research file (nothing to verify: unverified, no
grounding). Every text and figure here is FIXTURE data, not real tax data.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from _programs import Run, run_main
from _updater import script_env

from taxdata.evidence.check import required_paths
from taxdata.record.models import Extraction
from taxdata.store.taxfile import parse_sources, strip_sources
from taxdata.testing.extractor_server import StandInExtractor
from taxdata.testing.llm_server import is_probe
from taxdata.testing.mediawiki_server import StandInMediaWiki
from taxdata.update.extract import SYSTEM_PROMPT

TITLE = "Taxation in Latvia"
REVISION = 1234567
ARTICLE_URL = "https://en.wikipedia.org/wiki/Taxation_in_Latvia"

# FIXTURE: a made-up article in MediaWiki's parser output; every figure is invented.
ARTICLE = """<div class="mw-content-ltr mw-parser-output" lang="en" dir="ltr">
<p>FIXTURE: an invented article for the taxdata tests; not real tax data.</p>
<h2 id="Personal_income_tax">Personal income tax</h2>
<p>The personal income tax is progressive, with three brackets:</p>
<table class="wikitable"><tbody>
<tr><th>Annual income (EUR)</th><th>Rate</th></tr>
<tr><td>up to 20,004</td><td>20%<sup class="reference"><a href="#n1">[1]</a></sup></td></tr>
<tr><td>20,005 to 78,100</td><td>23%</td></tr>
<tr><td>over 78,100</td><td>31%</td></tr>
</tbody></table>
<h2 id="VAT">Value-added tax</h2>
<p>The standard VAT rate is 21%. Reduced rates of 12% and 5% apply to some goods.</p>
<h2 id="Social">Social security</h2>
<p>Employees contribute 10.5% of gross salary and employers 23.59%.</p>
</div>"""

# What the stand-in "model" writes from it: a faithful rewrite except one figure (25 for 21).
REWRITE = """# Taxation in Latvia

## Overview
FIXTURE rewrite for the taxdata tests; not real tax data.

## Personal Income Tax
- System: progressive
- Currency: EUR
- Period: annual

| Taxable income from | Taxable income to | Rate (%) |
|---|---|---|
| 0 | 20,004 | 20 |
| 20,005 | 78,100 | 23 |
| 78,101 | and above | 31 |

## VAT / GST
- Standard rate: 25 %
- Reduced rates: 12 % and 5 %

## Social Security and Payroll Taxes
- Employee rate: 10.5 %
- Employer rate: 23.59 %

## Additional Information
- Notes: FIXTURE
"""

QUOTES = {  # the updater's "model" quotes the file it is sent, faithfully
    "system": "- System: progressive",
    "brackets[0].rate": "| 0 | 20,004 | 20 |", "brackets[0].max": "| 0 | 20,004 | 20 |",
    "brackets[1].rate": "| 20,005 | 78,100 | 23 |", "brackets[1].max": "| 20,005 | 78,100 | 23 |",
    "brackets[2].rate": "| 78,101 | and above | 31 |",
    "vat.standard": "- Standard rate: 25 %",
    "vat.reduced[0]": "- Reduced rates: 12 % and 5 %", "vat.reduced[1]": "- Reduced rates: 12 % and 5 %",
    "socialSecurity.employeeRate": "- Employee rate: 10.5 %",
    "socialSecurity.employerRate": "- Employer rate: 23.59 %",
}


def extraction(vat: float = 25, quotes: dict[str, str] = QUOTES) -> dict[str, Any]:
    return {
        "currency": "EUR", "countryCode": "LV", "system": "progressive",
        "brackets": [{"min": 0, "max": 20004, "rate": 20, "description": None},
                     {"min": 20005, "max": 78100, "rate": 23, "description": None},
                     {"min": 78101, "max": None, "rate": 31, "description": None}],
        "vat": {"hasVAT": True, "standard": vat, "reduced": [12, 5], "description": None,
                "notes": None},
        "socialSecurity": {"employeeRate": 10.5, "employerRate": 23.59, "notes": None},
        "special_taxes": [], "notes": None,
        "evidence": [{"field": f, "quote": q} for f, q in quotes.items()],
    }


CORRECT = set(required_paths(Extraction.model_validate(extraction()))) - {"vat.standard"}


EXTRACTION_PROMPT = SYSTEM_PROMPT.splitlines()[0]


def respond(body: dict) -> Any:
    """The generators get the rewrite; the updater gets the faithful extraction."""
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "")
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    if system.startswith(EXTRACTION_PROMPT):  # the updater's extraction request
        return extraction()
    if "into the standard taxation file" in prompt:
        return REWRITE
    if "from your own knowledge" in prompt:
        return REWRITE.replace("FIXTURE rewrite", "FIXTURE research answer")
    return None


@pytest.fixture
def wiki():
    server = StandInMediaWiki().start()
    server.add_page(TITLE, ARTICLE, revid=REVISION)
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path, llm_server, wiki) -> dict[str, str]:
    llm_server.responder = respond
    return script_env(tmp_path / "data", llm_server.url(),
                      {"TAXDATA_WIKIPEDIA_API": wiki.api_url, "TAXDATA_MAX_RETRIES": "1"})


def run(script: str, env: dict[str, str], *args: str) -> Run:
    return run_main(script, ["--no-progress", "--countries", "latvia", *args], env=env,
                    cwd=Path.cwd())


def written(env: dict[str, str], updated: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the stored entry of latvia, its entry in the report of the run ``updated``)."""
    data = Path(env["TAXDATA_DATA_DIR"])
    dataset = json.loads((data / "tax_data.json").read_text(encoding="utf-8"))
    report = Path(re.search(r"^  Report: (.+)$", updated.stdout, re.MULTILINE).group(1))
    entry = json.loads(report.read_text(encoding="utf-8"))["countries"]["latvia"]
    return dataset["countries"]["latvia"], entry


def assert_grounded(stored: dict[str, Any], text: str, paths: set[str]) -> None:
    """Every figure of ``paths`` is written with its grounding: the original's own characters."""
    provenance = stored["provenance"]
    grounding = provenance["grounding"]
    assert set(grounding) >= paths and set(provenance["evidence"]) >= paths
    for path in paths:
        found = grounding[path]
        assert text[found["start"]:found["end"]] == found["quote"], path
    original = provenance["original"]
    assert original["chars"] == len(text)
    assert re.fullmatch(r"[0-9a-f]{64}", original["sha256"])


def assert_vat_held_back(stored: dict[str, Any], report: dict[str, Any], original: str) -> None:
    assert stored["record"]["vat"]["standard"] is None
    assert stored["record"]["vat"]["reduced"] == [12, 5]
    (unsupported,) = [u for u in report["unsupported"] if u["path"] == "vat.standard"]
    assert unsupported["value"] == 25 and unsupported["quote"] == "- Standard rate: 25 %"
    assert unsupported["reason"].startswith(f"not stated in {original}")
    assert "vat.standard" not in stored["provenance"]["grounding"]


def cached_text(data: Path) -> str:
    [entry] = (data / ".cache" / "wikipedia").glob("taxation-in-latvia-*.json")
    return json.loads(entry.read_text(encoding="utf-8"))["text"]


# -- 1. the article revision in the cache ------------------------------------------------------

def test_article_revision_from_the_cache(env, wiki):
    generated = run("generate_enhanced_taxation_files.py", env)
    assert generated.returncode == 0, generated.stderr
    data = Path(env["TAXDATA_DATA_DIR"])
    # The generator's own run already flags the figure its model introduced.
    text = (data / "taxation" / "latvia.md").read_text(encoding="utf-8")
    info = parse_sources(text)
    assert info.kind == "wikipedia" and info.revision == str(REVISION)
    assert info.unstated == "1 figure: 25% (VAT / GST)"
    assert "> WARNING: the original does not state 1 figure: 25% (VAT / GST)." in text
    assert info.original_sha256 == hashlib.sha256(cached_text(data).encode()).hexdigest()
    assert re.search(r"\[UNGROUNDED\] \S+ latvia: 25% under \"VAT / GST\" \(\"- standard rate: "
                     r"25%\"\) is not stated in Taxation in Latvia rev 1234567", generated.stderr)
    assert "  UNGROUNDED figures: 1 in 1 file (not stated in the original" in generated.stdout

    before = len(wiki.requests)
    updated = run("tax_data_updater.py", env, "--no-list-reference")
    assert updated.returncode == 0, updated.stderr
    assert len(wiki.requests) == before  # the cache held the revision: nothing fetched
    stored, report = written(env, updated)
    assert_grounded(stored, cached_text(data), CORRECT)
    assert_vat_held_back(stored, report, "Taxation in Latvia rev 1234567")
    original = stored["provenance"]["original"]
    assert original["kind"] == "wikipedia" and original["revision"] == str(REVISION)
    assert original["location"].startswith(".cache/wikipedia/taxation-in-latvia-")
    # The original's words, not the rewrite's: the VAT section of the article.
    assert stored["provenance"]["grounding"]["vat.reduced[0]"]["quote"] == (
        "Reduced rates of 12% and 5% apply to some goods.")
    assert stored["provenance"]["evidence"]["vat.reduced[0]"] == QUOTES["vat.reduced[0]"]
    assert report["original"] == original and report["grounding"] == stored["provenance"][
        "grounding"]
    assert "of them not stated in the original" in updated.stdout
    assert re.search(r"\[UNSUPPORTED\] .*latvia vat.standard 25: not stated in Taxation in Latvia "
                     r"rev 1234567", updated.stderr)
    # The review page shows that figure inside the article's own sentence, at its offsets.
    page = Path(re.search(r"^  Review page: (.+)$", updated.stdout, re.M).group(1)).read_text(
        encoding="utf-8")
    assert "<mark>Reduced rates of 12% and 5% apply to some goods.</mark>" in page
    assert "(at its recorded offsets)" in page


# -- 2. the same revision, fetched by oldid ----------------------------------------------------

def test_article_revision_fetched_when_the_cache_lacks_it(env, wiki):
    assert run("generate_enhanced_taxation_files.py", env).returncode == 0
    data = Path(env["TAXDATA_DATA_DIR"])
    shutil.rmtree(data / ".cache" / "wikipedia")
    # The article has moved on, and its new revision happens to say 25: the file was written
    # from revision 1234567, so that revision is what its figures must be found in.
    wiki.add_page(TITLE, ARTICLE.replace("standard VAT rate is 21%", "standard VAT rate is 25%"),
                  revid=REVISION + 1)
    updated = run("tax_data_updater.py", env, "--no-list-reference")
    assert updated.returncode == 0, updated.stderr
    fetched = [r.query for r in wiki.requests if r.query.get("oldid")]
    assert [q["oldid"] for q in fetched] == [[str(REVISION)]]
    kept = data / ".cache" / "wikipedia" / "revisions" / f"{REVISION}.json"
    text = json.loads(kept.read_text(encoding="utf-8"))["text"]
    assert "The standard VAT rate is 21%." in text
    stored, report = written(env, updated)
    assert_grounded(stored, text, CORRECT)
    assert_vat_held_back(stored, report, "Taxation in Latvia rev 1234567")
    assert stored["provenance"]["original"]["location"] == f".cache/wikipedia/revisions/{REVISION}.json"
    # A second run finds the revision in the cache.
    before = len(wiki.requests)
    assert run("tax_data_updater.py", env, "--no-list-reference", "--force").returncode == 0
    assert len(wiki.requests) == before


def test_an_original_that_cannot_be_found_fails_before_any_request(env, llm_server, wiki):
    assert run("generate_enhanced_taxation_files.py", env).returncode == 0
    data = Path(env["TAXDATA_DATA_DIR"])
    shutil.rmtree(data / ".cache" / "wikipedia")
    chats = len(llm_server.chats)
    unreachable = {**env, "TAXDATA_WIKIPEDIA_API": "http://127.0.0.1:9/w/api.php"}
    updated = run("tax_data_updater.py", unreachable, "--no-list-reference")
    assert updated.returncode == 1
    # Nothing could be verified: nothing was sent (the client's form probe is not the work).
    assert [b for b in llm_server.chats[chats:] if not is_probe(b)] == []
    assert "  FAILED latvia: cannot verify the figures: the article revision it was" in updated.stdout
    assert re.search(r"\[ORIGINAL\] \S+ latvia cannot verify the figures: the article revision it "
                     r"was written from \(Taxation in Latvia rev 1234567\) is not in the cache and "
                     r"Wikipedia did not give it \(.*ConnectionError\); nothing sent, previous "
                     r"record kept", updated.stderr)
    assert not (data / "tax_data.json").exists() or "latvia" not in json.loads(
        (data / "tax_data.json").read_text())["countries"]


# -- 3. the extractor's page ------------------------------------------------------------------

def test_extractor_page(env, tmp_path):
    page = strip_sources(REWRITE).replace("- Standard rate: 25 %", "- Standard rate: 21 %")
    page = "FIXTURE page of a made-up tax site; not real tax data.\n\n" + page.split("\n", 2)[2]
    extractor = StandInExtractor().start()
    try:
        extractor.add_page(ARTICLE_URL, page)
        extractor_env = {**env, "TAXDATA_EXTRACTOR_URL": extractor.base_url}
        assert run("generate_taxation_files.py", extractor_env).returncode == 0
        generated = run("generate_enhanced_taxation_files.py", extractor_env, "--from-raw")
    finally:
        extractor.stop()
    assert generated.returncode == 0, generated.stderr
    data = Path(env["TAXDATA_DATA_DIR"])
    info = parse_sources((data / "taxation" / "latvia.md").read_text(encoding="utf-8"))
    assert info.kind == "extractor" and info.url == ARTICLE_URL and info.unstated
    kept = data / ".cache" / "originals" / f"{info.original_sha256}.txt"
    text = kept.read_bytes().decode("utf-8")
    assert "- Standard rate: 21 %" in text
    updated = run("tax_data_updater.py", env, "--no-list-reference")
    assert updated.returncode == 0, updated.stderr
    stored, report = written(env, updated)
    assert_grounded(stored, text, CORRECT)
    assert_vat_held_back(stored, report, ARTICLE_URL)
    original = stored["provenance"]["original"]
    assert original["kind"] == "extractor" and original["url"] == ARTICLE_URL
    assert original["location"] == f".cache/originals/{info.original_sha256}.txt"


# -- 4. a hand-written file -------------------------------------------------------------------

def test_hand_written_file_is_its_own_original(env, llm_server):
    data = Path(env["TAXDATA_DATA_DIR"])
    (data / "taxation").mkdir(parents=True)
    text = REWRITE.replace("- Standard rate: 25 %", "- Standard rate: 21 %")
    (data / "taxation" / "latvia.md").write_text(text, encoding="utf-8")
    quotes = {**QUOTES, "vat.standard": "- Standard rate: 21 %"}
    llm_server.responder = lambda body: extraction(vat=21, quotes=quotes)
    updated = run("tax_data_updater.py", env, "--no-list-reference")
    assert updated.returncode == 0, updated.stderr
    stored, report = written(env, updated)
    assert_grounded(stored, text, CORRECT | {"vat.standard"})
    assert report["unsupported"] == []
    original = stored["provenance"]["original"]
    assert original["kind"] == "manual" and original["location"] == "taxation/latvia.md"
    assert stored["provenance"]["grounding"]["vat.standard"]["quote"] == "- Standard rate: 21 %"
    # A figure a person's file does not state is refused by the quote checks themselves.
    llm_server.responder = lambda body: extraction(vat=25)
    updated = run("tax_data_updater.py", env, "--no-list-reference", "--force")
    stored, report = written(env, updated)
    assert stored["record"]["vat"]["standard"] is None
    (unsupported,) = [u for u in report["unsupported"] if u["path"] == "vat.standard"]
    assert unsupported["reason"] == "the quote is not in the source text"


# -- 5. a research file -----------------------------------------------------------------------

def test_research_file_is_unverified_and_has_no_grounding(env):
    researched = run("research_and_format.py", env)
    assert researched.returncode == 0, researched.stderr
    updated = run("tax_data_updater.py", env, "--no-list-reference")
    assert updated.returncode == 0, updated.stderr
    stored, report = written(env, updated)
    provenance = stored["provenance"]
    assert provenance["source_kind"] == "research" and provenance["unverified"] is True
    assert provenance["evidence"] is None and provenance["grounding"] is None
    assert provenance["original"] is None
    assert report["unsupported"] == [] and report["grounding"] == {}
    assert stored["record"]["vat"]["standard"] == 25  # model knowledge, marked unverified
    assert re.search(r"^  UNVERIFIED \(.*\): latvia$", updated.stdout, re.M), updated.stdout
