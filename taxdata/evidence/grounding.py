"""Grounding: a figure is verified only where the ORIGINAL source text states it.

The taxation file the updater reads is the model's rewrite of an original: a Wikipedia article
revision, a page from the Web Content Extractor, or (a file a person wrote) the file itself. A
quote checked against the rewrite proves only that the rewrite says it; a figure the rewrite got
wrong would pass with a genuine quote. So every figure whose quote passed in the file is then
found in the original (:meth:`Original.ground`), by code and with the same per-figure checks
(taxdata.evidence.quotechecks), at no extra LLM request:

1. the model's own quote, where the original has it (the rewrite copied the sentence);
2. else every passage of the original (sentence, list item, table row) that holds the figure's
   number is checked as if it were the quote, strictly (:func:`~taxdata.evidence.quotechecks.
   check_figure` with ``strict=True``: the label must be stated, a bracket threshold must come
   with its rate); the first that passes is the figure's grounding.

A figure found nowhere is UNSUPPORTED: ``not stated in Taxation in Latvia rev 1234567``. What
is kept for each verified figure (:class:`~taxdata.record.models.Grounding`): the original's own
characters and their offsets, beside the original's identity (URL, revision, sha256), so a
reviewer can show the sentence in its context.

:func:`unstated_figures` is the generators' early warning, run on the rewrite as soon as the
model has written it: the numbers of each tax section that the original does not state under
that tax.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from taxdata.evidence.bracketchecks import Bounds
from taxdata.evidence.instructions import instruction_in
from taxdata.evidence.quotechecks import check_figure
from taxdata.evidence.sourcetext import Passage, Source, numbers_in, same_number, source_of
from taxdata.evidence.taxwords import SYSTEM_WORDS, TAX_FREE, TOPIC_WORDS
from taxdata.record.models import Extraction, Grounding, OriginalRef
from taxdata.store.taxfile import strip_sources

__all__ = ["Original", "Unstated", "sha256_text", "unstated_figures"]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Original:
    """An original source text and what identifies it."""

    text: str
    ref: OriginalRef
    _source: Source | None = field(default=None, repr=False)
    _numbers: list[frozenset[float]] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, text: str, kind: str, label: str, *, url: str | None = None,
           revision: str | None = None, location: str | None = None) -> Original:
        return cls(text, OriginalRef(kind=kind, label=label, url=url, revision=revision,
                                     sha256=sha256_text(text), chars=len(text),
                                     location=location))

    @property
    def source(self) -> Source:
        if self._source is None:  # read once, on first use, by whichever worker needs it
            # A hand-written file is its own original: read without its Sources section it is
            # the very text that was sent (and already read), so the two share one reading.
            self._source = source_of(strip_sources(self.text) if self.ref.kind == "manual"
                                     else self.text)
        return self._source

    def _passage_numbers(self) -> list[frozenset[float]]:
        if self._numbers is None:
            self._numbers = [frozenset(n.value for n in numbers_in(p.text))
                             for p in self.source.passages]
        return self._numbers

    def ground(self, path: str, value: Any, quote: str, extraction: Extraction,
               bounds: Bounds | None, *, checked: bool = False) -> Grounding | str:
        """Where the original states ``path = value`` (see the module docstring), or why not.

        ``checked``: the quote has passed the checks in this very text (a hand-written file is
        its own original), so only where it is remains to be found."""
        if checked:
            found = self.source.find(quote)
            if found:
                return self._grounding(self.source.raw_span(found[0], quote))
        reason, where = check_figure(path, value, quote, self.source, extraction, bounds)
        if reason is None and where is not None:
            return self._grounding(self.source.raw_span(where, quote))
        near = None
        for passage in self._candidates(path, value):
            raw = self.text[passage.start:passage.end]
            reason, where = check_figure(path, value, raw, self.source, extraction, bounds,
                                         strict=True)
            if reason is None and where is not None:
                return self._grounding(self.source.raw_span(where, raw))
            near = near or (raw, reason)
        if path == "system" and value == "progressive":
            table = self._schedule_table()
            if table is not None:  # a table of several rates is a progressive schedule
                return self._grounding(table)
        why = f"not stated in {self.ref.label}"
        if near is not None:
            shown = _fmt(value)
            why += f' (where it says {shown}, "{_cut(near[0])}": {near[1]})'
        return why

    def _schedule_table(self) -> tuple[int, int] | None:
        """The span of the first table of income tax rates with two or more different rates."""
        rows: dict[int, list[Passage]] = {}
        for passage in self.source.passages:
            if passage.table >= 0:
                rows.setdefault(passage.table, []).append(passage)
        for table in rows.values():
            context = " ".join([table[0].context, *(c.header for c in table[-1].cells)])
            rates = {n.value for p in table if not p.header
                     for n in numbers_in(p.text) if n.percent}
            if len(rates) > 1 and TOPIC_WORDS["income"].search(context) and not (
                    TOPIC_WORDS["vat"].search(context) or TOPIC_WORDS["social"].search(context)):
                return table[0].start, table[-1].end
        return None

    def _grounding(self, span: tuple[int, int]) -> Grounding:
        start, end = span
        return Grounding(quote=self.text[start:end], start=start, end=end)

    def _candidates(self, path: str, value: Any) -> list[Passage]:
        passages = self.source.passages
        if path == "system":
            words = SYSTEM_WORDS.get(value)
            return [p for p in passages
                    if words is not None and not p.header and words.search(p.text)]
        numbers = self._passage_numbers()
        found = [p for p, have in zip(passages, numbers)
                 if not p.header and any(same_number(v, value) for v in have)]
        if value == 0 and not path.endswith((".max", ".min")):  # "tax-free", "zero rate"
            found += [p for p in passages if p not in found and TAX_FREE.search(p.text)]
        return found


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _cut(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# --------------------------------------------------------------------------------------------
# The generators' early warning
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unstated:
    """A number of the rewrite that the original does not state under the same tax."""

    value: str  # as the rewrite's normal form writes it, e.g. "25%" or "1000"
    section: str  # the rewrite's heading above it
    passage: str  # the rewrite's words around it

    def describe(self) -> str:
        return f"{self.value} ({self.section})" if self.section else self.value


def _topic_of_context(context: str) -> str | None:
    found = [topic for topic, words in TOPIC_WORDS.items() if words.search(context)]
    return found[-1] if len(found) == 1 else None


def unstated_figures(rewrite: str, original: Original) -> list[Unstated]:
    """The numbers of ``rewrite`` (a taxation file's body) that ``original`` never states under
    the same tax: percentages, and amounts of 10 or more (smaller bare numbers are counts and
    list positions). One entry per number and section."""
    stated: dict[str | None, set[float]] = {topic: set() for topic in TOPIC_WORDS}
    stated[None] = set()
    for passage, numbers in zip(original.source.passages, original._passage_numbers()):
        if instruction_in(passage.text):
            continue  # text that speaks to the model states nothing (evidence.instructions)
        stated[None] |= numbers
        for topic, words in TOPIC_WORDS.items():
            if words.search(passage.context) or words.search(passage.text):
                stated[topic] |= numbers
    found: dict[tuple[str, str], Unstated] = {}
    for passage in Source(strip_sources(rewrite)).passages:
        topic = _topic_of_context(passage.headings)
        for number in numbers_in(passage.text):
            if not number.percent and number.value < 10:
                continue
            have = stated[topic] if topic else stated[None]
            # A bracket's lower bound written as the bound below plus one ("78,101") is stated
            # where the bound is ("over 78,100").
            if any(same_number(number.value, v) or (not number.percent and number.value.is_integer()
                                                    and same_number(number.value - 1, v))
                   for v in have):
                continue
            shown = _fmt(number.value) + ("%" if number.percent else "")
            found.setdefault((shown, passage.section),
                             Unstated(shown, passage.section, _cut(passage.text)))
    return list(found.values())

