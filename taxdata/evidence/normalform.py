"""One normal form for quotes and source texts, and the numbers in it.

:func:`normalise` puts a text in the form quotes and sources are compared in: whitespace, case,
markdown table pipes and emphasis, dashes, non-breaking spaces, footnote marks (``[1]``,
superscripts, daggers), ``21 %`` / ``21 per cent``, thousands separators (``1,000``, ``1 000``,
``1'000``, ``1.000.000``, ``3,00,000``), decimal commas (``2 760,00``, ``1.234,56``) and
amounts in words (``3 lakh``, ``1.5 million``). :func:`numbers_in` lists the numbers of a
normalised text, with whether each is a percentage.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from typing import NamedTuple

__all__ = ["ROW_BREAK", "NUMBER", "Number", "normalise", "normalise_quote", "normalise_cell",
           "numbers_in", "same_number", "is_row", "SPACES"]

ROW_BREAK = "\u00b6"  # marks the end of a table row; never produced by a quote on one line
_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-")
_QUOTES = {ord("\u2018"): "'", ord("\u2019"): "'", ord("\u201a"): "'", ord("\u201b"): "'",
           ord("\u201c"): '"', ord("\u201d"): '"', ord("\u201e"): '"', ord("\u00ab"): '"',
           ord("\u00bb"): '"'}
# Footnote marks: superscript digits (NFKC would make "21 %\u00b9" read "21 %1") and daggers.
_SUPERSCRIPTS = re.compile("[\u00b9\u00b2\u00b3\u2070-\u2079\u2020\u2021]+")
_PERCENT = re.compile(r"(\d)\s*(?:%|per\s*cent\b|percent\b|pct\b\.?)")
# A decimal comma: "7,5 %", "2 760,00", "1.234,56" (one or two digits after the comma; three
# are a thousands group, "1,000").
_DECIMAL_COMMA = re.compile(
    r"(?<![\d.,])([1-9]\d{0,2}(?:([ .'])\d{3})(?:\2\d{3})*|\d+),(\d{1,2})(?![\d]|[.,]\d)")
# Thousands groups: "1,000,000", "1'000", "1 000 000" (one space, NFKC turns NBSP/thin spaces
# into it), "1.000.000".  A single dot group ("11.604") is a thousands group too unless it is
# a percentage ("1.125%"); a leading 0 ("0.125") is never a thousands group.
_GROUPS = re.compile(r"(?<![\d.,])([1-9]\d{0,2})((?:([,' ])\d{3})(?:\3\d{3})*)(?![\d]|[.,]\d)")
_DOT_GROUPS = re.compile(r"(?<![\d.,])([1-9]\d{0,2})((?:\.\d{3}){2,})(?![\d]|[.,]\d)")
_DOT_GROUP = re.compile(r"(?<![\d.,])([1-9]\d{0,2})\.(\d{3})(?![\d%]|[.,]\d)")
# Indian grouping: "3,00,000" (lakh), "1,00,00,000" (crore).
_INDIAN_GROUPS = re.compile(r"(?<![\d.,])([1-9]\d?)((?:,\d{2})+,\d{3})(?![\d]|[.,]\d)")
# Amounts in words: "3 lakh", "1.5 million", "2 crore".
_SCALES = {"thousand": 10**3, "lakh": 10**5, "lakhs": 10**5, "million": 10**6,
           "crore": 10**7, "crores": 10**7, "billion": 10**9}
_SCALE = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)\s*(" + "|".join(_SCALES) + r")\b")
_NIL = re.compile(r"\bnil\b")  # "Nil" in a rate column is a rate of 0
_FOOTNOTE = re.compile(r"\[(?:\d+|[a-z]|note \d+|nb \d+|citation needed)\]")
_MARKUP = re.compile(r"[|*`]+|^\s*(?:#+|>)\s*")
_CELL_MARKUP = re.compile(r"[|*`]+")
SPACES = re.compile(r"\s+")


def _scaled(match: re.Match[str]) -> str:
    value = float(match.group(1)) * _SCALES[match.group(2)]
    return str(int(value)) if value.is_integer() else str(value)


def _numbers(line: str) -> str:
    # Each rewrite runs only on a line that holds what every one of its matches holds (a
    # comma, a dot, "nil", a scale word), looked for in the line as the rewrites before it left
    # it: a pattern that cannot match still scans the whole line, and most lines of a source
    # hold no comma, dot or scale word. Same result, most lines read by a few `in` checks.
    if "nil" in line:
        line = _NIL.sub("0", line)
    if "%" in line or "per" in line or "pct" in line:
        line = _PERCENT.sub(r"\1%", line)
    if "," in line:
        line = _DECIMAL_COMMA.sub(
            lambda m: re.sub(r"[ .']", "", m.group(1)) + "." + m.group(3), line)
    if "," in line:
        line = _INDIAN_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), line)
    line = _GROUPS.sub(lambda m: m.group(1) + re.sub(r"[,' ]", "", m.group(2)), line)
    if "." in line:
        line = _DOT_GROUPS.sub(lambda m: m.group(1) + m.group(2).replace(".", ""), line)
    if "." in line:
        line = _DOT_GROUP.sub(r"\1\2", line)
    if "illion" in line or "lakh" in line or "crore" in line or "thousand" in line:
        line = _SCALE.sub(_scaled, line)
    return line


def _line(line: str) -> str:
    """One line (already NFKC'd and lower-cased) in normal form, spaces not yet collapsed."""
    line = _footnotes_out(_numbers(line))
    if "|" in line or "*" in line or "`" in line or "#" in line or ">" in line:
        line = _MARKUP.sub(" ", line)
    return line


def _footnotes_out(line: str) -> str:
    return _FOOTNOTE.sub("", line) if "[" in line else line


def _spaces_collapsed(text: str) -> str:
    # Only where there is something to collapse (a run, or whitespace that is not a space): a
    # text of single spaces is in form already, and the regex would rewrite each one as itself.
    return SPACES.sub(" ", text) if _IRREGULAR_SPACE.search(text) else text


_IRREGULAR_SPACE = re.compile(r"[^\S ]|  ")  # whitespace but a space, or two in a row


@functools.lru_cache(maxsize=16384)
def normalise_cell(cell: str) -> str:
    """One table cell in normal form: like a line, but a ">" in it is a sign ("> 177 106")."""
    return _spaces_collapsed(_CELL_MARKUP.sub(" ", _footnotes_out(_numbers(
        _prepare(cell))))).strip()


def _prepare(text: str) -> str:
    if text.isascii():  # no footnote mark, dash, quotation mark or form NFKC would change
        return text.lower()
    text = _SUPERSCRIPTS.sub("", text)
    return unicodedata.normalize("NFKC", text).translate(_DASHES).translate(_QUOTES).lower()


def is_row(line: str) -> bool:
    return line.lstrip().startswith("|")


@functools.lru_cache(maxsize=16384)  # pure; quotes and lines repeat across figures and files
def normalise(text: str) -> str:
    """Text in the one form quotes and sources are compared in (see the module docstring).

    Consecutive markdown table rows are joined with a row-break mark, so a quote that runs
    from one row into the next can be told apart from a quote within one row.
    """
    out: list[str] = []
    previous_row = False
    for line in _prepare(text).splitlines():
        if not line.strip():
            previous_row = False
            continue
        row = is_row(line)
        if out:
            out.append(f" {ROW_BREAK} " if row and previous_row else " ")
        out.append(_line(line))
        previous_row = row
    return _spaces_collapsed("".join(out)).strip()


@functools.lru_cache(maxsize=16384)
def normalise_quote(quote: str) -> str:
    # Quotation marks and end punctuation the model puts around a quote are not part of it.
    return normalise(quote).strip(" \"'.,;:")


NUMBER = re.compile(r"(?<![\d.,])(\d+(?:\.\d+)?)(%?)")


class Number(NamedTuple):
    """A number found in a normalised text, and where (a tuple: dozens are made per figure)."""

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
