"""Tests for taxdata.evidence.quotechecks on text written the way real models and Wikipedia write:
column headers, pseudo-headings, worked examples, history, local and surcharge-inclusive
totals, averages, ranges, monthly thresholds, components of a total, another tax's rate.

Every text and figure here is a made-up FIXTURE, not real tax data.
"""

from __future__ import annotations

from typing import Any

import pytest

from taxdata.evidence.quotechecks import Bounds, figure_reason
from taxdata.evidence.sourcetext import Source
from taxdata.record.models import Extraction

# FIXTURE: a made-up taxation file.
TEXT = """\
# Taxation in Testland

## Personal Income Tax

**System:** progressive

| Taxable income | Marginal rate | Average rate |
|---|---|---|
| up to €10 000 | 0 % | 0 % |
| €10 001 – €40 000 | 15.5 % | 11.6 % |
| above €40 000 | 40 % | — |

The first €10 000 is tax-free, income up to €40 000 is taxed at 15.5 %, and the balance at 40 %.
Including the average municipal tax of 25.1 %, the top marginal rate is 65.1 %.
The top rate was 45 % until 2019.
**Example:** a single person earning €50 000 pays €8 650 (an average rate of 17.3 %).
For monthly payroll the first bracket ends at €833 per month.

## VAT / GST

- **Standard rate:** 21 %
- **Reduced rates:**
  - 12 % on food
  - 5 % on books
- The rate was raised from 19 % to 21 % in 2012.
- The excise duty on fuel is 30 %.
- Provinces add a provincial sales tax of 7 %.
- The average combined rate is about 24 %.

## Social Security and Payroll Taxes

| Contribution | Employee | Employer |
|---|---|---|
| Pension | 9.3 % | 9.3 % |
| Total | 20.45 % | 19.95 % |

Employers pay between 20 % and 25 % depending on the risk class.
"""
SOURCE = Source(TEXT)


def extraction(**over: Any) -> Extraction:
    data = {"system": "progressive",
            "brackets": [{"min": 0, "max": 10000, "rate": 0},
                         {"min": 10001, "max": 40000, "rate": 15.5},
                         {"min": 40001, "max": None, "rate": 40}],
            "vat": {"hasVAT": True, "standard": 21, "reduced": [12, 5]},
            "socialSecurity": {"employeeRate": 20.45, "employerRate": 19.95}}
    return Extraction.model_validate({**data, **over})


def reason(path: str, value: Any, quote: str, *, strict: bool = False, **over: Any) -> str | None:
    ext = extraction(**over)
    bounds = Bounds.of(ext.brackets) if ext.brackets else None
    return figure_reason(path, value, quote, SOURCE, ext, bounds, strict=strict)


@pytest.mark.parametrize("path, value, quote", [
    ("socialSecurity.employerRate", 19.95, "| Total | 20.45 % | 19.95 % |"),
    ("socialSecurity.employeeRate", 20.45, "| Total | 20.45 % | 19.95 % |"),
    ("brackets[1].rate", 15.5, "| €10 001 – €40 000 | 15.5 % | 11.6 % |"),  # the average column
    ("brackets[0].rate", 0, "The first €10 000 is tax-free"),
    ("brackets[2].rate", 40, "The first €10 000 is tax-free, income up to €40 000 is taxed at "
                             "15.5 %, and the balance at 40 %."),
    ("vat.reduced[1]", 5, "- 5 % on books"),  # labelled by the item it is under
    ("vat.standard", 21, "- **Standard rate:** 21 %"),
    ("system", "progressive", "**System:** progressive"),
])
def test_correct_figures_of_real_text_are_verified(path, value, quote):
    assert reason(path, value, quote) is None


