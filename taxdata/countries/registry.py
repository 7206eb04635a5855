"""The country registry: which countries taxdata knows, read from ``taxdata/data/countries.json``.

The file holds stable facts only (display name, ISO codes, the English Wikipedia article about
the country's taxation, an approximate centroid); tax facts live in the dataset, never here.
Everything the rest of the suite needs about "which countries" goes through this module.
"""

from __future__ import annotations

import difflib
import gc
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from taxdata.config import ENV_VARS
from taxdata.errors import DataError
from taxdata.store import strictjson

ENV_VAR = ENV_VARS["countries_file"]  # TAXDATA_COUNTRIES; also a Settings field
FILE_NAME = "countries.json"
# Package data inside the package itself, so editable and wheel installs both find it,
# whatever the working directory is.
BUNDLED_FILE = Path(__file__).resolve().parents[1] / "data" / FILE_NAME
WIKIPEDIA_BASE = "https://en.wikipedia.org/wiki/"

_FIELDS = ("name", "code", "currency", "wikipedia_title", "coordinates")
_FIELD_SET = frozenset(_FIELDS)
_SLUG = re.compile(r"[a-z][a-z0-9_]*")
SLUG_MAX = 64  # a file name on every system (the longest country's slug is about 35)
_ISO_COUNTRY = re.compile(r"[A-Z]{2}")
_ISO_CURRENCY = re.compile(r"[A-Z]{3}")


class RegistryError(DataError):
    """The registry file or one of its entries is unusable; the message is one line."""


