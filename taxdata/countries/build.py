"""Build the bundled country registry (``taxdata/data/countries.json``) from the country libraries.

``python -m taxdata.countries.build`` rewrites the file; ``--check`` only says whether it is up
to date (exit 1 when not). The file is the world: every UN member state (:data:`UN_MEMBERS`)
plus the territories the original calculator has (:data:`CALCULATOR_TERRITORIES`: Hong Kong,
Macau, Taiwan). Each entry comes from :func:`taxdata.countries.facts.registry_entry` (ISO code
and names from pycountry and countryinfo, currency from babel, coordinates from countryinfo);
only stable facts the libraries do not have are written here:

* UN membership (the libraries carry no such list): the 193 member states' ISO codes;
* names the libraries still give in a superseded form (``Swaziland``, ``Republic of Macedonia``);
* the centroids the first registry entries were made with (kept, so the calculator's
  coordinates do not change under its users);
* the English Wikipedia "Taxation in X" article of each country known to have one. A title is
  a claim that Wikipedia can check: ``tax_data_updater.py --discover-countries`` confirms every
  title when it runs online (a moved article is followed, a missing one reported), and fills
  titles from the list page's links; the enhanced generator skips a title that does not exist,
  and ``research_and_format.py --missing`` asks Wikipedia before it researches such a country.

No tax facts live here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from taxdata.countries.facts import registry_entry
from taxdata.countries.registry import BUNDLED_FILE, Registry
from taxdata.store.datadir import atomic_write_bytes, dump_json

# The 193 member states of the United Nations (un.org/en/about-us/member-states), by ISO 3166-1
# alpha-2 code.
UN_MEMBERS: tuple[str, ...] = tuple("""
AF AL DZ AD AO AG AR AM AU AT AZ BS BH BD BB BY BE BZ BJ BT BO BA BW BR BN BG BF BI CV KH CM CA
CF TD CL CN CO KM CG CD CR CI HR CU CY CZ DK DJ DM DO EC EG SV GQ ER EE SZ ET FJ FI FR GA GM GE
DE GH GR GD GT GN GW GY HT HN HU IS IN ID IR IQ IE IL IT JM JP JO KZ KE KI KW KG LA LV LB LS LR
LY LI LT LU MG MW MY MV ML MT MH MR MU MX FM MD MC MN ME MA MZ MM NA NR NP NL NZ NI NE NG KP MK
NO OM PK PW PA PG PY PE PH PL PT QA KR RO RU RW KN LC VC WS SM ST SA SN RS SC SL SG SK SI SB SO
ZA SS ES LK SD SR SE CH SY TJ TZ TH TL TG TO TT TN TR TM TV UG UA AE GB US UY UZ VU VE VN YE ZM
ZW""".split())

# Territories that are no UN member but are in the original calculator's taxData.js.
CALCULATOR_TERRITORIES: tuple[str, ...] = ("HK", "MO", "TW")

# Current English short names where countryinfo's predate a renaming (2018, 2019).
NAMES: dict[str, str] = {"SZ": "Eswatini", "MK": "North Macedonia"}

# The centroids of the first registry's entries (the calculator's own coordinates, rounded).
COORDINATES: dict[str, tuple[float, float]] = {
    "AD": (42.55, 1.6), "AE": (23.42, 53.85), "AL": (41.15, 20.17), "AR": (-38.42, -63.62),
    "AT": (47.52, 14.55), "AU": (-25.27, 133.78), "BA": (43.92, 17.68), "BE": (50.5, 4.47),
    "BG": (42.73, 25.49), "BR": (-14.24, -51.93), "CA": (56.13, -106.35), "CH": (46.82, 8.23),
    "CN": (35.86, 104.2), "CY": (35.13, 33.43), "CZ": (49.82, 15.47), "DE": (51.17, 10.45),
    "DK": (56.26, 9.5), "EE": (58.6, 25.01), "ES": (40.46, -3.75), "FI": (61.92, 25.75),
    "FR": (46.23, 2.21), "GB": (55.38, -3.44), "GR": (39.07, 21.82), "HK": (22.4, 114.11),
    "HR": (45.1, 15.2), "HU": (47.16, 19.5), "ID": (-0.79, 113.92), "IE": (53.41, -8.24),
    "IN": (20.59, 78.96), "IS": (64.96, -19.02), "IT": (41.87, 12.57), "JP": (36.2, 138.25),
    "KP": (40.34, 127.51), "LI": (47.17, 9.56), "LT": (55.17, 23.88), "LU": (49.82, 6.13),
    "LV": (56.88, 24.6), "ME": (42.71, 19.37), "MT": (35.94, 14.38), "NL": (52.13, 5.29),
    "NO": (60.47, 8.47), "PL": (51.92, 19.15), "PT": (39.4, -8.22), "RU": (61.52, 105.32),
    "SE": (60.13, 18.64), "SG": (1.35, 103.82), "SK": (48.67, 19.7), "TW": (23.7, 120.96),
    "UA": (48.38, 31.17), "US": (37.09, -95.71), "ZA": (-30.56, 22.94),
}

# English Wikipedia's article on each country's taxation, where one is known to exist.
TITLES: dict[str, str] = {
    "AD": "Taxation in Andorra", "AE": "Taxation in the United Arab Emirates",
    "AR": "Taxation in Argentina", "AT": "Taxation in Austria", "AU": "Taxation in Australia",
    "BA": "Taxation in Bosnia and Herzegovina", "BD": "Taxation in Bangladesh",
    "BE": "Taxation in Belgium", "BG": "Taxation in Bulgaria", "BR": "Taxation in Brazil",
    "CA": "Taxation in Canada", "CH": "Taxation in Switzerland", "CN": "Taxation in China",
    "CY": "Taxation in Cyprus", "CZ": "Taxation in the Czech Republic",
    "DE": "Taxation in Germany", "DK": "Taxation in Denmark", "EE": "Taxation in Estonia",
    "ES": "Taxation in Spain", "FI": "Taxation in Finland", "FR": "Taxation in France",
    "GB": "Taxation in the United Kingdom", "GR": "Taxation in Greece",
    "HK": "Taxation in Hong Kong", "HR": "Taxation in Croatia", "HU": "Taxation in Hungary",
    "ID": "Taxation in Indonesia", "IE": "Taxation in the Republic of Ireland",
    "IL": "Taxation in Israel", "IN": "Taxation in India", "IR": "Taxation in Iran",
    "IS": "Taxation in Iceland", "IT": "Taxation in Italy", "JP": "Taxation in Japan",
    "KP": "Taxation in North Korea", "KR": "Taxation in South Korea",
    "LI": "Taxation in Liechtenstein", "LK": "Taxation in Sri Lanka",
    "LT": "Taxation in Lithuania", "LU": "Taxation in Luxembourg", "LV": "Taxation in Latvia",
    "MX": "Taxation in Mexico", "MY": "Taxation in Malaysia",
    "NL": "Taxation in the Netherlands", "NO": "Taxation in Norway",
    "NZ": "Taxation in New Zealand", "PH": "Taxation in the Philippines",
    "PK": "Taxation in Pakistan", "PL": "Taxation in Poland", "PT": "Taxation in Portugal",
    "RO": "Taxation in Romania", "RS": "Taxation in Serbia", "RU": "Taxation in Russia",
    "SE": "Taxation in Sweden", "SG": "Taxation in Singapore", "SK": "Taxation in Slovakia",
    "TR": "Taxation in Turkey", "TW": "Taxation in Taiwan",
    "US": "Taxation in the United States", "VN": "Taxation in Vietnam",
    "ZA": "Taxation in South Africa",
}

COMMENT = (
    "Country registry read by taxdata/countries/registry.py: stable facts only (display name, "
    "ISO 3166-1 alpha-2 code, ISO 4217 currency, English Wikipedia article title about the "
    "country's taxation, approximate centroid [lat, lng]). No tax rates or other tax facts "
    "belong here. Built by `python -m taxdata.countries.build` from pycountry, babel and "
    "countryinfo: every UN member state plus the territories the calculator has (Hong Kong, "
    "Macau, Taiwan); do not edit it by hand, change taxdata/countries/build.py. A null "
    "wikipedia_title means no known article (research_and_format.py may research it); "
    "`tax_data_updater.py --discover-countries` confirms the titles online. To add a country "
    "of your own, point TAXDATA_COUNTRIES at your own copy.")


def build_document() -> dict[str, Any]:
    """The registry file's document, every entry built from the libraries plus the facts above."""
    countries: dict[str, dict[str, Any]] = {}
    for code in (*UN_MEMBERS, *CALCULATOR_TERRITORIES):
        slug, entry = registry_entry(code, TITLES.get(code), NAMES.get(code))
        if code in COORDINATES:
            entry["coordinates"] = list(COORDINATES[code])
        if slug in countries:
            raise ValueError(f"{code}: slug {slug!r} is taken by {countries[slug]['code']}")
        countries[slug] = entry
    document = {"_comment": COMMENT, "countries": dict(sorted(countries.items()))}
    Registry.from_data(document, source="taxdata.countries.build")  # it must load
    return document


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taxdata.countries.build",
        description="Rebuild the bundled country registry from the country libraries.")
    parser.add_argument("--check", action="store_true",
                        help="only compare: exit 1 if the file differs from a fresh build")
    parser.add_argument("--out", type=Path, default=BUNDLED_FILE,
                        help="where to write (default: the bundled %(default)s)")
    args = parser.parse_args(argv)
    text = dump_json(build_document())
    current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
    if args.check:
        if current == text:
            print(f"{args.out} is up to date")
            return 0
        print(f"{args.out} differs from a fresh build: run python -m taxdata.countries.build",
              file=sys.stderr)
        return 1
    atomic_write_bytes(args.out, text.encode("utf-8"))  # no lock files beside package data
    print(f"{args.out}: {len(build_document()['countries'])} countries"
          + (" (unchanged)" if current == text else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