@pytest.mark.parametrize("path, value, quote, why", [
    ("socialSecurity.employeeRate", 19.95, "| Total | 20.45 % | 19.95 % |",
     "the quote gives 19.95 as the employer rate"),
    ("socialSecurity.employeeRate", 9.3, "| Pension | 9.3 % | 9.3 % |",
     'the quote is one component; the text states the total employee rate ("total 20.45% '
     '19.95%")'),
    ("brackets[2].rate", 65.1, "Including the average municipal tax of 25.1 %, the top marginal "
                               "rate is 65.1 %.",
     "the quote gives 65.1 as a total including municipal taxes, not the national rate"),
    ("brackets[0].rate", 25.1, "Including the average municipal tax of 25.1 %",
     "the quote gives 25.1 as a municipal rate, not the national one"),
    ("brackets[2].rate", 45, "The top rate was 45 % until 2019.",
     "the quote gives 45 as a past rate (history), not the current one"),
    ("brackets[1].rate", 17.3, "**Example:** a single person earning €50 000 pays €8 650 (an "
                               "average rate of 17.3 %).",
     "the quote is from a worked example (computed amounts), not a statement of a rate"),
    ("brackets[0].max", 833, "For monthly payroll the first bracket ends at €833 per month.",
     "the quote gives 833 per month or week; bracket thresholds are annual"),
    ("vat.standard", 19, "- The rate was raised from 19 % to 21 % in 2012.",
     "the quote gives 19 as a past rate (history), not the current one"),
    ("vat.standard", 30, "- The excise duty on fuel is 30 %.",
     "the quote is about another tax, not VAT"),
    ("vat.standard", 7, "- Provinces add a provincial sales tax of 7 %.",
     "the quote gives 7 as a provinc rate, not the national one"),
    ("vat.standard", 24, "- The average combined rate is about 24 %.",
     "the quote gives 24 as an average, approximate or effective figure, not a statutory rate"),
    ("socialSecurity.employerRate", 20, "Employers pay between 20 % and 25 % depending on the "
                                        "risk class.",
     "the quote gives a range (20-25), not one rate"),
])
def test_what_real_pipelines_take_for_a_figure_is_refused(path, value, quote, why):
    over = {}
    if path.startswith("brackets"):
        i = int(path[9])
        brackets = extraction().model_dump()["brackets"]
        brackets[i]["rate" if path.endswith("rate") else "max"] = value
        if path.endswith("max"):
            brackets[i + 1]["min"] = value + 1
        over["brackets"] = brackets
    if path == "vat.standard":
        over["vat"] = {"hasVAT": True, "standard": value, "reduced": [5] if value > 5 else []}
    if path.startswith("socialSecurity"):
        key = path.split(".")[1]
        over["socialSecurity"] = {"employeeRate": None, "employerRate": None, key: value}
    assert reason(path, value, quote, **over) == why


def test_a_change_names_the_new_rate_as_current():
    assert reason("vat.standard", 21, "- The rate was raised from 19 % to 21 % in 2012.") is None


def test_strict_passages_must_state_the_label_and_a_bracket_its_rate():
    # Picked by code (grounding), an unlabelled rate is not taken for the employer's.
    text = Source("## Social Security\n\nContributions are 9 % of gross pay.\n")
    ext = Extraction.model_validate({"socialSecurity": {"employeeRate": None,
                                                        "employerRate": 9}})
    quote = "Contributions are 9 % of gross pay."
    assert figure_reason("socialSecurity.employerRate", 9, quote, text, ext, None) is None
    assert figure_reason("socialSecurity.employerRate", 9, quote, text, ext, None,
                         strict=True) == "the passage does not say that 9 is the employer rate"
    ext = extraction()
    bounds = Bounds.of(ext.brackets)
    assert figure_reason("brackets[1].max", 40000, "income up to €40 000 is taxed at 15.5 %",
                         SOURCE, ext, bounds, strict=True) is None
    # A threshold alone: in a model's quote it names its bracket; picked by code it must come
    # with the bracket's rate.
    text = Source("## Personal Income Tax\n\nThe second band of the income tax ends at "
                  "€40 000.\n")
    quote = "The second band of the income tax ends at €40 000."
    assert figure_reason("brackets[1].max", 40000, quote, text, ext, bounds) is None
    assert figure_reason("brackets[1].max", 40000, quote, text, ext, bounds, strict=True) == (
        "the passage does not state bracket 1's rate with its bound")


def test_a_flat_rate_of_one_kind_of_payment_is_not_a_flat_system():
    text = Source("## Personal Income Tax\n\nBonuses are taxed at a flat 6 %.\n\n"
                  "A single flat rate of 20 % applies to all income.\n")
    ext = Extraction.model_validate({"system": "flat",
                                     "brackets": [{"min": 0, "max": None, "rate": 6}]})
    assert figure_reason("system", "flat", "Bonuses are taxed at a flat 6 %.", text, ext,
                         None) == "the quote does not say that one rate applies to all income"
    ext = Extraction.model_validate({"system": "flat",
                                     "brackets": [{"min": 0, "max": None, "rate": 20}]})
    assert figure_reason("system", "flat", "A single flat rate of 20 % applies to all income.",
                         text, ext, None) is None
