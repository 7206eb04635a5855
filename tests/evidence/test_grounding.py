"""Tests for taxdata.evidence.grounding (a figure found in the original text, with its offsets),
taxdata.evidence.originals (where an original is found again) and the provenance that keeps them.

Every text and figure here is a made-up FIXTURE, not real tax data.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import WikipediaClient, cache_relpath, revision_relpath
from taxdata.evidence.check import Quote, check_evidence
from taxdata.evidence.grounding import Original, sha256_text, unstated_figures
from taxdata.evidence.originals import Originals, OriginalUnavailable, keep_original
from taxdata.evidence.quotechecks import Bounds
from taxdata.evidence.sourcetext import Source
from taxdata.record.models import Extraction, Provenance
from taxdata.store.datadir import DataDir
from taxdata.store.rawfile import render_raw
from taxdata.store.taxfile import SourceInfo

# FIXTURE: an article in cleaned Wikipedia form, and a model's rewrite of it.
ARTICLE = """\
FIXTURE: an invented article; not real tax data.

## Income tax

The income tax is progressive. For 2024:

| Taxable income | Rate |
| --- | --- |
| up to €12,000 | 0% |
| €12,001 – €50,000 | 25% |
| over €50,000 | 40% |

## Value-added tax

The standard rate is 21%; a reduced rate of 9% applies to food. Until 2012 the standard rate was 19%.

## Corporate tax

The corporate tax rate is 25%.
"""
REWRITE = """\
# Taxation in Testland

## Personal Income Tax

- System: progressive

| From | To | Rate (%) |
|---|---|---|
| 0 | 12,000 | 0 |
| 12,001 | 50,000 | 25 |
| 50,001 | and above | 40 |

## VAT / GST

