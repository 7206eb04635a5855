"""Reference sources (taxdata/reference.py) and name matching (taxdata/countryfacts.py).

The list page (``tests/fixtures/wikipedia/list_of_countries_by_tax_rates.html``) and every rate
in the CSV files here are FIXTURE data: invented figures shaped like the real sources.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from conftest import CLOSED_WIKIPEDIA_API

from taxdata.countries import facts as countryfacts
from taxdata.countries.registry import BUNDLED_FILE, Registry, load_registry
from taxdata.references.csvfile import load_reference_csv, parse_column_spec
from taxdata.references.listpage import LIST_TITLE, fetch_list_reference, parse_list_page
from taxdata.references.rates import parse_rate
from taxdata.references.table import ReferenceTableError
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
    # The headline is the first rate the cell states; the total is its note's own number.
    assert germany.top.headline == 45 and germany.top.note == "incl. solidarity surcharge"
    assert [other.value for other in germany.top.others] == [47.475]
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
    # Every sovereign country of the page is in the registry (the world: UN members and the
    # calculator's territories); Jersey (a territory) and Kosovo (no ISO code) are not.
    assert {row.slug for row in reference.rows if row.slug} == {
        "albania", "austria", "bahamas", "canada", "chad", "estonia", "france", "germany",
        "ghana", "ivory_coast", "kenya", "latvia", "liechtenstein", "mali", "peru",
        "switzerland", "united_states"}
    assert reference.matched == 17


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


@pytest.mark.parametrize("text, kind, headline, others", [
    # The first rate the cell states is the headline; the rest is its note, numbers kept.
    ("55 (until 2029, after that it will be 50%)", "top", 55, (50,)),
    ("45, plus 2.1% surtax", "top", 45, (2.1,)),
    ("15 (5% prior to 2020)", "top", 15, (5,)),
    ("22 (standard);\n13, 6 (reduced)", "vat", 22, (13, 6)),
    ("5% (GST) + 0–10% (PST)", "vat", 5, (10,)),
    ("1 January 2025: 24%; before: 22%", "vat", 24, (22,)),  # a date is not a rate
    ("20% for wages above $27,000", "top", 20, ()),  # nor an amount
])
def test_headline_is_the_first_rate_stated(text, kind, headline, others):
    rate = parse_rate(text, kind)
    assert rate.headline == headline and tuple(o.value for o in rate.others) == others


def test_precision_is_kept_as_published():
    assert [parse_rate(t, "vat").decimals for t in ("20", "20.5", "8.10", "47.475%")] == [
        0, 1, 2, 3]
    figure = parse_rate("8.1%", "vat").figure
    assert [figure.matches(v) for v in (8.1, 8.14, 8, 7.7, 8.2)] == [
        True, True, False, False, False]
    whole = parse_rate("20%", "vat").figure
    assert [whole.matches(v) for v in (20, 20.0, 20.4, 20.5, 19.5)] == [
        True, True, False, False, False]


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
        '"Isle of Man",20,20\n'
        'Freedonia,12,12\n'))
    reference = load_reference_csv(path, REGISTRY)
    rows = rows_by_name(reference)
    assert rows["China, People's Republic of"].slug == "china"
    assert rows["Hong Kong SAR"].slug == "hong_kong" and rows["Hong Kong SAR"].vat is None
    assert rows["Hong Kong SAR"].top.headline == 17 and rows["Hong Kong SAR"].top.note == "Up to"
    korea = rows["Korea, Republic of"]
    assert korea.slug == "south_korea" and korea.top.note == "plus surcharges"
    assert rows["Latvia"].vat.headline == 21
    assert rows["Bahamas, The"].slug == "bahamas" and rows["Bahamas, The"].code == "BS"
    assert rows["Isle of Man"].slug is None and rows["Isle of Man"].code == "IM"
    assert reference.warnings == [
        "reference.csv: 1 name(s) not matched: Freedonia",
        "reference.csv: 1 countr(ies) not in the registry, ignored: Isle of Man"]
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


# -- reference files as publishers ship them (tests/fixtures/references/: FIXTURE figures) -------

SHAPES = Path(__file__).resolve().parents[1] / "fixtures" / "references"


def headlines(reference, kind: str) -> dict[str, float | None]:
    return {row.slug: getattr(row, kind).headline if getattr(row, kind) else None
            for row in reference.rows if row.slug}


def test_worldwide_vat_summary_underscored_header_and_footer():
    # Territory,Standard_VAT_rate,Last_reviewed: the date column is no rate; the footer's
    # disclaimer is not a country.
    reference = load_reference_csv(SHAPES / "worldwide_vat.csv", REGISTRY)
    assert reference.columns == {"country": "Territory", "vat": "Standard_VAT_rate"}
    assert headlines(reference, "vat") == {
        "austria": 21, "bahamas": 11, "china": 14, "hong_kong": None, "south_korea": 11,
        "latvia": 22,  # "22 (standard);\n13, 6 (reduced)": a cell over two lines
        "slovakia": 24, "switzerland": 8.3, "united_states": 8.25}
    us = reference.for_slug("united_states").vat
    assert us.is_range and (us.low, us.high) == (0, 8.25)  # "state sales taxes 0 to 8.25%"
    assert reference.for_slug("switzerland").vat.decimals == 1
    assert reference.warnings == [
        "worldwide_vat.csv: 1 name(s) not matched: Freedonia",
        "worldwide_vat.csv: 1 countr(ies) not in the registry, ignored: Isle of Man"]


def test_worldwide_pit_summary_first_rate_is_the_headline():
    reference = load_reference_csv(SHAPES / "worldwide_pit.csv", REGISTRY)
    assert reference.columns == {"country": "Territory", "top": "Headline_PIT_rate"}
    assert headlines(reference, "top") == {
        "austria": 55,  # "55 (until 2029, after that it will be 50%)", not 50
        "south_korea": 45,  # "45, plus 2.1% surtax", not 2.1
        "estonia": 15,  # "15 (5% prior to 2020)", not 5
        "germany": 42,  # "42 (44.31% incl. solidarity surcharge)"
        "japan": 40, "hong_kong": 16, "canada": 31,
        "slovakia": 25,  # "19 / 25": a bare list of alternatives, its highest
        "latvia": 30}  # "30\n(flat 20% on lower incomes)"
    korea = reference.for_slug("south_korea").top
    assert korea.note == "plus surtax" and [o.value for o in korea.others] == [2.1]
    # Two footer lines and a blank row: no warning; the one unknown name: one line.
    assert reference.warnings == ["worldwide_pit.csv: 1 name(s) not matched: Ruritania"]


def test_eu_table_standard_rate_column_and_codes_in_brackets():
    reference = load_reference_csv(SHAPES / "eu_vat.csv", REGISTRY)
    # "Super-Reduced Rate (%)", "Reduced Rate (%)", "Parking Rate (%)" are not the standard rate.
    assert reference.columns == {"country": "Country", "vat": "Standard Rate (%)"}
    assert headlines(reference, "vat") == {"austria": 21, "belgium": 22, "greece": 25,
                                           "france": 20.5, "ireland": 23.5, "luxembourg": 17.5}
    assert reference.for_slug("greece").name == "Greece (EL)"  # EL is no ISO code: the name is
    assert reference.warnings == []


def test_hand_made_list_with_a_title_above_its_header():
    # Two title lines (one with a comma) and a blank line above a semicolon-separated header.
    reference = load_reference_csv(SHAPES / "handmade.csv", REGISTRY)
    assert reference.columns == {"country": "Country", "vat": "VAT", "top": "Top income tax"}
    assert headlines(reference, "vat") == {"germany": 18, "france": 21, "italy": 23, "spain": 20}
    assert headlines(reference, "top") == {"germany": 46, "france": 44, "italy": 44, "spain": 46}


def test_ambiguous_columns_are_named_not_guessed(tmp_path):
    path = SHAPES / "two_vat_columns.csv"
    with pytest.raises(ReferenceTableError) as info:
        load_reference_csv(path, REGISTRY)
    assert str(info.value) == (f"{path}: cannot tell which column holds the standard VAT rate "
                               "('VAT 2024' or 'VAT 2025'); name it: --reference-column vat=NAME")
    reference = load_reference_csv(path, REGISTRY, parse_column_spec("vat=vat_2025"))
    assert reference.columns == {"vat": "VAT 2025", "country": "Country"}
    assert headlines(reference, "vat") == {"germany": 19, "denmark": 26}
    with pytest.raises(ReferenceTableError, match=r"no column 'VAT 2026' for "
                                                  r"--reference-column vat="):
        load_reference_csv(path, REGISTRY, {"vat": "VAT 2026"})


@pytest.mark.parametrize("spec, parsed", [
    ("vat=Standard Rate (%)", {"vat": "Standard Rate (%)"}),
    ("vat=Standard Rate (%),top=Headline_PIT_rate, country = Territory",
     {"vat": "Standard Rate (%)", "top": "Headline_PIT_rate", "country": "Territory"}),
    ("territory=Name,pit=Rate, in %", {"country": "Name", "top": "Rate, in %"}),
    ("", {}),
])
def test_reference_column_spec(spec, parsed):
    assert parse_column_spec(spec) == parsed


@pytest.mark.parametrize("spec, message", [
    ("Standard Rate", "expected KEY=COLUMN pairs"),
    ("rate=Standard Rate", "unknown key 'rate'"),
    ("vat=", "vat= names no column"),
])
def test_bad_reference_column_spec_is_one_line(spec, message):
    with pytest.raises(ReferenceTableError, match=re.escape(message)):
        parse_column_spec(spec)


def test_warnings_are_one_line_each_and_bounded(tmp_path):
    names = [f"Freedonia {n}" for n in range(30)]
    path = write(tmp_path, "Country,VAT\nGermany,19\n" + "".join(f"{n},12\n" for n in names))
    (warning,) = load_reference_csv(path, REGISTRY).warnings
    assert warning == ("reference.csv: 30 name(s) not matched: " + ", ".join(names[:8])
                       + " and 22 more")
