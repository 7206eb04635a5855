"""Wikipedia's rendered article HTML (``action=parse`` output) to markdown-like text.

:func:`clean_html` keeps headings, paragraphs, lists and markdown tables and drops references,
navigation, infoboxes and maintenance chrome (:func:`taxdata.store.taxfile.split_sections` cuts such
text into prompt-sized parts). :func:`table_grid` lays out a wikitable's cells on a grid
(row/col spans resolved), for callers that read tables themselves (taxdata.references.listpage).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import lxml.html
from bs4 import BeautifulSoup
from bs4.element import NavigableString, PreformattedString, Tag
from lxml import etree

from taxdata.store.hiddenmarkup import HIDDEN_STYLE, strip_hidden_markup

# Everything here is chrome around the article's prose, never content worth an LLM's tokens.
# The infobox goes too: its label/value cells (population, GDP, HDI, calling code...) lose their
# meaning as flat text, duplicate the prose, and are exactly the stray numbers an LLM may take
# for tax figures; the tax facts themselves live in the prose and the wikitables.
_JUNK_SELECTORS = ", ".join([
    "style", "script", "noscript", "link", "meta",
    "sup.reference", ".mw-cite-backlink", ".reflist", "ol.references", ".mw-references-wrap",
    ".mw-editsection", ".navbox", ".navbox-styles", "[role=navigation]", ".vertical-navbox",
    ".sidebar", ".hatnote", "#toc", ".toc", ".infobox", ".mw-empty-elt", ".noprint",
    ".metadata", ".ambox", ".shortdescription", ".mw-authority-control", ".sistersitebox",
    "figure", "figcaption", "img", ".thumb", ".gallery", ".mw-file-description",
])

# Reference apparatus and pointers elsewhere: dropped with everything under them.
_DROPPED_SECTIONS = frozenset({
    "references", "external links", "see also", "further reading", "notes",
    "notes and references", "references and notes", "citations", "footnotes", "sources",
    "bibliography",
})

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_LISTS = ["ul", "ol", "dl"]
_BLOCKS = [
    "p", "div", "section", "table", "blockquote", "pre", "center", "article", "main", "aside",
    "header", "footer", "nav", "hr", "details", "dd", "dt", "li", *_LISTS, *_HEADINGS,
    "tr", "th", "td", "caption",  # only met inside cells: keeps a nested table's cells apart
]


_DISPLAYSTYLE = re.compile(r"^\{\\displaystyle (.*)\}$", re.DOTALL)


# No article nests deeper than a few dozen elements; libxml2 itself stops at 255.
MAX_DEPTH = 200


class HTMLTooDeep(ValueError):
    """HTML nested deeper than :data:`MAX_DEPTH` elements."""


def _too_deep(html: str) -> bool:
    """Whether ``html`` nests deeper than MAX_DEPTH: libxml2's own parse (C, a millisecond for
    an article), before BeautifulSoup's tree, which would follow any depth, slowly."""
    if html.count("<") < MAX_DEPTH:
        return False
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return False  # BeautifulSoup reads what libxml2 will not (an empty document)
    depth = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > MAX_DEPTH:
            return True
    return False


@dataclass
class _Block:
    kind: str  # "heading", "para", "list", "table"
    text: str
    level: int = 0


def clean_html(html: str) -> str:
    """Article HTML (``action=parse`` output) to markdown-like text ending in a newline.

    Headings become ``## Heading`` (level kept), paragraphs are single lines, lists are ``- x`` /
    ``1. x`` (nested lists indented), data tables are markdown tables. Blocks are separated by a
    blank line. References, navigation, edit links, images and the sections listed in
    ``_DROPPED_SECTIONS`` are removed; no HTML is left. :class:`HTMLTooDeep` for HTML nested
    beyond any article's (a hostile answer: walking it would cost seconds and the stack).
    """
    if _too_deep(html):
        raise HTMLTooDeep(f"the HTML is nested deeper than {MAX_DEPTH} elements")
    soup = BeautifulSoup(html, "lxml")
    for junk in soup.select(_JUNK_SELECTORS):
        if not junk.decomposed:  # a junk element inside another one is already gone
            junk.decompose()
    _drop_hidden(soup)
    root = soup.select_one(".mw-parser-output") or soup.body or soup
    blocks: list[_Block] = []
    _collect(root, blocks)
    blocks = _drop_sections(blocks)
    # Comment syntax in the article's text itself (escaped, so visible) is dropped as well, as
    # it is from a taxation file: what the text becomes is read as markdown.
    return strip_hidden_markup("\n\n".join(_render(block) for block in blocks) + "\n")


