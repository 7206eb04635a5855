"""Tests for taxdata.evidence.check: normalisation, quote look-up, per-figure checks, withholding.

Every source text and figure here is a made-up FIXTURE, not real tax data.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from taxdata.evidence.check import Quote, check_evidence
from taxdata.evidence.quotechecks import LABELS, nearest_label
from taxdata.evidence.sourcetext import Source, find_quote, normalise, numbers_in
from taxdata.record.models import Extraction

# FIXTURE: a made-up taxation file in the standard layout; the figures mean nothing.
SOURCE_TEXT = """\
# Taxation in Testland

> FIXTURE: invented figures for tests, not real tax data.

## Overview

Testland has a progressive income tax and a VAT. Corporate tax is 25 %.

## Personal Income Tax

The personal income tax is progressive. The brackets for the 2024 tax year:

| Taxable income from | Taxable income to | Rate (%) |
|---|---|---|
| 0 | 9,000 | 0 |
| 9,001 | 40,000 | 15 |
| 40,001 | | 44 |

In prose: 0 % up to 9,000 EUR, 15 % up to 40,000 EUR, 44 % above 40,000 EUR.

## VAT / GST

- Standard rate: 21 per cent
- Reduced rates: 10 % and 4 %

The rates are 21 % (standard), 10 % (reduced).

## Social Security and Payroll Taxes

