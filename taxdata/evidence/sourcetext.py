"""Source text prepared for quote look-ups: the layout of a text (headings, bold pseudo-headings,
captions, table columns, sentences), in the normal form of :mod:`taxdata.evidence.normalform`
(whose names are re-exported here).

:class:`Source` reads a text as the passages a quote may come from (sentences, list items, table
rows), each with the raw character span it has in the text and its context: the headings above
it (markdown ``#`` headings and bold pseudo-headings such as ``**Personal Income Tax:**``), the
caption or lead-in line of its table or list, and, for a table row, the header of each cell's
column. :meth:`Source.find` says where a quote occurs, on word boundaries, and
:meth:`Source.raw_span` which characters of the original text it is.
:mod:`taxdata.evidence.quotechecks` builds the per-figure checks on these.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, field

from taxdata.evidence.normalform import (
    NUMBER,
    ROW_BREAK,
    Number,
    is_row,
    normalise,
    normalise_cell,
    normalise_quote,
    numbers_in,
    same_number,
)

__all__ = ["ROW_BREAK", "NUMBER", "Number", "Cell", "Passage", "Occurrence", "Source",
           "normalise", "normalise_quote", "numbers_in", "same_number", "find_quote", "source_of"]


# --------------------------------------------------------------------------------------------
# The layout of a source: passages with their raw spans and context
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One cell of a table row: its span in the row's normalised text, its column's header."""

    start: int
    end: int
    header: str


@dataclass(frozen=True)
class Passage:
    """A sentence, list item or table row of a source, normalised, with where it is and what it
    is under."""

    start: int  # raw span in Source.text
    end: int
    text: str  # normalised
    headings: str  # normalised "#" headings above it and its bold pseudo-heading, " / "-joined
    lead: str = ""  # normalised caption of its table, lead-in line of its list, lead of its line
    cells: tuple[Cell, ...] = ()  # table rows only
    header: bool = False  # a table's header row
    table: int = -1  # which table of the source the row is in (-1: not a row)
    section: str = ""  # the "#" heading it is under, as the text writes it
    # Its headings and lead joined, read by every check of every quote in the passage: joined
    # once, at creation. (Not a functools.cached_property: on Python 3.11 its first read of any
    # instance takes one lock shared by all instances, which the worker threads queue on.)
    context: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "context",
                           " / ".join(part for part in (self.headings, self.lead) if part))

    def cell_at(self, position: int) -> Cell | None:
        """The cell holding ``position`` of :attr:`text`, for table rows."""
        return next((c for c in self.cells if c.start <= position < c.end), None)


@dataclass(frozen=True)
class Occurrence:
    """Where a quote occurs: the passages it overlaps, and where it starts in the first."""

    passages: tuple[Passage, ...]
    offset: int  # start of the quote in passages[0].text
    length: int  # of the normalised quote
    section: tuple[Passage, ...] = ()  # every passage of the section it is in
    context: str = field(init=False, repr=False, compare=False, default="")  # as Passage's

    def __post_init__(self) -> None:
        object.__setattr__(self, "context", " / ".join(
            dict.fromkeys(p.context for p in self.passages if p.context)))

    @property
    def row(self) -> Passage | None:
        """The table row holding the whole quote, if it lies within one."""
        first = self.passages[0]
        return first if len(self.passages) == 1 and first.cells else None


@dataclass
class _Section:
    """The text between two ``#`` headings: its passages' texts joined, where quotes are
    searched (a quote may run from one sentence or line into the next, not into a new row)."""

    text: str = ""
    starts: list[int] = field(default_factory=list)  # where each passage starts in text
    passages: list[Passage] = field(default_factory=list)

    def add(self, passage: Passage, joiner: str) -> None:
        if self.passages:
            self.text += joiner
        self.starts.append(len(self.text))
        self.passages.append(passage)
        self.text += passage.text


_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_SEPARATOR = re.compile(r"^\s*\|?(?:\s*:?-{2,}:?\s*\|)+\s*(?::?-{2,}:?\s*)?$")
_BULLET = re.compile(r"^(\s*)(?:[-*+\u2022]|\d{1,2}[.)])\s+")
# A line that is all emphasis ("**Personal Income Tax:**"): a heading of its own. (A list item
# that is all emphasis, "- **Reduced rates:**", heads only the items below it.)
_PSEUDO = re.compile(r"^\s*(\*\*|__)([^*_\n]+?)\1\s*:?\s*$")
# A line's lead: "**VAT:** The standard rate ..." or "Standard rate: 21 %".
_LEAD = re.compile(r"^\s*(?:(?:[-*+\u2022]|\d{1,2}[.)])\s+)?(?:(\*\*|__)([^*_\n]{1,60}?)\1"
                   r"|([^\d|:*\n]{2,50}?):)\s*\S")
