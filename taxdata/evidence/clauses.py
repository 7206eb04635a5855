"""What a number's own clause says about it: the checks that make a number something other than
the figure it is quoted for, whatever its label. A worked example (computed amounts), a rate
stated as history ("until 2008", "was", "previously", the old side of "raised from 19 % to
21 %"), another tax named in the number's clause, a local or provincial rate, a total that
includes local taxes or surcharges, an average, approximation or share of revenue, one end of
a range of rates, a monthly amount for an annual threshold (taxdata.evidence.quotechecks runs
them).

A number's clause is the text around it between commas, semicolons, sentence ends and "and" /
"but" / "while": inside the parentheses that hold it, or without any parenthesised remark.
For a table cell, the cell itself with its row's label and its column's header.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from typing import Any

from taxdata.evidence.sourcetext import Number, Occurrence, numbers_in, same_number
from taxdata.evidence.taxwords import OTHER_TAX, OWN_WORDS_OVER_OTHER, TOPIC_NAMES, fmt, topic_of
from taxdata.evidence.wordsearch import words

__all__ = ["CLAUSE_BREAKS", "COMMA_BREAKS", "Quoted", "blank_parentheses", "region",
           "between_breaks", "is_example", "qualifier_reason"]

_EXAMPLE_CONTEXT = words(r"\bexamples?\b|\billustrat|\bworked\b|\bcalculations?\b|"
                         r"\bscenarios?\b|\bhypothetical")
_EXAMPLE_TEXT = words(
    r"^(?:- )?(?:for example|for instance|e\.g\.|example|suppose|consider|assume|assuming|imagine|"
    r"if (?:you|a person|an employee|someone|a single|a resident|an individual))\b|"
    r"\bwould (?:pay|owe|receive|be taxed)\b|\btake-home\b|\bnet pay\b|"
    r"\d\s*[x\u00d7*\u00f7]\s*[\u20ac$\u00a3]?\s*\d|=\s*[\u20ac$\u00a3]?\s*\d|"
    r"\d%\s*of\s*[\u20ac$\u00a3]\s*\d")



CLAUSE_BREAKS = re.compile(r"[,;]|\.\s| and | while | whereas | but ")
COMMA_BREAKS = re.compile(r"[,;]|\.\s")
_PHRASE_BREAKS = re.compile(r";|\.\s")
_HISTORY_YEAR = words(r"\b(?:until|till|prior to|before|up until)\s+"
                      r"(?:(?:the )?(?:end of |start of )?(?:\d{1,2} )?[a-z]+ )?"
                      r"(?:19|20)\d{2}\b")
_PAST = words(r"\b(?:formerly|previously|earlier|used to|had been|no longer|"
              r"until recently|abolished|repealed|replaced|old rate|former rate|"
              r"original rate|temporar\w*|was|were)\b")
_PRESENT = words(r"\b(?:applies|apply|is|are|remains|remain|will|continues)\b")
_YEAR = words(r"\b(?:19|20)\d{2}\b")
_CHANGE = words(r"\b(?:raised|increased|reduced|cut|lowered|changed|set|fixed|rose|fell|"
                r"went up|went down|moved|hiked|brought|introduced|levied)\b")
_APPROXIMATE = words(r"\baverag|\bmean\b|\bmedian\b|\btypical|\bapprox|\babout \d|"
                     r"\u2248|~ ?\d|\baround \d|\broughly|\bestimated|"
                     r"\beffective (?:tax )?rates?\b|\bweighted|\bnearly \d|\balmost \d")
_SHARE = words(r"\bof (?:total |all )?(?:tax |government |state )?(?:revenues?|receipts|"
               r"gdp|collections)\b|\bshare of\b")
_SUBNATIONAL = words(r"municipal|\blocal\b|provinc|\bregional|\bcanton|communal|\bcounty|"
                     r"\bcity\b|church|prefect|\bstates?\b(?= (?:and local|sales|income|"
                     r"level|taxes?\b))|\beach state|state-level|\bby (?:the )?states\b|"
                     r"\bhst\b|harmoni[sz]ed|\bpst\b|\bqst\b|\brst\b")
_NATIONAL = words(r"\bnational|\bfederal|\bcentral\b")
_ADDITION = words(r"\bexcluding\b|\bexcl\b|\bexclusive of\b|\bnot includ|\bin addition\b|"
                  r"\bon top\b|\bplus\b|\bbefore\b|\badditional")
_INCLUSIVE = words(r"includ|\bincl\b|inclusive|combined|\btotal\b|together with|"
                   r"altogether|overall|all-in")
# What a total may add to the national rate: local taxes, surcharges, church tax.
_EXTRA = words(_SUBNATIONAL.pattern + r"|surcharge|solidarity|\bchurch")
_PERIOD = words(r"per month|monthly|a month\b|/ ?month|per week|weekly|/ ?week|per day|"
                r"daily|per fortnight|fortnightly")
_ANNUAL = words(r"\bannual|\byearly\b|per year|a year\b|per annum|/ ?year")
_DASH_RANGE = re.compile(r"(\d+(?:\.\d+)?)%?\s*-\s*(\d+(?:\.\d+)?)%")
_WORD_RANGE = re.compile(r"\b(?:between|from|ranging from|ranges? from|varies from|varying from|"
                         r"vary from|range of)\s+(\d+(?:\.\d+)?)%?\s+(?:and|to)\s+(\d+(?:\.\d+)?)%")
_PERCENT_RANGE = re.compile(r"(\d+(?:\.\d+)?)%\s+(?:to|or)\s+(\d+(?:\.\d+)?)%")


def is_example(where: Occurrence) -> bool:
    """The quote is (in) a worked example: its heading, caption or words say so."""
    return any(_EXAMPLE_CONTEXT.search(p.context) or _EXAMPLE_TEXT.search(p.text)
               for p in where.passages)


def blank_parentheses(text: str) -> str:
    """``text`` with every parenthesised part blanked out (same length)."""
    if "(" not in text:  # most quotes: nothing to blank, and no character loop (per hit)
        return text
    out, depth = [], 0
    for char in text:
        if char == "(":
            depth += 1
        out.append(" " if depth else char)
        if char == ")" and depth:
            depth -= 1
    return "".join(out)


def region(text: str, at: Number, breaks: re.Pattern[str]) -> str:
    """The part of ``text`` around ``at`` between ``breaks``: inside the parentheses that hold
    it, or outside any parentheses (their content is a remark about something else)."""
    open_at = text.rfind("(", 0, at.start)
    if open_at != -1 and text.find(")", open_at, at.start) == -1:
        close_at = text.find(")", at.end)
        lo, hi = open_at + 1, close_at if close_at != -1 else len(text)
        inner = text[lo:hi]
        return region(inner, Number(at.value, at.percent, at.start - lo, at.end - lo), breaks)
    blank = blank_parentheses(text)
    lo, hi = between_breaks(blank, at, breaks)
    return blank[lo:hi]


def between_breaks(text: str, at: Number, breaks: re.Pattern[str]) -> tuple[int, int]:
    """Where the text around ``at`` starts and ends: after the last break that ends at or
    before it (else 0), before the first that starts at or after its end (else the end)."""
    starts, ends = _breaks(text, breaks)
    first, last = bisect.bisect_right(ends, at.start), bisect.bisect_left(starts, at.end)
    return (ends[first - 1] if first else 0), (starts[last] if last < len(starts) else len(text))


@functools.lru_cache(maxsize=1024)
def _breaks(text: str, breaks: re.Pattern[str]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    # Every number of a quote, and every check of each, asks where the same text breaks.
    # The matches do not overlap, so their starts and their ends are both in order.
    spans = [m.span() for m in breaks.finditer(text)]
    return tuple(a for a, _ in spans), tuple(b for _, b in spans)


@dataclass(frozen=True)
class Quoted:
    """A normalised quote at one of its occurrences in the source."""

    text: str
    numbers: list[Number]
    where: Occurrence

    def cell_text(self, at: Number) -> tuple[str, Number] | None:
        """The whole table cell holding ``at`` and the number within it (table rows only)."""
        row = self.where.row
        if row is None:
            return None
        position = self.where.offset + at.start
        cell = row.cell_at(position)
        if cell is None:
            return None
        text = row.text[cell.start:cell.end]
        local = position - cell.start
        inner = next((n for n in numbers_in(text) if n.start == local), None)
        return (text, inner) if inner is not None else None

    def column(self, at: Number) -> str:
        row = self.where.row
        cell = row.cell_at(self.where.offset + at.start) if row is not None else None
        return cell.header if cell is not None else ""

    def row_label(self) -> str:
        row = self.where.row
        if row is None or len(row.cells) < 2:
            return ""
        first = row.cells[0]
        return row.text[first.start:first.end]

    def clause(self, at: Number) -> str:
        """What the number's own clause says: for a table cell, the cell with its row's label
        and its column's header."""
        cell = self.cell_text(at)
        if cell is not None:
            return " ".join((region(cell[0], cell[1], CLAUSE_BREAKS), self.row_label(),
                             self.column(at)))
        return region(self.text, at, CLAUSE_BREAKS)

    def phrase(self, at: Number) -> str:
        cell = self.cell_text(at)
        if cell is not None:
            return " ".join((cell[0], self.row_label(), self.column(at)))
        return region(self.text, at, _PHRASE_BREAKS)


