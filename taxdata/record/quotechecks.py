"""The checks one quote must pass to support one figure (:mod:`taxdata.record.evidence` runs them).

:func:`figure_reason` says why a quote does not support ``path = value`` in a source (None when
it does). In order, the first failing check gives the reason:

1. **found**: the quote occurs in the source (:meth:`~taxdata.record.sourcetext.Source.find`),
   within one table row.
2. **figure**: the figure is one of the quote's numbers, compared as numbers, and the quote says
   more than the bare number (a 0 % rate may be worded: "tax-free", "exempt", "nil").
3. **example**: the quote is not from a worked example (computed amounts are not rates).
4. **topic**: the quote, its headings (``#`` headings, bold pseudo-headings), its table's caption
   or the header of the figure's column names the figure's tax; a quote about another tax
   (corporate, capital gains, excise, ...) that does not name the figure's own is refused.
5. **qualifiers**, in the figure's own clause: not another tax's rate (an excise named beside the
   VAT), not a local or provincial rate or a total including local taxes (for income tax and
   VAT), not an average, approximation, effective rate or share of revenue, not a rate stated as
   history ("until 2008", "was", "previously", the "from" of a change), not one end of a range
   of rates, and, for bracket thresholds, not a monthly or weekly amount.
6. **label**: where competing figures are named (``standard``/``reduced``, ``employees``/
   ``employers``), the label that goes with the figure must be its own: the one in its table
   cell, else its column's header, else the nearest in its clause, else the pseudo-heading or
   lead-in above it; a bare list of unlabelled rates does not say which one is meant.
7. **bracket**: a bracket figure's quote, or the clause of it that holds the figure, names the
   bracket's bound in the right direction, no other bracket's bound, and one rate only.
8. **system**: wording of a schedule (progressive), of one rate (flat, with the rate), or of no
   personal income tax (zero_personal).

``strict=True`` is for passages code picked itself (grounding a figure in the original text,
:mod:`taxdata.record.grounding`), where no model vouched for the passage: a rate's label must be
stated (an unlabelled VAT rate only in a clause that names the VAT), and a bracket threshold must
come with its bracket's rate.

No tax facts live here: only words that say what a figure is, never a rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from taxdata.record.models import Extraction
from taxdata.record.sourcetext import (
    NUMBER,
    ROW_BREAK,
    Number,
    Occurrence,
    Source,
    normalise_quote,
    numbers_in,
    same_number,
)

__all__ = ["Bounds", "check_figure", "figure_reason", "topic_of", "LABELS", "SYSTEM_WORDS",
           "TAX_FREE", "TOPIC_WORDS"]

TOPIC_WORDS = {
    "vat": r"\bvat\b|\bgst\b|value[- ]added|goods and services|sales tax|consumption tax|"
           r"turnover tax|\bmoms\b|\biva\b|\btva\b|\bmwst\b|\bbtw\b",
    "income": r"income|salar|wage|earning|bracket|\bbands?\b|\bslabs?\b|personal|individual|"
              r"\bpit\b",
    "social": r"social|insurance|pension|contribution|payroll|employee|employer|health|"
              r"unemployment",
}
# Another tax named without the figure's own: e.g. "corporate tax is 25 %" as a VAT rate.
_OTHER_TAX = re.compile(r"corporat|compan|capital gain|dividend|withholding|property|"
                        r"inheritance|excise|customs|stamp duty|\bcit\b|\bipi\b|\bduty\b|"
                        r"\bduties\b|wealth tax|land tax|gift tax|estate tax")
_OWN_WORDS_OVER_OTHER = {
    "vat": TOPIC_WORDS["vat"],
    "income": r"personal|individual|salar|wage|employment|\bpit\b",
    "social": TOPIC_WORDS["social"],
}
_TOPIC_NAMES = {"vat": "VAT", "income": "income tax", "social": "social security"}

# Labels that tell apart figures of one topic: the one nearest to the figure must be its own.
LABELS = {
    "vat.standard": ("standard", r"\bstandard|\bgeneral\b|\bnormal\b|\bbasic\b|\bmain\b"),
    "vat.reduced": ("reduced", r"\breduced|\blower\b|zero[- ]rated?\b|\bpreferential|"
                               r"\bsuper[- ]reduced|\bparking\b|\bintermediate\b|"
                               r"\bspecial rate|\bspecial\b(?= \||$)|\bsecond rate"),
    "socialSecurity.employeeRate": ("employee", r"employees?\b|employee's|workers?\b"),
    "socialSecurity.employerRate": ("employer", r"employers?\b|employer's"),
}
_RIVALS = {"vat.standard": "vat.reduced", "vat.reduced": "vat.standard",
           "socialSecurity.employeeRate": "socialSecurity.employerRate",
           "socialSecurity.employerRate": "socialSecurity.employeeRate"}
SYSTEM_WORDS = {
    "progressive": r"progressive|graduated|bracket|\bbands?\b|slab|scale|schedule|marginal|"
                   r"\btiers?\b|several rates",
    "flat": r"\bflat\b|single rate|one rate|same rate|uniform|proportional|all income|"
            r"regardless",
    # "Nil" has become "0" by now: "personal income tax: nil" ends in a 0.
    "zero_personal": r"\bno\b|\bnot\b|\bnone\b|\bzero\b|exempt|\bfree\b|abolished|"
                     r"\b0%|\b0$",
}
# A flat rate of the income tax as a whole, not of one kind of payment.
_FLAT_SCOPE = re.compile(r"income tax|all (?:\w+ ){0,2}income|personal income|\bsystem\b|"
                         r"personal tax|single rate|one rate|same rate|uniform|proportional|"
                         r"regardless|all residents|all individuals")
# Picked by code, not vouched for by a model: "no" or "free" alone says too little.
_ZERO_STRICT = (r"\bno\b[^.;]{0,40}\btax|\bnot\b[^.;]{0,30}\b(?:tax|levy|levied|impose)|"
                r"\bnone\b|abolished|exempt from[^.;]{0,20}income tax|\b0%|\b0$")
TAX_FREE = re.compile(r"tax[- ]free|\bexempt\b|\bnot taxed\b|\buntaxed\b|\bzero[- ]rated?\b|"
                       r"\bnil rate")

_EXAMPLE_CONTEXT = re.compile(r"\bexamples?\b|\billustrat|\bworked\b|\bcalculations?\b|"
                              r"\bscenarios?\b|\bhypothetical")
_EXAMPLE_TEXT = re.compile(
    r"^(?:- )?(?:for example|for instance|e\.g\.|example|suppose|consider|assume|assuming|imagine|"
    r"if (?:you|a person|an employee|someone|a single|a resident|an individual))\b|"
    r"\bwould (?:pay|owe|receive|be taxed)\b|\btake-home\b|\bnet pay\b|"
    r"\d\s*[x\u00d7*\u00f7]\s*[\u20ac$\u00a3]?\s*\d|=\s*[\u20ac$\u00a3]?\s*\d|"
    r"\d%\s*of\s*[\u20ac$\u00a3]\s*\d")

_CLAUSE_BREAKS = re.compile(r"[,;]|\.\s| and | while | whereas | but ")
_COMMA_BREAKS = re.compile(r"[,;]|\.\s")
_PHRASE_BREAKS = re.compile(r";|\.\s")
_HISTORY_YEAR = re.compile(r"\b(?:until|till|prior to|before|up until)\s+"
                           r"(?:(?:the )?(?:end of |start of )?(?:\d{1,2} )?[a-z]+ )?"
                           r"(?:19|20)\d{2}\b")
_PAST = re.compile(r"\b(?:formerly|previously|earlier|used to|had been|no longer|"
                   r"until recently|abolished|repealed|replaced|old rate|former rate|"
                   r"original rate|temporar\w*|was|were)\b")
_PRESENT = re.compile(r"\b(?:applies|apply|is|are|remains|remain|will|continues)\b")
_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")
_CHANGE = re.compile(r"\b(?:raised|increased|reduced|cut|lowered|changed|set|fixed|rose|fell|"
                     r"went up|went down|moved|hiked|brought|introduced|levied)\b")
_APPROXIMATE = re.compile(r"\baverag|\bmean\b|\bmedian\b|\btypical|\bapprox|\babout \d|"
                          r"\u2248|~ ?\d|\baround \d|\broughly|\bestimated|"
                          r"\beffective (?:tax )?rates?\b|\bweighted|\bnearly \d|\balmost \d")
_SHARE = re.compile(r"\bof (?:total |all )?(?:tax |government |state )?(?:revenues?|receipts|"
                    r"gdp|collections)\b|\bshare of\b")
_SUBNATIONAL = re.compile(r"municipal|\blocal\b|provinc|\bregional|\bcanton|communal|\bcounty|"
                          r"\bcity\b|church|prefect|\bstates?\b(?= (?:and local|sales|income|"
                          r"level|taxes?\b))|\beach state|state-level|\bby (?:the )?states\b|"
                          r"\bhst\b|harmoni[sz]ed|\bpst\b|\bqst\b|\brst\b")
_NATIONAL = re.compile(r"\bnational|\bfederal|\bcentral\b")
_ADDITION = re.compile(r"\bexcluding\b|\bexcl\b|\bexclusive of\b|\bnot includ|\bin addition\b|"
                       r"\bon top\b|\bplus\b|\bbefore\b|\badditional")
_INCLUSIVE = re.compile(r"includ|\bincl\b|inclusive|combined|\btotal\b|together with|"
                        r"altogether|overall|all-in")
# What a total may add to the national rate: local taxes, surcharges, church tax.
_EXTRA = re.compile(_SUBNATIONAL.pattern + r"|surcharge|solidarity|\bchurch")
_PERIOD = re.compile(r"per month|monthly|a month\b|/ ?month|per week|weekly|/ ?week|per day|"
                     r"daily|per fortnight|fortnightly")
_ANNUAL = re.compile(r"\bannual|\byearly\b|per year|a year\b|per annum|/ ?year")
_DASH_RANGE = re.compile(r"(\d+(?:\.\d+)?)%?\s*-\s*(\d+(?:\.\d+)?)%")
_WORD_RANGE = re.compile(r"\b(?:between|from|ranging from|ranges? from|varies from|varying from|"
                         r"vary from|range of)\s+(\d+(?:\.\d+)?)%?\s+(?:and|to)\s+(\d+(?:\.\d+)?)%")
_PERCENT_RANGE = re.compile(r"(\d+(?:\.\d+)?)%\s+(?:to|or)\s+(\d+(?:\.\d+)?)%")


def _topic(path: str) -> str:
    if path.startswith("vat"):
        return "vat"
    if path.startswith("socialSecurity"):
        return "social"
    return "income"


def _label_key(path: str) -> str | None:
    key = re.sub(r"\[\d+\]$", "", path)
    return key if key in LABELS else None


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------------
# A quote where it was found: its clauses, cells and context
# --------------------------------------------------------------------------------------------


def _blank_parentheses(text: str) -> str:
    """``text`` with every parenthesised part blanked out (same length)."""
    out, depth = [], 0
    for char in text:
        if char == "(":
            depth += 1
        out.append(" " if depth else char)
        if char == ")" and depth:
            depth -= 1
    return "".join(out)


def _region(text: str, at: Number, breaks: re.Pattern[str]) -> str:
    """The part of ``text`` around ``at`` between ``breaks``: inside the parentheses that hold
    it, or outside any parentheses (their content is a remark about something else)."""
    open_at = text.rfind("(", 0, at.start)
    if open_at != -1 and text.find(")", open_at, at.start) == -1:
        close_at = text.find(")", at.end)
        lo, hi = open_at + 1, close_at if close_at != -1 else len(text)
        inner = text[lo:hi]
        return _region(inner, Number(at.value, at.percent, at.start - lo, at.end - lo), breaks)
    blank = _blank_parentheses(text)
    cuts = list(breaks.finditer(blank))
    lo = max((m.end() for m in cuts if m.end() <= at.start), default=0)
    hi = min((m.start() for m in cuts if m.start() >= at.end), default=len(text))
    return blank[lo:hi]


@dataclass(frozen=True)
class _Quoted:
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
            return " ".join((_region(cell[0], cell[1], _CLAUSE_BREAKS), self.row_label(),
                             self.column(at)))
        return _region(self.text, at, _CLAUSE_BREAKS)

    def phrase(self, at: Number) -> str:
        cell = self.cell_text(at)
        if cell is not None:
            return " ".join((cell[0], self.row_label(), self.column(at)))
        return _region(self.text, at, _PHRASE_BREAKS)


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


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


def figure_reason(path: str, value: Any, quote: str, source: Source, extraction: Extraction,
                  bounds: Bounds | None, *, strict: bool = False) -> str | None:
    """Why ``quote`` does not support ``path = value`` in ``source``, or None when it does (see
    the module docstring)."""
    return check_figure(path, value, quote, source, extraction, bounds, strict=strict)[0]


def check_figure(path: str, value: Any, quote: str, source: Source, extraction: Extraction,
                 bounds: Bounds | None, *,
                 strict: bool = False) -> tuple[str | None, Occurrence | None]:
    """:func:`figure_reason`, with the occurrence of the quote that supports the figure."""
    text = normalise_quote(quote)
    if ROW_BREAK in text:
        return "the quote spans several table rows", None
    occurrences = source.find(quote)
    if not occurrences:
        return "the quote is not in the source text", None
    numbers = numbers_in(text)
    hits = _hits(path, value, text, numbers)
    reason = _figure_in_quote(path, value, text, numbers, hits, extraction, strict)
    if reason:
        return reason, None
    first = None
    for where in occurrences:
        quoted = _Quoted(text, numbers, where)
        reason = _reason_at(path, value, quoted, hits, extraction, bounds, strict)
        if reason is None:
            return None, where
        first = first or reason
    return first, None


def topic_of(path: str) -> str:
    """The tax a figure path is about: "vat", "income" or "social"."""
    return _topic(path)


def _hits(path: str, value: Any, text: str, numbers: list[Number]) -> list[Number]:
    if path == "system":
        return []
    hits = [n for n in numbers if same_number(n.value, value)]
    if not hits and value == 0 and not path.endswith((".max", ".min")):
        hits = [Number(0, True, m.start(), m.end()) for m in TAX_FREE.finditer(text)]
    return hits


def _figure_in_quote(path: str, value: Any, text: str, numbers: list[Number],
                     hits: list[Number], extraction: Extraction, strict: bool) -> str | None:
    if path == "system":
        words = _ZERO_STRICT if strict and value == "zero_personal" else SYSTEM_WORDS[value]
        if not re.search(words, text):
            return f"the quote does not say the system is {value}"
        if value == "flat" and not _FLAT_SCOPE.search(text):
            # "a flat fee", "bonuses are taxed at a flat 6 %": not the income tax as a whole.
            rate = (extraction.brackets or [None])[0]
            if rate is not None and not any(same_number(n.value, rate.rate) for n in numbers):
                return f"the quote does not state the flat rate {_fmt(rate.rate)}"
            return "the quote does not say that one rate applies to all income"
        return None
    if not hits:
        return f"{_fmt(value)} is not a number in the quote"
    if len(numbers) < 2 and not re.sub(r"[\W_]+", "", NUMBER.sub("", text)):
        return "the quote is only the number; it must say what the number is"
    return None


def _reason_at(path: str, value: Any, quoted: _Quoted, hits: list[Number],
               extraction: Extraction, bounds: Bounds | None, strict: bool) -> str | None:
    if any(_EXAMPLE_CONTEXT.search(p.context) or _EXAMPLE_TEXT.search(p.text)
           for p in quoted.where.passages):
        return "the quote is from a worked example (computed amounts), not a statement of a rate"
    reason = _topic_reason(path, quoted, hits)
    if reason:
        return reason
    if path == "system":
        return None
    reasons = [(_qualifier_reason(path, value, quoted, hit), hit) for hit in hits]
    good = [hit for reason, hit in reasons if reason is None]
    if not good:
        return reasons[0][0]
    return (_label_reason(path, value, quoted, good, strict)
            or _component_reason(path, quoted)
            or _bracket_reason(path, quoted, good, bounds, strict))


def _topic_reason(path: str, quoted: _Quoted, hits: list[Number]) -> str | None:
    topic, text = _topic(path), quoted.text
    if _OTHER_TAX.search(text) and not re.search(_OWN_WORDS_OVER_OTHER[topic], text):
        return f"the quote is about another tax, not {_TOPIC_NAMES[topic]}"
    places = [text, quoted.where.context, *(quoted.column(h) for h in hits)]
    if not any(re.search(TOPIC_WORDS[topic], where) for where in places):
        return f"neither the quote nor its section heading is about {_TOPIC_NAMES[topic]}"
    return None


def _qualifier_reason(path: str, value: Any, quoted: _Quoted, hit: Number) -> str | None:
    """Why the figure's own clause makes this number something other than the figure."""
    topic, shown = _topic(path), _fmt(value)
    clause, phrase = quoted.clause(hit), quoted.phrase(hit)
    other = _OTHER_TAX.search(clause)
    if topic != "social" and other and not re.search(_OWN_WORDS_OVER_OTHER[topic], clause):
        return (f"the quote gives {shown} as a rate of another tax ({other.group(0)}), not "
                f"{_TOPIC_NAMES[topic]}")
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
    if re.search(r"\.(?:max|min)$", path) and (_PERIOD.search(clause) or (
            _PERIOD.search(context) and not _ANNUAL.search(context))):
        return f"the quote gives {shown} per month or week; bracket thresholds are annual"
    return None


