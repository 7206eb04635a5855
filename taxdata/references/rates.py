"""Rate cells as references write them: the headline figure, its note, and its precision.

A reference states rates as free text (``17% or 6%``, ``45, plus 2.1% surtax``, ``55 (until 2029,
after that it will be 50%)``, ``0–11.5% (state and local sales tax)``, ``5% (GST) + 0–10%
(PST)``). :func:`parse_rate` reads one cell into a :class:`RateText`:

* the **headline** is the first rate the cell states (or the one it labels standard; or, for a
  bare list of alternatives such as ``0, 6, 12 and 21``, the highest), and the rest of the cell is
  its **note**, whose own numbers are kept (:attr:`RateText.others`) so that a cross-check can
  see whether they account for a difference;
* every figure keeps the **precision it is published with** (``8.1`` has one decimal), so a
  comparison never needs a tolerance: see :meth:`Figure.matches`.

No rate is ever made up here: a cell without a number is no reference (None).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

_NUMBER = r"\d+(?:\.\d+)?"
# One token: a range "0-45" / "0–45" / "0 to 45" or a single number, with its percent sign.
_TOKEN = re.compile(
    rf"(?<![\d.,])(?P<a>{_NUMBER})(?![\d.,]*\d)\s*(?P<pa>%|per ?cent)?"
    rf"(?:\s*(?:-|–|—|to)\s*(?P<b>{_NUMBER})(?![\d.,]*\d)\s*(?P<pb>%|per ?cent)?)?", re.I)
_FOOTNOTE = re.compile(r"\[(?:\d+|[a-z]|note \d+|citation needed|[a-z ]+ needed)\]", re.I)
_STANDARD_LABEL = re.compile(r"^\s*\(?\s*(?:standard|general|normal)\b", re.I)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DATE_AFTER = re.compile(r"^\s*(?:st|nd|rd|th)?\s*(?:of\s+)?(" + "|".join(_MONTHS) + r")[a-z]*\b",
                         re.I)
_DATE_BEFORE = re.compile(r"\b(" + "|".join(_MONTHS) + r")[a-z]*\.?\s*$", re.I)
_AMOUNT_BEFORE = re.compile(r"(?:[$€£¥₹]|\b(?:usd|eur|gbp|chf|jpy|inr))\s*$", re.I)
_GLUE = frozenset({"or", "and", "to", "/", "-"})
_EMPTY = frozenset({"n/a", "na", "-", "—", "–", "none", "?", "nil", "n.a."})


@dataclass(frozen=True)
class Figure:
    """One number (or range) as a cell writes it: ``low``..``high`` with ``decimals`` places."""

    low: float
    high: float
    decimals: int  # the most decimal places either end is written with ("8.10" has 2)
    percent: bool = False  # written with a percent sign
    start: int = 0  # where it starts in the cell's text

    @property
    def is_range(self) -> bool:
        return self.low != self.high

    @property
    def value(self) -> float:
        return self.high

    def matches(self, value: float, decimals: int | None = None) -> bool:
        """``value`` (published with ``decimals`` places; None: as Python writes it) is this
        figure at the precision both are published with.

        A whole number stands for itself; a figure with d decimals stands for what rounds to it
        (``8.1``: from 8.05 up to, not including, 8.15). Two figures agree when what they stand
        for overlaps: 20 vs 20.5 and 7.7 vs 8.1 disagree, 47.475 vs 47.48 agree. A range covers
        the values inside it, its ends included.
        """
        ours = stand_for(value, decimal_places(value) if decimals is None else decimals)
        low, _, _ = stand_for(self.low, self.decimals)
        _, high, open_high = stand_for(self.high, self.decimals)
        return _overlap(ours, (low, high, open_high))

    def text(self) -> str:
        return f"{self.low:g}-{self.high:g}" if self.is_range else f"{self.high:g}"


def decimal_places(value: float) -> int:
    """How many decimal places ``value`` is written with: 20 -> 0, 20.5 -> 1, 47.475 -> 3."""
    exponent = Decimal(repr(float(value))).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def stand_for(value: float, decimals: int) -> tuple[Decimal, Decimal, bool]:
    """What a figure published with ``decimals`` places stands for: ``(low, high, high_open)``,
    [low, high) for a rounded figure, the point [value, value] for a whole number (a whole rate
    is stated, not rounded)."""
    exact = Decimal(repr(float(value)))
    if decimals <= 0:
        return exact, exact, False
    half = Decimal(1).scaleb(-decimals) / 2
    return exact - half, exact + half, True


def _overlap(a: tuple[Decimal, Decimal, bool], b: tuple[Decimal, Decimal, bool]) -> bool:
    """Two intervals [low, high] (high excluded when open) share a value."""
    (a_lo, a_hi, a_open), (b_lo, b_hi, b_open) = a, b
    below_b_high = a_lo < b_hi or (a_lo == b_hi and not b_open)
    above_b_low = b_lo < a_hi or (b_lo == a_hi and not a_open)
    return below_b_high and above_b_low


@dataclass(frozen=True)
class RateText:
    """One rate cell: its text (footnotes stripped), every number in it, the headline value."""

    text: str
    values: tuple[float, ...]
    headline: float | None
    is_range: bool = False  # the headline is a span ("0-11.5%" state sales taxes), not one rate
    note: str = ""  # the words around the numbers: "plus surcharges", "GST", "incl. ..."
    labelled: bool = False  # the headline is the rate the text calls standard
    figure: Figure | None = None  # the headline as written (its precision, its span)
    others: tuple[Figure, ...] = field(default=())  # the note's own numbers

    @property
    def low(self) -> float | None:
        return self.figure.low if self.figure is not None else None

    @property
    def high(self) -> float | None:
        return self.figure.high if self.figure is not None else None

    @property
    def decimals(self) -> int:
        return self.figure.decimals if self.figure is not None else 0

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "values": list(self.values), "headline": self.headline,
                "range": self.is_range, "note": self.note, "labelled": self.labelled,
                "decimals": self.decimals}


def _tokens(text: str) -> list[Figure]:
    """The rate-like numbers of a cell, in order: not amounts ($27), dates (1 January), years."""
    found = []
    for match in _TOKEN.finditer(text):
        before, after = text[:match.start()], text[match.end():]
        if _AMOUNT_BEFORE.search(before):
            continue
        if match.group("b") is None and (_DATE_AFTER.match(after) or _DATE_BEFORE.search(before)):
            continue
        low, high = match.group("a"), match.group("b") or match.group("a")
        numbers = (float(low), float(high))
        if not all(0 <= n <= 100 for n in numbers) or numbers[0] > numbers[1]:
            continue  # a year, an amount, or "2020-21"
        decimals = max(len(part.partition(".")[2]) for part in (low, high))
        found.append(Figure(numbers[0], numbers[1], decimals,
                            bool(match.group("pa") or match.group("pb")), match.start()))
    return found


def _words(text: str) -> list[str]:
    """The cell's words once its numbers are gone (the glue of a list included)."""
    rest = re.sub(rf"{_NUMBER}|%|per ?cent|[–—,;:()]", " ", text, flags=re.I)
    return re.sub(r"(?<!\w)-(?!\w)", " ", rest).split()


