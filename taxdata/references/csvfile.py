"""A user's reference file (``--reference FILE.csv``) as publishers ship them.

Tax firms' worldwide summaries (``Territory,Standard_VAT_rate,Last_reviewed``;
``Territory,Headline_PIT_rate,Last_reviewed``), the EU's VAT table (``"Country","Super-Reduced
Rate (%)","Reduced Rate (%)","Parking Rate (%)","Standard Rate (%)"`` with names such as
``Austria (AT)``), a list someone keeps by hand with a title line above its header: the header is
found among the first rows, its names are read in any spelling (underscores, ``(%)``, case), and
each column is scored for what it holds (the standard VAT rate, the top personal income-tax rate,
the country); where two columns score alike, or a header says nothing usable, the user names the
column (``--reference-column vat=NAME,top=NAME``) instead of a guess. Cells may span lines; a
row that names no country and states no rate (a footer's disclaimer, a section title) is not an
unmatched country. Warnings are one line each, with at most :data:`MOST_NAMES` names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from pathlib import Path

from taxdata.countries.registry import Registry
from taxdata.references.rates import parse_rate
from taxdata.references.table import Reference, ReferenceRow, ReferenceTableError, bounded

COLUMNS = ("country", "vat", "top")  # what --reference-column may name
_ALIASES = {"territory": "country", "name": "country", "pit": "top", "income": "top",
            "gst": "vat", "sales": "vat"}
HEADER_ROWS = 15  # how far down a title block may push the header
_SPEC_KEY = re.compile(r"(?:^|,)\s*([A-Za-z]+)\s*=", re.A)

_COUNTRY_EXACT = re.compile(
    r"(?:country|countries|territory|territories|jurisdiction|jurisdictions|name|location|"
    r"economy|member state|state|country name|country/territory|country or territory|"
    r"country/region|country or area)")
_NOT_A_RATE = re.compile(
    r"date|review|updated|year|note|source|comment|remark|threshold|registration|exempt|"
    r"\bcode\b|\biso\b|currency|link|url|withholding|dividend|capital gain|interest|royalt")
_VAT_WORD = re.compile(r"\bvat\b|\bgst\b|\bhst\b|\biva\b|\bmwst\b|sales tax|consumption tax|"
                       r"value added|goods and services")
_VAT_NOT = re.compile(r"reduced|super|parking|\bzero\b|lowest|minimum|corporat|\bcit\b|income|"
                      r"\bpit\b|personal|individual")
_STANDARD = re.compile(r"\bstandard\b|\bgeneral\b|\bnormal\b|\bheadline\b|\bmain\b")
_PERSONAL = re.compile(r"\bpit\b|personal|individual|\bincome\b")
_TOP = re.compile(r"\btop\b|highest|\bmax\b|maximum|headline|marginal")
_TOP_NOT = re.compile(r"corporat|\bcit\b|lowest|\bmin\b|minimum|bottom|\bvat\b|\bgst\b|sales")


def header_key(text: str) -> str:
    """A header as compared: ``Standard_VAT_rate`` / ``Standard VAT rate (%)`` ->
    ``standard vat rate``."""
    text = re.sub(r"\((?:%|in %|percent|per cent)\)|%", " ", text.replace("_", " "), flags=re.I)
    return " ".join(re.sub(r"[^\w/ ]+", " ", text.lower()).split())


def _score(column: str, key: str) -> int:
    """How surely a header (its :func:`header_key`) names ``column``: 0 not at all .. 3 surely."""
    if not key:
        return 0
    if column == "country":
        if _COUNTRY_EXACT.fullmatch(key):
            return 3
        if re.search(r"\bcode\b|\biso\b|abbrev", key):
            return 0
        return 2 if re.search(r"countr|territor|jurisdiction", key) else 0
    if _NOT_A_RATE.search(key):
        return 0
    if column == "vat":
        if _VAT_NOT.search(key):
            return 0
        if _VAT_WORD.search(key):
            return 3 if _STANDARD.search(key) else 2
        return 1 if _STANDARD.search(key) and "rate" in key else 0  # the EU's "Standard Rate"
    if _TOP_NOT.search(key):
        return 0
    if _PERSONAL.search(key):
        if _TOP.search(key):
            return 3
        return 2 if re.search(r"\bpit\b|personal income|individual income|income tax", key) else 1
    return 0


def parse_column_spec(spec: str | None) -> dict[str, str]:
    """``vat=Standard Rate (%),top=Headline PIT rate`` -> ``{"vat": ..., "top": ...}``; a
    :class:`ReferenceTableError` (one line) for a key that is not one of :data:`COLUMNS`."""
    if not spec or not spec.strip():
        return {}
    keys = list(_SPEC_KEY.finditer(spec))
    if not keys or keys[0].start() != 0 and spec[:keys[0].start()].strip():
        raise ReferenceTableError(f"--reference-column {spec!r}: expected KEY=COLUMN pairs "
                                  f"separated by commas (keys: {', '.join(COLUMNS)})")
    chosen: dict[str, str] = {}
    for match, following in zip(keys, keys[1:] + [None]):
        key = match.group(1).lower()
        key = _ALIASES.get(key, key)
        value = spec[match.end():following.start() if following else len(spec)].strip()
        if key not in COLUMNS:
            raise ReferenceTableError(f"--reference-column: unknown key {match.group(1)!r} "
                                      f"(keys: {', '.join(COLUMNS)})")
        if not value:
            raise ReferenceTableError(f"--reference-column: {key}= names no column")
        chosen[key] = value
    return chosen


def load_reference_csv(path: str | Path, registry: Registry,
                       columns: Mapping[str, str] | None = None) -> Reference:
    """A user's reference table; :class:`ReferenceTableError` (one line) when it cannot be used.

    ``columns`` names the header of a column instead of guessing it (``{"vat": "Standard Rate
    (%)"}``, from ``--reference-column``).
    """
    path = Path(path)
    lines, start, found = _read_table(path, dict(columns or {}))
    header = lines[start]
    rows: list[ReferenceRow] = []
    unmatched: list[str] = []
    outside: list[str] = []
    taken: set[str] = set()
    for line in lines[start + 1:]:
        name = " ".join(_cell(line, found, "country").split())
        if not name or [c.strip() for c in line] == [c.strip() for c in header]:
            continue  # blank, or the header again (a file exported page by page)
        vat, top = (parse_rate(_cell(line, found, column), column) if column in found
                    else None for column in ("vat", "top"))
        slug, code = _match(name, registry)
        if slug is None and vat is None and top is None:
            continue  # a footer's disclaimer, a section title: a note, not a country
        if slug is None:
            (outside if code else unmatched).append(name)
        elif slug in taken:
            unmatched.append(f"{name} (again for {slug})")
            continue
        else:
            taken.add(slug)
        rows.append(ReferenceRow(name=name, slug=slug, code=code, vat=vat, top=top))
    if not taken:
        raise ReferenceTableError(f"{path}: no row names a registry country "
                                  f"({len(rows)} rows read)")
    warnings = []
    if unmatched:
        warnings.append(f"{path.name}: {len(unmatched)} name(s) not matched: "
                        f"{bounded(unmatched)}")
    if outside:
        warnings.append(f"{path.name}: {len(outside)} countr(ies) not in the registry, ignored: "
                        f"{bounded(outside)}")
    used = {column: header[index].strip() for column, index in found.items()}
    return Reference(path.name, rows, warnings, columns=used)


def _match(name: str, registry: Registry) -> tuple[str | None, str | None]:
    """(registry slug, ISO code) of a row's name; a code in brackets (``Austria (AT)``) helps
    only where the name alone does not match."""
    # The country facts (ISO codes, CLDR names) load only when a CSV is read.
    import pycountry

    from taxdata.countries.facts import iso_code, match_registry

    slug, code = match_registry(name, registry), iso_code(name)
    bracket = re.search(r"\(([A-Z]{2})\)", name)
    if bracket and pycountry.countries.get(alpha_2=bracket.group(1)) is not None:
        code = code or bracket.group(1)
        if slug is None:
            slug = next((c.slug for c in registry if c.code == bracket.group(1)), None)
    return slug, code


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a :class:`ReferenceTableError` when it cannot be used as such."""
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
    return text


def _rows(path: Path, text: str, delimiter: str) -> list[list[str]]:
    """Every non-blank row (quoted cells may span lines)."""
    try:
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        return [line for line in reader if any(cell.strip() for cell in line)]
    except csv.Error as exc:
        raise ReferenceTableError(f"{path}: not a readable CSV file ({exc})") from None


def _read_table(path: Path, named: dict[str, str]) -> tuple[list[list[str]], int, dict[str, int]]:
    """The rows, the header's index and its columns. The delimiter is the sniffed one if a
    header reads with it, else the first of ``,`` ``;`` tab that gives one (a title line above
    the header may carry commas that fool the sniffer)."""
    text = _read_text(path)
    try:
        sniffed = csv.Sniffer().sniff(text[:8192], delimiters=",;\t").delimiter
    except csv.Error:
        sniffed = ","
    first_error: ReferenceTableError | None = None
    for delimiter in dict.fromkeys((sniffed, ",", ";", "\t")):
        lines = _rows(path, text, delimiter)
        try:
            start, found = _find_header(path, lines, named)
        except ReferenceTableError as exc:
            first_error = first_error or exc
            continue
        return lines, start, found
    assert first_error is not None
    raise first_error


def _find_header(path: Path, lines: list[list[str]],
                 named: dict[str, str]) -> tuple[int, dict[str, int]]:
    """(index of the header row, column -> index): the first of the top rows that has a country
    column and a rate column (the ones ``named`` taken as named)."""
    first_problem: ReferenceTableError | None = None
    for number, line in enumerate(lines[:HEADER_ROWS]):
        keys = [header_key(cell) for cell in line]
        try:
            found = _columns(path, line, keys, named)
        except _NoColumn as problem:
            first_problem = first_problem or problem.error
            continue
        return number, found
    if first_problem is not None:
        raise first_problem
    shown = ", ".join(repr(c.strip()) for c in (lines[0] if lines else [])) or "none"
    raise ReferenceTableError(f"{path}: no territory/country column (columns: {shown})")


class _NoColumn(Exception):
    """This row is not the header (``error`` says why, in case no row is)."""

    def __init__(self, error: ReferenceTableError | None) -> None:
        super().__init__(str(error))
        self.error = error


def _columns(path: Path, line: list[str], keys: list[str],
             named: dict[str, str]) -> dict[str, int]:
    shown = ", ".join(repr(cell.strip()) for cell in line)
    found: dict[str, int] = {}
    for column, name in named.items():
        if header_key(name) in keys:
            found[column] = keys.index(header_key(name))
    missing = [column for column in named if column not in found]
    if missing:
        if not any(_score("country", key) for key in keys):
            raise _NoColumn(None)  # a title line: the header may come later
        raise _NoColumn(ReferenceTableError(
            f"{path}: no column {named[missing[0]]!r} for --reference-column {missing[0]}= "
            f"(columns: {shown})"))
    for column in COLUMNS:
        if column not in found:
            index = _best(path, column, line, keys, taken=set(found.values()))
            if index is not None:
                found[column] = index
    if "country" not in found:
        raise _NoColumn(None)
    if "vat" not in found and "top" not in found:
        raise _NoColumn(ReferenceTableError(f"{path}: no VAT or top income-tax rate column "
                                            f"(columns: {shown})"))
    return found


def _best(path: Path, column: str, line: list[str], keys: list[str],
          taken: set[int]) -> int | None:
    """The column that most surely holds ``column``; an error when two are equally sure."""
    scores = [(_score(column, key) if index not in taken else 0, index)
              for index, key in enumerate(keys)]
    top = max((score for score, _ in scores), default=0)
    if top == 0:
        return None
    best = [index for score, index in scores if score == top]
    if len(best) > 1:
        names = " or ".join(repr(line[i].strip()) for i in best)
        raise _NoColumn(ReferenceTableError(
            f"{path}: cannot tell which column holds the {_WHAT[column]} ({names}); name it: "
            f"--reference-column {column}=NAME"))
    return best[0]


_WHAT = {"country": "country names", "vat": "standard VAT rate",
         "top": "top income-tax rate"}


def _cell(line: list[str], columns: Mapping[str, int], column: str) -> str:
    index = columns.get(column)
    return line[index] if index is not None and index < len(line) else ""
