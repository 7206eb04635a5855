"""Bracket figures: a bracket's quote must single out its bracket. It names the bracket's bound in
the right direction ("up to 40,000" ends a bracket, "above 40,000" starts the next, "1,001 -
5,000" is a range), no other bracket's bound, and one rate only; in prose, the clause that holds
the figure may do so ("0 % up to 9,000, 15 % up to 40,000, 44 % above 40,000"; "... and the
balance at 40 %" takes the bound of the clause before). In a table row, a cell under an
"average rate" or "tax" column is not the bracket's rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from taxdata.evidence.clauses import (
    CLAUSE_BREAKS,
    COMMA_BREAKS,
    Quoted,
    blank_parentheses,
    region,
)
from taxdata.evidence.sourcetext import Number, numbers_in, same_number
from taxdata.evidence.taxwords import TAX_FREE, fmt

__all__ = ["Bounds", "bracket_reason"]


@dataclass(frozen=True)
class Bounds:
    """What identifies each bracket in a quote: its own bound numbers and every bracket's."""

    own: list[set[float]]  # per bracket: numbers a quote of it may name
    marks: list[set[float]]  # per bracket: the numbers that single it out
    rates: list[float]

    @classmethod
    def of(cls, brackets: list[Any]) -> Bounds:
        own, marks = [], []
        last = len(brackets) - 1
        for i, b in enumerate(brackets):
            mine = {b.min, b.rate} | ({b.max} if b.max is not None else set())
            if i:
                mine.add(b.min - 1)  # "above 40,000" for a bracket starting at 40,001
            own.append(mine)
            marks.append({b.max} if i != last else {b.min, b.min - 1})
        return cls(own, marks, [b.rate for b in brackets])


_BRACKET_PATH = re.compile(r"brackets\[(\d+)\]\.(rate|min|max)")


def bracket_reason(path: str, quoted: Quoted, hits: list[Number], bounds: Bounds | None,
                    strict: bool) -> str | None:
    match = _BRACKET_PATH.fullmatch(path) if path.startswith("brackets[") else None
    if not match or bounds is None or len(bounds.own) <= 1:
        return None
    i = int(match.group(1))
    # In a table row, a cell under an "average rate" or "tax" column is not the bracket's rate.
    numbers = [n for n in quoted.numbers if not _NOT_RATE_COLUMN.search(quoted.column(n))]
    whole = _bracket_unit_reason(i, quoted.text, numbers, bounds)
    if whole is None and (not strict or _states_rate(i, quoted.numbers, bounds, quoted.text)):
        return None
    if quoted.where.row is None:  # prose: the clause that holds the figure may single it out
        for hit in hits:
            for breaks in (COMMA_BREAKS, CLAUSE_BREAKS):
                clause = _clause_with_its_bound(quoted.text, hit, breaks)
                numbers = numbers_in(clause)
                if (_bracket_unit_reason(i, clause, numbers, bounds) is None
                        and (not strict or _states_rate(i, numbers, bounds, clause))):
                    return None
    return whole or f"the passage does not state bracket {i}'s rate with its bound"


_NOT_RATE_COLUMN = re.compile(r"averag|effective|tax due|tax payable|\bamount|cumulative|"
                              r"total tax|fixed fee|\btax \(|^tax$")
# "... and the balance at 40 %": the bound is the one the clause before named.
_BALANCE = re.compile(r"\bthe (?:balance|remainder|rest)\b|\b(?:above|over|beyond) that\b|"
                      r"\bthereafter\b")


def _clause_with_its_bound(text: str, hit: Number, breaks: re.Pattern[str]) -> str:
    """The clause holding ``hit``; for "the balance at 40 %", with the clause before it (its
    rates blanked: they are the bracket below's)."""
    clause = region(text, hit, breaks)
    if not _BALANCE.search(clause):
        return clause
    blank = blank_parentheses(text)
    cuts = [m for m in breaks.finditer(blank) if m.end() <= hit.start]
    if len(cuts) < 1:
        return clause
    lo = cuts[-2].end() if len(cuts) > 1 else 0
    # Its rates are the bracket below's, and "up to" there ends that bracket: the balance is
    # what lies above the bound it names.
    before = re.sub(r"\d+(?:\.\d+)?%", lambda m: " " * len(m.group(0)),
                    blank[lo:cuts[-1].start()])
    before = _UPPER_WORDS.sub(lambda m: " " * len(m.group(0)), before)
    return before + " " + clause


def _states_rate(i: int, numbers: list[Number], bounds: Bounds, text: str) -> bool:
    rate = bounds.rates[i]
    return (any(same_number(n.value, rate) for n in numbers)
            or (rate == 0 and bool(TAX_FREE.search(text))))


def _bracket_unit_reason(i: int, text: str, numbers: list[Number],
                         bounds: Bounds) -> str | None:
    values = [n.value for n in numbers]
    named = [n for n in numbers if any(same_number(n.value, m) for m in bounds.marks[i])]
    if not named:
        return f"the quote does not name bracket {i}'s bound ({_fmt_set(bounds.marks[i])})"
    # In prose, "up to 40,000" ends a bracket and "above 40,000" starts the next one.
    last = i == len(bounds.marks) - 1
    wrong = "upper" if last else "lower"
    if all(_direction(text, numbers, n) == wrong for n in named):
        row = "the bracket below" if last else "the next bracket"
        article = "an" if wrong == "upper" else "a"
        return (f"the quote gives {fmt(named[0].value)} as {article} {wrong} bound: it is "
                f"about {row}")
    for j, marks in enumerate(bounds.marks):
        foreign = [m for m in marks if j != i and not any(same_number(m, o) for o in bounds.own[i])]
        if any(same_number(v, m) for v in values for m in foreign):
            return f"the quote names bracket {j}'s bound: it is about another row"
    # A remark in parentheses ("27 % (12 % bottom tax + 15 % top tax)") is not another rate.
    blank = blank_parentheses(text)
    rates = [n for n in numbers if n.percent]
    outside = [n for n in rates if blank[n.start] != " "]
    if len({n.value for n in (outside or rates)}) > 1:
        return "the quote states several rates; quote only this bracket's"
    return None


# A dash alone between two numbers is a range: the number after it is the upper end.
_UPPER_WORDS = re.compile(r"\bup to\b|\bto\b|\buntil\b|\bbelow\b|\bunder\b|less than|<|"
                          r"^\s*-\s*$")
_LOWER_WORDS = re.compile(r"\babove\b|\bover\b|\bexceed|more than|\bfrom\b|in excess of|"
                          r"\bbeyond\b|>")
_NOT_OVER = re.compile(r"not (?:more than|exceeding|over)")  # an upper bound in lower words


def _direction(text: str, numbers: list[Number], at: Number) -> str | None:
    """Whether the words just before a number make it an upper or a lower bound (or neither)."""
    words = text[max((n.end for n in numbers if n.end <= at.start), default=0):at.start]
    rest = _NOT_OVER.sub(" ", words)
    upper = bool(_NOT_OVER.search(words) or _UPPER_WORDS.search(rest))
    lower = bool(_LOWER_WORDS.search(rest))
    if upper != lower:
        return "upper" if upper else "lower"
    return None


def _fmt_set(values: set[float]) -> str:
    return " or ".join(fmt(v) for v in sorted(values))
