"""``--import-js``: merge a calculator taxData.js into the dataset, and ``--prune``.

The file is parsed, never run; each record is validated as a model reply would be, plus its
identity fields. Valid records are added or updated (ADDED, MODIFIED, UNCHANGED), invalid ones
and countries the registry lacks are FAILED and not imported, and the dataset's other countries
stay, unless ``--prune`` removes them (REMOVED).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxdata.countries.registry import Country, Registry
from taxdata.errors import UsageError
from taxdata.log import logger
from taxdata.outcome import Status
from taxdata.record.build import diff_records
from taxdata.record.models import Provenance
from taxdata.record.validation import validate_extraction
from taxdata.store.jsmodule import JSParseError, parse_tax_data_js
from taxdata.timestamps import now_utc
from taxdata.update.outcome import CountryOutcome


@dataclass
class ImportResult:
    """What an ``--import-js`` file holds: valid records, and the ones it may not bring in."""

    path: Path
    digest: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # valid, by slug
    invalid: dict[str, list[str]] = field(default_factory=dict)  # slug -> errors
    unknown: list[str] = field(default_factory=list)  # not in the country registry


def import_record_errors(record: Any, country: Country) -> list[str]:
    """Why an imported record may not enter the dataset: the LLM reply's validation, plus its
    identity fields (name, coordinates), which a reply never carries."""
    if not isinstance(record, dict):
        return [f"<root>: expected an object, got {type(record).__name__}"]
    facts = {k: v for k, v in record.items() if k not in ("name", "coordinates")}
    errors = list(validate_extraction(facts, country).errors)
    if not isinstance(record.get("name"), str) or not record["name"].strip():
        errors.append("name: required, a non-empty string")
    coordinates = record.get("coordinates")
    if (not isinstance(coordinates, list) or len(coordinates) != 2
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool)
                       for c in coordinates)
            or not (-90 <= coordinates[0] <= 90 and -180 <= coordinates[1] <= 180)):
        errors.append(f"coordinates: must be [latitude, longitude] in degrees, got "
                      f"{coordinates!r}")
    for key in ("currency", "countryCode"):  # a reply may leave these null; a record may not
        if record.get(key) is None:
            errors.append(f"{key}: required in a stored record")
    return errors


def read_import(path: Path, registry: Registry) -> ImportResult:
    """Parse (never execute) a calculator file and validate every record in it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file (byte {raw[exc.start]:#04x} at offset "
                         f"{exc.start}); expected a calculator taxData.js") from None
    try:
        records = parse_tax_data_js(text, source=str(path))
    except JSParseError as exc:
        raise UsageError(str(exc)) from None
    result = ImportResult(path, hashlib.sha256(raw).hexdigest())
    for slug, record in sorted(records.items()):
        if not registry.has_slug(slug):
            result.unknown.append(slug)
            continue
        errors = import_record_errors(record, registry.get(slug))
        if errors:
            result.invalid[slug] = errors
        else:
            result.records[slug] = record
    count = len(records)
    logger.info("[IMPORT] %d %s read from %s: %d valid, %d invalid, %d not in the registry",
                count, "country" if count == 1 else "countries", path, len(result.records),
                len(result.invalid), len(result.unknown))
    return result


def merge_import(dataset: dict[str, Any], imported: ImportResult,
                 prune: bool) -> tuple[dict[str, CountryOutcome], bool]:
    """Add and update the imported records in ``dataset``; remove others only when asked
    (``prune``). Returns each country's outcome, and whether the dataset changed."""
    countries = dataset["countries"]
    outcomes: dict[str, CountryOutcome] = {}
    changed = False
    for slug, record in imported.records.items():
        old = (countries.get(slug) or {}).get("record")
        outcome = CountryOutcome(slug, source_file=str(imported.path), source_kind="imported",
                                 reason=f"imported from {imported.path.name}")
        changes = diff_records(old, record)
        outcome.compare(old, changes)
        if outcome.status != Status.UNCHANGED:
            provenance = Provenance(source_file=str(imported.path), source_sha256=imported.digest,
                                    source_kind="imported", unverified=False,
                                    extracted_at=now_utc())
            countries[slug] = {"record": record, "provenance": provenance.model_dump()}
            changed = True
        outcomes[slug] = outcome
    for slug, errors in imported.invalid.items():
        logger.error("[INVALID] %s imported record rejected: %s", slug, "; ".join(errors))
        outcomes[slug] = CountryOutcome(
            slug, Status.FAILED, "invalid record in the imported file (not imported): "
            + "; ".join(errors), source_kind="imported")
    for slug in imported.unknown:
        logger.error("[IMPORT] %s is not in the country registry: not imported (add it to the "
                     "registry, e.g. a TAXDATA_COUNTRIES file, and import again)", slug)
        outcomes[slug] = CountryOutcome(
            slug, Status.FAILED, "not in the country registry: not imported",
            source_kind="imported")
    if prune:
        in_file = set(imported.records) | set(imported.invalid)
        for slug in [s for s in countries if s not in in_file]:
            logger.warning("[PRUNE] %s removed (not in %s)", slug, imported.path.name)
            del countries[slug]
            outcomes[slug] = CountryOutcome(slug, Status.REMOVED,
                                            f"--prune: not in {imported.path.name}")
            changed = True
    if changed:
        dataset["countries"] = dict(sorted(countries.items()))
        dataset["updated_at"] = now_utc()
    return outcomes, changed
