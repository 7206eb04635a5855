"""FIXTURE countries and their articles for the real-server benchmark: made-up countries (user-
assigned ISO codes, the XTS testing currency) and made-up figures, written the way a cleaned
Wikipedia "Taxation in X" article reads (history, a bracket table, VAT and social security
paragraphs, administration), long enough that the instructions are not the whole prompt.

Not real countries, not real tax data: every text says so.
"""

from __future__ import annotations

import random

from taxdata.countries.registry import Country

NOTICE = "FIXTURE: a made-up country with made-up figures, for benchmarks only; not tax data."
_LETTERS = "FGHJKLMNPQRSTUVW"

_FILLER = (
    "The revenue service of {name} publishes its guidance each spring and answers questions "
    "from taxpayers at regional offices; most residents file online, and the service sends a "
    "pre-filled return to anyone whose income comes from one employer.",
    "Parliament reviews the tax code every year in the budget debate. Proposals to simplify the "
    "allowances have been discussed for a decade, and a commission on the subject reported in "
    "{year} without recommending a change to the schedule itself.",
    "Local authorities in {name} levy property charges that are set by each district council "
    "and collected together with water and waste fees; these are not part of the income tax and "
    "do not depend on a resident's earnings.",
    "Historians trace the income tax of {name} to a wartime levy that was meant to be temporary. "
    "It was kept after the war, widened to most kinds of income, and has been reformed several "
    "times since, most recently with the introduction of electronic filing.",
    "Businesses in {name} keep accounts under the national accounting standard and file a "
    "separate annual return; the corporate tax is covered in its own article and is not "
    "described here.",
    "Disputes about an assessment go first to an objection at the revenue service and then to "
    "the tax tribunal, whose decisions are published without the taxpayer's name.",
)


def fixture_countries(count: int) -> list[Country]:
    """``count`` made-up countries (at most 16): Benchland F (FIXTURE), Benchland G, ..."""
    if not 1 <= count <= len(_LETTERS):
        raise ValueError(f"between 1 and {len(_LETTERS)} fixture countries")
    return [Country(f"benchland_{letter.lower()}", f"Benchland {letter} (FIXTURE)", f"X{letter}",
                    "XTS", None, (10.0 + i, 20.0 + i))
            for i, letter in enumerate(_LETTERS[:count])]


def fixture_article(country: Country, chars: int = 9000) -> str:
    """The cleaned article text of ``country``: made-up figures of its own, about ``chars``
    characters long."""
    rng = random.Random(country.slug)  # the same text for the same country, every run
    low = rng.choice((8000, 10000, 12000))
    mid = low * rng.choice((3, 4))
    rates = sorted(rng.sample(range(10, 46, 5), 2))
    vat, reduced = rng.choice((16, 18, 20, 21, 23)), rng.choice((5, 7, 9))
    employee, employer = rng.choice((7.5, 9, 10.5)), rng.choice((15, 18, 21.5))
    year = rng.choice((2023, 2024, 2025))
    name = country.name
    head = (f"# Taxation in {name}\n\n{NOTICE}\n\n"
            f"Taxation in {name} consists of a personal income tax, a value-added tax and social "
            "security contributions, with local charges on property.\n\n")
    facts = (
        "## Personal income tax\n\n"
        f"The personal income tax of {name} is progressive. The schedule for the {year} tax "
        "year, in annual amounts of taxable income in XTS, is:\n\n"
        "| Taxable income from (XTS) | Taxable income to (XTS) | Rate (%) |\n|---|---|---|\n"
        f"| 0 | {low:,} | 0 |\n| {low + 1:,} | {mid:,} | {rates[0]} |\n"
        f"| {mid + 1:,} | and above | {rates[1]} |\n\n"
        "Residents may deduct pension contributions and the costs of earning the income.\n\n"
        "## Value-added tax\n\n"
        f"The standard VAT rate is {vat}%, with a reduced rate of {reduced}% on food and books. "
        "Exports and financial services are exempt.\n\n"
        "## Social security\n\n"
        f"Employees contribute {employee}% of gross salary and employers {employer}% on top of "
        "it, up to a ceiling set every year.\n\n")
    body = [head, facts, "## History and administration\n\n"]
    size = sum(map(len, body))
    index = 0
    while size < chars:
        paragraph = _FILLER[index % len(_FILLER)].format(name=name, year=year - 5 + index % 5)
        body.append(paragraph + "\n\n")
        size += len(paragraph) + 2
        index += 1
    return "".join(body)
