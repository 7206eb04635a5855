"""Cross-check a new record against independent references before it is written.

Two figures are compared:

* ``vat.standard`` with the reference's VAT/GST/sales tax (its headline: the rate it labels
  standard, or the first it states);
* ``top_rate`` (the highest bracket rate of the record) with the reference's highest marginal
  income-tax rate.

The rules leave nothing to slack that a wrong figure could hide in:

* **Published precision, no tolerance.** A whole number is a stated rate; a figure with decimals
  stands for what rounds to it (:meth:`taxdata.references.rates.Figure.matches`): 20 vs 20.5 and 7.7
  vs 8.1 are disputes, 47.475 vs 47.48 agree.
* **A note explains a difference only with its own numbers**, and only for a top rate (a total
  with surcharges or local taxes is a legitimately different figure; a VAT is one rate): the
  note states our figure as what the total includes (``45% (47.475% incl. solidarity
  surcharge)``), or the headline plus the note's rate is it (``45, plus 2.1% surtax`` is 47.1;
  ``37% (federal) + 0–13.3% (state)`` spans 37 to 50.3), or the headline with the note's
  surcharge on the tax is it (45 with 5.5 % of it: 47.475). Words alone (``plus surcharges``)
  explain nothing, and a note about another time (``prior to 2020``, ``until 2029``) never does.
* **A range corroborates only as a range**: a VAT inside ``0–11.5%`` is IN RANGE, not
  CORROBORATED, and outside it DISPUTED.

Every country gets one classification: CORROBORATED (every compared figure agrees, or differs
only in a way the reference's numbers explain: a warning), IN RANGE (nothing disputed, but a
figure only lies inside a range the reference gives), DISPUTED (a figure disagrees: both values
and both sources are in the report), NO REFERENCE (nothing to compare). The updater holds back a
record with any DISPUTED figure, VAT or top rate, unless ``--accept-disputed``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from taxdata.references.rates import Figure, RateText
from taxdata.references.table import Reference

CORROBORATED, IN_RANGE, DISPUTED, NO_REFERENCE = ("CORROBORATED", "IN RANGE", "DISPUTED",
                                                  "NO REFERENCE")
CLASSES = (CORROBORATED, IN_RANGE, DISPUTED, NO_REFERENCE)
# What the run report says about the comparison (there is no tolerance to report).
RULE = ("compared at the precision each figure is published with; a note explains a top rate "
        "only with its own numbers; a range corroborates only as a range")

# A note that includes our figure in its total ("47.475% incl. solidarity surcharge").
_INCLUDES = re.compile(r"incl|includ|total|combined|overall|effective|with\b", re.I)
# A note that adds its rate to the headline ("plus 2.1% surtax", "+ 0–13.3% (state)").
_ADDS = re.compile(r"plus|\+|surtax|surcharge|solidarity|levy|levies|local|municipal|communal|"
                   r"cantonal|county|city|state|provinc|region|prefect|church|additional", re.I)
# A surcharge levied on the tax, not on income: the headline times (1 + rate).
_ON_THE_TAX = re.compile(r"surcharge|surtax|solidarity", re.I)
# A note about another time: its numbers are old or future rates, never today's total.
_ANOTHER_TIME = re.compile(r"prior|before|until|till\b|previous|formerly|former|since|\bwas\b|"
                           r"\bwill\b|\bfrom\s+\d|\b(?:19|20)\d\d\b|proposed|planned|old\b", re.I)


@dataclass(frozen=True)
class Comparison:
    """One figure compared with one reference."""

    field: str  # "vat.standard" | "top_rate"
    ours: float
    theirs: RateText
    reference: str  # the reference's label, e.g. "List of countries by tax rates, rev 5678"
    verdict: str  # "agrees" | "in range" | "explained" | "disputed"
    why: str = ""  # for "explained": the reference's own numbers that account for ours

    def describe(self, own_source: str) -> str:
        theirs = (f"{_num(self.theirs.low)}-{_num(self.theirs.high)} (a range)"
                  if self.theirs.is_range else _num(self.theirs.headline))
        text = f"{self.field} {_num(self.ours)} ({own_source}) vs {theirs} ({self.reference})"
        if self.theirs.note or self.theirs.others:
            text += f" [{self.theirs.text}]"
        return text


@dataclass
class CrossCheck:
    """The outcome for one record."""

    classification: str
    own_source: str
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def disputes(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.verdict == "disputed"]

    @property
    def vat_disputed(self) -> bool:
        return any(c.field == "vat.standard" for c in self.disputes)

    @property
    def warnings(self) -> list[str]:
        found = []
        for c in self.comparisons:
            if c.verdict == "explained":
                found.append(f"cross-check: {c.describe(self.own_source)}: {c.why}, not a "
                             "dispute")
            elif c.verdict == "in range":
                found.append(f"cross-check: {c.describe(self.own_source)}: inside the "
                             "reference's range, which states no one rate: not corroborated")
        return found

    def summary(self) -> str:
        """One line: the disputes (or what was compared)."""
        shown = self.disputes or self.comparisons
        return "; ".join(c.describe(self.own_source) for c in shown)

    def report(self) -> dict[str, Any]:
        return {
            "classification": self.classification,
            "source": self.own_source,
            "comparisons": [{"field": c.field, "ours": c.ours, "reference": c.reference,
                             "theirs": c.theirs.as_dict(), "verdict": c.verdict, "why": c.why,
                             "text": c.describe(self.own_source)} for c in self.comparisons],
        }


def top_rate(record: dict[str, Any]) -> float | None:
    """The record's highest marginal income-tax rate (None when it states no brackets)."""
    rates = [b.get("rate") for b in record.get("brackets") or [] if isinstance(b, dict)]
    rates = [r for r in rates if isinstance(r, (int, float)) and not isinstance(r, bool)]
    return max(rates) if rates else None