- Standard rate: 21 %
- Reduced rate: 9 % (food)
"""
QUOTES = {"system": "- System: progressive", "brackets[0].rate": "| 0 | 12,000 | 0 |",
          "brackets[0].max": "| 0 | 12,000 | 0 |", "brackets[1].rate": "| 12,001 | 50,000 | 25 |",
          "brackets[1].max": "| 12,001 | 50,000 | 25 |",
          "brackets[2].rate": "| 50,001 | and above | 40 |",
          "vat.standard": "- Standard rate: 21 %", "vat.reduced[0]": "- Reduced rate: 9 % (food)"}


def extraction(standard: float = 21) -> Extraction:
    return Extraction.model_validate({
        "system": "progressive",
        "brackets": [{"min": 0, "max": 12000, "rate": 0}, {"min": 12001, "max": 50000, "rate": 25},
                     {"min": 50001, "max": None, "rate": 40}],
        "vat": {"hasVAT": True, "standard": standard, "reduced": [9]}})


def original() -> Original:
    return Original.of(ARTICLE, "wikipedia", "Taxation in Testland rev 77", revision="77",
                       url="https://example.invalid/wiki/Taxation_in_Testland")


def test_every_figure_of_a_faithful_rewrite_is_grounded_in_the_original():
    rewrite = Source(REWRITE)
    check = check_evidence(extraction(), [Quote(p, q, rewrite) for p, q in QUOTES.items()],
                           original())
    assert check.unsupported == [] and set(check.grounding) == set(QUOTES)
    for path, found in check.grounding.items():
        assert ARTICLE[found.start:found.end] == found.quote, path
    # The original's own words: its table row and its sentence, not the rewrite's.
    assert check.grounding["brackets[1].rate"].quote == "| €12,001 – €50,000 | 25% |"
    assert check.grounding["vat.standard"].quote == (
        "The standard rate is 21%; a reduced rate of 9% applies to food.")
    assert check.original.sha256 == sha256_text(ARTICLE) and check.original.revision == "77"


@pytest.mark.parametrize("standard, why", [
    (25, 'not stated in Taxation in Testland rev 77 (where it says 25, "| €12,001 – €50,000 | '
         '25% |": neither the quote nor its section heading is about VAT)'),
    (19, 'not stated in Taxation in Testland rev 77 (where it says 19, "Until 2012 the standard '
         'rate was 19%.": the quote gives 19 as a past rate (history), not the current one)'),
    (20.5, "not stated in Taxation in Testland rev 77"),
])
def test_a_figure_the_rewrite_introduced_is_unsupported_with_a_genuine_quote(standard, why):
    rewrite = Source(REWRITE.replace("21 %", f"{standard:g} %"))
    quotes = {**QUOTES, "vat.standard": f"- Standard rate: {standard:g} %"}
    check = check_evidence(extraction(standard), [Quote(p, q, rewrite) for p, q in quotes.items()],
                           original())
    [unsupported] = check.unsupported
    assert (unsupported.path, unsupported.reason) == ("vat.standard", why)
    assert check.extraction.vat.standard is None and "vat.standard" not in check.grounding
    assert check.extraction.vat.reduced == [9]


def test_the_original_grounds_the_system_by_its_schedule_table():
    text = ("Rates of tax for individuals\n\n| Taxable income | Rate |\n| --- | --- |\n"
            "| 0 - 10 000 | 10% of taxable income |\n| 10 001 and above | 1 000 + 20% of the "
            "excess |\n")
    found = Original.of(text, "extractor", "page").ground(
        "system", "progressive", "- System: progressive", extraction(), None)
    # The whole table, header row and all: what a reviewer needs to see.
    assert found.quote.startswith("| Taxable income | Rate |") and found.quote.endswith("excess |")


def test_unstated_figures_are_the_numbers_the_original_does_not_state_under_that_tax():
    rewrite = REWRITE.replace("21 %", "25 %") + "\n## Additional Information\n\n- Tax year: 2024\n"
    found = unstated_figures(rewrite, original())
    # 25 is stated, but as an income tax rate and a corporate one, never as VAT; 2024 is stated;
    # 50,001 is the bound 50,000 plus one.
    assert [(u.value, u.section) for u in found] == [("25%", "VAT / GST")]
    assert unstated_figures(REWRITE, original()) == []


# -- provenance -------------------------------------------------------------------------------

PROVENANCE = {"source_file": "x.md", "source_sha256": "0" * 64, "source_kind": "wikipedia",
              "unverified": False, "extracted_at": "2024-01-01T00:00:00Z"}


def test_records_written_before_grounding_still_load():
    provenance = Provenance.model_validate({**PROVENANCE, "evidence": {"vat.standard": "x"}})
    assert provenance.original is None and provenance.grounding is None


def test_grounding_offsets_must_span_their_quote_inside_the_original():
    ref = original().ref.model_dump()
    good = {"vat.standard": {"quote": "21%", "start": 10, "end": 13}}
    Provenance.model_validate({**PROVENANCE, "original": ref, "grounding": good})
    with pytest.raises(ValidationError, match="span its quote exactly"):
        Provenance.model_validate({**PROVENANCE, "original": ref, "grounding": {
            "vat.standard": {"quote": "21%", "start": 10, "end": 12}}})
    with pytest.raises(ValidationError, match="past the end of its original"):
        Provenance.model_validate({**PROVENANCE, "original": {**ref, "chars": 11},
                                   "grounding": good})
    with pytest.raises(ValidationError, match="need the original"):
        Provenance.model_validate({**PROVENANCE, "grounding": good})
    with pytest.raises(ValidationError, match="research"):
        Provenance.model_validate({**PROVENANCE, "source_kind": "research", "unverified": True,
                                   "original": ref, "grounding": good})


# -- finding an original again ----------------------------------------------------------------

def originals(tmp_path) -> tuple[Originals, DataDir]:
    data = DataDir(tmp_path)
    # Nothing listens on port 9: a revision the cache lacks cannot be fetched.
    client = WikipediaClient("http://127.0.0.1:9/w/api.php", cache_dir=data,
                             retry=RetryPolicy(attempts=1))
    return Originals(data, client), data


def test_a_wikipedia_original_is_the_revision_in_the_cache(tmp_path):
    found, data = originals(tmp_path)
    entry = {"requested_title": "Taxation in Testland", "title": "Taxation in Testland",
             "revision_id": 77, "url": "u", "fetched_at": "2024-01-01T00:00:00Z", "text": ARTICLE}
    data.write_text(revision_relpath(77), json.dumps(entry))
    info = SourceInfo(kind="wikipedia", title="Taxation in Testland", revision="77")
    got = found.find("testland", "testland.md", REWRITE, info)
    assert got.text == ARTICLE and got.ref.location == revision_relpath(77)
    assert got.ref.label == "Taxation in Testland rev 77"
    # Another revision is not in the cache, and Wikipedia cannot be reached: no original.
    with pytest.raises(OriginalUnavailable, match=r"\(Taxation in Testland rev 78\) is not in "
                                                  r"the cache and Wikipedia did not give it"):
        found.find("testland", "testland.md", REWRITE, SourceInfo(
            kind="wikipedia", title="Taxation in Testland", revision="78"))
    assert data.read_json(cache_relpath("Taxation in Testland")) is None


def test_once_wikipedia_is_down_each_country_names_only_its_own_article(tmp_path):
    found, _ = originals(tmp_path)
    said = []
    for title, revision in (("Taxation in Testland", "78"), ("Taxation in Otherland", "91")):
        with pytest.raises(OriginalUnavailable) as caught:
            found.find("x", "x.md", REWRITE, SourceInfo(kind="wikipedia", title=title,
                                                        revision=revision))
        said.append(str(caught.value))
    assert "Taxation in Testland rev 78" in said[0]
    # The second is not fetched again (Wikipedia did not answer this run), and its line does
    # not name the first country's article.
    assert "(Taxation in Otherland rev 91)" in said[1] and "Testland" not in said[1]
    assert "Wikipedia did not answer this run: failed after 1 attempt" in said[1]


def test_an_extractor_original_is_found_by_its_sha256(tmp_path):
    found, data = originals(tmp_path)
    sha = keep_original(data, ARTICLE)
    info = SourceInfo(kind="extractor", url="https://example.invalid/p", original_sha256=sha)
    got = found.find("testland", "testland.md", REWRITE, info)
    assert got.text == ARTICLE and got.ref.location == f".cache/originals/{sha}.txt"
    # Without the kept copy: raw/<slug>.txt when its page text has that SHA-256.
    (tmp_path / ".cache" / "originals" / f"{sha}.txt").unlink()
    data.write_text("raw/testland.txt", render_raw("https://example.invalid/p", "t", "x",
                                                   ARTICLE))
    assert found.find("testland", "testland.md", REWRITE, info).ref.location == "raw/testland.txt"
    # A page that changed since is not the original.
    data.write_text("raw/testland.txt", render_raw("https://example.invalid/p", "t", "x",
                                                   ARTICLE.replace("21%", "22%")))
    with pytest.raises(OriginalUnavailable, match="not in .cache/originals/ or raw/testland.txt"):
        found.find("testland", "testland.md", REWRITE, info)


def test_a_sources_section_cannot_point_the_updater_outside_the_data_directory(tmp_path):
    found, _ = originals(tmp_path)
    info = SourceInfo(kind="extractor", url="u", original_sha256="../../etc/passwd")
    with pytest.raises(OriginalUnavailable, match="which is not one; regenerate the file"):
        found.find("testland", "testland.md", REWRITE, info)


def test_a_hand_written_file_is_its_own_original_and_research_has_none(tmp_path):
    found, _ = originals(tmp_path)
    got = found.find("testland", "testland.md", REWRITE, SourceInfo())
    assert got.text == REWRITE and got.ref.kind == "manual"
    assert found.find("testland", "testland.md", REWRITE, SourceInfo(kind="research")) is None


def test_bounds_of_a_schedule():
    bounds = Bounds.of(extraction().brackets)
    assert bounds.marks == [{12000}, {50000}, {50001, 50000}] and bounds.rates == [0, 25, 40]