def parse_rate(text: str, kind: str = "top") -> RateText | None:
    """A free-text rate cell -> :class:`RateText`, or None when it states no rate.

    The headline is the rate the cell labels standard (``kind="vat"``), else, for a bare list of
    alternatives (``17% or 14%``, ``0, 6, 12 and 21``), the highest (``"low"``: the lowest), else
    the first rate the cell states: ``55 (until 2029, after that it will be 50%)`` is 55 and
    ``45, plus 2.1% surtax`` is 45; the rest is the note. A range first (``0–45%``) is the span
    for VAT and its top (bottom for ``"low"``) for an income-tax rate.
    """
    text = " ".join(_FOOTNOTE.sub("", text or "").split())
    if not text or text.lower() in _EMPTY:
        return None
    tokens = _tokens(text)
    if not tokens:
        return None
    words = _words(text)
    labelled = None
    if kind == "vat":
        labelled = next((t for t in tokens if _STANDARD_LABEL.match(text[_end(text, t):])), None)
    bare_list = all(word.lower() in _GLUE for word in words) and len(tokens) > 1 and not any(
        t.is_range for t in tokens)
    if labelled is not None:
        head = labelled
    elif bare_list:
        head = (min if kind == "low" else max)(tokens, key=lambda t: t.high)
    else:
        head = tokens[0]
    others = tuple(t for t in tokens if t is not head)
    if head.is_range and kind != "vat":  # an income-tax span: its top (or bottom) is the rate
        value = head.low if kind == "low" else head.high
        head = Figure(value, value, head.decimals, head.percent, head.start)
    values = tuple(dict.fromkeys(v for t in tokens for v in dict.fromkeys((t.low, t.high))))
    note = "" if bare_list else " ".join(words)
    return RateText(text=text, values=values, headline=head.high, is_range=head.is_range,
                    note=note, labelled=labelled is not None, figure=head, others=others)


def _end(text: str, token: Figure) -> int:
    match = _TOKEN.match(text, token.start)
    return match.end() if match else token.start
