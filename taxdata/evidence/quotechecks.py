"""The checks one quote must pass to support one figure (:mod:`taxdata.evidence.check` runs them).

:func:`figure_reason` says why a quote does not support ``path = value`` in a source (None when
it does). In order, the first failing check gives the reason:

1. **found**: the quote occurs in the source (:meth:`~taxdata.evidence.sourcetext.Source.find`),
   within one table row.
   **instruction** (:mod:`taxdata.evidence.instructions`): neither the quote nor the passage it
   is in nor the one beside it reads as an instruction to the model (a source is data).
2. **figure**: the figure is one of the quote's numbers, compared as numbers, and the quote says
   more than the bare number (a 0 % rate may be worded: "tax-free", "exempt", "nil").
3. **example**: the quote is not from a worked example (computed amounts are not rates).
4. **topic**: the quote, its headings (``#`` headings, bold pseudo-headings), its table's caption
   or the header of the figure's column names the figure's tax; a quote about another tax
   (corporate, capital gains, excise, ...) that does not name the figure's own is refused.
5. **qualifiers**, in the figure's own clause (:mod:`taxdata.evidence.clauses`): not another
   tax's rate (an excise named beside the VAT), not a local or provincial rate or a total
   including local taxes or surcharges (for income tax and VAT), not an average, approximation,
   effective rate or share of revenue, not a rate stated as history ("until 2008", "was",
   "previously", the "from" of a change), not one end of a range of rates, and, for bracket
   thresholds, not a monthly or weekly amount.
6. **label**: where competing figures are named (``standard``/``reduced``, ``employees``/
   ``employers``), the label that goes with the figure must be its own: the one in its table
   cell, else its column's header, else the nearest in its clause, else the pseudo-heading or
   lead-in above it; a bare list of unlabelled rates does not say which one is meant.
7. **component**: a social security rate that is one component where the text states the total
   ("| Pension | 9.3 % |" beside "| Total | 20.45 % |") is not the total.
8. **bracket** (:mod:`taxdata.evidence.bracketchecks`): a bracket figure's quote, or the clause of
   it that holds the figure, names the bracket's bound in the right direction, no other
   bracket's bound, and one rate only.
9. **system**: wording of a schedule (progressive), of one rate for all income (flat), or of no
   personal income tax (zero_personal).

``strict=True`` is for passages code picked itself (grounding a figure in the original text,
:mod:`taxdata.evidence.grounding`), where no model vouched for the passage: a rate's label must be
stated (an unlabelled VAT rate only in a clause that names the VAT), and a bracket threshold must
come with its bracket's rate.

No tax facts live here: only words that say what a figure is, never a rate.
"""

from __future__ import annotations

import re
from typing import Any

from taxdata.evidence.bracketchecks import Bounds, bracket_reason
from taxdata.evidence.clauses import (
    CLAUSE_BREAKS,
    COMMA_BREAKS,
    Quoted,
    between_breaks,
    is_example,
    qualifier_reason,
)
from taxdata.evidence.instructions import instruction_reason, occurrence_reason
from taxdata.evidence.sourcetext import (
    NUMBER,
    ROW_BREAK,
    Number,
    Occurrence,
    Source,
    normalise_quote,
    numbers_in,
    same_number,
)
from taxdata.evidence.taxwords import (
    FLAT_SCOPE,
    LABELS,
    OTHER_TAX,
    OWN_WORDS_OVER_OTHER,
    RIVALS,
    SYSTEM_WORDS,
    TAX_FREE,
    TOPIC_NAMES,
    TOPIC_WORDS,
    ZERO_STRICT,
    fmt,
    label_key,
    topic_of,
)
from taxdata.record.models import Extraction

__all__ = ["Bounds", "check_figure", "figure_reason", "nearest_label", "LABELS"]


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
    injected = instruction_reason(quote)
    if injected:
        return injected, None
    numbers = numbers_in(text)
    hits = _hits(path, value, text, numbers)
    reason = _figure_in_quote(path, value, text, numbers, hits, extraction, strict)
    if reason:
        return reason, None
    first = None
    for where in occurrences:
        quoted = Quoted(text, numbers, where)
        reason = (occurrence_reason(text, where)
                  or _reason_at(path, value, quoted, hits, extraction, bounds, strict))
        if reason is None:
            return None, where
        first = first or reason
    return first, None



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
        words = ZERO_STRICT if strict and value == "zero_personal" else SYSTEM_WORDS[value]
        if not words.search(text):
            return f"the quote does not say the system is {value}"
        if value == "flat" and not FLAT_SCOPE.search(text):
            # "a flat fee", "bonuses are taxed at a flat 6 %": not the income tax as a whole.
            rate = (extraction.brackets or [None])[0]
            if rate is not None and not any(same_number(n.value, rate.rate) for n in numbers):
                return f"the quote does not state the flat rate {fmt(rate.rate)}"
            return "the quote does not say that one rate applies to all income"
        return None
    if not hits:
        return f"{fmt(value)} is not a number in the quote"
    if len(numbers) < 2 and not re.sub(r"[\W_]+", "", NUMBER.sub("", text)):
        return "the quote is only the number; it must say what the number is"
    return None