def _stale(clause: str, hit: Number, quoted: _Quoted) -> bool:
    """The number is a past (or temporary) rate: "until 2008", "was 18 %", "previously",
    "temporarily", the old side of "raised from 19 % to 21 %", "introduced in 1973 at 10 %"."""
    if _HISTORY_YEAR.search(clause) and not _PRESENT.search(clause):
        return True
    shown = re.escape(_fmt(hit.value))
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


def nearest_label(text: str, at: Number, keys: tuple[str, str]) -> str | None:
    """The label that names the number at ``at``, or None if no label does.

    Looked for in the number's clause (text between commas, semicolons, "and", ...), then in
    its part between commas and semicolons only: where that text puts its first number before
    its first label ("21 % (standard)", "14 % for employees", "12 % and 6 % reduced"), the
    next label after the number; otherwise ("standard rate 21 %", "employees pay 11 %") the
    last label before it. Without a label there, the last label before the number in the
    whole quote ("Reduced rates: 10 % and 4 %").
    """
    def labels(start: int, stop: int) -> list[tuple[int, int, str]]:
        return sorted((m.start() + start, m.end() + start, key) for key in keys
                      for m in re.finditer(LABELS[key][1], text[start:stop]))

    for breaks in (_CLAUSE_BREAKS, _COMMA_BREAKS):
        cuts = list(breaks.finditer(text))
        lo = max((m.end() for m in cuts if m.end() <= at.start), default=0)
        hi = min((m.start() for m in cuts if m.start() >= at.end), default=len(text))
        found = labels(lo, hi)
        if not found:
            continue
        first_number = min(n.start for n in numbers_in(text[lo:hi]) or [at]) + lo
        after = [lab for lab in found if lab[0] >= at.end]
        before = [lab for lab in found if lab[1] <= at.start]
        over = [lab for lab in found if lab not in after and lab not in before]
        if over:  # the figure is a word that is its own label ("a zero rate")
            return over[0][2]
        if first_number < found[0][0] and after:
            return after[0][2]
        return (before[-1] if before else after[0])[2]
    # Not across a sentence: a label of the sentence before names that sentence's rates.
    start = max((m.end() for m in re.finditer(r"\.\s", text) if m.end() <= at.start), default=0)
    before = [lab for lab in labels(start, len(text)) if lab[1] <= at.start]
    return before[-1][2] if before else None


