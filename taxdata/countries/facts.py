"""Stable country facts from well-kept libraries: names to ISO codes, registry entries, never typed.

* ISO 3166-1 codes and official names: ``pycountry`` (the iso-codes database).
* Currency: ``babel`` (CLDR's territory currencies, the legal tender in use today).
* Coordinates and the common English names and spellings of a country (``Ivory Coast``,
  ``East Timor``, ``Macau``): ``countryinfo`` (data bundled in the package, works offline).

Why not country_converter: it is the usual choice for publisher-style names, but it pulls in
pandas (and numpy) for a lookup table; the three small libraries above already carry every name
form we need once the publisher's inverted style (``China, People's Republic of``, ``Bahamas,
The``, ``Hong Kong SAR``) is turned around, which :func:`name_variants` does.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import pycountry
from babel import Locale
from babel.numbers import get_territory_currencies
from countryinfo import CountryInfo, all_countries
from countryinfo.exceptions import CountryNotFoundError

from taxdata.countries.registry import Registry

# Words that carry no identity in a country name ("The Gambia", "Bahamas, The").
_NOISE_WORDS = frozenset({"the"})
# Publisher suffixes naming a status, not a country: "Hong Kong SAR", "Macau SAR".
_STATUS_SUFFIX = re.compile(r"\s*\b(?:SAR|S\.A\.R\.)\s*$", re.IGNORECASE)
_PARENTHESIS = re.compile(r"\s*\([^)]*\)")


def name_key(name: str) -> str:
    """Compare form of a name: no accents, case, punctuation, "the", "&" or "St." spellings."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold().replace("&", " and ").replace("\u2019", "'")
    words = re.findall(r"[a-z0-9]+", text.replace("'", ""))
    words = ["saint" if w in ("st", "ste") else w for w in words if w not in _NOISE_WORDS]
    return " ".join(words)


def name_variants(name: str) -> list[str]:
    """The name as given plus its publisher-style rewrites, most literal first.

    ``China, People's Republic of`` -> ``People's Republic of China``; ``Hong Kong SAR`` ->
    ``Hong Kong``; ``Korea (Republic of)`` -> ``Korea``; ``Congo, Democratic Republic of the`` ->
    ``Democratic Republic of the Congo``.
    """
    name = " ".join(name.split())
    out = [name]
    stripped = _STATUS_SUFFIX.sub("", _PARENTHESIS.sub("", name)).strip(" ,")
    out.append(stripped)
    if stripped.count(",") == 1:
        head, tail = (part.strip() for part in stripped.split(","))
        # Only the inversion: the head alone ("Guinea, Equatorial" -> "Guinea") may be another
        # country. ("Bahamas, The" needs neither: "the" is not part of a name's key.)
        out.append(f"{tail} {head}")
    return [v for v in dict.fromkeys(out) if v]


@functools.lru_cache(maxsize=1)
def _library_index() -> dict[str, str]:
    """name key -> ISO alpha-2, from pycountry, countryinfo and babel; ambiguous keys dropped."""
    found: dict[str, set[str]] = {}

    def add(name: Any, code: str) -> None:
        if isinstance(name, str) and name.strip():
            for variant in name_variants(name):
                found.setdefault(name_key(variant), set()).add(code)

    for country in pycountry.countries:
        for attr in ("name", "official_name", "common_name"):
            add(getattr(country, attr, None), country.alpha_2)
    for info in all_countries():
        data = info.info()
        code = (data.get("ISO") or {}).get("alpha2")
        if not code or pycountry.countries.get(alpha_2=code) is None:
            continue
        add(data.get("name"), code)
        add(data.get("nativeName"), code)
        for spelling in data.get("altSpellings") or []:
            if len(spelling) > 3:  # two/three-letter spellings are codes, matched separately
                add(spelling, code)
    for code, name in Locale("en").territories.items():
        if len(code) == 2 and pycountry.countries.get(alpha_2=code) is not None:
            add(name.replace(" - ", " "), code)
    return {key: next(iter(codes)) for key, codes in found.items() if len(codes) == 1 and key}


def iso_code(name: str) -> str | None:
    """ISO 3166-1 alpha-2 code for a country name in any common or publisher style, or None."""
    index = _library_index()
    for variant in name_variants(name):
        code = index.get(name_key(variant))
        if code:
            return code
    return None


def match_registry(name: str, registry: Registry) -> str | None:
    """The registry slug a name means: the registry's own names first, then the ISO code."""
    for variant in name_variants(name):
        if variant in registry:
            return registry.get(variant).slug
    code = iso_code(name)
    if code is None:
        return None
    for country in registry:
        if country.code == code:
            return country.slug
    return None


def slug_for(name: str) -> str:
    """Registry slug of a display name: ``South Korea`` -> ``south_korea``."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def display_name(code: str) -> str:
    """The common English name: countryinfo's (``South Korea``, ``Macau``), else pycountry's."""
    try:
        # "The Bahamas" -> "Bahamas": registry names (and slugs) go without the article.
        return re.sub(r"^the\s+", "", CountryInfo(code).name().strip(), flags=re.I)
    except CountryNotFoundError:
        country = pycountry.countries.get(alpha_2=code)
        if country is None:
            raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 code") from None
        return getattr(country, "common_name", None) or country.name


def currency(code: str) -> str:
    """The territory's current legal-tender currency per CLDR (babel)."""
    currencies = get_territory_currencies(code, tender=True)
    if not currencies:
        raise ValueError(f"babel knows no current currency for {code}")
    return currencies[0]


def coordinates(code: str) -> tuple[float, float]:
    """An approximate centroid [lat, lng] (countryinfo), rounded to 2 decimals like the registry."""
    try:
        lat, lng = CountryInfo(code).latlng()[:2]
    except (CountryNotFoundError, ValueError, TypeError):
        raise ValueError(f"countryinfo has no coordinates for {code}") from None
    return round(float(lat), 2), round(float(lng), 2)


def registry_entry(code_or_name: str, wikipedia_title: str | None = None,
                   name: str | None = None) -> tuple[str, dict[str, Any]]:
    """``(slug, entry)`` in the registry file's format, every fact from the libraries."""
    is_code = re.fullmatch(r"[A-Za-z]{2}", code_or_name)
    code = code_or_name.upper() if is_code else iso_code(code_or_name)
    if code is None or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"no ISO 3166-1 country matches {code_or_name!r}")
    name = name or display_name(code)
    return slug_for(name), {
        "name": name,
        "code": code,
        "currency": currency(code),
        "wikipedia_title": wikipedia_title,
        "coordinates": list(coordinates(code)),
    }


def add_entries(document: dict[str, Any],
                entries: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """Add entries to a parsed registry document (keys kept sorted); returns the slugs added.

    An existing slug or ISO code is never replaced: what the user wrote stays.
    """
    countries = document.setdefault("countries", {})
    codes = {entry.get("code") for entry in countries.values() if isinstance(entry, dict)}
    added = []
    for slug, entry in entries:
        if slug in countries or entry["code"] in codes:
            continue
        countries[slug] = entry
        codes.add(entry["code"])
        added.append(slug)
    document["countries"] = dict(sorted(countries.items()))
    return added
