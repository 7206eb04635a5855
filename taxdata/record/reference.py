"""Independent reference rates to cross-check records against (issue 9, "a second source").

Two kinds, one shape (:class:`Reference`: per registry country, the standard VAT rate and the top
income-tax rate as the reference states them):

* Wikipedia's "List of countries by tax rates", fetched once per run with the MediaWiki client;
  its main table is read by header names, not positions (its columns change between revisions).
* A user's CSV (``--reference FILE.csv``): a territory column plus rate columns, as exported from
  a tax firm's worldwide summaries, with names in the publisher's style.

Rates are free text in both (``0–45%``, ``17% or 14%``, ``45, plus surcharges``, ``Up to
52.07%``); :func:`parse_rate` keeps the text and pulls out the numbers and a headline value.
No rate is ever made up here: a cell without a number is no reference.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup
from bs4.element import Tag

from taxdata.clients.htmlclean import table_grid
from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import WikipediaClient, WikipediaError
from taxdata.countries.facts import iso_code, match_registry
from taxdata.countries.registry import Registry
from taxdata.errors import DataError
from taxdata.log import logger, thread_label

LIST_TITLE = "List of countries by tax rates"
# A reference is optional: two quick tries, then the run goes on without it (one warning).
LIST_RETRY = RetryPolicy(attempts=2, base=0.5, cap=2.0, max_retry_after=5.0)
LIST_TIMEOUT = (5.0, 30.0)

# A number, optionally a range "0-45" / "0–45" / "0 to 45", then an optional percent sign.
_NUMBER = r"\d+(?:\.\d+)?"
_RANGE = re.compile(rf"({_NUMBER})\s*%?\s*(?:-|–|—|to)\s*({_NUMBER})\s*(%|per ?cent)?", re.I)
_SINGLE = re.compile(rf"(?<![\d.,])({_NUMBER})(?![\d.,]*\d)\s*(%|per ?cent)?", re.I)
_FOOTNOTE = re.compile(r"\[(?:\d+|[a-z]|note \d+|citation needed|[a-z ]+ needed)\]", re.I)
_STANDARD_LABEL = re.compile(rf"({_NUMBER})\s*%?\s*\(?\s*(?:standard|general|normal)\b", re.I)


class ReferenceTableError(DataError):
    """A reference file that cannot be used at all; the message is one line."""


@dataclass(frozen=True)
class RateText:
    """One rate cell: its text (footnotes stripped), every number in it, the headline value."""

    text: str
    values: tuple[float, ...]
    headline: float | None
    is_range: bool = False  # the cell gives a span ("0-10%" state sales taxes), not one rate
    note: str = ""  # the words around the numbers: "plus surcharges", "GST", "incl. ..."
    labelled: bool = False  # the headline is the rate the text calls standard

    @property
    def low(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.values else None

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "values": list(self.values), "headline": self.headline,
                "range": self.is_range, "note": self.note, "labelled": self.labelled}


def parse_rate(text: str, kind: str = "top") -> RateText | None:
    """A free-text rate cell -> :class:`RateText`, or None when it states no number.

    ``kind`` picks the headline: ``"vat"`` a number labelled standard, else the highest (reduced
    rates are lower than the standard one); ``"top"`` (highest marginal rate) the highest;
    ``"low"`` the lowest. Footnote markers (``[3]``, ``[citation needed]``) are dropped first.
    """
    text = " ".join(_FOOTNOTE.sub("", text or "").split())
    if not text or text.lower() in ("n/a", "na", "-", "—", "–", "none", "?"):
        return None
    values: list[float] = []
    is_range = False
    label = None
    rest = text
    for match in _RANGE.finditer(text):
        values += [float(match.group(1)), float(match.group(2))]
        is_range = True
    rest = _RANGE.sub(" ", rest)
    singles = [(float(m.group(1)), bool(m.group(2))) for m in _SINGLE.finditer(rest)]
    if any(percent for _, percent in singles) or is_range:
        # With percent signs in the cell, bare numbers are amounts or years, not rates.
        values += [v for v, percent in singles if percent]
    else:
        values += [v for v, _ in singles]
    values = [v for v in values if 0 <= v <= 100]
    if not values:
        return None
    if kind == "vat":
        label = _STANDARD_LABEL.search(text)
        headline = float(label.group(1)) if label else max(values)
    elif kind == "low":
        headline = min(values)
    else:
        headline = max(values)
    note = re.sub(rf"{_NUMBER}|%|per ?cent|[–—,;:()]", " ", text, flags=re.I)
    note = " ".join(re.sub(r"(?<!\w)-(?!\w)", " ", note).split())
    if all(word.lower() in ("or", "and", "to", "-") for word in note.split()):
        note = ""  # only the glue between alternatives ("17% or 14%")
    return RateText(text=text, values=tuple(dict.fromkeys(values)), headline=headline,
                    is_range=is_range and kind == "vat", note=note,
                    labelled=kind == "vat" and label is not None)


@dataclass(frozen=True)
class ReferenceRow:
    """One country's line in a reference."""

    name: str  # as the reference writes it
    slug: str | None  # the registry country it names (None: not in the registry)
    code: str | None  # ISO 3166-1 alpha-2 (None: the libraries know no such country)
    vat: RateText | None = None
    top: RateText | None = None
    territory: bool = False  # the list page sets dependent territories in italics
    further_reading: tuple[str, ...] = ()  # article titles linked (red links left out)


