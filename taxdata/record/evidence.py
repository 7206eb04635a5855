"""Evidence: code, not the model, checks that each figure is stated by the source text.

The model returns, beside each figure, a short verbatim quote from the source (``Extraction.
evidence``: ``{"field": "vat.standard", "quote": "The standard VAT rate is 21 %"}``).
:func:`check_evidence` verifies every quote and withholds every figure whose quote fails:

1. **found**: the quote occurs in the source text that the model was sent (for a split source:
   in the part that the quote's reply answered), after
   :func:`~taxdata.record.sourcetext.normalise` on both sides
   (whitespace, case, markdown table pipes and emphasis, dashes, non-breaking spaces, ``21 %`` /
   ``21 per cent`` / ``21 percent``, thousands separators ``1,000`` / ``1 000`` / ``1'000`` /
   ``1.000.000``).  It must start and end on word boundaries (``7 %`` is not found in ``17 %``)
   and lie within one table row.
2. **figure**: the figure is one of the quote's numbers, compared as numbers (21 = ``21.0``;
   ``1`` is not found in ``10``; 11604 = ``11,604``), and the quote says more than the bare
   number.
3. **topic**: the quote, or a heading above it, names what the figure is about (VAT, income
   tax, social security); a quote about another tax (corporate, capital gains, ...) that does
   not name the figure's own tax is refused.
4. **label**: where a quote names competing figures (``standard`` and ``reduced`` VAT rates,
   ``employees`` and ``employers``), the label that goes with the figure (in its clause, before
   or after it as the clause is written) must be its own; a bare list of several unlabelled
   rates does not say which one is meant.
5. **bracket**: a bracket figure's quote must single out its bracket: it names the bracket's
   bound (its upper threshold; for the open-ended top bracket its lower one, or the one below
   it: "above 40,000"), not as the wrong end ("up to 40,000" ends a bracket, "above 40,000"
   starts the next, "1,001 - 5,000" is a range), names no other bracket's bound, and states
   only one percentage (a whole schedule in one sentence is not evidence for one row of it).
6. **system**: ``progressive`` needs wording of a schedule (progressive, graduated, brackets,
   bands, ...); ``flat`` needs flat wording (flat, single, one rate, ...) and the flat rate;
   ``zero_personal`` needs a statement that there is none (no, not, zero, exempt, ...).

What is withheld (set to null) when its quote fails: a VAT or social security rate alone; one
reduced VAT rate alone (each is its own fact); the system and the whole bracket list together
when any of them fails (part of a schedule is wrong data, and brackets without their system
cannot be used).  Which figures need a quote: ``system``, ``vat.standard``, each
``vat.reduced[i]``, each ``brackets[i].rate``, each bracket's ``max`` except the open-ended
last one, and the social security rates.  A bracket's ``min`` needs none: the first is 0 and
each later one is tied to the previous ``max`` by validation.  A zero_personal system's quote
covers its zero-rate brackets.

No tax facts live here: only words that say what a figure is, never a rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from taxdata.record.models import Extraction
from taxdata.record.sourcetext import (
    NUMBER,
    ROW_BREAK,
    Number,
    Source,
    find_quote,
    normalise_quote,
    numbers_in,
    same_number,
)

__all__ = ["Quote", "Unsupported", "EvidenceCheck", "check_evidence", "required_paths"]

# --------------------------------------------------------------------------------------------
# What a quote must say, by field
# --------------------------------------------------------------------------------------------

_TOPIC_WORDS = {
    "vat": r"\bvat\b|\bgst\b|value[- ]added|goods and services|sales tax|consumption tax|"
           r"turnover tax",
    "income": r"income|salar|wage|earning|bracket|\bbands?\b|\bslabs?\b|personal|individual|"
              r"\bpit\b",
    "social": r"social|insurance|pension|contribution|payroll|employee|employer|health|"
              r"unemployment",
}
# Another tax named without the figure's own: e.g. "corporate tax is 25 %" as a VAT rate.
_OTHER_TAX = re.compile(r"corporat|compan|capital gain|dividend|withholding|property|"
                        r"inheritance|excise|customs|stamp duty|\bcit\b")
_OWN_WORDS_OVER_OTHER = {
    "vat": _TOPIC_WORDS["vat"],
    "income": r"personal|individual|salar|wage|employment|\bpit\b",
    "social": _TOPIC_WORDS["social"],
}
# Labels that tell apart figures of one topic: the one nearest to the figure must be its own.
_LABELS = {
    "vat.standard": ("standard", r"\bstandard|\bgeneral\b|\bnormal\b|\bbasic\b|\bmain\b"),
    "vat.reduced": ("reduced", r"\breduced|\blower\b|zero[- ]rated|\bpreferential"),
    "socialSecurity.employeeRate": ("employee", r"employees?\b|workers?\b"),
    "socialSecurity.employerRate": ("employer", r"employers?\b"),
}
_RIVALS = {"vat.standard": "vat.reduced", "vat.reduced": "vat.standard",
           "socialSecurity.employeeRate": "socialSecurity.employerRate",
           "socialSecurity.employerRate": "socialSecurity.employeeRate"}
_SYSTEM_WORDS = {
    "progressive": r"progressive|graduated|bracket|\bbands?\b|slab|scale|schedule|marginal|"
                   r"\btiers?\b|several rates",
    "flat": r"\bflat\b|single rate|one rate|same rate|uniform|proportional|all income|"
            r"regardless",
    # "Nil" has become "0" by now: "personal income tax: nil" ends in a 0.
    "zero_personal": r"\bno\b|\bnot\b|\bnone\b|\bzero\b|exempt|\bfree\b|abolished|"
                     r"\b0%|\b0$",
}


def _topic(path: str) -> str:
    if path.startswith("vat"):
        return "vat"
    if path.startswith("socialSecurity"):
        return "social"
    return "income"


def _label_key(path: str) -> str | None:
    key = re.sub(r"\[\d+\]$", "", path)
    return key if key in _LABELS else None


_CLAUSE_BREAKS = (re.compile(r"[,;]| and | while | whereas | but "), re.compile(r"[,;]"))


def _nearest_label(text: str, at: Number, keys: tuple[str, str]) -> str | None:
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
                      for m in re.finditer(_LABELS[key][1], text[start:stop]))

    for breaks in _CLAUSE_BREAKS:
        cuts = list(breaks.finditer(text))
        lo = max((m.end() for m in cuts if m.end() <= at.start), default=0)
        hi = min((m.start() for m in cuts if m.start() >= at.end), default=len(text))
        found = labels(lo, hi)
        if not found:
            continue
        first_number = min(n.start for n in numbers_in(text[lo:hi])) + lo
        after = [lab for lab in found if lab[0] >= at.end]
        before = [lab for lab in found if lab[1] <= at.start]
        if first_number < found[0][0] and after:
            return after[0][2]
        return (before[-1] if before else after[0])[2]
    before = [lab for lab in labels(0, len(text)) if lab[1] <= at.start]
    return before[-1][2] if before else None


@dataclass(frozen=True)
class _Bounds:
    """What identifies each bracket in a quote: its own bound numbers and every bracket's."""

    own: list[set[float]]  # per bracket: numbers a quote of it may name
    marks: list[set[float]]  # per bracket: the numbers that single it out

    @classmethod
    def of(cls, brackets: list[Any]) -> _Bounds:
        own, marks = [], []
        last = len(brackets) - 1
        for i, b in enumerate(brackets):
            mine = {b.min, b.rate} | ({b.max} if b.max is not None else set())
            if i:
                mine.add(b.min - 1)  # "above 40,000" for a bracket starting at 40,001
            own.append(mine)
            marks.append({b.max} if i != last else {b.min, b.min - 1})
        return cls(own, marks)


