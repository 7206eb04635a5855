"""The FIXTURE sets of the planted-errors measurement (taxdata.bench.planted), and the data
directories they become.

A set is a directory with one JSON spec (``planted.json`` or ``realtext.json``) and, per
country, its taxation file ``<slug>.md`` as a model (or a person) wrote it, and the original it
was written from: ``<slug>.original.md`` / ``.txt``, or, when the spec names none, the
taxation file's own text (the model copied its source). Per country the spec gives:

* ``original``: how the original is kept, as the generators keep it: ``wikipedia`` (an article
  revision in the Wikipedia cache: ``title``, ``revision``), ``extractor`` (a page in ``raw/``
  and ``.cache/originals/``: ``url``) or ``manual`` (a hand-written file: no Sources section,
  the file is its own original);
* ``figures``: what the texts state, the correct figures;
* ``quotes``: for each figure the best verbatim quote of the taxation file (a model quoting
  "line by line" quotes the whole line that holds it instead: :func:`line_quote`);
* ``planted``: wrong figures, each of a ``kind`` (misreading, other-tax, stale, ...) made at a
  ``step``: ``extraction`` (the model misreads a correct file; its quote is genuine) or
  ``rewrite`` (the taxation file states what the original does not: ``rewrite`` lists the
  ``[old, new]`` text the model's rewrite changed, and the quote is genuine in the file).

Everything here is FIXTURE data: made-up texts and figures, not real tax data.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxdata.clients.wikipedia import cache_relpath
from taxdata.countries.registry import load_registry
from taxdata.evidence.grounding import sha256_text
from taxdata.evidence.originals import keep_original
from taxdata.store.datadir import DataDir, dump_json
from taxdata.store.rawfile import render_raw
from taxdata.store.taxfile import SourceInfo, compose

__all__ = ["Planted", "Country", "PlantedSet", "load_set", "line_quote", "build_reply",
           "write_data_dir", "SPEC_NAMES"]

SPEC_NAMES = ("planted.json", "realtext.json")
FIXTURE_TIME = "2024-01-01T00:00:00Z"


@dataclass(frozen=True)
class Planted:
    """One wrong figure: where, what value, the quote the model gives, and what kind of error."""

    slug: str
    path: str
    value: Any
    what: str
    kind: str
    step: str  # "extraction" | "rewrite"
    changes: dict[str, Any]  # path -> value, the wrong figure and anything planted with it
    quotes: dict[str, str | None]  # path -> the model's quote (None: no quote given)
    rewrite: tuple[tuple[str, str], ...] = ()  # what the model's rewrite changed: (old, new)


@dataclass
class Country:
    """One country of a set: its taxation file, its original, its correct figures."""

    slug: str
    original: dict[str, Any]
    figures: dict[str, Any]
    quotes: dict[str, str]
    text: str  # the taxation file's body, as written (no Sources section)
    original_text: str  # the text it was written from (the file itself for a manual one)


@dataclass
class PlantedSet:
    name: str
    directory: Path
    countries: dict[str, Country]
    planted: list[Planted] = field(default_factory=list)


def load_set(directory: Path) -> PlantedSet:
    """The set in ``directory`` (its spec is the one of :data:`SPEC_NAMES` it holds)."""
    specs = [directory / name for name in SPEC_NAMES if (directory / name).is_file()]
    if len(specs) != 1:
        raise FileNotFoundError(f"{directory}: no planted.json or realtext.json there")
    spec = json.loads(specs[0].read_text(encoding="utf-8"))
    countries, planted = {}, []
    for slug, entry in spec["countries"].items():
        text = (directory / f"{slug}.md").read_text(encoding="utf-8")
        original = entry["original"]
        source = original.get("file")
        original_text = (directory / source).read_text(encoding="utf-8") if source else text
        countries[slug] = Country(slug, original, entry["figures"], entry["quotes"], text,
                                  original_text)
        for item in entry["planted"]:
            changes = {**item.get("set", {}), item["path"]: item["value"]}
            quotes = {item["path"]: item.get("quote"), **item.get("quotes", {})}
            planted.append(Planted(slug, item["path"], item["value"], item["what"],
                                   item["kind"], item["step"], changes, quotes,
                                   tuple(tuple(pair) for pair in item.get("rewrite", ()))))
    return PlantedSet(specs[0].stem, directory, countries, planted)


# -- the texts --------------------------------------------------------------------------------


def _flexible(old: str) -> re.Pattern[str]:
    """``old`` as a pattern that allows any whitespace (a line break) between its words."""
    return re.compile(r"\s+".join(re.escape(word) for word in old.split()))


def rewritten(text: str, rewrite: tuple[tuple[str, str], ...]) -> str:
    """``text`` with the model's rewrite applied; each old text must occur exactly once."""
    for old, new in rewrite:
        found = list(_flexible(old).finditer(text))
        if len(found) != 1:
            raise ValueError(f"rewrite {old!r}: found {len(found)} times, not once")
        text = text[:found[0].start()] + new + text[found[0].end():]
    return text


