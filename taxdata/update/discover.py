"""Grow the country registry from Wikipedia's "List of countries by tax rates", and confirm its
article titles.

``tax_data_updater.py --discover-countries`` reads the list page's main table and finds every
sovereign country (a row not in italics: the page sets dependent territories in italics) that
the libraries know as an ISO 3166-1 country, that is not in the registry yet, and whose
"Further reading" cell links a taxation article that exists (redirects followed: the registry
keeps the final title). Each is built by :func:`taxdata.countries.facts.registry_entry` (ISO code,
currency and coordinates from pycountry, babel and countryinfo, never typed). Registry entries
without a ``wikipedia_title`` get the article the page links, when it exists; nothing else in the
registry is changed, except what Wikipedia itself says of the registry's titles: every title is
looked up (the online confirmation of the bundled registry's stable facts), and one that now
redirects is MOVED to its target, one that names no article (or a disambiguation page) is GONE
(set to null, so research may fill that country).

A dry run unless ``--write``: then the entries are added to the user's registry file, atomically:
``$TAXDATA_COUNTRIES`` if set, else ``<data dir>/countries.json`` (created from the registry in
use when it does not exist yet; it then takes precedence over the bundled one).
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import (
    MAX_IN_FLIGHT,
    ArticleNotFound,
    DisambiguationPage,
    WikipediaClient,
    WikipediaError,
)
from taxdata.config import Settings
from taxdata.countries.facts import add_entries, registry_entry
from taxdata.countries.registry import FILE_NAME, Registry, countries_path, load_registry
from taxdata.errors import EXIT_FAILED, EXIT_OK, UsageError
from taxdata.log import logger, set_thread_label, thread_label
from taxdata.references.listpage import LIST_TITLE, parse_list_page
from taxdata.references.table import ReferenceRow, ReferenceTableError
from taxdata.store.datadir import DataDir, dump_json


@dataclass
class TitleCheck:
    """What Wikipedia says of one registry title: OK, MOVED (to ``title``), GONE or ERROR."""

    slug: str
    registry_title: str
    action: str
    title: str | None = None
    reason: str = ""


@dataclass
class Finding:
    """What discovery decided for one row of the list page."""

    row: ReferenceRow
    action: str  # ADD | TITLE | SKIP | ERROR
    reason: str = ""
    slug: str | None = None
    entry: dict[str, Any] | None = None
    title: str | None = None


def target_file(settings: Settings) -> Path:
    """Where ``--write`` puts the registry (see the module docstring)."""
    if settings.countries_file is not None:
        return Path(settings.countries_file).expanduser()
    return Path(settings.data_dir).expanduser() / FILE_NAME


def _taxation_link(row: ReferenceRow) -> str | None:
    return next((t for t in row.further_reading if "tax" in t.lower()), None)


def _resolve(client: WikipediaClient, title: str) -> tuple[str | None, str]:
    """(final title, "") when the article exists, else (None, why not)."""
    try:
        article = client.fetch(title)
    except ArticleNotFound:
        return None, f"no article {title!r}"
    except DisambiguationPage:
        return None, f"{title!r} is a disambiguation page"
    except WikipediaError as exc:
        return None, f"ERROR {exc}"
    return article.title, ""


def _lookup(client: WikipediaClient, titles: list[str]) -> list[tuple[str | None, str]]:
    """:func:`_resolve` for each title, at most 3 at a time (the client's cap)."""
    numbers = itertools.count(1)

    def name_thread() -> None:
        set_thread_label(f"Thread-{next(numbers)}")

    with ThreadPoolExecutor(max_workers=MAX_IN_FLIGHT, thread_name_prefix="discover",
                            initializer=name_thread) as pool:
        return list(pool.map(lambda title: _resolve(client, title), titles))


def confirm_titles(registry: Registry, client: WikipediaClient) -> list[TitleCheck]:
    """Look every registry title up: it exists (OK), redirects (MOVED), is gone, or errs."""
    titled = [c for c in registry if c.wikipedia_title]
    checks = []
    for country, (final, why) in zip(titled, _lookup(client, [c.wikipedia_title or ""
                                                              for c in titled])):
        title = country.wikipedia_title or ""
        if final is None:
            action = "ERROR" if why.startswith("ERROR") else "GONE"
            checks.append(TitleCheck(country.slug, title, action, reason=why.removeprefix(
                "ERROR ")))
        else:
            checks.append(TitleCheck(country.slug, title, "OK" if final == title else "MOVED",
                                     final))
    return checks


def find(registry: Registry, rows: list[ReferenceRow],
         client: WikipediaClient) -> list[Finding]:
    """Decide every row; article look-ups go out at most 3 at a time (the client's cap)."""
    codes = {country.code: country for country in registry}
    findings: list[Finding] = []
    lookups: list[tuple[Finding, str]] = []
    for row in rows:
        link = _taxation_link(row)
        known = codes.get(row.code) if row.code else None
        if row.code is None:
            findings.append(Finding(row, "SKIP", "not an ISO 3166-1 country"))
        elif row.territory:
            findings.append(Finding(row, "SKIP", "a territory: in italics on the page"))
        elif known is not None and known.wikipedia_title is not None:
            findings.append(Finding(row, "SKIP", f"in the registry as {known.slug}"))
        elif link is None:
            findings.append(Finding(row, "SKIP", "no taxation article linked"))
        else:
            finding = Finding(row, "TITLE" if known else "ADD", slug=known.slug if known else None)
            findings.append(finding)
            lookups.append((finding, link))
    resolved = _lookup(client, [link for _, link in lookups])
    for (finding, link), (title, why) in zip(lookups, resolved):
        if title is None:
            finding.action = "ERROR" if why.startswith("ERROR") else "SKIP"
            finding.reason = why.removeprefix("ERROR ")
            continue
        finding.title = title
        if title != link:
            finding.reason = f"via redirect from {link!r}"
        if finding.action == "ADD":
            try:
                finding.slug, finding.entry = registry_entry(finding.row.code, title)
            except ValueError as exc:
                finding.action, finding.reason = "SKIP", str(exc)
    return findings


def discover(settings: Settings, *, write: bool = False) -> int:
    """The ``--discover-countries`` run: print what would be added or corrected; do it when
    ``write`` (``--write`` without ``--dry-run``)."""
    registry = load_registry(settings.countries_file, data_dir=settings.data_dir)
    source, _ = countries_path(settings.countries_file, data_dir=settings.data_dir)
    client = WikipediaClient(settings.wikipedia_api, settings.user_agent,
                             retry=RetryPolicy(attempts=settings.max_retries + 1))
    try:
        page = client.fetch(LIST_TITLE, refresh=True)
        reference = parse_list_page(page.html, registry, f"{page.title}, rev {page.revision_id}")
    except (WikipediaError, ReferenceTableError) as exc:
        raise UsageError(f"cannot read Wikipedia's {LIST_TITLE!r}: {exc}") from None
    findings = find(registry, reference.rows, client)
    checks = confirm_titles(registry, client)
    print(f"Discovery from {reference.label}: {len(reference.rows)} rows, "
          f"{len(registry)} countries in {source}")
    _print_findings(findings)
    _print_checks(checks, settings.wikipedia_api)
    failed = any(f.action == "ERROR" for f in findings) or any(c.action == "ERROR"
                                                               for c in checks)
    code = EXIT_FAILED if failed else EXIT_OK
    adds = [f for f in findings if f.action == "ADD"]
    titles = [f for f in findings if f.action == "TITLE"]
    fixes = [c for c in checks if c.action in ("MOVED", "GONE")]
    target = target_file(settings)
    if not adds and not titles and not fixes:
        print("Nothing to add.")
        return code
    corrected = f", {len(fixes)} titles corrected" if fixes else ""
    if not write:
        print(f"Dry run: {len(adds)} countries would be added and {len(titles)} titles filled"
              f"{corrected} in {target} (--write to do it)")
        return code
    document = _read_document(target if target.is_file() else source)
    added = add_entries(document, [(f.slug, f.entry) for f in adds])
    for finding in titles:
        entry = document["countries"].get(finding.slug)
        if isinstance(entry, dict) and entry.get("wikipedia_title") is None:
            entry["wikipedia_title"] = finding.title
    for check in fixes:  # what Wikipedia says now of a title the registry had
        entry = document["countries"].get(check.slug)
        if isinstance(entry, dict) and entry.get("wikipedia_title") == check.registry_title:
            entry["wikipedia_title"] = check.title
    Registry.from_data(document, source=str(target))  # never write a registry that cannot load
    DataDir(target.parent).write_text(target.name, dump_json(document))
    print(f"Added {len(added)} countries and filled {len(titles)} titles{corrected} in {target}")
    return code


def _print_findings(findings: list[Finding]) -> None:
    """The list page's rows: what would be added or filled, the rest grouped by reason."""
    for finding in sorted((f for f in findings if f.action == "ADD"), key=lambda f: f.slug or ""):
        entry = finding.entry or {}
        print(f"  ADD   {finding.slug:<24} {entry['name']} ({entry['code']}, {entry['currency']}, "
              f"{entry['coordinates']}) {entry['wikipedia_title']!r}"
              + (f" ({finding.reason})" if finding.reason else ""))
    for finding in sorted((f for f in findings if f.action == "TITLE"),
                          key=lambda f: f.slug or ""):
        print(f"  TITLE {finding.slug:<24} wikipedia_title {finding.title!r}")
    skipped: dict[str, list[str]] = {}
    for finding in findings:
        if finding.action == "SKIP":
            skipped.setdefault(_reason_group(finding.reason), []).append(finding.row.name)
    for reason, names in skipped.items():  # one line per reason: readable at ~200 rows
        print(f"  skipped ({reason}): {len(names)}: {', '.join(names)}")
    for finding in findings:
        if finding.action == "ERROR":
            logger.error("[ERROR] %s %s: %s", thread_label(), finding.row.name, finding.reason)


def _print_checks(checks: list[TitleCheck], wiki: str) -> None:
    """The registry's titles: how many exist, and each one that moved or is gone."""
    confirmed = sum(c.action == "OK" for c in checks)
    print(f"  confirmed: {confirmed} of {len(checks)} registry titles exist on {wiki}")
    for check in checks:
        if check.action in ("MOVED", "GONE"):
            print(f"  {check.action:<5} {check.slug:<24} {check.registry_title!r} -> "
                  + (repr(check.title) if check.title else f"null ({check.reason})"))
        elif check.action == "ERROR":
            logger.error("[ERROR] %s %s %r: %s", thread_label(), check.slug,
                         check.registry_title, check.reason)


def _reason_group(reason: str) -> str:
    if reason.startswith("in the registry"):
        return "already in the registry"
    if reason.startswith("no article"):
        return "linked article does not exist"
    return reason


def _read_document(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: cannot read the registry to add to: {exc}") from None
