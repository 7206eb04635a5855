"""A figure's quote shown where it stands: found in its source text and cut out with the text
around it, the way LangExtract's visualisation shows an extraction in its context.

:func:`locate` takes the quote's character offsets when the record has them (grounded
provenance) and they still point at the quote, else finds the quote in the text: verbatim first,
then word for word across what markdown and typography put between words (table pipes,
emphasis, line breaks, thousands separators). :func:`excerpt` cuts the passage: the paragraph
(or table) around the quote, clipped to a few lines each side, with the section heading above it
and, for a table row, the table's header row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTEXT = 220  # characters of text kept on each side of a quote, at most
_WORD = re.compile(r"\w+|[%\u20ac$\u00a3\u00a5]")
_BETWEEN = r"[\W_]*?"  # anything but a word between two words of the quote
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


@dataclass(frozen=True)
class Passage:
    """A quote in its context: ``before + match + after`` is a stretch of the source text."""

    before: str
    match: str
    after: str
    heading: str | None = None  # the section the quote stands in
    table_header: str | None = None  # the header row of the table the quote is a row of
    cut_before: bool = False  # the passage starts inside the text (drawn with an ellipsis)
    cut_after: bool = False
    located_by: str = "search"  # "offsets": the record's own offsets; "search": found here


def _loose(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


def locate(text: str, quote: str, start: int | None = None,
           end: int | None = None) -> tuple[int, int, str] | None:
    """Where ``quote`` stands in ``text``: (start, end, how it was found), or None."""
    if (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
            and _loose(text[start:end]) == _loose(quote)):
        return start, end, "offsets"
    if not quote.strip():
        return None
    at = text.find(quote)
    if at >= 0:
        return at, at + len(quote), "search"
    words = _WORD.findall(quote)
    if not words:
        return None
    pattern = re.compile(_BETWEEN.join(re.escape(w) for w in words[:80]), re.I)
    found = pattern.search(text)
    return (found.start(), found.end(), "search") if found else None


def _line_start(text: str, at: int) -> int:
    return text.rfind("\n", 0, at) + 1


def _line_end(text: str, at: int) -> int:
    end = text.find("\n", at)
    return len(text) if end < 0 else end


def _clip_start(text: str, floor: int, start: int, context: int) -> int:
    """Where a passage ending its lead-in at ``start`` begins: its paragraph's start, or the
    first line (else word) that begins within ``context`` characters of the quote."""
    if start - floor <= context:
        return floor
    window = start - context
    line = text.find("\n", window, start)
    if line >= 0:
        return line + 1
    space = text.find(" ", window, start)
    return space + 1 if space >= 0 else window


def _clip_end(text: str, ceiling: int, end: int, context: int) -> int:
    if ceiling - end <= context:
        return ceiling
    window = end + context
    line = text.rfind("\n", end, window)
    if line >= 0:
        return line
    space = text.rfind(" ", end, window)
    return space if space >= 0 else window


def _table_header(text: str, start: int, begin: int) -> str | None:
    """The first row of the markdown table whose row holds ``start``, when the passage
    (from ``begin``) does not show it."""
    top = _line_start(text, start)
    if not text[top:_line_end(text, top)].lstrip().startswith("|"):
        return None
    while top > 0:  # up the table to its first row
        above = _line_start(text, top - 1)
        if not text[above:top].lstrip().startswith("|"):
            break
        top = above
    return text[top:_line_end(text, top)].strip() if top < begin else None


def excerpt(text: str, start: int, end: int, how: str = "search",
            context: int = CONTEXT) -> Passage:
    """The passage around ``text[start:end]``: its paragraph, at most ``context`` characters
    each side (cut at a line or word boundary), its heading and table header."""
    paragraph_start = text.rfind("\n\n", 0, start)
    paragraph_start = 0 if paragraph_start < 0 else paragraph_start + 2
    paragraph_end = text.find("\n\n", end)
    paragraph_end = len(text) if paragraph_end < 0 else paragraph_end
    begin = _clip_start(text, paragraph_start, start, context)
    finish = _clip_end(text, paragraph_end, end, context)
    # The section's heading, unless the passage shows its line anyway.
    headings = list(_HEADING.finditer(text, 0, start))
    heading = headings[-1] if headings and headings[-1].start() < begin else None
    return Passage(text[begin:start], text[start:end], text[end:finish],
                   heading=heading.group(1).strip() if heading else None,
                   table_header=_table_header(text, start, begin),
                   cut_before=begin > paragraph_start, cut_after=finish < paragraph_end,
                   located_by=how)


def passage(text: str | None, quote: str | None, start: int | None = None,
            end: int | None = None) -> Passage | None:
    """``quote`` in its context in ``text`` (None: no text, no quote, or not found)."""
    if not text or not quote:
        return None
    found = locate(text, quote, start, end)
    return None if found is None else excerpt(text, *found)