def vat_standard(record: dict[str, Any]) -> float | None:
    vat = record.get("vat")
    value = vat.get("standard") if isinstance(vat, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def verdict(field_name: str, ours: float, theirs: RateText) -> tuple[str, str]:
    """("agrees" | "in range" | "explained" | "disputed", what explains it)."""
    head = theirs.figure
    if head is None:
        return "disputed", ""
    if head.is_range:
        return ("in range", "") if head.matches(ours) else ("disputed", "")
    if head.matches(ours):
        return "agrees", ""
    if field_name == "top_rate":
        why = explained_by_note(ours, theirs)
        if why:
            return "explained", why
    return "disputed", ""


def explained_by_note(ours: float, theirs: RateText) -> str:
    """How the reference's note, by its own numbers, accounts for ``ours`` ("" when it does
    not): see the module docstring."""
    head = theirs.figure
    if head is None or not theirs.others or _ANOTHER_TIME.search(theirs.text):
        return ""
    note = theirs.note
    for other in theirs.others:
        if _INCLUDES.search(note) and other.matches(ours):
            return f"the reference's note states {other.text()} ({note})"
        if _ADDS.search(note):
            total = _sum(head, other)
            if total.matches(ours):
                return f"{head.text()} plus {other.text()} is {total.text()} ({note})"
        if _ON_THE_TAX.search(note) and not other.is_range:
            total = _on_the_tax(head, other)
            if total.matches(ours):
                return (f"{head.text()} with a {other.text()} % surcharge on the tax is "
                        f"{total.text()} ({note})")
    return ""


def _exact(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _sum(head: Figure, other: Figure) -> Figure:
    # A computed total is exact: compared as a point (or a closed span), never rounded further.
    low, high = (_exact(head.value) + _exact(v) for v in (other.low, other.high))
    return Figure(float(low), float(high), 0)


def _on_the_tax(head: Figure, other: Figure) -> Figure:
    total = _exact(head.value) * (1 + _exact(other.value) / 100)
    return Figure(float(total), float(total), 0)


def check_record(slug: str, record: dict[str, Any], own_source: str,
                 references: list[Reference]) -> CrossCheck:
    """Compare ``record`` with every reference that has a row for ``slug``."""
    figures = {"vat.standard": vat_standard(record), "top_rate": top_rate(record)}
    comparisons: list[Comparison] = []
    for reference in references:
        row = reference.for_slug(slug)
        if row is None:
            continue
        for field_name, theirs in (("vat.standard", row.vat), ("top_rate", row.top)):
            ours = figures[field_name]
            if ours is None or theirs is None or theirs.headline is None:
                continue  # a figure one side does not state is not a disagreement
            found, why = verdict(field_name, ours, theirs)
            comparisons.append(Comparison(field_name, ours, theirs, reference.label, found, why))
    verdicts = {c.verdict for c in comparisons}
    if not comparisons:
        classification = NO_REFERENCE
    elif "disputed" in verdicts:
        classification = DISPUTED
    elif "in range" in verdicts:
        classification = IN_RANGE
    else:
        classification = CORROBORATED
    return CrossCheck(classification, own_source, comparisons)


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}"