@dataclass
class Reference:
    """A reference source: its label (``List of countries by tax rates, rev 5678``) and rows."""

    label: str
    rows: list[ReferenceRow]
    warnings: list[str] = field(default_factory=list)

    def for_slug(self, slug: str) -> ReferenceRow | None:
        return next((row for row in self.rows if row.slug == slug), None)

    @property
    def matched(self) -> int:
        return sum(row.slug is not None for row in self.rows)


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
    found = []
    for table in soup.find_all("table"):
        if "wikitable" not in (table.get("class") or []):
            continue
        grid, header_rows = table_grid(table, value=lambda cell: cell)
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
                + ", ".join(unmatched)] if unmatched else []
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


# -- the user's CSV ---------------------------------------------------------------------------

_CSV_COLUMNS = [
    ("territory", re.compile(r"territor|countr|jurisdiction|^name$|location")),
    ("vat", re.compile(r"\bvat\b|\bgst\b|sales tax|consumption|indirect")),
    ("top", re.compile(r"(top|highest|max|maximum).*(rate|income|individual|personal|pit)"
                       r"|individual|personal income|\bpit\b|income tax")),
]


def load_reference_csv(path: str | Path, registry: Registry) -> Reference:
    """A user's reference table; :class:`ReferenceTableError` (one line) when it cannot be used."""
    path = Path(path)
    header, body = _read_csv(path)
    columns = _find_columns(path, header)
    rows: list[ReferenceRow] = []
    unmatched: list[str] = []
    outside: list[str] = []
    taken: set[str] = set()
    for line in body:
        if not any(cell.strip() for cell in line):
            continue
        name = " ".join(_cell(line, columns, "territory").split())
        if not name:
            continue
        slug = match_registry(name, registry)
        code = iso_code(name)
        if slug is None:
            (outside if code else unmatched).append(name)
        elif slug in taken:
            unmatched.append(f"{name} (again for {slug})")
            continue
        else:
            taken.add(slug)
        vat, top = (parse_rate(_cell(line, columns, column), column) if column in columns
                    else None for column in ("vat", "top"))
        rows.append(ReferenceRow(name=name, slug=slug, code=code, vat=vat, top=top))
    if not taken:
        raise ReferenceTableError(f"{path}: no row names a registry country "
                             f"({len(rows)} rows read)")
    warnings = []
    if unmatched:
        warnings.append(f"{path.name}: {len(unmatched)} name(s) not matched: "
                        f"{', '.join(unmatched)}")
    if outside:
        warnings.append(f"{path.name}: {len(outside)} countr(ies) not in the registry, ignored: "
                        f"{', '.join(outside)}")
    return Reference(path.name, rows, warnings)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header row and the other rows of a UTF-8 CSV file (delimiter sniffed)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReferenceTableError(f"{path}: cannot read reference file: "
                                  f"{exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReferenceTableError(f"{path}: not UTF-8 text (byte {exc.start}); save it as "
                             "CSV UTF-8") from None
    if not text.strip():
        raise ReferenceTableError(f"{path}: empty reference file")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
        body = list(reader)
    except csv.Error as exc:
        raise ReferenceTableError(f"{path}: not a readable CSV file ({exc})") from None
    return header, body


def _find_columns(path: Path, header: list[str]) -> dict[str, int]:
    """Which column holds the territory, the VAT and the top income-tax rate (by header)."""
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        key = " ".join(name.lower().split())
        for column, pattern in _CSV_COLUMNS:
            if column not in columns and pattern.search(key):
                columns[column] = index
                break
    shown = ", ".join(repr(h) for h in header) or "none"
    if "territory" not in columns:
        raise ReferenceTableError(f"{path}: no territory/country column (columns: {shown})")
    if "vat" not in columns and "top" not in columns:
        raise ReferenceTableError(f"{path}: no VAT or top income-tax rate column "
                                  f"(columns: {shown})")
    return columns


def _cell(line: list[str], columns: dict[str, int], column: str) -> str:
    index = columns.get(column)
    return line[index] if index is not None and index < len(line) else ""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