def _is_hidden(tag: Tag) -> bool:
    """An element no reader sees (hidden, aria-hidden, an inline style that hides it); a
    formula's MathML is hidden for its image, but its TeX is what _inline keeps."""
    if tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true":
        hidden = True
    else:
        hidden = bool(HIDDEN_STYLE.search(str(tag.get("style", ""))))
    return hidden and tag.find_parent(class_="mwe-math-element") is None


def _drop_hidden(soup: BeautifulSoup) -> None:
    """Hidden elements go with what is in them: a vandal's text aimed at the model must not
    reach it unseen by the article's readers. (Comments are never read: see _collect.)"""
    for tag in soup.find_all(_is_hidden):
        if not tag.decomposed:
            tag.decompose()


def _collect(node: Tag, out: list[_Block]) -> None:
    """Walk a container: runs of inline content become paragraphs, block elements their blocks."""
    pending: list[str] = []

    def flush() -> None:
        text = _squash("".join(pending))
        pending.clear()
        if text:
            out.append(_Block("para", text))

    for child in node.children:
        if isinstance(child, NavigableString):
            if not isinstance(child, PreformattedString):  # comments, CDATA, doctypes
                pending.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        if child.name not in _BLOCKS and not child.find(_BLOCKS):
            pending.append(_inline(child))
            continue
        flush()
        _collect_block(child, out)
    flush()


def _collect_block(child: Tag, out: list[_Block]) -> None:
    """A block element (or a container of some) as its blocks."""
    if child.name in _HEADINGS:
        headline = child.select_one(".mw-headline") or child  # pre-2024 heading markup
        text = _squash(_inline(headline))
        if text:
            out.append(_Block("heading", text, _HEADINGS[child.name]))
    elif child.name == "p":
        text = _squash(_inline(child))
        if text:
            out.append(_Block("para", text))
    elif child.name in ("ul", "ol"):
        lines = _list_lines(child, 0)
        if lines:
            out.append(_Block("list", "\n".join(lines)))
    elif child.name == "table":
        _table_blocks(child, out)
    elif child.name == "blockquote":
        inner: list[_Block] = []
        _collect(child, inner)
        for block in inner:  # quoted, so never a section heading of the article
            out.append(_Block("para", "\n".join(
                f"> {line}" for line in _render(block).splitlines())))
    elif child.name == "pre":
        text = "\n".join(line.rstrip() for line in child.get_text().strip("\n").splitlines())
        if text.strip():
            out.append(_Block("para", text))
    elif child.name != "hr":
        _collect(child, out)  # div, section, dl/dd/dt, center...: containers


def _inline(node: Tag, skip: list[str] | tuple[str, ...] = ()) -> str:
    """The text of ``node`` as one run (whitespace not yet collapsed)."""
    parts: list[str] = []
    for child in node.children:
        if isinstance(child, NavigableString):
            if not isinstance(child, PreformattedString):
                parts.append(str(child))
        elif isinstance(child, Tag):
            if child.name in skip:
                continue
            if child.name == "br":
                parts.append(" ")
            elif "mwe-math-element" in (child.get("class") or []):
                # MathML renders its formula twice (MathML text + TeX annotation); keep the TeX.
                tex = child.find("annotation")
                parts.append(_DISPLAYSTYLE.sub(r"\1", tex.get_text().strip()) if tex
                             else _inline(child))
            elif child.name in _BLOCKS:
                parts.append(f" {_inline(child, skip)} ")
            else:
                parts.append(_inline(child, skip))
    return "".join(parts)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _list_lines(lst: Tag, depth: int) -> list[str]:
    lines: list[str] = []
    try:
        number = int(lst.get("start", 1))
    except ValueError:
        number = 1
    for item in lst.find_all("li", recursive=False):
        text = _squash(_inline(item, skip=_LISTS))
        if text:
            marker = f"{number}." if lst.name == "ol" else "-"
            lines.append(f"{'  ' * depth}{marker} {text}")
            number += 1
        for sub in item.find_all(_LISTS, recursive=False):
            if sub.name == "dl":  # an indented remark under the item
                remark = _squash(_inline(sub))
                if remark:
                    lines.append(f"{'  ' * (depth + 1)}{remark}")
            else:
                lines.extend(_list_lines(sub, depth + 1))
    return lines


