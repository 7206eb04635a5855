"""Tests for the country registry (taxdata/registry.py and data/countries.json)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from taxdata.countries.registry import (
    BUNDLED_FILE,
    ENV_VAR,
    Country,
    Registry,
    RegistryError,
    UnknownCountryError,
    countries_path,
    load_registry,
)

EXPECTED_SLUGS = {
    "albania", "andorra", "argentina", "australia", "austria", "belgium", "bosnia_and_herzegovina",
    "brazil", "bulgaria", "canada", "china", "croatia", "cyprus", "czech_republic", "denmark",
    "estonia", "finland", "france", "germany", "greece", "hong_kong", "hungary", "iceland", "india",
    "indonesia", "ireland", "italy", "japan", "latvia", "liechtenstein", "lithuania", "luxembourg",
    "malta", "montenegro", "netherlands", "north_korea", "norway", "poland", "portugal", "russia",
    "serbia", "singapore", "slovakia", "south_africa", "spain", "sweden", "switzerland", "taiwan",
    "ukraine", "united_arab_emirates", "united_kingdom", "united_states",
    # The 8 countries of the calculator's original file the first registry lacked (issue 8).
    "egypt", "macau", "mexico", "mongolia", "nigeria", "saudi_arabia", "south_korea", "thailand",
}
CALCULATOR_ADDITIONS = ("egypt", "macau", "mexico", "mongolia", "nigeria", "saudi_arabia",
                        "south_korea", "thailand")

GERMANY = {"name": "Germany", "code": "DE", "currency": "EUR",
           "wikipedia_title": "Taxation in Germany", "coordinates": [51.2, 10.4]}


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    # A developer's own TAXDATA_COUNTRIES must not leak into these tests.
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(BUNDLED_FILE)


def write_doc(path: Path, countries: dict, **top) -> Path:
    path.write_text(json.dumps({"_comment": "test", **top, "countries": countries}), encoding="utf-8")
    return path


def load_entry(tmp_path: Path, **changes) -> Registry:
    """Load a one-country file whose germany entry has ``changes`` applied (``...`` deletes a key)."""
    entry = {**GERMANY, **changes}
    entry = {k: v for k, v in entry.items() if v is not ...}
    return load_registry(write_doc(tmp_path / "countries.json", {"germany": entry}))


# --- the bundled file ---------------------------------------------------------------------------

def test_bundled_file_is_the_world(registry):
    # Every UN member state plus the calculator's territories, and the first 60 among them.
    from taxdata.countries.build import CALCULATOR_TERRITORIES, UN_MEMBERS

    assert len(UN_MEMBERS) == len(set(UN_MEMBERS)) == 193
    assert {c.code for c in registry} == set(UN_MEMBERS) | set(CALCULATOR_TERRITORIES)
    assert len(registry) == 196
    assert EXPECTED_SLUGS <= set(registry.slugs)
    assert registry.slugs == sorted(registry.slugs)
    assert [c.slug for c in registry] == registry.slugs
    assert registry.get("eswatini").code == "SZ" and registry.get("north_macedonia").code == "MK"


def test_bundled_file_is_what_the_build_command_writes(tmp_path, capsys):
    from taxdata.countries.build import main

    assert main(["--check"]) == 0  # python -m taxdata.countries.build --check
    out = tmp_path / "countries.json"
    assert main(["--out", str(out)]) == 0
    assert out.read_bytes() == BUNDLED_FILE.read_bytes()
    stale = tmp_path / "stale.json"
    stale.write_text(BUNDLED_FILE.read_text(encoding="utf-8").replace('"Eswatini"', '"Swaziland"'),
                     encoding="utf-8")
    assert main(["--check", "--out", str(stale)]) == 1
    assert "differs from a fresh build" in capsys.readouterr().err


def test_first_registry_entries_are_kept_as_they_were(registry):
    # The build keeps the centroids the first 60 entries were made with: a rebuild must not
    # move the calculator's countries on its map.
    assert registry.get("germany").coordinates == (51.17, 10.45)
    assert registry.get("hong_kong").coordinates == (22.4, 114.11)


def test_default_load_uses_bundled_file(tmp_path):
    reg = load_registry(data_dir=tmp_path)  # no countries.json there -> bundled
    assert reg.source == str(BUNDLED_FILE)
    assert len(reg) == len(load_registry(BUNDLED_FILE))


def test_bundled_file_is_canonically_formatted():
    text = BUNDLED_FILE.read_text(encoding="utf-8")
    data = json.loads(text)
    assert list(data) == ["_comment", "countries"]
    assert list(data["countries"]) == sorted(data["countries"])
    assert text == json.dumps(data, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("slug", CALCULATOR_ADDITIONS)
def test_added_calculator_countries_come_from_the_libraries(registry, slug):
    # ISO code, currency and coordinates as pycountry/babel/countryinfo give them, not typed.
    from taxdata.countries.facts import registry_entry
    country = registry.get(slug)
    built_slug, entry = registry_entry(country.code, country.wikipedia_title)
    assert built_slug == slug
    assert entry == {"name": country.name, "code": country.code, "currency": country.currency,
                     "wikipedia_title": country.wikipedia_title,
                     "coordinates": list(country.coordinates)}


def test_bundled_entries_hold_only_stable_facts():
    data = json.loads(BUNDLED_FILE.read_text(encoding="utf-8"))
    for slug, entry in data["countries"].items():
        assert set(entry) == {"name", "code", "currency", "wikipedia_title", "coordinates"}, slug


def test_every_bundled_entry_is_valid(registry):
    codes = set()
    for c in registry:
        assert re.fullmatch(r"[A-Z]{2}", c.code), c.slug
        assert re.fullmatch(r"[A-Z]{3}", c.currency), c.slug
        assert c.name.strip() == c.name and c.name, c.slug
        lat, lng = c.coordinates
        assert -90 <= lat <= 90 and -180 <= lng <= 180, c.slug
        assert c.code not in codes, f"duplicate code {c.code}"
        codes.add(c.code)
        if c.wikipedia_title is None:
            assert c.wikipedia_url is None
        else:
            assert c.wikipedia_title.startswith("Taxation in "), c.slug
            assert c.wikipedia_url == ("https://en.wikipedia.org/wiki/"
                                       + c.wikipedia_title.replace(" ", "_"))


@pytest.mark.parametrize("slug, code, currency, title", [
    ("germany", "DE", "EUR", "Taxation in Germany"),
    ("united_states", "US", "USD", "Taxation in the United States"),
    ("united_kingdom", "GB", "GBP", "Taxation in the United Kingdom"),
    ("ireland", "IE", "EUR", "Taxation in the Republic of Ireland"),
    ("switzerland", "CH", "CHF", "Taxation in Switzerland"),
    ("north_korea", "KP", "KPW", "Taxation in North Korea"),
    ("hong_kong", "HK", "HKD", "Taxation in Hong Kong"),
])
def test_known_entries(registry, slug, code, currency, title):
    c = registry.get(slug)
    assert (c.code, c.currency, c.wikipedia_title) == (code, currency, title)


def test_coordinates_are_roughly_right(registry):
    # Sign checks catch swapped [lng, lat] pairs.
    assert registry.get("australia").coordinates[0] < 0
    assert registry.get("united_states").coordinates[1] < 0
    japan_lat, japan_lng = registry.get("japan").coordinates
    assert 30 < japan_lat < 46 and 128 < japan_lng < 146


def test_wikipedia_url():
    assert (Country("us", "US", "US", "USD", "Taxation in the United States", (1, 2)).wikipedia_url
            == "https://en.wikipedia.org/wiki/Taxation_in_the_United_States")
    odd = Country("ci", "Ivory Coast", "CI", "XOF", "Taxation in Côte d'Ivoire (draft)", (7.5, -5.5))
    assert odd.wikipedia_url == ("https://en.wikipedia.org/wiki/"
                                 "Taxation_in_C%C3%B4te_d%27Ivoire_(draft)")
    assert Country("xx", "X", "XX", "XXX", None, (0, 0)).wikipedia_url is None


def test_country_is_frozen_and_validated_on_construction(registry):
    with pytest.raises(AttributeError):
        registry.get("germany").currency = "DEM"
    with pytest.raises(RegistryError, match=r"^entry 'germany': currency 'euro' is not"):
        Country("germany", "Germany", "DE", "euro", None, (51.2, 10.4))


# --- lookups ------------------------------------------------------------------------------------

def test_get_and_contains(registry):
    assert registry.get("germany").name == "Germany"
    assert registry.get("United Kingdom").slug == "united_kingdom"
    assert "germany" in registry and "Czech Republic" in registry
    assert "atlantis" not in registry and 42 not in registry


def test_select_none_means_all(registry):
    assert [c.slug for c in registry.select(None)] == registry.slugs


def test_select_slugs_keeps_order(registry):
    assert [c.slug for c in registry.select(["spain", "germany", "japan"])] == [
        "spain", "germany", "japan"]


@pytest.mark.parametrize("name", ["United Kingdom", "united-kingdom", "  UNITED  kingdom ",
                                  "united_kingdom"])
def test_select_display_name_forms(registry, name):
    assert [c.slug for c in registry.select([name])] == ["united_kingdom"]


def test_select_comma_string(registry):
    assert [c.slug for c in registry.select(" germany, France ,south africa,")] == [
        "germany", "france", "south_africa"]
    # CLI lists may carry commas inside items too.
    assert [c.slug for c in registry.select(["germany,france", "spain"])] == [
        "germany", "france", "spain"]


def test_select_deduplicates(registry):
    picked = registry.select("germany, Germany, united states, GERMANY, United-States")
    assert [c.slug for c in picked] == ["germany", "united_states"]


def test_select_nothing_is_an_error(registry):
    with pytest.raises(RegistryError, match="no country names"):
        registry.select(" , ")


def test_unknown_slug_suggests_close_matches(registry):
    with pytest.raises(UnknownCountryError) as err:
        registry.get("germny")
    assert str(err.value) == "unknown country 'germny' (did you mean: germany?)"
    assert err.value.names == ["germny"]
    assert isinstance(err.value, RegistryError) and isinstance(err.value, ValueError)


def test_unknown_display_name_suggests_via_display_names(registry):
    with pytest.raises(UnknownCountryError, match=r"did you mean: united_kingdom\?"):
        registry.select("United Kingdon")


def test_select_reports_all_unknown_names_at_once(registry):
    with pytest.raises(UnknownCountryError) as err:
        registry.select(["germny", "france", "frnace", "qqqqqq", "germny"])
    msg = str(err.value)
    assert msg.startswith("unknown countries ")
    assert "'germny' (did you mean: germany?)" in msg
    assert "'frnace' (did you mean: france?)" in msg
    assert "'qqqqqq'" in msg and "'qqqqqq' (" not in msg  # nothing close
    assert err.value.names == ["germny", "frnace", "qqqqqq"]
    assert "\n" not in msg


# --- where the file comes from ------------------------------------------------------------------

def test_env_override(monkeypatch, tmp_path):
    custom = write_doc(tmp_path / "mine.json", {"germany": GERMANY})
    monkeypatch.setenv(ENV_VAR, str(custom))
    reg = load_registry()
    assert reg.slugs == ["germany"] and reg.source == str(custom)
    assert countries_path() == (custom, ENV_VAR)


def test_resolution_order(monkeypatch, tmp_path):
    explicit = write_doc(tmp_path / "explicit.json", {"germany": GERMANY})
    env_file = write_doc(tmp_path / "env.json", {"france": {**GERMANY, "name": "France",
                                                            "code": "FR"}})
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_doc(data_dir / "countries.json", {"spain": {**GERMANY, "name": "Spain", "code": "ES"}})

    assert load_registry(data_dir=data_dir).slugs == ["spain"]  # data_dir beats bundled
    monkeypatch.setenv(ENV_VAR, str(env_file))
    assert load_registry(data_dir=data_dir).slugs == ["france"]  # env beats data_dir
    assert load_registry(explicit, data_dir=data_dir).slugs == ["germany"]  # path beats env


def test_env_pointing_at_missing_file(monkeypatch, tmp_path):
    missing = tmp_path / "nope.json"
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(RegistryError, match=re.escape(str(missing)) + ".*not found.*" + ENV_VAR):
        load_registry()


def test_user_added_country(monkeypatch, tmp_path):
    data = json.loads(BUNDLED_FILE.read_text(encoding="utf-8"))
    data["countries"]["kosovo"] = {"name": "Kosovo", "code": "XK", "currency": "EUR",
                                   "wikipedia_title": None, "coordinates": [42.6, 20.9]}
    custom = tmp_path / "countries.json"
    custom.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(custom))
    reg = load_registry()
    assert len(reg) == len(load_registry(BUNDLED_FILE)) + 1 and "kosovo" in reg.slugs
    assert [c.slug for c in reg.select("Kosovo, germany")] == ["kosovo", "germany"]
    assert reg.get("kosovo").wikipedia_url is None


# --- malformed files ----------------------------------------------------------------------------

def test_bad_currency_message_is_exact(tmp_path):
    with pytest.raises(RegistryError) as err:
        load_entry(tmp_path, currency="euro")
    assert str(err.value) == (f"{tmp_path / 'countries.json'}: entry 'germany': "
                              "currency 'euro' is not a 3-letter ISO 4217 code")


@pytest.mark.parametrize("changes, fragment", [
    ({"code": "de"}, "code 'de'"),
    ({"code": "DEU"}, "code 'DEU'"),
    ({"currency": "EURO"}, "currency 'EURO'"),
    ({"name": "  "}, "name"),
    ({"name": 7}, "name"),
    ({"wikipedia_title": ""}, "wikipedia_title"),
    ({"wikipedia_title": 3}, "wikipedia_title"),
    ({"coordinates": [95, 10]}, "out of range"),
    ({"coordinates": [51, 190]}, "out of range"),
    ({"coordinates": [51.2]}, "two numbers"),
    ({"coordinates": [51.2, 10.4, 0]}, "two numbers"),
    ({"coordinates": ["51", 10]}, "two numbers"),
    ({"coordinates": [True, 10]}, "two numbers"),
    ({"coordinates": {"lat": 1, "lng": 2}}, "two numbers"),
    ({"vat_rate": 19}, "unknown key(s) 'vat_rate'"),
    ({"code": ...}, "missing key(s) 'code'"),
])
def test_malformed_entry_names_entry_and_field(tmp_path, changes, fragment):
    with pytest.raises(RegistryError) as err:
        load_entry(tmp_path, **changes)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'countries.json'}: entry 'germany': ")
    assert fragment in msg
    assert "\n" not in msg


def test_entry_not_an_object(tmp_path):
    with pytest.raises(RegistryError, match=r"entry 'germany': must be an object"):
        load_registry(write_doc(tmp_path / "c.json", {"germany": ["Germany", "DE"]}))


@pytest.mark.parametrize("slug", ["Germany", "1germany", "ger-many", "_germany"])
def test_bad_slug(tmp_path, slug):
    with pytest.raises(RegistryError, match=f"entry '{slug}': slug must be"):
        load_registry(write_doc(tmp_path / "c.json", {slug: GERMANY}))


def test_invalid_json_reports_line_and_column(tmp_path):
    bad = tmp_path / "countries.json"
    bad.write_text('{\n  "countries": {\n    "germany": {"name": "Germany",}\n  }\n}\n',
                   encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        load_registry(bad)
    assert re.fullmatch(re.escape(str(bad)) + r": invalid JSON at line 3, column \d+: .+",
                        str(err.value))


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(RegistryError, match=re.escape(str(missing)) + ": countries file not found"):
        load_registry(missing)


def test_duplicate_country_key(tmp_path):
    dup = tmp_path / "countries.json"
    entry = json.dumps(GERMANY)
    dup.write_text(f'{{"countries": {{"germany": {entry}, "germany": {entry}}}}}',
                   encoding="utf-8")
    with pytest.raises(RegistryError, match="duplicate key 'germany'"):
        load_registry(dup)


@pytest.mark.parametrize("doc, fragment", [
    ([], "expected an object"),
    ({"countries": []}, "expected an object"),
    ({"countries": {}}, "no countries defined"),
    ({"countries": {"germany": GERMANY}, "extra": 1}, "unknown top-level key(s) 'extra'"),
])
def test_bad_top_level(tmp_path, doc, fragment):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RegistryError) as err:
        load_registry(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value)


def test_name_clashing_with_another_slug(tmp_path):
    clash = {"germany": GERMANY, "deutschland": {**copy.deepcopy(GERMANY), "name": "Germany"}}
    with pytest.raises(RegistryError, match="name 'Germany' clashes with entry"):
        load_registry(write_doc(tmp_path / "c.json", clash))


def test_registry_from_mapping():
    c = Country("germany", "Germany", "DE", "EUR", None, (51.2, 10.4))
    reg = Registry({"germany": c})
    assert reg.get("Germany") is c and list(reg) == [c]
    with pytest.raises(RegistryError, match="does not match"):
        Registry({"france": c})
