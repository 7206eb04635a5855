"""The standard taxation file (taxdata/taxfile.py): its sections and drifted headings, the
code-written Sources section, the checks on a source before it is sent, and splitting long text.

The model-shaped bodies are like real model outputs (numbered, bold, other levels, "VAT/GST",
"Value Added Tax (VAT)"); every figure in them, and in every file here, is FIXTURE data, not real
tax data.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taxdata.clients.htmlclean import clean_html
from taxdata.countries.registry import BUNDLED_FILE, load_registry
from taxdata.generate.formatter import Formatter
from taxdata.store.taxfile import (
    SECTIONS,
    SOURCES_HEADING,
    SourceInfo,
    compose,
    missing_sections,
    normalize_headings,
    parse_sources,
    render_sources,
    source_problem,
    split_sections,
    standard_section,
    strip_sources,
    taxation_path,
)

WIKIPEDIA_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wikipedia"


# -- sections and heading drift --------------------------------------------------------------

STANDARD = [f"## {name}" for name in SECTIONS]

NUMBERED_H3 = """# Taxation in Germany

### 1. Overview
FIXTURE overview.

### 2. Personal Income Tax
- System: progressive

### 3. VAT/GST
- Standard rate: 99% (FIXTURE)

### 4. Social Security & Payroll Taxes
- Employee rate: FIXTURE

### 5. Additional Information
- Tax year: FIXTURE
"""

BOLD_AND_SPELLED_OUT = """# Taxation in Germany

## **Overview**
FIXTURE.

## **Personal income tax**
FIXTURE.

## Value Added Tax (VAT)
FIXTURE.

## Social security and payroll taxes:
FIXTURE.

