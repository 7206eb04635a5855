"""Wikipedia's "List of countries by tax rates" as a :class:`~taxdata.references.table.Reference`.

Fetched once per run with the MediaWiki client; its main table is read by header names, not
positions (its columns change between revisions); italic rows are dependent territories.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import WikipediaClient, WikipediaError
from taxdata.countries.registry import Registry
from taxdata.log import logger, thread_label
from taxdata.references.rates import parse_rate
from taxdata.references.table import Reference, ReferenceRow, ReferenceTableError, bounded

if TYPE_CHECKING:  # bs4 and lxml load when a page is parsed, not with the updater
    from bs4 import BeautifulSoup
    from bs4.element import Tag

LIST_TITLE = "List of countries by tax rates"
# A reference is optional: two quick tries, then the run goes on without it (one warning).
LIST_RETRY = RetryPolicy(attempts=2, base=0.5, cap=2.0, max_retry_after=5.0)
LIST_TIMEOUT = (5.0, 30.0)

_FOOTNOTE = re.compile(r"\[(?:\d+|[a-z]|note \d+|citation needed|[a-z ]+ needed)\]", re.I)


# -- the Wikipedia list page ----------------------------------------------------------------

# Header name patterns (lower-cased header text, both header rows merged). Order matters: the
# individual columns are told apart by lowest/highest before the generic "individual" match.
_COLUMNS = [
    ("country", re.compile(r"countr|territor|jurisdiction")),
    ("corporate", re.compile(r"corporat")),
    ("low", re.compile(r"(individual|income|personal).*(lowest|minimum|\bmin\b)|^(lowest|min)")),
    ("top", re.compile(r"(individual|income|personal).*(highest|maximum|\bmax\b)|^(highest|max)")),
    ("individual", re.compile(r"individual|personal|income")),
    ("vat", re.compile(r"\bvat\b|\bgst\b|sales")),
    ("further", re.compile(r"further reading|tax articles?|article")),
]


def _column_map(headers: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, header in enumerate(headers):
        text = " ".join(_FOOTNOTE.sub("", header).lower().split())
        for name, pattern in _COLUMNS:
            if name not in found and pattern.search(text):
                if name == "individual" and ("low" in found or "top" in found):
                    continue
                found[name] = index
                break
    return found


def _cell_text(cell: Tag) -> str:
    return " ".join(cell.get_text(" ").split())


def _rate_tables(soup: BeautifulSoup) -> list[tuple[list[list[Tag]], dict[str, int]]]:
    """Every wikitable with a country column and a VAT or income-tax column: (body, columns).

    Usually one main table; a revision that splits it (countries / territories) still reads.
    """
    from taxdata.clients import htmlclean  # with bs4: loaded when a page is parsed

    found = []
    for table in soup.find_all("table"):
        if "wikitable" not in (table.get("class") or []):
            continue
        grid, header_rows = htmlclean.table_grid(table, value=lambda cell: cell)
        if not grid or not header_rows:
            continue
        width = max(len(row) for row in grid)
        headers = []
        for col in range(width):
            parts = []
            for row in grid[:header_rows]:
                if col < len(row):
                    text = _cell_text(row[col])
                    if text and text not in parts:
                        parts.append(text)
            headers.append(" ".join(parts))
        columns = _column_map(headers)
        if "country" in columns and ("vat" in columns or "top" in columns
                                     or "individual" in columns):
            found.append((grid[header_rows:], columns))
    if not found:
        raise ReferenceTableError(f"{LIST_TITLE!r}: no table with a country column and a VAT or "
                             "income-tax column")
    return found


def _is_territory(cell: Tag, name: str) -> bool:
    # The page's own convention: "Territories ... are in italics".
    italic = " ".join(" ".join(i.get_text(" ") for i in cell.find_all("i")).split())
    return bool(italic) and italic == name


def _linked_titles(cell: Tag) -> tuple[str, ...]:
    titles = []
    for link in cell.find_all("a", href=True):
        if "new" in (link.get("class") or []) or "redlink=1" in link["href"]:
            continue  # a red link: no such article
        title = link.get("title") or ""
        if title and link["href"].startswith(("/wiki/", "./")):
            titles.append(title)
    return tuple(dict.fromkeys(titles))


def parse_list_page(html: str, registry: Registry, label: str = LIST_TITLE) -> Reference:
    """The rows of the list page's rate table(s), one per country, matched to the registry."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "lxml")
    for sup in soup.find_all("sup"):  # footnote markers and [citation needed]
        sup.decompose()
    for junk in soup.select("style, .mw-editsection, .sortkey, [style*='display:none']"):
        junk.decompose()
    rows: dict[str, ReferenceRow] = {}
    for body, columns in _rate_tables(soup):
        for cells in body:
            row = _list_row(cells, columns, registry)
            if row is not None and row.name not in rows:  # a name's first row wins
                rows[row.name] = row
    unmatched = [row.name for row in rows.values() if row.code is None]
    warnings = [f"{label}: {len(unmatched)} row(s) name no ISO 3166 country: "
                + bounded(unmatched)] if unmatched else []
    return Reference(label, list(rows.values()), warnings)


def _list_row(cells: list[Tag], columns: dict[str, int], registry: Registry) -> ReferenceRow | None:
    def cell(name: str) -> Tag | None:
        index = columns.get(name)
        return cells[index] if index is not None and index < len(cells) else None

    country_cell = cell("country")
    name = re.sub(r"\s*\*+$", "", _cell_text(country_cell)) if country_cell is not None else ""
    if not name:
        return None
    vat_cell, top_cell, further = cell("vat"), cell("top") or cell("individual"), cell("further")
    # The country facts (ISO codes, CLDR names) load only when a list page is read.
    from taxdata.countries.facts import iso_code, match_registry

    return ReferenceRow(
        name=name, slug=match_registry(name, registry), code=iso_code(name),
        vat=parse_rate(_cell_text(vat_cell), "vat") if vat_cell is not None else None,
        top=parse_rate(_cell_text(top_cell), "top") if top_cell is not None else None,
        territory=_is_territory(country_cell, name),
        further_reading=_linked_titles(further) if further is not None else ())


def fetch_list_reference(api_url: str, user_agent: str, registry: Registry) -> Reference | None:
    """The list page, fetched once (current revision); None, with one warning, when unreachable."""
    try:
        client = WikipediaClient(api_url, user_agent, retry=LIST_RETRY, timeout=LIST_TIMEOUT)
        article = client.fetch(LIST_TITLE, refresh=True)
        reference = parse_list_page(article.html, registry,
                                    f"{article.title}, rev {article.revision_id}")
    except (WikipediaError, ReferenceTableError, ValueError) as exc:
        logger.warning("[REFERENCE] %s Wikipedia %r unavailable (%s): no list-page reference "
                       "this run", thread_label(), LIST_TITLE, _one_line(exc))
        return None
    logger.info("[REFERENCE] %s %s: %d rows, %d registry countries", thread_label(),
                reference.label, len(reference.rows), reference.matched)
    for warning in reference.warnings:  # rows such as disputed territories: worth a note only
        logger.info("[REFERENCE] %s %s", thread_label(), warning)
    return reference


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