_EMPHASISED = re.compile(r"^\s*[*_]+[^*_].*[*_]+\s*$")
# Sentence ends: ". " before a capital, digit, symbol or quote; not after an abbreviation.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[*€$£¥₹])")
_ABBREVIATION = re.compile(r"(?:\b(?:e\.g|i\.e|etc|approx|incl|excl|no|nos|art|arts|cf|vs|"
                           r"para|sec|ca|p|pp|fig|resp|min|max|st|jan|feb|mar|apr|jun|jul|aug|"
                           r"sep|sept|oct|nov|dec|mr|ms|dr|co|corp|ltd|inc)|\b[a-z])\.$",
                           re.IGNORECASE)


def _cells(line: str) -> list[tuple[int, int]]:
    """Raw spans of a table row's cells (unescaped ``|`` separate them)."""
    bars = [m.start() for m in re.finditer(r"(?<!\\)\|", line)]
    if not bars:
        return [(0, len(line))]
    spans = list(zip(bars, bars[1:]))
    if line[:bars[0]].strip():
        spans.insert(0, (-1, bars[0]))
    if line[bars[-1] + 1:].strip():
        spans.append((bars[-1], len(line)))
    return [(a + 1, b) for a, b in spans]


def _sentences(line: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(line):
        if _ABBREVIATION.search(line[start:match.start()]):
            continue
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(line)))
    out = []
    for a, b in spans:  # without the whitespace around each sentence
        text = line[a:b]
        if text.strip():
            out.append((a + len(text) - len(text.lstrip()), b - len(text) + len(text.rstrip())))
    return out


class Source:
    """A source text read as passages (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.passages: list[Passage] = []
        self.tables = 0  # how many tables the text has
        self._heading = ""  # the "#" heading being read
        self._sections: list[_Section] = [_Section()]
        # find()'s answers: a quote is looked up by each check that reads it (the figure's,
        # then its grounding in the same text when a person wrote it).
        self._found: dict[str, tuple[Occurrence, ...]] = {}
        self._read()

    # -- reading ---------------------------------------------------------------------------
    def _read(self) -> None:
        lines, offset = [], 0
        for raw in self.text.splitlines(keepends=True):
            lines.append((offset, raw.rstrip("\r\n")))
            offset += len(raw)
        chain: dict[int, str] = {}
        pseudo = ""  # the bold pseudo-heading in force
        lead, lead_followed = "", False  # a lead-in line ("Reduced rates:") for the next block
        header: list[str] | None = None  # the current table's column headers (None: no table)
        caption = ""  # the current table's caption
        previous = ""  # the previous non-blank line of this block or the one before
        items: list[tuple[int, str]] = []  # (indent, text) of list items ending in ":"
        for index, (start, line) in enumerate(lines):
            if not line.strip():
                if lead and lead_followed:
                    lead = ""
                header = None
                continue
            heading = _HEADING.match(line)
            if heading:
                level = len(heading.group(1))
                chain = {k: v for k, v in chain.items() if k < level}
                chain[level] = normalise(heading.group(2))
                self._heading = heading.group(2).strip()
                pseudo, lead, items, header, previous = "", "", [], None, ""
                self._sections.append(_Section())
                continue
            if lead:
                lead_followed = True
            pseudo_match = _PSEUDO.match(line)
            if pseudo_match and not is_row(line):
                pseudo = normalise(pseudo_match.group(2)).rstrip(" :")
                lead, items, previous = "", [], line
                continue
            headings = " / ".join([*chain.values(), *([pseudo] if pseudo else [])])
            if is_row(line):
                if _SEPARATOR.match(line):
                    continue
                first = header is None
                if first:  # a new table: its caption; its first row heads it if a separator
                    caption, header = lead or self._caption(previous), []  # row follows
                    self.tables += 1
                following = lines[index + 1][1] if index + 1 < len(lines) else ""
                self._row(start, line, headings, caption, header,
                          is_header=first and bool(_SEPARATOR.match(following)))
                previous = line
                continue
            header = None
            bullet = _BULLET.match(line)
            indent = len(bullet.group(1)) if bullet else -1
            items = [(i, t) for i, t in items if i < indent] if bullet else []
            block_lead = " / ".join(part for part in [lead, *(t for _, t in items)] if part)
            self._prose(start, line, headings, block_lead)
            stripped = line.strip().rstrip("*_ ")
            if stripped.endswith(":") and len(stripped) <= 100:
                text = normalise(_BULLET.sub("", line)).rstrip(" :")
                if bullet:
                    items.append((indent, text))
                else:
                    lead, lead_followed = text, False
            previous = line

    @staticmethod
    def _caption(line: str) -> str:
        """A table's caption: the line just above it if it reads like one."""
        text = line.strip()
        if not text or _BULLET.match(line) or is_row(line):
            return ""
        if (text.endswith(":") or _EMPHASISED.match(text)
                or (len(text) <= 120 and not text.endswith((".", "!", "?")))):
            return normalise(text).rstrip(" :")
        return ""

    def _row(self, start: int, line: str, headings: str, caption: str, header: list[str],
             is_header: bool) -> None:
        spans = _cells(line)
        texts = [normalise_cell(line[a:b]) for a, b in spans]
        if is_header:
            header[:] = texts
        cells, parts, at = [], [], 0
        for i, text in enumerate(texts):
            if not text:
                continue
            if parts:
                at += 1
            column = header[i] if i < len(header) and not is_header else ""
            cells.append(Cell(at, at + len(text), column))
            parts.append(text)
            at += len(text)
        if not parts:
            return
        indent = len(line) - len(line.lstrip())
        passage = Passage(start + indent, start + len(line.rstrip()), " ".join(parts),
                          headings, caption, tuple(cells), is_header, self.tables - 1,
                          self._heading)
        section = self._sections[-1]
        follows_row = bool(section.passages) and bool(section.passages[-1].cells)
        self._add(passage, f" {ROW_BREAK} " if follows_row and not is_header else " ")

    def _prose(self, start: int, line: str, headings: str, block_lead: str) -> None:
        lead_match = _LEAD.match(line)
        line_lead = ""
        if lead_match:
            line_lead = normalise(lead_match.group(2) or lead_match.group(3) or "").rstrip(" :")
        lead = " / ".join(part for part in (block_lead, line_lead) if part)
        for a, b in _sentences(line):
            text = normalise(line[a:b])
            if text:
                self._add(Passage(start + a, start + b, text, headings, lead,
                                  section=self._heading), " ")

    def _add(self, passage: Passage, joiner: str) -> None:
        self.passages.append(passage)
        self._sections[-1].add(passage, joiner)

    # -- looking up ------------------------------------------------------------------------
    def find(self, quote: str) -> list[Occurrence]:
        """Every place the (normalised) quote occurs, on word boundaries; [] if none."""
        known = self._found.get(quote)
        if known is not None:
            return list(known)
        wanted = normalise_quote(quote)
        if not wanted:
            return []
        found = []
        for section in self._sections:
            for at in _occurrences(wanted, section.text):
                first = bisect.bisect_right(section.starts, at) - 1
                last = bisect.bisect_left(section.starts, at + len(wanted)) - 1
                passages = tuple(section.passages[first:last + 1])
                found.append(Occurrence(passages, at - section.starts[first], len(wanted),
                                        tuple(section.passages)))
        if len(self._found) < _FOUND_KEPT:  # threads may race to add one: the same answer
            self._found[quote] = tuple(found)
        return found

    def raw_span(self, occurrence: Occurrence, quote: str) -> tuple[int, int]:
        """The characters of :attr:`text` that ``quote`` is, at ``occurrence``: the exact text
        when the quote is verbatim, else the fewest whole words whose normal form holds it."""
        lo, hi = occurrence.passages[0].start, occurrence.passages[-1].end
        window = self.text[lo:hi]
        exact = quote.strip().strip("\"'\u201c\u201d").strip()
        at = window.find(exact) if exact else -1
        if at != -1:  # verbatim (most quotes): no words to weigh
            return lo + at, lo + at + len(exact)
        wanted = normalise_quote(quote)
        words = [m.span() for m in re.finditer(r"\S+", window)]

        def holds(a: int, b: int) -> bool:
            return bool(_occurrences(wanted, normalise(window[words[a][0]:words[b][1]])))

        last = len(words) - 1
        if last < 0 or not holds(0, last):  # cannot happen for a found quote; be safe
            return lo, hi
        low, high = 0, last  # the last first word that still holds the quote (monotone)
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if holds(middle, last) else (low, middle - 1)
        first = low
        low, high = first, last  # the first last word that still holds it
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if holds(first, middle) else (middle + 1, high)
        return lo + words[first][0], lo + words[low][1]