Employees pay 11 % and employers pay 12 % of gross salary, capped at 61 200 EUR.
"""
SOURCE = Source(SOURCE_TEXT)

# FIXTURE figures of SOURCE_TEXT with a correct quote each.
GOOD_QUOTES = {
    "system": "The personal income tax is progressive.",
    "brackets[0].rate": "| 0 | 9,000 | 0 |",
    "brackets[0].max": "| 0 | 9,000 | 0 |",
    "brackets[1].rate": "| 9,001 | 40,000 | 15 |",
    "brackets[1].max": "15 % up to 40,000 EUR",
    "brackets[2].rate": "| 40,001 | | 44 |",
    "vat.standard": "Standard rate: 21 per cent",
    "vat.reduced[0]": "Reduced rates: 10 % and 4 %",
    "vat.reduced[1]": "Reduced rates: 10 % and 4 %",
    "socialSecurity.employeeRate": "Employees pay 11 % and employers pay 12 % of gross salary",
    "socialSecurity.employerRate": "Employees pay 11 % and employers pay 12 % of gross salary",
}


def extraction(**over: Any) -> Extraction:
    data = {
        "system": "progressive",
        "brackets": [{"min": 0, "max": 9000, "rate": 0}, {"min": 9001, "max": 40000, "rate": 15},
                     {"min": 40001, "max": None, "rate": 44}],
        "vat": {"hasVAT": True, "standard": 21, "reduced": [10, 4]},
        "socialSecurity": {"employeeRate": 11, "employerRate": 12},
    }
    return Extraction.model_validate({**data, **over})


def quotes(source: Source = SOURCE, **replace: str | None) -> list[Quote]:
    """GOOD_QUOTES with some replaced (``brackets_1_rate="..."``) or left out (None)."""
    given = dict(GOOD_QUOTES)
    for key, quote in replace.items():
        path = key.replace("_rate", ".rate").replace("_max", ".max").replace("_min", ".min")
        path = path.replace("brackets_", "brackets[").replace("reduced_", "reduced[")
        path = path.replace("[0", "[0]").replace("[1", "[1]").replace("[2", "[2]")
        path = path.replace("vat_", "vat.").replace("ss_", "socialSecurity.")
        if quote is None:
            given.pop(path)
        else:
            given[path] = quote
    return [Quote(path, quote, source) for path, quote in given.items()]


def reason(path: str, value: Any, quote: str, **over: Any) -> str | None:
    """Why ``quote`` does not support ``path = value`` (None: it does)."""
    ext = extraction(**over)
    check = check_evidence(ext, [q for q in quotes() if q.field != path]
                           + [Quote(path, quote, SOURCE)])
    own = [u for u in check.unsupported if u.path == path]
    assert not own or own[0].value == value
    return own[0].reason if own else None


# -- normalisation ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("The  Standard\nRate", "the standard rate"),
    ("21 %", "21%"), ("21%", "21%"), ("21 per cent", "21%"), ("21 percent", "21%"),
    ("21\u00a0%", "21%"), ("7,5 %", "7.5%"),
    ("11,604", "11604"), ("11 604", "11604"), ("11\u00a0604", "11604"), ("11\u202f604", "11604"),
    ("11'604", "11604"), ("1.000.000", "1000000"), ("11.604 EUR", "11604 eur"),
    ("1,234,567", "1234567"), ("1 234 567", "1234567"),
    ("1.125 %", "1.125%"),  # a percentage: a decimal, not a thousands group
    ("0.125", "0.125"), ("21.5", "21.5"),
    ("0, 6, 12 and 21", "0, 6, 12 and 21"),  # a list of rates is not a thousands group
    ("10 \u2013 20", "10 - 20"), ("\u201cflat\u201d", '"flat"'),
    ("**Standard** rate `21`", "standard rate 21"), ("21 %[3]", "21%"),
    ("| 0 | 9,000 | 0 |", "0 9000 0"),
    ("3,00,000 and 1,00,00,000", "300000 and 10000000"),  # Indian lakh and crore grouping
    ("| Up to 3,00,000 | Nil |", "up to 300000 0"),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_table_cells_are_not_joined_into_one_number():
    # "| 10 | 100 |": the cells must stay two numbers, not become 10100.
    assert [n.value for n in numbers_in(normalise("| 10 | 100 |"))] == [10, 100]


def test_consecutive_table_rows_are_marked_apart():
    text = normalise("| 0 | 9,000 | 0 |\n| 9,001 | 40,000 | 15 |")
    assert text == "0 9000 0 \u00b6 9001 40000 15"


def test_numbers_in_marks_percentages():
    found = numbers_in(normalise("15 % up to 40,000 EUR"))
    assert [(n.value, n.percent) for n in found] == [(15, True), (40000, False)]


# -- finding a quote --------------------------------------------------------------------------

@pytest.mark.parametrize("quote", [
    "standard rate: 21 %",  # per cent vs %, case
    "Standard  rate:\n21 percent",
    "0 9000 0",  # a table row without its pipes
    "| 9,001 | 40,000 | 15 |",
    "9001 | 40000 | 15",
    "capped at 61,200 EUR",  # thousands written differently from the source
    "\u201cThe personal income tax is progressive.\u201d",  # quotation marks around the quote
])
def test_quotes_are_found_whatever_the_formatting(quote):
    assert find_quote(SOURCE, quote), quote


@pytest.mark.parametrize("quote", [
    "1 % (standard)",  # the source says 21 % (standard): a quote must start on a boundary
    "Standard rate: 2",  # ... and end on one
    "Standard rate: 22 per cent",
    "| 0 | 9,000 | 0 | | 9,001 | 40,000 | 15 |",  # runs into the next table row
    "",
])
def test_quotes_not_in_the_source_are_not_found(quote):
    assert find_quote(SOURCE, quote) == []


def test_found_quotes_carry_their_section_headings():
    assert find_quote(SOURCE, "Corporate tax is 25 %") == ["taxation in testland / overview"]
    # A table row's context: its headings and the lead-in line of its table.
    assert find_quote(SOURCE, "| 40,001 | | 44 |") == [
        "taxation in testland / personal income tax / the personal income tax is progressive. "
        "the brackets for the 2024 tax year"]


# -- one figure -------------------------------------------------------------------------------

def test_correct_figures_with_correct_quotes_are_all_verified():
    check = check_evidence(extraction(), quotes())
    assert check.unsupported == [] and check.failed is None and check.notes == []
    assert check.verified == GOOD_QUOTES
    assert check.extraction == extraction()


def test_the_figure_must_be_a_number_of_the_quote():
    assert reason("vat.standard", 1, "The rates are 21 % (standard)",
                  vat={"hasVAT": True, "standard": 1}) == "1 is not a number in the quote"
    # 21.0 and 21 are one number; "1" is not found in "10" or "21".
    assert reason("vat.standard", 21.0, "The rates are 21 % (standard)") is None
    assert reason("vat.reduced[0]", 1, "Reduced rates: 10 % and 4 %",
                  vat={"hasVAT": True, "standard": 21, "reduced": [1, 4]}) == (
        "1 is not a number in the quote")


def test_a_bare_number_is_not_evidence():
    assert reason("vat.standard", 21, "21 %") == (
        "the quote is only the number; it must say what the number is")


def test_a_quote_not_in_the_source_is_refused():
    assert reason("vat.standard", 22, "Standard rate: 22 per cent",
                  vat={"hasVAT": True, "standard": 22, "reduced": [10, 4]}) == (
        "the quote is not in the source text")


def test_a_rate_of_another_tax_is_not_a_vat_rate():
    assert reason("vat.standard", 25, "Corporate tax is 25 %",
                  vat={"hasVAT": True, "standard": 25, "reduced": [10, 4]}) == (
        "the quote is about another tax, not VAT")


def test_the_topic_may_come_from_the_section_heading_only():
    # "Standard rate: 21 per cent" names no tax; its heading "VAT / GST" does.
    assert reason("vat.standard", 21, "Standard rate: 21 per cent") is None
    # The same kind of quote under a heading about something else is refused.
    src = Source("## Additional Information\n\n- Standard rate: 21 %\n")
    check = check_evidence(extraction(system=None, brackets=None, socialSecurity=None,
                                      vat={"hasVAT": True, "standard": 21}),
                           [Quote("vat.standard", "Standard rate: 21 %", src)])
    assert check.unsupported[0].reason == (
        "neither the quote nor its section heading is about VAT")


@pytest.mark.parametrize("path, value, quote, rival", [
    ("vat.standard", 10, "The rates are 21 % (standard), 10 % (reduced)", "reduced"),
    ("vat.reduced[0]", 21, "The rates are 21 % (standard), 10 % (reduced)", "standard"),
    ("socialSecurity.employeeRate", 12, GOOD_QUOTES["socialSecurity.employeeRate"], "employer"),
    ("socialSecurity.employerRate", 11, GOOD_QUOTES["socialSecurity.employerRate"], "employee"),
])
def test_the_nearest_label_must_be_the_figures_own(path, value, quote, rival):
    over = {"vat": {"hasVAT": True, "standard": 10 if path == "vat.standard" else 25,
                    "reduced": [21, 4] if path.startswith("vat.reduced") else [4]},
            "socialSecurity": {"employeeRate": value, "employerRate": value}}
    assert reason(path, value, quote, **over) == f"the quote gives {value} as the {rival} rate"


def test_labels_after_the_number_count_in_their_clause():
    assert reason("vat.reduced[0]", 10, "The rates are 21 % (standard), 10 % (reduced)") is None


@pytest.mark.parametrize("quote, number, label", [
    # Labels before their numbers, and after them; "and" separates clauses.
    ("employees pay 11% and employers pay 12%", 11, "socialSecurity.employeeRate"),
    ("employees pay 11% and employers pay 12%", 12, "socialSecurity.employerRate"),
    ("14.5% for employees and 15.5% for employers", 14.5, "socialSecurity.employeeRate"),
    ("14.5% for employees and 15.5% for employers", 15.5, "socialSecurity.employerRate"),
    ("moms (vat): 25% standard; 12% and 6% reduced", 25, "vat.standard"),
    ("moms (vat): 25% standard; 12% and 6% reduced", 12, "vat.reduced"),
    ("reduced rates: 14% (food), 6% (transport)", 6, "vat.reduced"),
    ("the consumption tax is 10%, with a reduced rate of 8% for food", 8, "vat.reduced"),
    ("the consumption tax is 10%, with a reduced rate of 8% for food", 10, None),
])
def test_nearest_label(quote, number, label):
    at = next(n for n in numbers_in(quote) if n.value == number)
    keys = (("vat.standard", "vat.reduced") if "vat" in (label or "vat.")
            else ("socialSecurity.employeeRate", "socialSecurity.employerRate"))
    assert set(keys) <= set(LABELS)
    assert nearest_label(quote, at, keys) == label


def test_an_unlabelled_rate_among_several_is_refused():
    # FIXTURE: a list of rates that does not say which one is the standard rate.
    src = Source("## VAT / GST\n\nGST is levied at 5 %, 12 %, 18 % and 28 %.\n")
    ext = Extraction.model_validate({"vat": {"hasVAT": True, "standard": 28, "reduced": []}})
    check = check_evidence(ext, [Quote("vat.standard", "GST is levied at 5 %, 12 %, 18 % and 28 %",
                                       src)])
    assert check.unsupported[0].reason == (
        "the quote states several rates and does not say which is the standard rate")


def test_a_bracket_rate_from_another_row_is_refused():
    brackets = [{"min": 0, "max": 9000, "rate": 0}, {"min": 9001, "max": 40000, "rate": 44},
                {"min": 40001, "max": None, "rate": 44}]
    assert reason("brackets[1].rate", 44, "| 40,001 | | 44 |", brackets=brackets) == (
        "the quote does not name bracket 1's bound (40000)")
    brackets[1]["rate"] = 0
    assert reason("brackets[1].rate", 0, "| 0 | 9,000 | 0 |", brackets=brackets) == (
        "the quote does not name bracket 1's bound (40000)")


def test_a_bracket_quote_naming_another_bracket_or_rate_is_refused():
    # The whole schedule in one sentence: the clause that holds the figure must single out its
    # bracket ("44 % above 40,000 EUR" does), else the whole sentence names other rows.
    sentence = "0 % up to 9,000 EUR, 15 % up to 40,000 EUR, 44 % above 40,000 EUR"
    assert reason("brackets[2].rate", 44, sentence) is None
    assert reason("brackets[1].rate", 44, sentence, brackets=[
        {"min": 0, "max": 9000, "rate": 0}, {"min": 9001, "max": 40000, "rate": 44},
        {"min": 40001, "max": None, "rate": 44}]) == (
        "the quote states several rates; quote only this bracket's")
    assert reason("brackets[2].rate", 15, "15 % up to 40,000 EUR, 44 % above 40,000",
                  brackets=[{"min": 0, "max": 9000, "rate": 0},
                            {"min": 9001, "max": 40000, "rate": 15},
                            {"min": 40001, "max": None, "rate": 15}]) == (
        "the quote states several rates; quote only this bracket's")
    # The top bracket is named by its lower bound, or the previous bound ("above 40,000").
    assert reason("brackets[2].rate", 44, "44 % above 40,000 EUR") is None


def test_prose_bounds_read_with_their_direction_words():
    # "above 40,000" starts the top bracket: it is not bracket 1's rate.
    brackets = [{"min": 0, "max": 9000, "rate": 0}, {"min": 9001, "max": 40000, "rate": 44},
                {"min": 40001, "max": None, "rate": 44}]
    assert reason("brackets[1].rate", 44, "44 % above 40,000 EUR", brackets=brackets) == (
        "the quote gives 40000 as a lower bound: it is about the next bracket")
    # "up to 40,000" ends bracket 1: it is not the top bracket's rate.
    brackets[1]["rate"], brackets[2]["rate"] = 15, 15
    assert reason("brackets[2].rate", 15, "15 % up to 40,000 EUR", brackets=brackets) == (
        "the quote gives 40000 as an upper bound: it is about the bracket below")


def test_a_quote_spanning_two_table_rows_is_refused():
    assert reason("brackets[1].rate", 15, "| 9,001 | 40,000 | 15 |\n| 40,001 | | 44 |") == (
        "the quote spans several table rows")


@pytest.mark.parametrize("system, quote, why", [
    ("progressive", "The personal income tax is progressive.", None),
    ("progressive", "Corporate tax is 25 %", "the quote does not say the system is progressive"),
    ("flat", "| 40,001 | | 44 |", "the quote does not say the system is flat"),
])
def test_system_needs_its_own_wording(system, quote, why):
    brackets = None if system == "progressive" else [{"min": 0, "max": None, "rate": 44}]
    over = {"system": system} if brackets is None else {"system": system, "brackets": brackets}
    assert reason("system", system, quote, **over) == why


def test_flat_and_zero_personal_systems():
    # FIXTURE texts: a flat rate, and no personal income tax at all.
    flat = Source("## Personal Income Tax\n\nA flat rate of 20 % applies to all income. "
                  "A flat fee of 5 EUR applies to filings.\n")
    ext = Extraction.model_validate({"system": "flat",
                                     "brackets": [{"min": 0, "max": None, "rate": 20}]})
    rate = Quote("brackets[0].rate", "A flat rate of 20 % applies to all income.", flat)
    ok = check_evidence(ext, [Quote("system", "A flat rate of 20 % applies to all income.",
                                    flat), rate])
    assert ok.unsupported == []
    wrong = check_evidence(ext, [Quote("system", "A flat fee of 5 EUR", flat), rate])
    assert [u.reason for u in wrong.unsupported][0] == "the quote does not state the flat rate 20"

    none = Source("## Personal Income Tax\n\nThere is no personal income tax.\n")
    ext = Extraction.model_validate({"system": "zero_personal"})
    check = check_evidence(ext, [Quote("system", "There is no personal income tax", none)])
    assert check.unsupported == [] and check.verified == {
        "system": "There is no personal income tax"}
    check = check_evidence(ext, [Quote("system", "personal income tax", none)])
    assert check.unsupported[0].reason == "the quote does not say the system is zero_personal"


# -- withholding ------------------------------------------------------------------------------

def test_a_figure_without_a_quote_is_withheld():
    check = check_evidence(extraction(), quotes(vat_standard=None))
    assert [(u.path, u.value, u.quote, u.reason) for u in check.unsupported] == [
        ("vat.standard", 21, None, "no quote given")]
    assert check.extraction.vat.standard is None
    assert check.extraction.vat.reduced == [10, 4]  # the others stay
    assert "vat.standard" not in check.verified and check.failed is None


def test_one_reduced_rate_is_withheld_alone_and_quotes_follow_the_kept_ones():
    check = check_evidence(extraction(), quotes(vat_reduced_0="Standard rate: 21 per cent"))
    assert [u.path for u in check.unsupported] == ["vat.reduced[0]"]
    assert check.extraction.vat.reduced == [4]
    assert check.verified["vat.reduced[0]"] == GOOD_QUOTES["vat.reduced[1]"]
    assert "vat.reduced[1]" not in check.verified


def test_one_unsupported_bracket_figure_withholds_the_whole_schedule():
    check = check_evidence(extraction(), quotes(brackets_1_rate="| 40,001 | | 44 |"))
    assert check.extraction.brackets is None and check.extraction.system is None
    first, *withheld = check.unsupported
    assert (first.path, first.quote) == ("brackets[1].rate", "| 40,001 | | 44 |")
    assert {u.path for u in withheld} == {"system", "brackets[0].rate", "brackets[0].max",
                                          "brackets[1].max", "brackets[2].rate"}
    assert all(u.reason.startswith("withheld with the rest") and u.withheld for u in withheld)
    assert not first.withheld
    assert not any(p == "system" or p.startswith("brackets") for p in check.verified)
    assert check.extraction.vat.standard == 21  # VAT is supported: the record is written
    assert check.failed is None


def test_a_record_whose_key_figures_are_all_unsupported_fails():
    check = check_evidence(extraction(), quotes(vat_standard="Standard rate: 20 %",
                                                system="Testland has a flat tax"))
    assert check.failed and check.failed.startswith("no key figure is supported")
    assert check.failed.endswith("previous record kept")
    # Social security alone being supported does not save it; VAT alone does.
    assert check_evidence(extraction(), quotes(system="Testland has a flat tax")).failed is None


def test_optional_lower_bound_quotes_are_checked_but_need_not_be_given():
    check = check_evidence(extraction(), quotes(brackets_1_min="| 9,001 | 40,000 | 15 |"))
    assert check.verified["brackets[1].min"] == "| 9,001 | 40,000 | 15 |"
    check = check_evidence(extraction(), quotes(brackets_1_min="from 9,001 EUR"))
    assert check.unsupported == [] and check.extraction.brackets is not None
    assert check.notes == ["brackets[1].min: quote not verified (the quote is not in the source "
                           "text); the figure is kept (it follows from the bracket above)"]


def test_the_first_passing_quote_of_several_is_kept():
    given = quotes() + [Quote("vat.standard", "The rates are 21 % (standard)", SOURCE)]
    given.insert(0, Quote("vat.standard", "made-up quote", SOURCE))
    check = check_evidence(extraction(), given)
    assert check.unsupported == []
    assert check.verified["vat.standard"] == GOOD_QUOTES["vat.standard"]


def test_zero_personal_brackets_need_no_quotes_of_their_own():
    src = Source("## Personal Income Tax\n\nThere is no personal income tax.\n")
    ext = Extraction.model_validate({"system": "zero_personal",
                                     "brackets": [{"min": 0, "max": None, "rate": 0}]})
    check = check_evidence(ext, [Quote("system", "There is no personal income tax", src)])
    assert check.unsupported == [] and check.extraction.brackets is not None


def test_thresholds_from_another_row_are_refused():
    # Two rows merged into one: the first bracket's max is taken from the second row.
    brackets = [{"min": 0, "max": 40000, "rate": 0}, {"min": 40001, "max": None, "rate": 44}]
    check = check_evidence(extraction(brackets=brackets), quotes(
        brackets_0_max="| 9,001 | 40,000 | 15 |", brackets_1_rate="| 40,001 | | 44 |"))
    first = check.unsupported[0]
    assert (first.path, first.reason) == (
        "brackets[0].rate", "the quote does not name bracket 0's bound (40000)")
    assert check.extraction.brackets is None


def test_the_prompt_asks_for_quotes_and_states_no_rates():
    from taxdata.update.extract import SYSTEM_PROMPT, USER_PROMPT
    assert "evidence" in SYSTEM_PROMPT and "word for word" in SYSTEM_PROMPT
    for prompt in (SYSTEM_PROMPT, USER_PROMPT):
        # Numbers in the prompts are examples of units and list positions, never tax rates.
        assert not re.search(r"\d+(?:\.\d+)?\s*%", prompt.replace("20 means 20 %", ""))


def test_field_paths_may_use_dots_for_list_positions():
    given = [Quote(f.replace("[", ".").replace("]", ""), q, SOURCE) for f, q in GOOD_QUOTES.items()]
    assert check_evidence(extraction(), given).unsupported == []