def qualifier_reason(path: str, value: Any, quoted: Quoted, hit: Number) -> str | None:
    """Why the figure's own clause makes this number something other than the figure."""
    topic, shown = topic_of(path), fmt(value)
    clause, phrase = quoted.clause(hit), quoted.phrase(hit)
    other = OTHER_TAX.search(clause)
    if topic != "social" and other and not OWN_WORDS_OVER_OTHER[topic].search(clause):
        return (f"the quote gives {shown} as a rate of another tax ({other.group(0)}), not "
                f"{TOPIC_NAMES[topic]}")
    if topic != "social" and not (_NATIONAL.search(clause) or _ADDITION.search(clause)):
        local = _SUBNATIONAL.search(clause)
        if local:
            return f"the quote gives {shown} as a {local.group(0)} rate, not the national one"
        extra = _EXTRA.search(phrase)
        if _INCLUSIVE.search(phrase) and extra:
            return (f"the quote gives {shown} as a total including {extra.group(0)} taxes, not "
                    "the national rate")
    if _APPROXIMATE.search(clause) or _SHARE.search(clause):
        return (f"the quote gives {shown} as an average, approximate or effective figure, not a "
                "statutory rate")
    if _stale(clause, hit, quoted):
        return f"the quote gives {shown} as a past rate (history), not the current one"
    if hit.percent and (path.startswith(("vat", "socialSecurity")) or path.endswith(".rate")):
        span = _range_of(phrase, hit)
        if span:
            return f"the quote gives a range ({span}), not one rate"
    context = quoted.where.context
    if path.endswith((".max", ".min")) and (_PERIOD.search(clause) or (
            _PERIOD.search(context) and not _ANNUAL.search(context))):
        return f"the quote gives {shown} per month or week; bracket thresholds are annual"
    return None


