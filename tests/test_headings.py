"""Heading drift: model files whose headings clearly name the standard sections are accepted and
written back in standard form; unclear headings are still reported missing.

The bodies below are shaped like real model outputs (numbered, bold, other levels, "VAT/GST",
"Value Added Tax (VAT)"); every figure in them is FIXTURE data, not real tax data.
"""

from __future__ import annotations

import pytest

from taxdata.formatter import Formatter
from taxdata.registry import BUNDLED_FILE, load_registry
from taxdata.taxfile import SECTIONS, missing_sections, normalize_headings, standard_section

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