## Additional information
FIXTURE.
"""

MIXED_LEVELS = """# Taxation in Germany
# OVERVIEW
FIXTURE.
#### II. Personal Income Tax ####
FIXTURE.
##VAT / GST
FIXTURE.
## 4) Social Security and Payroll Taxes
FIXTURE.
### Additional Info
FIXTURE.
"""


def headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


@pytest.mark.parametrize("body", [NUMBERED_H3, BOLD_AND_SPELLED_OUT, MIXED_LEVELS],
                         ids=["numbered-h3", "bold-spelled-out", "mixed-levels"])
def test_drifted_headings_are_written_back_in_standard_form(body):
    fixed = normalize_headings(body)
    assert headings(fixed) == ["# Taxation in Germany", *STANDARD]
    assert missing_sections(fixed) == []
    # The text under each heading is untouched.
    assert [line for line in fixed.splitlines() if not line.startswith("#")] == [
        line for line in body.splitlines() if not line.startswith("#")]


def test_unclear_headings_are_left_alone_and_reported_missing():
    body = "# Taxation\n## Taxes on consumption\nx\n## Income\ny\n## Sources\n- Source: manual\n"
    assert normalize_headings(body) == body
    assert "VAT / GST" in missing_sections(body)
    assert standard_section("Taxes on consumption") is None
    assert standard_section("Sources") is None


def test_a_second_heading_for_a_section_stays_a_sub_heading():
    body = "## VAT/GST\nx\n### VAT\ny\n"
    assert normalize_headings(body) == "## VAT / GST\nx\n### VAT\ny\n"



def test_formatter_accepts_a_drifted_file_without_a_re_ask(llm_server, client_for):
    llm_server.enqueue(NUMBERED_H3)
    formatter = Formatter(client_for(llm_server))
    country = load_registry(BUNDLED_FILE).get("germany")
    result = formatter.from_source(country, "FIXTURE source text", "a FIXTURE source")
    assert len(llm_server.chats) == 1  # recognised: no re-ask, no failure
    assert headings(result.body) == ["# Taxation in Germany", *STANDARD]


# -- the Sources section: written by code, read back for provenance ---------------------------

BODY = "# Taxation in Germany\n\n" + "".join(f"## {name}\nFIXTURE.\n\n" for name in SECTIONS)


def test_compose_replaces_the_models_sources_with_the_codes_and_parses_back():
    info = SourceInfo(kind="wikipedia", title="Taxation in Germany",
                      url="https://en.wikipedia.org/w/index.php?title=Taxation_in_Germany&oldid=7",
                      revision="7", fetched_at="2026-01-01T00:00:00Z", model="m:1",
                      prompt_version="p-1", generated_at="2026-01-02T00:00:00Z")
    invented = BODY + "## Sources\n- Source: MODEL-INVENTED\n- URL: https://invented.example/\n"
    text = compose(invented, info)
    assert text.count(SOURCES_HEADING) == 1 and text.endswith(render_sources(info))
    assert "MODEL-INVENTED" not in text and "invented.example" not in text
    assert parse_sources(text) == info and not parse_sources(text).unverified
    assert missing_sections(text) == []


def test_research_files_say_unverified_and_a_file_without_sources_is_manual():
    text = compose(BODY, SourceInfo(kind="research", model="m:1"))
    assert "- Source: research (model knowledge, unverified)" in text
    assert re.search(r"^> WARNING: written from model knowledge, unverified\.", text, re.M)
    info = parse_sources(text)
    assert info.kind == "research" and info.unverified and info.model == "m:1"
    assert parse_sources(BODY) == SourceInfo() and SourceInfo().kind == "manual"
    # An unknown kind is not trusted as a source: it reads as hand-written.
    assert parse_sources(BODY + "## Sources\n- Source: oracle\n").kind == "manual"


def test_strip_sources_keeps_what_follows_the_section():
    text = "# T\n\nFIXTURE.\n\n## Sources\n- Source: manual\n\n## Notes\nkept\n"
    assert strip_sources(text) == "# T\n\nFIXTURE.\n\n## Notes\nkept\n"
    assert strip_sources("# T\nno sources\n") == "# T\nno sources\n"


# -- what may be sent to the model -----------------------------------------------------------

def test_source_problem_names_oversized_binary_non_utf8_and_empty_files():
    assert source_problem(b"# T\nFIXTURE text.\n", 100) is None
    assert source_problem(b"x" * 101, 100) == (
        "101 bytes is over the input cap of 100 bytes (TAXDATA_MAX_INPUT_BYTES)")
    assert source_problem(b"\x7fELF\x00binary", 100).startswith("not text (contains NUL bytes")
    assert source_problem(b"caf\xe9", 100) == "not UTF-8 text (byte 0xe9 at offset 3)"
    assert source_problem(b"## Sources\n- Source: manual\n", 100) == (
        "empty (no text besides any Sources section)")


def test_taxation_path_prefers_the_standard_name_then_the_legacy_one(tmp_path):
    assert taxation_path(tmp_path, "germany") is None
    legacy = tmp_path / "taxation_germany.txt"
    legacy.write_text("FIXTURE\n")
    assert taxation_path(tmp_path, "germany") == legacy
    standard = tmp_path / "germany.md"
    standard.write_text("FIXTURE\n")
    assert taxation_path(tmp_path, "germany") == standard
    (tmp_path / "france.md").mkdir()  # a directory is not a file
    assert taxation_path(tmp_path, "france") is None


# -- split_sections ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_text() -> str:
    return clean_html((WIKIPEDIA_FIXTURES / "freedonia_long.html").read_text(encoding="utf-8"))


@pytest.mark.parametrize("max_chars", [400, 1000, 2500, 6000, 100_000])
def test_split_keeps_all_text_and_respects_the_limit(long_text, max_chars):
    parts = split_sections(long_text, max_chars)
    assert "".join(parts) == long_text
    assert all(parts)
    longest_block = max(len(b) + 2 for b in long_text.split("\n\n"))
    if max_chars >= longest_block:
        assert all(len(p) <= max_chars for p in parts)
    assert all(p.endswith("\n") for p in parts)  # never cut mid-line


def test_split_uses_section_boundaries_when_sections_fit(long_text):
    sections = long_text.count("\n## ")
    biggest = max(len(s) for s in re.split(r"(?m)^(?=## )", long_text))
    parts = split_sections(long_text, biggest)
    assert 1 < len(parts) <= sections + 1
    assert all(p.startswith("## ") for p in parts[1:])


def test_split_never_cuts_a_table_that_fits(long_text):
    tables = [b for b in long_text.split("\n\n") if b.startswith("| ")]
    assert tables
    for max_chars in (450, 900):
        parts = split_sections(long_text, max_chars)
        assert all(any(t in p for p in parts) for t in tables)


def test_split_long_section_on_paragraphs_then_lines():
    text = "Intro.\n\n## A\n\n" + "\n\n".join(f"Para {n} " + "x" * 50 for n in range(6)) + "\n"
    parts = split_sections(text, 130)
    assert "".join(parts) == text
    assert all(len(p) <= 130 for p in parts)
    assert all(p.endswith("\n") for p in parts)
    table = "| a | b |\n| --- | --- |\n" + "".join(f"| {n} | {'y' * 20} |\n" for n in range(10))
    parts = split_sections(table, 100)  # a table longer than the limit: cut between rows only
    assert "".join(parts) == table and all(p.endswith("|\n") for p in parts)
    assert split_sections("one long line without breaks\n", 5) == ["one long line without breaks\n"]


def test_split_rejects_a_non_positive_limit():
    with pytest.raises(ValueError):
        split_sections("x\n", 0)
