"""Reference sources (taxdata/reference.py) and name matching (taxdata/countryfacts.py).

The list page (``tests/fixtures/wikipedia/list_of_countries_by_tax_rates.html``) and every rate
in the CSV files here are FIXTURE data: invented figures shaped like the real sources.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import CLOSED_WIKIPEDIA_API

from taxdata.countries import facts as countryfacts
from taxdata.countries.registry import BUNDLED_FILE, Registry, load_registry
from taxdata.record.reference import (
    LIST_TITLE,
    ReferenceTableError,
    fetch_list_reference,
    load_reference_csv,
    parse_list_page,
    parse_rate,
)
from taxdata.testing.mediawiki_server import StandInMediaWiki

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "wikipedia" / "list_of_countries_by_tax_rates.html"
REGISTRY = load_registry(BUNDLED_FILE)
UA = "taxdata-tests/1 (https://example.invalid/tests)"


@pytest.fixture
def wiki():
    server = StandInMediaWiki()
    server.start()
    yield server
    server.stop()


def rows_by_name(reference):
    return {row.name: row for row in reference.rows}


# -- the list page ------------------------------------------------------------------------------

def test_list_page_rows_by_header_names():
    reference = parse_list_page(FIXTURE.read_text(encoding="utf-8"), REGISTRY, "List, rev 7")
    rows = rows_by_name(reference)
    # One row per country of the main table; the legend box before it is not the main table.
    assert len(reference.rows) == 19
    assert "FIXTURE legend box (not the main table)" not in rows
    germany = rows["Germany"]
    assert (germany.slug, germany.code, germany.territory) == ("germany", "DE", False)
    # Footnote markers gone, alternatives kept as text, the headline is the standard rate.
    assert germany.vat.text == "17% or 6%" and germany.vat.headline == 17
    assert germany.vat.values == (17, 6)
    assert germany.top.headline == 47.475 and germany.top.note == "incl. solidarity surcharge"
    assert rows["France"].vat.headline == 21  # "21% (standard), 10% or 5.5%"
    assert rows["Estonia"].top.headline == 23  # a <th scope=row> country cell
    # The rowspan: Switzerland's VAT cell is Liechtenstein's, carried down.
    assert rows["Switzerland"].vat.headline == rows["Liechtenstein"].vat.headline == 8.1
    assert rows["Switzerland"].top.note == "federal + cantonal and communal"
    # A range is a span, not one rate; "[citation needed]" is stripped like a footnote.
    us = rows["United States"]
    assert us.vat.is_range and (us.vat.low, us.vat.high) == (0, 11.5)
    assert rows["Kenya"].top.text == "35%"
    # Italics mark territories; red links are not articles; redirects are kept as linked.
    assert rows["Jersey"].territory and not rows["Kenya"].territory
    assert rows["Albania"].further_reading == () and rows["Chad"].further_reading == ()
    assert rows["Peru"].further_reading == ("Tax system in Peru",)
    assert rows["Mali"].further_reading == ()
    # Names the libraries know; the one they do not is a listed warning.
    assert rows["Ivory Coast"].code == "CI" and rows["Bahamas"].code == "BS"
    assert rows["Kosovo"].code is None
    assert reference.warnings == ["List, rev 7: 1 row(s) name no ISO 3166 country: Kosovo"]
    assert {row.slug for row in reference.rows if row.slug} == {
        "albania", "austria", "canada", "estonia", "france", "germany", "latvia",
        "liechtenstein", "switzerland", "united_states"}
    assert reference.matched == 10


OLD_LAYOUT = """<div class="mw-parser-output"><p>FIXTURE: invented rates, an older column layout.</p>
<table class="wikitable sortable"><tbody>
<tr><th>VAT / GST / Sales</th><th>Country/Region</th><th>Primary tax articles</th>
<th>Individual</th><th>Corporate</th></tr>
<tr><td>19%<sup class="reference"><a href="#c1">[1]</a></sup> or 7%</td>
<td><span class="flagicon"><img alt="" src="//x/Flag.png"></span>&#160;<a href="/wiki/Germany" title="Germany">Germany</a></td>
<td><a href="/wiki/Taxation_in_Germany" title="Taxation in Germany">Taxation in Germany</a></td>
<td>0–45%</td><td>29.9%</td></tr>
<tr><td>21%</td><td><a href="/wiki/Latvia" title="Latvia">Latvia</a></td><td></td>
<td>20-31%</td><td>20%</td></tr>
</tbody></table></div>"""


def test_list_page_columns_in_another_order_and_one_individual_column():
    reference = parse_list_page(OLD_LAYOUT, REGISTRY)
    rows = rows_by_name(reference)
    assert set(rows) == {"Germany", "Latvia"}
    assert rows["Germany"].vat.headline == 19 and rows["Germany"].top.headline == 45
    assert rows["Latvia"].top.headline == 31 and rows["Latvia"].vat.headline == 21
    assert rows["Germany"].further_reading == ("Taxation in Germany",)


def test_page_without_a_rates_table_is_an_error():
    with pytest.raises(ReferenceTableError, match="no table with a country column"):
        parse_list_page("<div class='mw-parser-output'><p>FIXTURE</p></div>", REGISTRY)


@pytest.mark.parametrize("text, kind, headline, values, note", [
    ("0-45%", "top", 45, (0, 45), ""),
    ("0–45%", "top", 45, (0, 45), ""),
    ("17% or 14%", "vat", 17, (17, 14), ""),
    ("17%[6] or 14% or 7%[7]", "vat", 17, (17, 14, 7), ""),
    ("45, plus surcharges", "top", 45, (45,), "plus surcharges"),
    ("Up to 52.07%", "top", 52.07, (52.07,), "Up to"),
    ("0, 6, 12 and 21", "vat", 21, (0, 6, 12, 21), ""),
    ("10% GST (0% on essential items)", "vat", 10, (10, 0), "GST on essential items"),
    ("4.5% (standard rate) 9.5% (banking services)", "vat", 4.5, (4.5, 9.5),
     "standard rate banking services"),
    ("20% for wages above $27,000", "top", 20, (20,), "for wages above $"),
    ("21 %", "vat", 21, (21,), ""),
    ("25 per cent", "vat", 25, (25,), ""),
])
def test_parse_rate(text, kind, headline, values, note):
    rate = parse_rate(text, kind)
    assert (rate.headline, rate.values, rate.note) == (headline, values, note)


@pytest.mark.parametrize("text", ["", "N/A", "—", "[citation needed]", "none"])
def test_parse_rate_without_a_number_is_no_reference(text):
    assert parse_rate(text, "vat") is None


# -- fetching the list page -----------------------------------------------------------------------

def test_list_page_fetched_with_the_client(wiki):
    wiki.add_tax_rates_list(FIXTURE.read_text(encoding="utf-8"), revid=5678)
    reference = fetch_list_reference(wiki.api_url, UA, REGISTRY)
    assert reference.label == "List of countries by tax rates, rev 5678"
    assert len(wiki.requests) == 1
    request = wiki.requests[0]
    assert request.headers["User-Agent"] == UA
    assert request.query["page"] == [LIST_TITLE]


def test_unreachable_wikipedia_is_one_warning_and_no_reference(taxdata_log):
    assert fetch_list_reference(CLOSED_WIKIPEDIA_API, UA, REGISTRY) is None
    warnings = [r.getMessage() for r in taxdata_log.records
                if r.levelno == logging.WARNING and "[REFERENCE]" in r.getMessage()]
    assert len(warnings) == 1 and "unavailable" in warnings[0]
    retries = [line for line in taxdata_log.lines if line.startswith("[RETRY]")]
    assert len(retries) <= 1  # two quick tries at most, never minutes of backoff


# -- name matching --------------------------------------------------------------------------------

PUBLISHER_NAMES = {  # a tax firm's worldwide-summary style -> ISO 3166-1 alpha-2
    "China, People's Republic of": "CN", "Bahamas, The": "BS", "Hong Kong SAR": "HK",
    "Congo, Democratic Republic of the": "CD", "Congo, Republic of": "CG",
    "Korea, Republic of": "KR", "Korea, Democratic People's Republic of": "KP",
    "Côte d'Ivoire": "CI", "Cote d'Ivoire": "CI", "Macau SAR": "MO", "Gambia, The": "GM",
    "Slovak Republic": "SK", "Czech Republic": "CZ", "Kyrgyz Republic": "KG",
    "United States of America": "US", "Russian Federation": "RU", "Taiwan": "TW",
    "Micronesia, Federated States of": "FM", "Macedonia, North": "MK", "St. Lucia": "LC",
    "Lao People's Democratic Republic": "LA", "Viet Nam": "VN", "Türkiye": "TR",
    "Turkey": "TR", "Eswatini": "SZ", "Netherlands, The": "NL", "Ireland, Republic of": "IE",
    "Bosnia & Herzegovina": "BA", "Equatorial Guinea": "GQ", "Guinea": "GN",
}


@pytest.mark.parametrize("name, code", PUBLISHER_NAMES.items())
def test_publisher_style_names_match_iso_codes(name, code):
    assert countryfacts.iso_code(name) == code


def test_publisher_style_names_all_match_registry_countries():
    codes = sorted(set(PUBLISHER_NAMES.values()))
    registry = Registry.from_data({"countries": dict(
        countryfacts.registry_entry(code) for code in codes)})
    matched = {name: countryfacts.match_registry(name, registry) for name in PUBLISHER_NAMES}
    assert all(matched.values()), [n for n, slug in matched.items() if slug is None]
    assert {name: registry.get(slug).code for name, slug in matched.items()} == PUBLISHER_NAMES


def test_unknown_names_do_not_match():
    assert countryfacts.iso_code("Freedonia") is None
    assert countryfacts.iso_code("Kosovo") is None  # not in ISO 3166-1
    assert countryfacts.match_registry("Freedonia", REGISTRY) is None


# -- the user's CSV -------------------------------------------------------------------------------

def write(tmp_path: Path, text: str | bytes, name: str = "reference.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_csv_in_publisher_style(tmp_path):
    path = write(tmp_path, (  # FIXTURE: invented rates
        "Territory,Top personal income tax rate,Standard VAT rate\n"
        '"China, People\'s Republic of",45,13\n'
        '"Hong Kong SAR","Up to 17%",N/A\n'
        '"Korea, Republic of","45, plus surcharges",10\n'
        'Latvia,31,"0, 5, 12 and 21"\n'
        '"Bahamas, The",0,10\n'
        'Freedonia,12,12\n'))
    reference = load_reference_csv(path, REGISTRY)
    rows = rows_by_name(reference)
    assert rows["China, People's Republic of"].slug == "china"
    assert rows["Hong Kong SAR"].slug == "hong_kong" and rows["Hong Kong SAR"].vat is None
    assert rows["Hong Kong SAR"].top.headline == 17 and rows["Hong Kong SAR"].top.note == "Up to"
    korea = rows["Korea, Republic of"]
    assert korea.slug == "south_korea" and korea.top.note == "plus surcharges"
    assert rows["Latvia"].vat.headline == 21
    assert rows["Bahamas, The"].slug is None and rows["Bahamas, The"].code == "BS"
    assert reference.warnings == [
        "reference.csv: 1 name(s) not matched: Freedonia",
        "reference.csv: 1 countr(ies) not in the registry, ignored: Bahamas, The"]
    assert reference.label == "reference.csv"


def test_csv_with_semicolons_and_bom(tmp_path):
    path = write(tmp_path, "\ufeffCountry;VAT;Income tax (top rate)\nGermany;19;45\n")
    (row,) = load_reference_csv(path, REGISTRY).rows
    assert (row.slug, row.vat.headline, row.top.headline) == ("germany", 19, 45)


@pytest.mark.parametrize("content, message", [
    (b"", "empty reference file"),
    (b"Name;Rate\xff\n", "not UTF-8 text"),
    ("Rate,VAT\n1,2\n", "no territory/country column (columns: 'Rate', 'VAT')"),
    ("Country,Population\nGermany,80\n", "no VAT or top income-tax rate column"),
    ("Country,VAT\nFreedonia,20\n", "no row names a registry country"),
])
def test_unusable_csv_is_one_line_error(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(ReferenceTableError, match="^" + str(path).replace(".", r"\.") + ": ") as info:
        load_reference_csv(path, REGISTRY)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_csv_is_one_line_error(tmp_path):
    with pytest.raises(ReferenceTableError, match="cannot read reference file"):
        load_reference_csv(tmp_path / "nope.csv", REGISTRY)


def test_rows_from_every_rate_table_of_a_split_page():
    territories = ('<table class="wikitable"><tbody><tr><th>Territory</th><th>VAT</th></tr>'
                   '<tr><td><i><a href="/wiki/Jersey" title="Jersey">Jersey</a></i></td>'
                   '<td>5%</td></tr></tbody></table>')  # FIXTURE rates
    reference = parse_list_page(OLD_LAYOUT.replace("</div>", territories + "</div>"), REGISTRY)
    rows = rows_by_name(reference)
    assert set(rows) == {"Germany", "Latvia", "Jersey"}
    assert rows["Jersey"].territory and rows["Jersey"].vat.headline == 5
    assert rows["Jersey"].top is None


def test_every_iso_3166_name_and_display_name_matches_its_own_code():
    import pycountry

    wrong = []
    for country in pycountry.countries:
        names = {country.name, getattr(country, "official_name", None),
                 getattr(country, "common_name", None)} - {None}
        try:
            names.add(countryfacts.display_name(country.alpha_2))
        except ValueError:
            pass
        wrong += [(country.alpha_2, name) for name in names
                  if countryfacts.iso_code(name) != country.alpha_2]
    assert wrong == []