class UnknownCountryError(RegistryError):
    """One or more names match no country; ``names`` lists them all."""

    def __init__(self, message: str, names: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.names = list(names)


@dataclass(frozen=True)
class Country:
    """One registry entry. Frozen, so worker threads can share instances freely."""

    slug: str
    name: str
    code: str
    currency: str
    wikipedia_title: str | None
    coordinates: tuple[float, float]

    def __post_init__(self) -> None:
        problem = _entry_problem(self)
        if problem:
            raise RegistryError(f"entry {_shown_slug(self.slug)}: {problem}")

    @property
    def wikipedia_url(self) -> str | None:
        """The article URL, or None when no taxation article is known for this country."""
        if self.wikipedia_title is None:
            return None
        # Same form as Wikipedia's own links: underscores, with ( ) , : / left readable.
        return WIKIPEDIA_BASE + quote(self.wikipedia_title.replace(" ", "_"), safe="/:(),")


def is_slug(value: object) -> bool:
    """``value`` has the shape of a registry slug (whether or not a registry holds it)."""
    return isinstance(value, str) and len(value) <= SLUG_MAX and bool(_SLUG.fullmatch(value))


def _shown_slug(slug: object) -> str:
    """A slug for a message: a 5,000-character one is cut, so the message stays one line."""
    text = repr(slug)
    return text if len(text) <= 70 else f"{text[:60]}... ({len(str(slug)):,} characters)"


def _is_number(value: object) -> bool:
    # bool is an int subclass, but true/false in the file is a mistake, not a coordinate.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry_problem(c: Country) -> str | None:
    """Describe the first invalid field of ``c``, or return None when it is valid."""
    if not is_slug(c.slug):
        return (f"slug must be lowercase letters, digits and underscores, starting with a "
                f"letter, at most {SLUG_MAX} characters")
    if not isinstance(c.name, str) or not c.name.strip():
        return "name must be a non-empty string"
    if not isinstance(c.code, str) or not _ISO_COUNTRY.fullmatch(c.code):
        return f"code {c.code!r} is not a 2-letter uppercase ISO 3166-1 alpha-2 code"
    if not isinstance(c.currency, str) or not _ISO_CURRENCY.fullmatch(c.currency):
        return f"currency {c.currency!r} is not a 3-letter ISO 4217 code"
    title = c.wikipedia_title
    if title is not None and (not isinstance(title, str) or not title.strip()):
        return "wikipedia_title must be a non-empty string or null"
    coords = c.coordinates
    if not isinstance(coords, tuple) or len(coords) != 2 or not all(map(_is_number, coords)):
        return f"coordinates {_show(coords)} must be two numbers [lat, lng]"
    lat, lng = coords
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return f"coordinates {_show(coords)} out of range (lat -90..90, lng -180..180)"
    return None


def _show(value: object) -> str:
    """Render a value the way it looks in the JSON file."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


_SEPARATORS = re.compile(r"[\s\-]+")


def _key(name: str) -> str:
    """Normalise a user-typed name: ' United-Kingdom ' and 'united kingdom' -> 'united_kingdom'."""
    return _SEPARATORS.sub("_", name.strip().lower())


def _parse_entry(slug: object, raw: object, source: str) -> Country:
    if not isinstance(raw, dict) or raw.keys() != _FIELD_SET:  # the common case: one check
        where = f"{source}: entry {_shown_slug(slug)}"
        if not isinstance(raw, dict):
            raise RegistryError(f"{where}: must be an object with keys {', '.join(_FIELDS)}")
        unknown = sorted(set(raw) - _FIELD_SET)
        if unknown:
            raise RegistryError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}"
                                f" (allowed: {', '.join(_FIELDS)})")
        missing = [f for f in _FIELDS if f not in raw]
        raise RegistryError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    coords = raw["coordinates"]
    try:
        return Country(slug=slug, name=raw["name"], code=raw["code"], currency=raw["currency"],
                       wikipedia_title=raw["wikipedia_title"],
                       coordinates=tuple(coords) if isinstance(coords, list) else coords)
    except RegistryError as exc:
        raise RegistryError(f"{source}: {exc}") from None


class Registry:
    """The set of known countries, looked up by slug or display name. Immutable once built."""

    def __init__(self, countries: Mapping[str, Country], *, source: str = "<registry>",
                 digest: str | None = None) -> None:
        self.source = source
        self.digest = digest  # sha256 of the file it was read from (None: built in memory)
        self._by_slug: dict[str, Country] = {}
        for slug in sorted(countries):
            country = countries[slug]
            if not isinstance(country, Country) or country.slug != slug:
                raise RegistryError(f"{source}: entry {slug!r}: key does not match its Country")
            self._by_slug[slug] = country
        if not self._by_slug:
            raise RegistryError(f"{source}: no countries defined")
        # Slugs and normalised display names share one namespace, so a name that would
        # resolve to a different country than its own is ambiguous and rejected up front.
        self._index: dict[str, Country] = dict(self._by_slug)
        for country in self._by_slug.values():
            other = self._index.setdefault(_key(country.name), country)
            if other is not country:
                raise RegistryError(f"{source}: entry {country.slug!r}: name {country.name!r} "
                                    f"clashes with entry {other.slug!r}")

    @classmethod
    def from_data(cls, data: object, *, source: str = "<data>",
                  digest: str | None = None) -> Registry:
        """Build from the parsed JSON document:
        ``{"countries": {slug: {...}}, "_comment": ...}``."""
        if not isinstance(data, dict) or not isinstance(data.get("countries"), dict):
            raise RegistryError(f"{source}: expected an object with a \"countries\" object")
        # Keys starting with "_" are free-form notes (like "_comment"); anything else is a typo.
        extra = sorted(k for k in data if k != "countries" and not k.startswith("_"))
        if extra:
            raise RegistryError(f"{source}: unknown top-level key(s) {', '.join(map(repr, extra))}")
        return cls({slug: _parse_entry(slug, raw, source)
                    for slug, raw in data["countries"].items()}, source=source, digest=digest)

    def __len__(self) -> int:
        return len(self._by_slug)

    def __iter__(self) -> Iterator[Country]:
        return iter(self._by_slug.values())  # filled in slug order

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._index

    def __repr__(self) -> str:
        return f"<Registry {len(self)} countries from {self.source}>"

    @property
    def slugs(self) -> list[str]:
        """All slugs, sorted."""
        return list(self._by_slug)

    def has_slug(self, slug: str) -> bool:
        """``slug`` is a registry key (not a name or code, unlike ``in``); O(1), unlike
        ``slug in registry.slugs``, which builds the list."""
        return slug in self._by_slug

    def get(self, slug: str) -> Country:
        """The country for ``slug`` (a display name such as "United Kingdom" also works)."""
        country = self._index.get(_key(slug)) if isinstance(slug, str) else None
        if country is None:
            raise UnknownCountryError(f"unknown country {self._describe(slug)}", [slug])
        return country

    def select(self, names: Iterable[str] | str | None) -> list[Country]:
        """Resolve user input to countries: None means all; otherwise slugs or display names,
        as an iterable or a comma-separated string, de-duplicated in the order given.
        Every unknown name is reported in one UnknownCountryError."""
        if names is None:
            return list(self)
        parts = [names] if isinstance(names, str) else list(names)
        wanted = [p.strip() for part in parts for p in str(part).split(",") if p.strip()]
        if not wanted:
            raise RegistryError("no country names given")
        chosen: dict[str, Country] = {}
        unknown: list[str] = []
        for name in wanted:
            country = self._index.get(_key(name))
            if country is not None:
                chosen.setdefault(country.slug, country)
            elif name not in unknown:
                unknown.append(name)
        if unknown:
            noun = "country" if len(unknown) == 1 else "countries"
            raise UnknownCountryError(
                f"unknown {noun} {', '.join(map(self._describe, unknown))}", unknown)
        return list(chosen.values())

    def _describe(self, name: object) -> str:
        """'germny' (did you mean: germany?) -- suggestions come from slugs and display names."""
        if not isinstance(name, str):
            return repr(name)
        matches = difflib.get_close_matches(_key(name), list(self._index), n=6, cutoff=0.6)
        slugs = list(dict.fromkeys(self._index[m].slug for m in matches))[:3]
        return f"{name!r} (did you mean: {', '.join(slugs)}?)" if slugs else repr(name)


def countries_path(path: str | Path | None = None, *,
                   data_dir: str | Path | None = None) -> tuple[Path, str]:
    """Which file to read, and why: explicit ``path`` > $TAXDATA_COUNTRIES >
    ``<data_dir>/countries.json`` if it exists > the bundled ``taxdata/data/countries.json``."""
    if path is not None:
        return Path(path).expanduser(), "given path"
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser(), ENV_VAR
    if data_dir is not None:
        candidate = Path(data_dir).expanduser() / FILE_NAME
        if candidate.is_file():
            return candidate, "data_dir"
    return BUNDLED_FILE, "bundled"


def load_registry(path: str | Path | None = None, *,
                  data_dir: str | Path | None = None) -> Registry:
    """Read and strictly validate the registry file chosen by :func:`countries_path`."""
    file, origin = countries_path(path, data_dir=data_dir)
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RegistryError(f"{source}: countries file not found ({origin})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{source}: cannot read countries file: {exc}") from None
    try:  # every value is checked by its field's type below: no depth walk is needed
        data = strictjson.loads(text, max_depth=0)
    except strictjson.JSONProblem as exc:
        raise RegistryError(f"{source}: {exc}") from None
    paused = gc.isenabled()  # 5,000 entries make no cycles: see taxdata.store.datasetfile
    gc.disable()
    try:
        return Registry.from_data(data, source=source, digest=hashlib.sha256(
            text.encode("utf-8", "surrogatepass")).hexdigest())
    finally:
        if paused:
            gc.enable()
