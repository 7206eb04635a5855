"""What a reference is, whatever it came from: per registry country, the standard VAT rate and
the top income-tax rate as the reference states them (:class:`Reference`).

Two kinds fill it: Wikipedia's "List of countries by tax rates"
(:mod:`taxdata.references.listpage`) and a user's file (:mod:`taxdata.references.csvfile`).
Rates are free text in both; :func:`taxdata.references.rates.parse_rate` reads each cell, and
:mod:`taxdata.references.crosscheck` compares records with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taxdata.errors import DataError
from taxdata.references.rates import RateText

# Warnings list at most this many names; the rest is a count.
MOST_NAMES = 8


class ReferenceTableError(DataError):
    """A reference file that cannot be used at all; the message is one line."""


@dataclass(frozen=True)
class ReferenceRow:
    """One country's line in a reference."""

    name: str  # as the reference writes it
    slug: str | None  # the registry country it names (None: not in the registry)
    code: str | None  # ISO 3166-1 alpha-2 (None: the libraries know no such country)
    vat: RateText | None = None
    top: RateText | None = None
    territory: bool = False  # the list page sets dependent territories in italics
    further_reading: tuple[str, ...] = ()  # article titles linked (red links left out)


@dataclass
class Reference:
    """A reference source: its label (``List of countries by tax rates, rev 5678``) and rows."""

    label: str
    rows: list[ReferenceRow]
    warnings: list[str] = field(default_factory=list)
    # For a user's file: which header each figure was read from ({"vat": "Standard Rate (%)"}).
    columns: dict[str, str] = field(default_factory=dict)

    def for_slug(self, slug: str) -> ReferenceRow | None:
        return next((row for row in self.rows if row.slug == slug), None)

    @property
    def matched(self) -> int:
        return sum(row.slug is not None for row in self.rows)


def bounded(names: list[str], most: int = MOST_NAMES) -> str:
    """``A, B, C`` or, past ``most`` names, ``A, B, ... and 12 more``: a warning stays one line
    of a readable length whatever the file holds."""
    if len(names) <= most:
        return ", ".join(names)
    return ", ".join(names[:most]) + f" and {len(names) - most} more"