def _stale(clause: str, hit: Number, quoted: Quoted) -> bool:
    """The number is a past (or temporary) rate: "until 2008", "was 18 %", "previously",
    "temporarily", the old side of "raised from 19 % to 21 %", "introduced in 1973 at 10 %"."""
    if _HISTORY_YEAR.search(clause) and not _PRESENT.search(clause):
        return True
    shown = re.escape(fmt(hit.value))
    change = _CHANGE.search(clause)
    if change and re.search(rf"\bfrom {shown}%?\s+to \d", clause):
        return True
    past = _PAST.search(clause)
    if past is None:
        return False
    if past.group(0) not in ("was", "were") or (
            re.search(r"\bintroduced\b", clause) and _YEAR.search(clause)):
        return True
    # "was raised to 21 %", "was introduced at a rate of 5 %": the rate it became.
    return not re.search(
        rf"\b(?:was|were)\b.*?{_CHANGE.pattern}.*?\b(?:to|at|of)\b[^%\d]*{shown}%?(?![\d.])",
        clause)


def _range_of(phrase: str, hit: Number) -> str | None:
    if _CHANGE.search(phrase):
        return None  # "from 19 % to 21 %" with a verb is a change, not a range
    for pattern in (_DASH_RANGE, _WORD_RANGE, _PERCENT_RANGE):
        for match in pattern.finditer(phrase):
            ends = (float(match.group(1)), float(match.group(2)))
            if ends[0] != ends[1] and any(same_number(hit.value, e) for e in ends):
                return f"{match.group(1)}-{match.group(2)}"
    return None


# -- labels -----------------------------------------------------------------------------------