def _table_blocks(table: Tag, out: list[_Block]) -> None:
    caption = table.find("caption")
    if caption is not None:
        text = _squash(_inline(caption))
        caption.decompose()
        if text:
            out.append(_Block("para", text))
    grid, header_rows = table_grid(table)
    if not grid:
        return
    width = max(len(row) for row in grid)
    if width == 1:  # a one-column box (quote box, layout wrapper): its cells are paragraphs
        out.extend(_Block("para", row[0]) for row in grid if row[0])
        return
    rows = [row + [""] * (width - len(row)) for row in grid]
    if header_rows:
        header = [_merge_header([row[col] for row in rows[:header_rows]]) for col in range(width)]
        body = rows[header_rows:]
    else:
        header, body = rows[0], rows[1:]
    lines = [_md_row(header), "| " + " | ".join(["---"] * width) + " |"]
    lines.extend(_md_row(row) for row in body)
    out.append(_Block("table", "\n".join(lines)))


def table_grid(table: Tag,
               value: Callable[[Tag], Any] | None = None) -> tuple[list[list[Any]], int]:
    """Cell texts laid out on a grid (row/colspans repeat the cell) and the count of header rows.

    ``value`` picks what each grid slot holds instead of the cell's text (e.g. the cell itself,
    for callers that read its links or italics: :mod:`taxdata.references.listpage`).
    """
    rows = [tr for tr in table.find_all("tr") if tr.find_parent("table") is table]
    grid: list[list[Any]] = []
    carried: dict[tuple[int, int], Any] = {}  # (row, col) filled by a rowspan from above
    header_rows = 0
    leading_headers = True
    for r, tr in enumerate(rows):
        cells = tr.find_all(("th", "td"), recursive=False)
        if not cells:
            continue
        row: list[str] = []
        col = 0
        for cell in cells:
            while (r, col) in carried:
                row.append(carried.pop((r, col)))
                col += 1
            text = (_squash(_inline(cell)).replace("|", "\\|") if value is None
                    else value(cell))
            rowspan = _span(cell.get("rowspan"))
            for _ in range(_span(cell.get("colspan"))):
                row.append(text)
                for below in range(1, rowspan):
                    carried[(r + below, col)] = text
                col += 1
        while (r, col) in carried:
            row.append(carried.pop((r, col)))
            col += 1
        grid.append(row)
        if leading_headers and all(cell.name == "th" for cell in cells):
            header_rows += 1
        else:
            leading_headers = False
    if header_rows >= len(grid):  # every row is <th>: only the first one is the header
        header_rows = 1
    return grid, header_rows


def _span(value: Any) -> int:
    try:
        return max(1, min(int(str(value).strip().rstrip(";")), 100))
    except (TypeError, ValueError):
        return 1


def _merge_header(texts: list[str]) -> str:
    merged: list[str] = []
    for text in texts:
        if text and text not in merged:
            merged.append(text)
    return " ".join(merged)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _drop_sections(blocks: list[_Block]) -> list[_Block]:
    kept: list[_Block] = []
    dropping_at: int | None = None  # level of the dropped section's heading
    for block in blocks:
        if block.kind == "heading":
            if dropping_at is not None and block.level <= dropping_at:
                dropping_at = None
            if dropping_at is None and block.text.casefold() in _DROPPED_SECTIONS:
                dropping_at = block.level
        if dropping_at is None:
            kept.append(block)
    return kept


def _render(block: _Block) -> str:
    if block.kind == "heading":
        return f"{'#' * block.level} {block.text}"
    return block.text