def _reason_at(path: str, value: Any, quoted: Quoted, hits: list[Number],
               extraction: Extraction, bounds: Bounds | None, strict: bool) -> str | None:
    if is_example(quoted.where):
        return "the quote is from a worked example (computed amounts), not a statement of a rate"
    reason = _topic_reason(path, quoted, hits)
    if reason:
        return reason
    if path == "system":
        return None
    reasons = [(qualifier_reason(path, value, quoted, hit), hit) for hit in hits]
    good = [hit for reason, hit in reasons if reason is None]
    if not good:
        return reasons[0][0]
    return (_label_reason(path, value, quoted, good, strict)
            or _component_reason(path, quoted)
            or bracket_reason(path, quoted, good, bounds, strict))


def _topic_reason(path: str, quoted: Quoted, hits: list[Number]) -> str | None:
    topic, text = topic_of(path), quoted.text
    if OTHER_TAX.search(text) and not OWN_WORDS_OVER_OTHER[topic].search(text):
        return f"the quote is about another tax, not {TOPIC_NAMES[topic]}"
    places = [text, quoted.where.context, *(quoted.column(h) for h in hits)]
    if not any(TOPIC_WORDS[topic].search(where) for where in places):
        return f"neither the quote nor its section heading is about {TOPIC_NAMES[topic]}"
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
                      for m in LABELS[key][1].finditer(text[start:stop]))

    for breaks in (CLAUSE_BREAKS, COMMA_BREAKS):
        lo, hi = between_breaks(text, at, breaks)
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
    named = [key for key in keys if LABELS[key][1].search(text)]
    return named[0] if len(named) == 1 else None


def _label_of(quoted: Quoted, at: Number, keys: tuple[str, str]) -> str | None:
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


def _label_reason(path: str, value: Any, quoted: Quoted, hits: list[Number],
                  strict: bool) -> str | None:
    label = label_key(path)
    if label is None:
        return None
    keys = (label, RIVALS[label])
    # Each number's label, found once (the hits are among the quote's rates).
    labels = {n: _label_of(quoted, n, keys)
              for n in (*hits, *(n for n in quoted.numbers if n.percent))}
    nearest = {labels[n] for n in hits}
    if label not in nearest and None not in nearest:
        return f"the quote gives {fmt(value)} as the {LABELS[RIVALS[label]][0]} rate"
    # An unlabelled rate is fine alone, or beside rates labelled as something else
    # ("the consumption tax is 10 %, with a reduced rate of 8 %"); not in a bare list.
    # (A rate its own clause disqualifies, "from 19 %" of a change, is no rival.)
    unlabelled = {n.value for n in quoted.numbers
                  if n.percent and labels[n] is None
                  and qualifier_reason(path, n.value, quoted, n) is None}
    if label not in nearest and len(unlabelled) > 1:
        return (f"the quote states several rates and does not say which is the "
                f"{LABELS[label][0]} rate")
    if strict and label not in nearest and not (
            label == "vat.standard"
            and any(TOPIC_WORDS["vat"].search(quoted.clause(n)) for n in hits)):
        return f"the passage does not say that {fmt(value)} is the {LABELS[label][0]} rate"
    return None


def _component_reason(path: str, quoted: Quoted) -> str | None:
    """A social security rate that is one component, where the text states the total."""
    label = label_key(path)
    if not path.startswith("socialSecurity") or label is None or _TOTAL.search(quoted.text):
        return None
    own = LABELS[label][1]
    for passage in quoted.where.section:
        if passage in quoted.where.passages or not _TOTAL.search(passage.text):
            continue
        named = [passage.text, passage.lead, *(cell.header for cell in passage.cells)]
        if "%" in passage.text and any(own.search(text) for text in named):
            return (f"the quote is one component; the text states the total "
                    f"{LABELS[label][0]} rate (\"{passage.text[:60]}\")")
    return None


_TOTAL = re.compile(r"\btotals?\b|\baltogether\b|\bcombined\b|\boverall\b|\bin all\b")


# -- brackets ---------------------------------------------------------------------------------