def _only_label(text: str, keys: tuple[str, str]) -> str | None:
    """The one label of ``keys`` that ``text`` names (None if it names neither or both)."""
    named = [key for key in keys if re.search(LABELS[key][1], text)]
    return named[0] if len(named) == 1 else None


def _label_of(quoted: _Quoted, at: Number, keys: tuple[str, str]) -> str | None:
    cell = quoted.cell_text(at)
    label = None
    if cell is not None:  # a table cell: its own words, then its column's header, then its row
        label = (nearest_label(cell[0], cell[1], keys) if re.search(r"[a-z]", cell[0]) else None)
        label = label or _only_label(quoted.column(at), keys)
    label = label or nearest_label(quoted.text, at, keys)
    if label is None:  # the pseudo-heading, caption or lead-in above it
        passage = quoted.where.passages[0]
        label = _only_label(passage.lead, keys) or _only_label(passage.headings, keys)
    return label


def _label_reason(path: str, value: Any, quoted: _Quoted, hits: list[Number],
                  strict: bool) -> str | None:
    label = _label_key(path)
    if label is None:
        return None
    keys = (label, _RIVALS[label])
    nearest = {_label_of(quoted, n, keys) for n in hits}
    if label not in nearest and None not in nearest:
        return f"the quote gives {_fmt(value)} as the {LABELS[_RIVALS[label]][0]} rate"
    # An unlabelled rate is fine alone, or beside rates labelled as something else
    # ("the consumption tax is 10 %, with a reduced rate of 8 %"); not in a bare list.
    unlabelled = {n.value for n in quoted.numbers
                  if n.percent and _label_of(quoted, n, keys) is None}
    if label not in nearest and len(unlabelled) > 1:
        return (f"the quote states several rates and does not say which is the "
                f"{LABELS[label][0]} rate")
    if strict and label not in nearest and not (
            label == "vat.standard"
            and any(re.search(TOPIC_WORDS["vat"], quoted.clause(n)) for n in hits)):
        return f"the passage does not say that {_fmt(value)} is the {LABELS[label][0]} rate"
    return None