_FOUND_KEPT = 4096  # quotes whose places a Source keeps (a long article's, many times over)


@functools.lru_cache(maxsize=32)
def source_of(text: str) -> Source:
    """The :class:`Source` of ``text``, read once: a taxation file is read both as the text the
    model was sent and, when a person wrote it, as its own original (a Source is never changed
    once read, so threads share it)."""
    return Source(text)


def _occurrences(quote: str, text: str) -> list[int]:
    """Where ``quote`` occurs in ``text``, not starting or ending inside a word or number: a
    quote that does is a different quote ("7 %" in "17 %")."""
    check_before = quote[:1].isalnum()
    check_after = quote[-1:].isalnum() or quote.endswith("%")
    found = []
    start = text.find(quote)
    while start != -1:  # plain find: a regex compiled per quote costs more than the search
        end = start + len(quote)
        if ((not check_before or start == 0 or text[start - 1] not in _WORD_BEFORE)
                and (not check_after or end == len(text) or text[end] not in _WORD_AFTER)):
            found.append(start)
        start = text.find(quote, start + 1)
    return found


_WORD_AFTER = frozenset("0123456789abcdefghijklmnopqrstuvwxyz")
_WORD_BEFORE = _WORD_AFTER | {".", ","}


def find_quote(source: Source, quote: str) -> list[str]:
    """The context (headings, caption) of every place the quote occurs; [] if none."""
    return [occurrence.context for occurrence in source.find(quote)]
