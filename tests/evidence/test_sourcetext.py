"""Tests for taxdata.evidence.sourcetext: number formats, and a text read as passages with their
raw spans, headings (markdown and bold pseudo-headings), captions, lead-ins and table columns.

Every text and figure here is a made-up FIXTURE, not real tax data.
"""

from __future__ import annotations

import pytest

from taxdata.evidence.sourcetext import Source, normalise, numbers_in


@pytest.mark.parametrize("text, expected", [
    ("€46 600", "€46600"), ("€46\u00a0600", "€46600"), ("46\u202f600 €", "46600 €"),
    ("2 760,00", "2760.00"), ("1.234,56 €", "1234.56 €"), ("22,5 %", "22.5%"),
    ("22.59 % – 24.09 %", "22.59% - 24.09%"),
    ("₹3 lakh", "₹300000"), ("€1.5 million", "€1500000"), ("2 crore", "20000000"),
    ("21 %¹", "21%"), ("45 %\u2020", "45%"), ("20%[a]", "20%"),
    ("1,000", "1000"),  # three digits after a comma: a thousands group, not a decimal
])
def test_number_formats_of_real_text(text, expected):
    assert normalise(text) == expected


def test_a_decimal_comma_amount_is_one_number():
    assert [n.value for n in numbers_in(normalise("tax: 1 925,33 € + 3 360,90 €"))] == [
        1925.33, 3360.90]


# FIXTURE: written the way models write taxation files.
MODEL_TEXT = """\
# Taxation in Testland

## Personal Income Tax

**Income Tax Brackets (2024):**

| Taxable income | Rate |
|---|---|
| €0 – €10 000 | 0 % |
| Above €10 000 | 20 % |

## Social Security and Payroll Taxes

Contribution rates (2024)

| Contribution | Employee | Employer |
|---|---|---|
| Pension | 9.3 % | 9.3 % |
| **Total** | **20.45 %** | **19.95 %** |

- **Reduced rates:**
  - 12 % on food
  - 5 % on books

**VAT:** The standard rate is 21 %. It applies to most goods.
"""


def by_text(source: Source, text: str):
    (passage,) = [p for p in source.passages if p.text == text]
    return passage


def test_passages_carry_their_raw_span():
    source = Source(MODEL_TEXT)
    for passage in source.passages:
        raw = MODEL_TEXT[passage.start:passage.end]
        assert raw == raw.strip() and normalise(raw) == passage.text, raw


def test_a_bold_line_heads_what_follows_like_a_heading():
    source = Source(MODEL_TEXT)
    row = by_text(source, "above €10000 20%")
    assert row.headings == "taxation in testland / personal income tax / income tax brackets (2024)"
    assert row.section == "Personal Income Tax"


def test_column_headers_label_the_cells_below_them():
    source = Source(MODEL_TEXT)
    total = by_text(source, "total 20.45% 19.95%")
    assert [cell.header for cell in total.cells] == ["contribution", "employee", "employer"]
    assert total.lead == "contribution rates (2024)"  # the table's caption
    assert total.text[total.cells[2].start:total.cells[2].end] == "19.95%"
    header = by_text(source, "contribution employee employer")
    assert header.header and header.table == total.table


def test_list_items_and_lines_carry_their_lead():
    source = Source(MODEL_TEXT)
    assert by_text(source, "- 5% on books").lead == "reduced rates"
    # A bold lead of a line is the context of each of its sentences.
    assert by_text(source, "it applies to most goods.").lead == "vat"


def test_a_quote_is_found_across_formatting_and_its_raw_characters_recovered():
    source = Source(MODEL_TEXT)
    (found,) = source.find("Total | 20.45 % | 19.95 %")  # no bold, no outer pipes
    assert found.row is not None and found.offset == 0
    start, end = source.raw_span(found, "Total | 20.45 % | 19.95 %")
    assert MODEL_TEXT[start:end] == "**Total** | **20.45 %** | **19.95 %**"
    (found,) = source.find("The standard rate is 21 %.")
    start, end = source.raw_span(found, "The standard rate is 21 %.")
    assert MODEL_TEXT[start:end] == "The standard rate is 21 %."


def test_a_quote_never_runs_from_one_table_row_into_the_next():
    source = Source(MODEL_TEXT)
    assert source.find("9.3 % | Total") == []
    assert source.find("9.3 % Total") == []


def test_each_passage_and_occurrence_holds_its_context_from_creation():
    # Joined once when made, never on first read: a functools.cached_property there (Python
    # 3.11) made every worker thread queue on one lock shared by all instances.
    source = Source(MODEL_TEXT)
    for passage in source.passages:
        assert vars(passage)["context"] == " / ".join(
            part for part in (passage.headings, passage.lead) if part)
    found = source.find("Above €10 000 | 20 %")
    assert found
    for where in found:
        assert vars(where)["context"] == " / ".join(
            dict.fromkeys(p.context for p in where.passages if p.context))
        assert where.context