def _component_reason(path: str, quoted: _Quoted) -> str | None:
    """A social security rate that is one component, where the text states the total."""
    label = _label_key(path)
    if not path.startswith("socialSecurity") or label is None or _TOTAL.search(quoted.text):
        return None
    own = LABELS[label][1]
    for passage in quoted.where.section:
        if passage in quoted.where.passages or not _TOTAL.search(passage.text):
            continue
        named = [passage.text, passage.lead, *(cell.header for cell in passage.cells)]
        if "%" in passage.text and any(re.search(own, text) for text in named):
            return (f"the quote is one component; the text states the total "
                    f"{LABELS[label][0]} rate (\"{passage.text[:60]}\")")
    return None


_TOTAL = re.compile(r"\btotals?\b|\baltogether\b|\bcombined\b|\boverall\b|\bin all\b")


# -- brackets ---------------------------------------------------------------------------------


def _bracket_reason(path: str, quoted: _Quoted, hits: list[Number], bounds: Bounds | None,
                    strict: bool) -> str | None:
    match = re.fullmatch(r"brackets\[(\d+)\]\.(rate|min|max)", path)
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
            for breaks in (_COMMA_BREAKS, _CLAUSE_BREAKS):
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
    clause = _region(text, hit, breaks)
    if not _BALANCE.search(clause):
        return clause
    blank = _blank_parentheses(text)
    cuts = [m for m in breaks.finditer(blank) if m.end() <= hit.start]
    if len(cuts) < 1:
        return clause
    lo = cuts[-2].end() if len(cuts) > 1 else 0
    before = re.sub(r"\d+(?:\.\d+)?%", lambda m: " " * len(m.group(0)),
                    blank[lo:cuts[-1].start()])
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
        return (f"the quote gives {_fmt(named[0].value)} as {article} {wrong} bound: it is "
                f"about {row}")
    for j, marks in enumerate(bounds.marks):
        foreign = [m for m in marks if j != i and not any(same_number(m, o) for o in bounds.own[i])]
        if any(same_number(v, m) for v in values for m in foreign):
            return f"the quote names bracket {j}'s bound: it is about another row"
    # A remark in parentheses ("27 % (12 % bottom tax + 15 % top tax)") is not another rate.
    blank = _blank_parentheses(text)
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
    return " or ".join(_fmt(v) for v in sorted(values))
