"""Source text prepared for quote look-ups: one normal form for quotes and sources, numbers.

:func:`normalise` puts a text in the form quotes and sources are compared in (whitespace, case,
markdown table pipes and emphasis, dashes, non-breaking spaces, ``21 %`` / ``21 per cent``,
thousands separators); :class:`Source` holds a source normalised per markdown section;
:func:`find_quote` says in which sections a quote occurs, on word boundaries.
:mod:`taxdata.record.evidence` builds the per-figure checks on these.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["ROW_BREAK", "NUMBER", "Number", "Source", "normalise", "normalise_quote",
           "numbers_in", "same_number", "find_quote"]

# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

ROW_BREAK = "\u00b6"  # marks the end of a table row; never produced by a quote on one line
_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-")
_QUOTES = {ord("\u2018"): "'", ord("\u2019"): "'", ord("\u201a"): "'", ord("\u201b"): "'",
           ord("\u201c"): '"', ord("\u201d"): '"', ord("\u201e"): '"', ord("\u00ab"): '"',
           ord("\u00bb"): '"'}
_PERCENT = re.compile(r"(\d)\s*(?:%|per\s*cent\b|percent\b|pct\b\.?)")
# Thousands groups: "1,000,000", "1'000", "1 000 000" (one space, NFKC turns NBSP/thin spaces
# into it), "1.000.000".  A single dot group ("11.604") is a thousands group too unless it is
# a percentage ("1.125%"); a leading 0 ("0.125") is never a thousands group.
_GROUPS = re.compile(r"(?<![\d.,])([1-9]\d{0,2})((?:([,' ])\d{3})(?:\3\d{3})*)(?![\d]|[.,]\d)")
_DOT_GROUPS = re.compile(r"(?<![\d.,])([1-9]\d{0,2})((?:\.\d{3}){2,})(?![\d]|[.,]\d)")
_DOT_GROUP = re.compile(r"(?<![\d.,])([1-9]\d{0,2})\.(\d{3})(?![\d%]|[.,]\d)")
# Indian grouping: "3,00,000" (lakh), "1,00,00,000" (crore).
_INDIAN_GROUPS = re.compile(r"(?<![\d.,])([1-9]\d?)((?:,\d{2})+,\d{3})(?![\d]|[.,]\d)")
_NIL = re.compile(r"\bnil\b")  # "Nil" in a rate column is a rate of 0
_DECIMAL_COMMA = re.compile(r"(?<![\d.,])(\d{1,3}),(\d{1,2})%")
_FOOTNOTE = re.compile(r"\[(?:\d+|[a-z]|note \d+|citation needed)\]")
_MARKUP = re.compile(r"[|*`]+|^\s*(?:#+|>)\s*")
_SPACES = re.compile(r"\s+")


def _numbers(line: str) -> str:
    line = _PERCENT.sub(r"\1%", _NIL.sub("0", line))
    line = _DECIMAL_COMMA.sub(r"\1.\2%", line)
    line = _INDIAN_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), line)
    line = _GROUPS.sub(lambda m: m.group(1) + re.sub(r"[,' ]", "", m.group(2)), line)
    line = _DOT_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(".", ""), line)
    return _DOT_GROUP.sub(r"\1\2", line)


def _is_row(line: str) -> bool:
    return line.lstrip().startswith("|")


def normalise(text: str) -> str:
    """Text in the one form quotes and sources are compared in (see the module docstring).

    Consecutive markdown table rows are joined with a row-break mark, so a quote that runs
    from one row into the next can be told apart from a quote within one row.
    """
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).translate(_QUOTES).lower()
    out: list[str] = []
    previous_row = False
    for line in text.splitlines():
        if not line.strip():
            previous_row = False
            continue
        row = _is_row(line)
        if out:
            out.append(f" {ROW_BREAK} " if row and previous_row else " ")
        line = _FOOTNOTE.sub("", _numbers(line))
        out.append(_MARKUP.sub(" ", line))
        previous_row = row
    return _SPACES.sub(" ", "".join(out)).strip()


def normalise_quote(quote: str) -> str:
    # Quotation marks and end punctuation the model puts around a quote are not part of it.
    return normalise(quote).strip(" \"'.,;:")


NUMBER = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)(%?)")


@dataclass(frozen=True)
class Number:
    """A number found in a normalised text, and where."""

    value: float
    percent: bool
    start: int
    end: int


def numbers_in(normalised: str) -> list[Number]:
    """The numbers of a normalised text, with whether each is a percentage."""
    return [Number(float(m.group(1)), bool(m.group(2)), m.start(), m.end())
            for m in NUMBER.finditer(normalised)]


def same_number(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# --------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------

_HEADING = re.compile(r"^\s{0,3}(#{2,6})\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class _Section:
    headings: str  # normalised headings above this text (the chain of levels), joined
    text: str  # normalised body


class Source:
    """A source text prepared for quote look-ups: normalised per markdown section."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sections: list[_Section] = []
        chain: dict[int, str] = {}
        body: list[str] = []

        def close() -> None:
            if any(line.strip() for line in body):
                self.sections.append(_Section(" / ".join(normalise(h) for h in chain.values()),
                                              normalise("\n".join(body))))
            body.clear()

        for line in text.splitlines():
            match = _HEADING.match(line)
            if match:
                close()
                level = len(match.group(1))
                chain = {k: v for k, v in chain.items() if k < level}
                chain[level] = match.group(2)
            else:
                body.append(line)
        close()


def _occurs_bounded(quote: str, text: str) -> bool:
    """``quote`` occurs in ``text``, not starting or ending inside a word or number: a quote
    that does is a different quote ("7 %" in "17 %")."""
    check_before = quote[:1].isalnum()
    check_after = quote[-1:].isalnum() or quote.endswith("%")
    start = text.find(quote)
    while start != -1:  # plain find: a regex compiled per quote costs more than the search
        end = start + len(quote)
        if ((not check_before or start == 0 or text[start - 1] not in _WORD_BEFORE)
                and (not check_after or end == len(text) or text[end] not in _WORD_AFTER)):
            return True
        start = text.find(quote, start + 1)
    return False


_WORD_AFTER = frozenset("0123456789abcdefghijklmnopqrstuvwxyz")
_WORD_BEFORE = _WORD_AFTER | {".", ","}


def find_quote(source: Source, quote: str) -> list[str]:
    """The headings of every section in which the (normalised) quote occurs; [] if none."""
    wanted = normalise_quote(quote)
    if not wanted:
        return []
    return [s.headings for s in source.sections if _occurs_bounded(wanted, s.text)]
