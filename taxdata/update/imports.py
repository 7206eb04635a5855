"""``--import-js``: merge a calculator taxData.js into the dataset, and ``--prune``.

The file is parsed, never run. Imports are what they are: nothing in them was checked against a
source, so every imported record is ``source_kind: imported`` and ``unverified: true``, with no
evidence. Each record is validated like a model's reply (its identity fields and the calculator's
own fields too: :func:`taxdata.record.validation.validate_record`) and cross-checked against the
references like any other record (a DISPUTED one is held back unless ``--accept-disputed``).
Valid records are added or updated (ADDED, MODIFIED, UNCHANGED), invalid, disputed ones and
countries the registry lacks are FAILED with the rule they break, and the dataset's other
countries stay, unless ``--prune`` removes them (REMOVED).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxdata.config import Settings
from taxdata.countries.registry import Registry
from taxdata.errors import UsageError
from taxdata.log import logger, thread_label
from taxdata.outcome import Status
from taxdata.record.build import diff_records
from taxdata.record.models import Provenance
from taxdata.record.validation import validate_record
from taxdata.references import crosscheck
from taxdata.references.table import Reference
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


def read_import_bytes(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; :class:`UsageError` (one line) unless it is a regular file of at most
    ``max_bytes``. Opened without blocking and checked on the open file: a FIFO does not hang
    the run, a device (``/dev/zero``) is not read into memory, a swap of the path after the
    check changes nothing."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd)
        if not stat.S_ISREG(mode.st_mode):
            raise UsageError(f"{path}: not a regular file ({_kind(mode.st_mode)}); expected a "
                             "calculator taxData.js")
        if mode.st_size > max_bytes:
            raise UsageError(f"{path}: {mode.st_size:,} bytes is over the import cap of "
                             f"{max_bytes:,} bytes (TAXDATA_MAX_IMPORT_BYTES)")
        chunks, size = [], 0
        while size <= max_bytes:  # the file may grow while it is read: still capped
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise UsageError(f"{path}: over the import cap of {max_bytes:,} bytes "
                             "(TAXDATA_MAX_IMPORT_BYTES)")
        return b"".join(chunks)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def read_import(path: Path, registry: Registry,
                max_bytes: int = Settings.max_import_bytes) -> ImportResult:
    """Parse (never execute) a calculator file and validate every record in it."""
    raw = read_import_bytes(path, max_bytes)
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
            # Named in lines and reports: a lone surrogate in it is shown as its escape.
            result.unknown.append(slug.encode("utf-8", "backslashreplace").decode("utf-8"))
            continue
        errors = validate_record(record, registry.get(slug))
        if errors:
            result.invalid[slug] = errors
        else:
            result.records[slug] = record
    count = len(records)
    logger.info("[IMPORT] %d %s read from %s: %d valid, %d invalid, %d not in the registry",
                count, "country" if count == 1 else "countries", path, len(result.records),
                len(result.invalid), len(result.unknown))
    return result


def merge_import(dataset: dict[str, Any], imported: ImportResult, prune: bool,
                 references: list[Reference] | None = None,
                 accept_disputed: bool = False) -> tuple[dict[str, CountryOutcome], bool]:
    """Add and update the imported records in ``dataset``; remove others only when asked
    (``prune``). Each record is cross-checked against ``references`` first: a DISPUTED one is
    not imported unless ``accept_disputed``. Returns each country's outcome, and whether the
    dataset changed."""
    countries = dataset["countries"]
    outcomes: dict[str, CountryOutcome] = {}
    changed = False
    own = f"{imported.path.name} (imported)"
    for slug, record in imported.records.items():
        outcome = CountryOutcome(slug, source_file=str(imported.path), source_kind="imported",
                                 unverified=True, reason=f"imported from {imported.path.name}")
        outcomes[slug] = outcome
        check = crosscheck.check_record(slug, record, own, references or [])
        outcome.crosscheck = check.report()
        outcome.warnings += check.warnings
        if check.disputes:
            logger.warning("[DISPUTED] %s %s %s", thread_label(), slug, check.summary())
            if not accept_disputed:
                outcome.status = Status.FAILED
                outcome.reason = (f"DISPUTED {check.summary()}; held back, not imported "
                                  "(--accept-disputed imports it)")
                continue
        old_entry = countries.get(slug) or {}
        old = old_entry.get("record")
        outcome.compare(old, diff_records(old, record))
        old_provenance = old_entry.get("provenance") or {}
        stale = (old_provenance.get("source_kind") == "imported"
                 and not old_provenance.get("unverified"))
        if outcome.status != Status.UNCHANGED or stale:
            # An unchanged record is left as it is (its source may be better than this file),
            # unless an older import of it still calls it verified: that is corrected.
            provenance = Provenance(source_file=str(imported.path), source_sha256=imported.digest,
                                    source_kind="imported", unverified=True,
                                    extracted_at=now_utc()).model_dump()
            if check.classification != crosscheck.NO_REFERENCE:
                provenance["crosscheck"] = check.report()
            countries[slug] = {"record": record, "provenance": provenance}
            changed = True
    for slug, errors in imported.invalid.items():
        logger.error("[INVALID] %s imported record rejected: %s", slug, "; ".join(errors))
        outcomes[slug] = CountryOutcome(
            slug, Status.FAILED, "not imported, it breaks a rule: " + "; ".join(errors),
            source_kind="imported", unverified=True)
    for slug in imported.unknown:
        logger.error("[IMPORT] %s is not in the country registry: not imported (add it to the "
                     "registry, e.g. a TAXDATA_COUNTRIES file, and import again)", slug)
        outcomes[slug] = CountryOutcome(
            slug, Status.FAILED, "not in the country registry: not imported",
            source_kind="imported", unverified=True)
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