# --------------------------------------------------------------------------------------------
# Checking one figure
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """One quote the model gave, with the source text it must be found in."""

    field: str
    quote: str
    source: Source


@dataclass(frozen=True)
class Unsupported:
    """A figure that is not written: its value, the quote the model gave, and why it failed."""

    path: str
    value: Any
    quote: str | None
    reason: str
    withheld: bool = False  # its quote may be fine: it goes with a figure whose quote is not

    def report(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 19, as the records write it, not 19.0
        return {"path": self.path, "value": value, "quote": self.quote,
                "reason": self.reason, "withheld": self.withheld}


def _figure_reason(path: str, value: Any, quote: str, source: Source,
                   extraction: Extraction, bounds: _Bounds | None) -> str | None:
    """Why ``quote`` does not support ``path = value``, or None when it does.

    The checks run in order, the first that fails gives the reason: found in the source, the
    figure in the quote, the topic, the label, the bracket's own row.
    """
    text = normalise_quote(quote)
    if ROW_BREAK in text:
        return "the quote spans several table rows"
    sections = find_quote(source, quote)
    if not sections:
        return "the quote is not in the source text"
    numbers = numbers_in(text)
    hits = [n for n in numbers if same_number(n.value, value)] if path != "system" else []
    return (_figure_in_quote(path, value, text, numbers, hits, extraction)
            or _topic_reason(path, text, sections)
            or _label_reason(path, value, text, numbers, hits)
            or _bracket_reason(path, text, numbers, bounds))


def _figure_in_quote(path: str, value: Any, text: str, numbers: list[Number],
                     hits: list[Number], extraction: Extraction) -> str | None:
    if path == "system":
        if not re.search(_SYSTEM_WORDS[value], text):
            return f"the quote does not say the system is {value}"
        if value == "flat":
            rate = (extraction.brackets or [None])[0]
            if rate is not None and not any(same_number(n.value, rate.rate) for n in numbers):
                return f"the quote does not state the flat rate {_fmt(rate.rate)}"
        return None
    if not hits:
        return f"{_fmt(value)} is not a number in the quote"
    if len(numbers) < 2 and not re.sub(r"[\W_]+", "", NUMBER.sub("", text)):
        return "the quote is only the number; it must say what the number is"
    return None


def _topic_reason(path: str, text: str, sections: list[str]) -> str | None:
    topic = _topic(path)
    if _OTHER_TAX.search(text) and not re.search(_OWN_WORDS_OVER_OTHER[topic], text):
        return f"the quote is about another tax, not {_TOPIC_NAMES[topic]}"
    if not any(re.search(_TOPIC_WORDS[topic], where) for where in [text, *sections]):
        return f"neither the quote nor its section heading is about {_TOPIC_NAMES[topic]}"
    return None


def _label_reason(path: str, value: Any, text: str, numbers: list[Number],
                  hits: list[Number]) -> str | None:
    label = _label_key(path)
    if label is None:
        return None
    keys = (label, _RIVALS[label])
    nearest = {_nearest_label(text, n, keys) for n in hits}
    if label not in nearest and None not in nearest:
        return f"the quote gives {_fmt(value)} as the {_LABELS[_RIVALS[label]][0]} rate"
    # An unlabelled rate is fine alone, or beside rates labelled as something else
    # ("the consumption tax is 10 %, with a reduced rate of 8 %"); not in a bare list.
    unlabelled = {n.value for n in numbers
                  if n.percent and _nearest_label(text, n, keys) is None}
    if label not in nearest and len(unlabelled) > 1:
        return (f"the quote states several rates and does not say which is the "
                f"{_LABELS[label][0]} rate")
    return None


def _bracket_reason(path: str, text: str, numbers: list[Number],
                    bounds: _Bounds | None) -> str | None:
    match = re.fullmatch(r"brackets\[(\d+)\]\.(rate|min|max)", path)
    if not match or bounds is None or len(bounds.own) <= 1:
        return None
    i = int(match.group(1))
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
    if len({n.value for n in numbers if n.percent}) > 1:
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


_TOPIC_NAMES = {"vat": "VAT", "income": "income tax", "social": "social security"}


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fmt_set(values: set[float]) -> str:
    return " or ".join(_fmt(v) for v in sorted(values))


# --------------------------------------------------------------------------------------------
# Checking a whole extraction
# --------------------------------------------------------------------------------------------


def required_paths(extraction: Extraction) -> dict[str, Any]:
    """The figures that need a verified quote, path -> value (see the module docstring)."""
    paths: dict[str, Any] = {}
    if extraction.system is not None:
        paths["system"] = extraction.system
    if extraction.brackets and extraction.system != "zero_personal":
        for i, b in enumerate(extraction.brackets):
            paths[f"brackets[{i}].rate"] = b.rate
            if b.max is not None:
                paths[f"brackets[{i}].max"] = b.max
    vat = extraction.vat
    if vat is not None:
        if vat.standard is not None:
            paths["vat.standard"] = vat.standard
        for i, rate in enumerate(vat.reduced):
            paths[f"vat.reduced[{i}]"] = rate
    ss = extraction.socialSecurity
    if ss is not None:
        for key in ("employeeRate", "employerRate"):
            if getattr(ss, key) is not None:
                paths[f"socialSecurity.{key}"] = getattr(ss, key)
    return paths


def _optional_paths(extraction: Extraction) -> dict[str, Any]:
    """Figures that may carry a quote but need none (bracket lower bounds)."""
    if not extraction.brackets or extraction.system == "zero_personal":
        return {}
    return {f"brackets[{i}].min": b.min for i, b in enumerate(extraction.brackets)}


@dataclass
class EvidenceCheck:
    """Result of :func:`check_evidence`."""

    extraction: Extraction  # the figures that may be written (unsupported ones are null)
    verified: dict[str, str] = field(default_factory=dict)  # path -> the quote, as given
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # quotes that were given but not needed
    key_figures: set[str] = field(default_factory=set)  # "vat.standard" / "income" if given

    @property
    def failed(self) -> str | None:
        """Why the record must not be written (all its key figures unsupported), else None."""
        key = [p for p in ("vat.standard", "income") if p in self.key_figures]
        held = {u.path for u in self.unsupported}
        lost = [p for p in key if (p == "income" and any(_is_income(h) for h in held))
                or p in held]
        if key and len(lost) == len(key):
            return ("no key figure is supported by a verified quote ("
                    + "; ".join(f"{u.path}: {u.reason}" for u in self.unsupported[:3])
                    + (" ..." if len(self.unsupported) > 3 else "") + "); previous record kept")
        return None


def _is_income(path: str) -> bool:
    return path == "system" or path.startswith("brackets")


def _field_path(field_name: str) -> str:
    # "brackets.1.rate" and "brackets[1].rate" name the same figure.
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", field_name.strip().replace(" ", ""))


def check_evidence(extraction: Extraction, quotes: list[Quote]) -> EvidenceCheck:
    """Verify each figure's quotes; return the extraction with unsupported figures set to null.

    ``quotes`` are the model's evidence entries, each with the source text it must occur in.
    A figure is supported when any of its quotes passes every check; the first such quote is
    kept.  The reason reported for an unsupported figure is that of its first quote.
    """
    by_path: dict[str, list[Quote]] = {}
    for quote in quotes:
        by_path.setdefault(_field_path(quote.field), []).append(quote)
    bounds = _Bounds.of(extraction.brackets) if extraction.brackets else None

    result = EvidenceCheck(extraction)
    required = required_paths(extraction)
    failures: dict[str, Unsupported] = {}
    for path, value in {**required, **_optional_paths(extraction)}.items():
        reasons: list[str] = []
        for quote in by_path.get(path, []):
            reason = _figure_reason(path, value, quote.quote, quote.source, extraction, bounds)
            if reason is None:
                result.verified[path] = quote.quote
                break
            reasons.append(reason)
        else:
            given = by_path.get(path)
            failure = Unsupported(path, value, given[0].quote if given else None,
                                  reasons[0] if reasons else "no quote given")
            if path in required:
                failures[path] = failure
            elif given:
                result.notes.append(f"{path}: quote not verified ({failure.reason}); "
                                    "the figure is kept (it follows from the bracket above)")
    result.key_figures = {"vat.standard"} if "vat.standard" in required else set()
    if any(_is_income(p) for p in required):
        result.key_figures.add("income")

    update: dict[str, Any] = {}
    unsupported = list(failures.values())
    if any(_is_income(p) for p in failures):
        # Brackets are written whole or not at all, and never without their system.
        for path in [p for p in required if _is_income(p) and p not in failures]:
            unsupported.append(Unsupported(
                path, required[path], result.verified.pop(path, None),
                "withheld with the rest of the income tax schedule (an unsupported bracket "
                "figure or system withholds them all)", withheld=True))
        for path in [p for p in result.verified if p.startswith("brackets")]:
            result.verified.pop(path)
        update["system"] = None
        update["brackets"] = None
    vat = extraction.vat
    if vat is not None and any(p.startswith("vat.") for p in failures):
        update["vat"] = vat.model_copy(update={
            "standard": None if "vat.standard" in failures else vat.standard,
            "reduced": [r for i, r in enumerate(vat.reduced)
                        if f"vat.reduced[{i}]" not in failures]})
        # Keep the verified quotes' indices pointing at the rates that are still written.
        kept = [i for i in range(len(vat.reduced)) if f"vat.reduced[{i}]" not in failures]
        for new, old in enumerate(kept):
            quote = result.verified.pop(f"vat.reduced[{old}]", None)
            if quote is not None:
                result.verified[f"vat.reduced[{new}]"] = quote
    ss = extraction.socialSecurity
    if ss is not None and any(p.startswith("socialSecurity.") for p in failures):
        update["socialSecurity"] = ss.model_copy(update={
            k: None for k in ("employeeRate", "employerRate")
            if f"socialSecurity.{k}" in failures})
    order = list(required)
    # The figures whose own quote failed first, then those withheld with them.
    result.unsupported = sorted(unsupported, key=lambda u: (u.withheld, order.index(u.path)))
    result.extraction = extraction.model_copy(update=update)
    return result
