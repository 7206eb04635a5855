"""Cross-check a new record against independent references before it is written.

Two figures are compared, each with :data:`TOLERANCE` percentage points of slack:

* ``vat.standard`` with the reference's VAT/GST/sales tax (its standard rate; a reference that
  gives a span such as US state sales taxes ``0-11.5%`` agrees with any value inside it);
* ``top_rate`` (the highest bracket rate of the record) with the reference's highest marginal
  income-tax rate.

Every country gets one classification: CORROBORATED (every compared figure agrees, or differs
only in a way the reference explains), DISPUTED (a figure disagrees: both values and both
sources are in the report), NO REFERENCE (nothing to compare). A top rate that differs where the
reference's own text names surcharges, local/state taxes or levies included in one source is a
warning, not a dispute: such totals are legitimately different figures. The updater holds back a
record whose VAT is DISPUTED (unless ``--accept-disputed``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from taxdata.record.reference import RateText, Reference

TOLERANCE = 0.5  # percentage points: rounding (7.7 vs 8) is not a disagreement

CORROBORATED, DISPUTED, NO_REFERENCE = "CORROBORATED", "DISPUTED", "NO REFERENCE"
CLASSES = (CORROBORATED, DISPUTED, NO_REFERENCE)

# Words with which a reference says its top rate includes (or excludes) more than the national
# income tax: then a difference is explained, not a dispute.
_EXPLAINS = re.compile(
    r"surcharge|solidarity|local|municipal|communal|cantonal|county|city|state|provinc|region|"
    r"prefect|church|medicare|levy|levies|social|contribution|incl|includ|excl|plus|\+|federal",
    re.I)


@dataclass(frozen=True)
class Comparison:
    """One figure compared with one reference."""

    field: str  # "vat.standard" | "top_rate"
    ours: float
    theirs: RateText
    reference: str  # the reference's label, e.g. "List of countries by tax rates, rev 5678"
    verdict: str  # "agrees" | "explained" | "disputed"
    why: str = ""  # for "explained": what in the reference accounts for the difference

    def describe(self, own_source: str) -> str:
        theirs = (f"{_num(self.theirs.low)}-{_num(self.theirs.high)}" if self.theirs.is_range
                  else _num(self.theirs.headline))
        text = f"{self.field} {_num(self.ours)} ({own_source}) vs {theirs} ({self.reference})"
        if self.theirs.note:
            text += f" [{self.theirs.note}]"
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
        return [f"cross-check: {c.describe(self.own_source)}: {c.why}, not a dispute"
                for c in self.comparisons if c.verdict == "explained"]

    def summary(self) -> str:
        """One line: the disputes (or what agreed)."""
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


def _verdict(field_name: str, ours: float, theirs: RateText,
             tolerance: float) -> tuple[str, str]:
    """("agrees" | "explained" | "disputed", why it is explained)."""
    if theirs.is_range:
        inside = theirs.low - tolerance <= ours <= theirs.high + tolerance
        return ("agrees", "") if inside else ("disputed", "")
    if abs(ours - theirs.headline) <= tolerance:
        return "agrees", ""
    if field_name == "top_rate" and _EXPLAINS.search(theirs.note):
        # The reference's own words account for the difference (a total with surcharges or
        # local taxes against a national rate): worth a warning, not a held-back record.
        return "explained", "the reference counts surcharges or local taxes one source leaves out"
    if (field_name == "vat.standard" and not theirs.labelled
            and any(abs(ours - v) <= tolerance for v in theirs.values)):
        # "20% or 30%" without a label: which one is standard is the reference's guess (the
        # highest) against the source's word, so a match with another listed rate is a warning.
        return "explained", "the reference lists this rate too, unlabelled, beside a higher one"
    return "disputed", ""


def check_record(slug: str, record: dict[str, Any], own_source: str,
                 references: list[Reference], tolerance: float = TOLERANCE) -> CrossCheck:
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
            verdict, why = _verdict(field_name, ours, theirs, tolerance)
            comparisons.append(Comparison(field_name, ours, theirs, reference.label, verdict, why))
    if not comparisons:
        classification = NO_REFERENCE
    elif any(c.verdict == "disputed" for c in comparisons):
        classification = DISPUTED
    else:
        classification = CORROBORATED
    return CrossCheck(classification, own_source, comparisons)


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}"