def rewritten_quote(quote: str, rewrite: tuple[tuple[str, str], ...]) -> str:
    """A quote of the file as it reads after the rewrite (a quote of a changed line changes)."""
    for old, new in rewrite:
        if " ".join(old.split()) in " ".join(quote.split()):
            quote = " ".join(quote.split()).replace(" ".join(old.split()), new)
    return quote


def line_quote(text: str, quote: str) -> str:
    """The whole line (or lines) of ``text`` that holds ``quote``: what a model quoting line by
    line gives instead of the best verbatim part."""
    found = _flexible(quote).search(text)
    if found is None:
        return quote
    start = text.rfind("\n", 0, found.start()) + 1
    end = text.find("\n", found.end())
    return text[start:end if end != -1 else len(text)].strip()


# -- replies ----------------------------------------------------------------------------------

_STEP = re.compile(r"([A-Za-z]+)(?:\[(\d+)\])?")
_BRACKET_KEYS = {"min": 0, "max": 1, "rate": 2}


def set_figure(figures: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` (``vat.standard``, ``brackets[1].rate``, ``system``) in a figures spec."""
    steps = [(m.group(1), m.group(2)) for m in _STEP.finditer(path)]
    if steps[0][0] == "brackets" and len(steps) == 2:
        figures["brackets"][int(steps[0][1])][_BRACKET_KEYS[steps[1][0]]] = value
        return
    target = figures
    for i, (key, index) in enumerate(steps):
        last = i == len(steps) - 1
        if index is not None:
            target = target[key]
            key = int(index)
            if key == len(target):  # a figure the reply adds to a list (a new reduced rate)
                target.append(None)
        if last:
            target[key] = value
        else:
            target = target[key]


def build_reply(slug: str, figures: dict[str, Any],
                quotes: dict[str, str | None]) -> dict[str, Any]:
    """The structured reply a model gives for these figures and quotes (FIXTURE data)."""
    country = load_registry().get(slug)
    brackets = figures["brackets"]
    vat = figures["vat"]
    ss = figures["socialSecurity"]
    return {
        "currency": country.currency,
        "countryCode": country.code,
        "system": figures["system"],
        "brackets": None if brackets is None else [
            {"min": lo, "max": hi, "rate": rate, "description": None} for lo, hi, rate in brackets],
        "vat": None if vat is None else {**vat, "description": None, "notes": None},
        "socialSecurity": None if ss is None else {**ss, "notes": None},
        "special_taxes": [],
        "notes": "FIXTURE reply of the planted-errors measurement",
        "evidence": [{"field": f, "quote": q} for f, q in quotes.items() if q is not None],
    }


def correct_reply(country: Country, strategy: str = "best") -> dict[str, Any]:
    """The correct reply, quoting the best verbatim part (``best``) or whole lines (``line``)."""
    quotes = dict(country.quotes)
    if strategy == "line":
        quotes = {path: line_quote(country.text, quote) for path, quote in quotes.items()}
    return build_reply(country.slug, country.figures, quotes)


def planted_reply(country: Country, item: Planted) -> dict[str, Any]:
    figures = copy.deepcopy(country.figures)
    for path, value in item.changes.items():
        set_figure(figures, path, value)
    quotes = {path: rewritten_quote(quote, item.rewrite)
              for path, quote in country.quotes.items()}
    return build_reply(country.slug, figures, {**quotes, **item.quotes})


# -- data directories -------------------------------------------------------------------------


def write_data_dir(data: DataDir, countries: list[Country],
                   rewrites: dict[str, tuple[tuple[str, str], ...]]) -> None:
    """Each country's taxation file (with its rewrite, if any) and its original, where the
    generators keep them: the Wikipedia cache, ``raw/`` and ``.cache/originals/``."""
    for country in countries:
        body = rewritten(country.text, rewrites.get(country.slug, ()))
        original = country.original
        kind = original["kind"]
        if kind == "manual":  # a person's file: no Sources section, its own original
            data.write_text(f"taxation/{country.slug}.md", body)
            continue
        sha = sha256_text(country.original_text)
        if kind == "wikipedia":
            title, revision = original["title"], int(original["revision"])
            url = "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")
            data.write_text(cache_relpath(title), dump_json({
                "requested_title": title, "title": title, "revision_id": revision, "url": url,
                "fetched_at": FIXTURE_TIME, "text": country.original_text}))
            info = SourceInfo(kind="wikipedia", title=title, url=url, revision=str(revision),
                              fetched_at=FIXTURE_TIME, original_sha256=sha)
        else:
            url = original["url"]
            data.write_text(f"raw/{country.slug}.txt",
                            render_raw(url, FIXTURE_TIME, "FIXTURE", country.original_text))
            keep_original(data, country.original_text)
            info = SourceInfo(kind="extractor", url=url, fetched_at=FIXTURE_TIME,
                              original_sha256=sha)
        info = SourceInfo(**{**vars(info), "model": "FIXTURE-rewrite",
                             "prompt_version": "fixture", "generated_at": FIXTURE_TIME})
        data.write_text(f"taxation/{country.slug}.md", compose(body, info))
