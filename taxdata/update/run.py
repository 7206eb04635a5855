"""The updater pipeline: taxation files -> LLM -> validated records -> the calculator dataset.

For each country: read ``<input>/<slug>.md``, ask the model for the tax facts the text states
(structured JSON, with a verbatim quote per figure), validate them, re-ask with the exact
errors (``TAXDATA_MAX_REASKS`` times, default 2), withhold every figure whose quote the text
does not bear out (taxdata.record.evidence), and only then write the record into ``tax_data.json``
(as each country completes, so an interrupted run keeps what it finished). At the end:
``taxData.js`` for the calculator, ``reports/update-<time>.json`` and a summary table. A country
that fails keeps its previous record exactly as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

from taxdata import __version__
from taxdata.clients.llm import LLMClient, LLMError, LLMTruncated, report_endpoints
from taxdata.config import Settings
from taxdata.countries.registry import Country, RegistryError, load_registry
from taxdata.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TaxdataError, UsageError
from taxdata.events import ReplyRejected, emit
from taxdata.log import logger, thread_label
from taxdata.record import crosscheck
from taxdata.record.build import FieldChange, build_record, diff_records, summarize_changes
from taxdata.record.evidence import EvidenceCheck, Quote, Source, check_evidence
from taxdata.record.models import Extraction, Provenance
from taxdata.record.reference import (
    Reference,
    ReferenceTableError,
    fetch_list_reference,
    load_reference_csv,
)
from taxdata.record.replies import ReplyError, parse_reply
from taxdata.record.schema import extraction_json_schema
from taxdata.record.validation import missing_fields, validate_extraction
from taxdata.report.html import write_html_report
from taxdata.runner import TaskResult, run_tasks
from taxdata.store.datadir import DataDir, dump_json
from taxdata.store.journal import Journal, read_journal
from taxdata.store.jsmodule import JSParseError, parse_tax_data_js, render_tax_data_js
from taxdata.store.taxfile import (
    DEFAULT_MAX_CHARS,
    SourceInfo,
    parse_sources,
    request_parts,
    source_problem,
    taxation_path,
)
from taxdata.timestamps import now_utc

PROMPT_VERSION = "updater-2"
DATASET_FILE = "tax_data.json"
JS_FILE = "taxData.js"
JOURNAL_FILE = ".tax_data.journal.jsonl"  # finished countries not yet in tax_data.json
CHECKPOINT_SECONDS = 5.0  # rewrite tax_data.json + taxData.js at most this often during a run
SCRIPT_NAME = "tax_data_updater.py"
DATASET_FORMAT = "taxdata/1"

SYSTEM_PROMPT = """\
You extract personal tax facts for a tax calculator from a source text.
Rules:
- Use ONLY facts stated in the source text. Never use outside knowledge, never guess, never \
compute a value the text does not give.
- If the text does not state a value, use null for it. A null is always better than a guess.
- Rates are percentages (20 means 20 %). Bracket thresholds are annual amounts for a resident \
individual, in the country's currency, sorted from the lowest; the last bracket has max null.
- If the text gives figures for several years, use the most recent year it states and say \
which year in notes.
- Evidence: for every figure you give (the system, each VAT rate, each bracket's rate, min and \
max, each social security rate), add one entry to "evidence" with the figure's field (such as \
vat.standard, vat.reduced[0], brackets[1].rate, brackets[1].max, socialSecurity.employeeRate) \
and a short quote copied word for word from the source text (one sentence or one table row) \
that states the figure and says what it is. Code checks every quote against the text; a \
figure whose quote is not in the text is discarded, so give null for a figure you cannot quote.
- Reply with ONE JSON object that follows the JSON schema below, and nothing else: no prose, \
no code fences.

JSON schema:
{schema}
"""

USER_PROMPT = """\
Country: {name} (ISO code {code}; currency {currency})
{part_note}
Source text:
<<<
{text}
>>>

Return the JSON object with the facts this text states for {name}."""

RETRY_PROMPT = """\
Your reply was rejected for these reasons:
{errors}

Reply again with the corrected JSON object only. Use null where the source text does not \
state a value; do not invent values to satisfy a rule."""


class Status(str, Enum):
    """A country's fate in one run. The values are what reports, logs and taxData.js say (a str
    subclass, so JSON and comparisons with plain strings keep working)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    UNCHANGED = "UNCHANGED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    REMOVED = "REMOVED"
    # Extracted, validated and cross-checked; persist() decides ADDED/MODIFIED/UNCHANGED
    # against the dataset. Never in a report.
    PENDING = "PENDING"

    def __str__(self) -> str:
        return self.value


# The statuses a finished run reports, in the order the summary lists them.
STATUSES = (Status.ADDED, Status.MODIFIED, Status.UNCHANGED, Status.FAILED, Status.SKIPPED,
            Status.REMOVED)


@dataclass
class CountryOutcome:
    """What happened to one country in this run (one entry of the report)."""

    slug: str
    status: Status = Status.SKIPPED
    reason: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    attempts: int = 0  # model replies asked for (a validation re-ask counts)
    http_attempts: int = 0
    latency_s: float = 0.0
    model: str | None = None
    source_file: str | None = None
    source_kind: str | None = None
    unverified: bool = False
    # Verified quotes (path -> quote) and figures withheld for want of one (path, value, the
    # model's quote, reason); research sources are not checked (unverified says so).
    evidence: dict[str, str] = field(default_factory=dict)
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    crosscheck: dict[str, Any] | None = None  # classification against the references
    record: dict[str, Any] | None = field(default=None, repr=False)
    provenance: dict[str, Any] | None = field(default=None, repr=False)

    def compare(self, old: dict[str, Any] | None, changes: list[FieldChange]) -> None:
        """ADDED, MODIFIED (with the changes listed) or UNCHANGED against the old record."""
        if old is None:
            self.status = Status.ADDED
        elif changes:
            self.status = Status.MODIFIED
            self.changes = [{"path": c.path, "old": c.old, "new": c.new} for c in changes]
            self.reason = summarize_changes(changes)
        else:
            self.status = Status.UNCHANGED

    def report(self) -> dict[str, Any]:
        # Not asdict(): it would deep-copy the record and provenance only to drop them.
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("record", "provenance")}


class CountryFailed(TaxdataError):
    """A country's update failed; carries its outcome for the report."""

    def __init__(self, outcome: CountryOutcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


@dataclass
class Extracted:
    """A validated extraction and what getting it took."""

    extraction: Extraction
    warnings: list[str]
    asked: int  # model replies asked for (a validation re-ask counts)
    http_attempts: int
    model: str


@dataclass
class CheckedExtraction(Extracted):
    """:meth:`Extractor.extract`'s result: the extraction with the evidence check applied."""

    check: EvidenceCheck | None = None  # None for research sources (nothing to quote from)


class ExtractionFailed(TaxdataError):
    """The model's replies never passed validation; the message lists why."""

    def __init__(self, message: str, attempts: int, http_attempts: int,
                 unsupported: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.attempts, self.http_attempts = attempts, http_attempts
        self.unsupported = unsupported or []


# -- the dataset ------------------------------------------------------------------------------

def empty_dataset() -> dict[str, Any]:
    return {"format": DATASET_FORMAT, "updated_at": None, "countries": {}}


def load_dataset(data: DataDir) -> dict[str, Any]:
    try:
        dataset = data.read_json(DATASET_FILE, None) or empty_dataset()
    except ValueError as exc:  # not JSON at all: a one-line usage error, not a traceback
        raise UsageError(str(exc)) from None
    if (not isinstance(dataset, dict) or dataset.get("format") != DATASET_FORMAT
            or not isinstance(dataset.get("countries"), dict)):
        raise UsageError(f"{data.path(DATASET_FILE)}: not a taxdata dataset "
                         f"(expected \"format\": \"{DATASET_FORMAT}\")")
    return dataset


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


def read_import(path: Path, registry) -> ImportResult:
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


def merge_import(update: "UpdateRun", imported: ImportResult, prune: bool) -> None:
    """Add and update the imported records; remove others only when asked (``--prune``)."""
    countries = update.dataset["countries"]
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
            update.dirty = True
        update.outcomes[slug] = outcome
    for slug, errors in imported.invalid.items():
        logger.error("[INVALID] %s imported record rejected: %s", slug, "; ".join(errors))
        update.outcomes[slug] = CountryOutcome(
            slug, Status.FAILED, "invalid record in the imported file (not imported): "
            + "; ".join(errors), source_kind="imported")
    for slug in imported.unknown:
        logger.error("[IMPORT] %s is not in the country registry: not imported (add it to the "
                     "registry, e.g. a TAXDATA_COUNTRIES file, and import again)", slug)
        update.outcomes[slug] = CountryOutcome(
            slug, Status.FAILED, "not in the country registry: not imported",
            source_kind="imported")
    if prune:
        in_file = set(imported.records) | set(imported.invalid)
        for slug in [s for s in countries if s not in in_file]:
            logger.warning("[PRUNE] %s removed (not in %s)", slug, imported.path.name)
            del countries[slug]
            update.outcomes[slug] = CountryOutcome(slug, Status.REMOVED,
                                                   f"--prune: not in {imported.path.name}")
            update.dirty = True
    if update.dirty:
        update.dataset["countries"] = dict(sorted(countries.items()))
        update.dataset["updated_at"] = now_utc()


# -- one country ------------------------------------------------------------------------------

class Extractor:
    """Turns one taxation file into a validated record; shared by all worker threads."""

    def __init__(self, client: LLMClient, max_chars: int = DEFAULT_MAX_CHARS,
                 max_reasks: int = 2) -> None:
        self.client = client
        self.max_chars = max_chars
        self.max_reasks = max_reasks  # TAXDATA_MAX_REASKS
        self.schema = extraction_json_schema()
        self.system = SYSTEM_PROMPT.format(schema=json.dumps(self.schema, indent=1))

    def parts(self, text: str) -> list[str]:
        return request_parts(text, self.max_chars)

    def messages(self, country: Country, text: str, part: int = 1,
                 parts: int = 1) -> list[dict[str, str]]:
        note = (f"This is part {part} of {parts} of the source; give only what this part "
                "states and null for the rest.\n" if parts > 1 else "")
        user = USER_PROMPT.format(name=country.name, code=country.code, currency=country.currency,
                                  part_note=note, text=text.strip())
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def _extract_all(self, country: Country, text: str) -> tuple[Extracted, list[Quote]]:
        parts = self.parts(text)
        results = [self._extract_part(country, part, i + 1, len(parts))
                   for i, part in enumerate(parts)]
        # Each part's quotes must be found in the text of that part, the one its reply saw.
        # One Source per part (it normalises the whole text), shared by that part's quotes.
        quotes = [Quote(e.field, e.quote, source)
                  for source, r in zip(map(Source, parts), results) for e in r.extraction.evidence]
        if len(results) == 1:
            return results[0], quotes
        merged, conflicts = merge_extractions([r.extraction for r in results])
        asked = sum(r.asked for r in results)
        http = sum(r.http_attempts for r in results)
        if conflicts:
            raise ExtractionFailed("parts of the source disagree: " + "; ".join(conflicts),
                                   asked, http)
        outcome = validate_extraction(merged.model_dump(), country)
        if not outcome.ok:
            raise ExtractionFailed("merged parts invalid: " + "; ".join(outcome.errors),
                                   asked, http)
        warnings = [w for r in results for w in r.warnings] + outcome.warnings
        return Extracted(outcome.extraction, list(dict.fromkeys(warnings)), asked, http,
                         results[-1].model), quotes

    def extract(self, country: Country, text: str, *,
                check_quotes: bool = True) -> CheckedExtraction:
        """The validated extraction, its warnings, costs and evidence check; or ExtractionFailed.

        With ``check_quotes`` every figure needs a verified quote (taxdata.record.evidence): the
        returned extraction has the unsupported ones set to null, and a reply whose key figures
        (VAT standard rate, the brackets) all lack one fails. Without it (research sources, the
        model's own knowledge: there is no text to hold quotes against) the check is None.
        """
        found, quotes = self._extract_all(country, text)
        result = CheckedExtraction(**vars(found))
        if check_quotes:
            check = check_evidence(result.extraction, quotes)
            unsupported = [u.report() for u in check.unsupported]
            for item in check.unsupported:
                logger.warning("[UNSUPPORTED] %s %s %s %s: %s", thread_label(), country.slug,
                               item.path, item.report()["value"], item.reason)
            if check.failed:
                raise ExtractionFailed(check.failed, result.asked, result.http_attempts,
                                       unsupported)
            outcome = validate_extraction(check.extraction.model_dump(), country)
            if not outcome.ok:  # withholding figures must never make a record invalid
                raise ExtractionFailed("figures withheld for want of evidence leave an invalid "
                                       "record: " + "; ".join(outcome.errors),
                                       result.asked, result.http_attempts, unsupported)
            result.extraction = check.extraction
            result.warnings = result.warnings + check.notes
            result.check = check
        facts = result.extraction
        if all(getattr(facts, key) is None
               for key in ("system", "brackets", "vat", "socialSecurity")):
            # A record of nothing but nulls would wipe the previous one: that needs a human.
            raise ExtractionFailed("the reply states no tax facts (system, brackets, VAT and "
                                   "social security all null); previous record kept",
                                   result.asked, result.http_attempts)
        return result

    def _extract_part(self, country: Country, text: str, part: int,
                      parts: int) -> Extracted:
        messages = self.messages(country, text, part, parts)
        label = f"Extracting {country.slug}" + (f" part {part}/{parts}" if parts > 1 else "")
        http_attempts = 0
        errors: list[str] = []
        asks = 1 + self.max_reasks
        for asked in range(1, asks + 1):  # re-asks carry the exact errors, then give up
            text: str | None = None
            try:
                reply = self.client.chat(messages, schema=self.schema, label=label,
                                         schema_name="tax_extraction")
            except LLMTruncated as exc:  # a reply cut at the token limit is a bad reply: re-ask
                http_attempts += exc.attempts
                errors = [str(exc)]
            except LLMError as exc:
                raise ExtractionFailed(str(exc), asked, http_attempts + exc.attempts) from exc
            else:
                http_attempts += reply.attempts
                text = reply.text
                try:
                    # A part of a split source need not tie fields that other parts state.
                    outcome = validate_extraction(parse_reply(text), country, partial=parts > 1)
                    errors = outcome.errors
                except ReplyError as exc:
                    outcome, errors = None, [str(exc)]
                if outcome is not None and outcome.extraction is not None and not errors:
                    return Extracted(outcome.extraction, outcome.warnings, asked, http_attempts,
                                     reply.model)
            emit(ReplyRejected(thread_label(), f"{country.slug} reply {asked} rejected",
                               "; ".join(errors[:3]) + (" ..." if len(errors) > 3 else ""),
                               reply.request_id if text is not None else None))
            retry = RETRY_PROMPT.format(errors="\n".join(f"- {e}" for e in errors))
            if text is None:  # no reply text to show back: the errors join the user's turn
                messages = messages[:-1] + [
                    {"role": "user", "content": messages[-1]["content"] + "\n\n" + retry}]
            else:
                messages = messages + [{"role": "assistant", "content": text},
                                       {"role": "user", "content": retry}]
        raise ExtractionFailed("; ".join(errors), asks, http_attempts)


def merge_extractions(parts: list[Extraction]) -> tuple[Extraction, list[str]]:
    """Combine per-part extractions: each field from the part that states it.

    Two parts stating different values for one field is a conflict, not something to pick from.
    """
    merged: dict[str, Any] = {}
    conflicts: list[str] = []
    for extraction in parts:
        for key, value in extraction.model_dump().items():
            if value in (None, []):
                continue
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                for sub, sub_value in value.items():
                    if sub_value in (None, []):
                        continue
                    have = merged[key].get(sub)
                    if have not in (None, []) and have != sub_value:
                        conflicts.append(f"{key}.{sub}: {have!r} vs {sub_value!r}")
                    else:
                        merged[key][sub] = sub_value
            elif key in merged and merged[key] != value:
                if key == "notes":
                    merged[key] = f"{merged[key]} {value}"
                elif key in ("special_taxes", "evidence"):
                    merged[key] += [t for t in value if t not in merged[key]]
                else:
                    conflicts.append(f"{key}: parts give different values")
            else:
                merged[key] = value
    return Extraction.model_validate(merged), conflicts


# -- the run ----------------------------------------------------------------------------------

class UpdateRun:
    """One run of the updater: which countries, where from, where to; the results so far."""

    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        try:
            self.registry = load_registry(settings.countries_file, data_dir=settings.data_dir)
            self.countries = self.registry.select(args.countries)
        except RegistryError as exc:
            raise UsageError(str(exc)) from None
        self.args = args
        self.settings = settings
        self.data = DataDir(args.output_dir or settings.data_dir)
        self.input_dir = Path(args.input_dir or Path(settings.data_dir) / "taxation")
        self.started = now_utc()
        self.outcomes: dict[str, CountryOutcome] = {}
        self.previous: dict[str, Any] = {}  # the dataset's countries when the run started
        self.model: str | None = None
        self.references: list[Reference] = []  # the second sources to cross-check against
        self.dataset: dict[str, Any] = empty_dataset()  # the dataset as it is now, in memory
        self.dirty = False  # the dataset has changes tax_data.json does not hold yet
        self.journal = Journal(self.data.path(JOURNAL_FILE))
        self._checkpointed = time.monotonic()
        # Time spent persisting, for the [PERSIST] line (and the persistence benchmark).
        self.costs: dict[str, float] = {"saved": 0, "journal_s": 0.0, "checkpoints": 0,
                                        "checkpoint_s": 0.0}

    # Which countries have a source file; the others are SKIPPED.
    def plan(self) -> dict[str, Path]:
        if self.input_dir.exists() and not self.input_dir.is_dir():
            raise UsageError(f"input directory {self.input_dir} is a file, not a directory")
        if not self.input_dir.is_dir():
            raise UsageError(f"input directory {self.input_dir} does not exist - run the "
                             "generators first or pass --input-dir")
        sources = {}
        for country in self.countries:
            path = taxation_path(self.input_dir, country.slug)
            if path is None:
                self.outcomes[country.slug] = CountryOutcome(
                    country.slug, Status.SKIPPED, f"no taxation file in {self.input_dir}")
                continue
            problem = self.input_problem(path)
            if problem:
                logger.warning("[SKIPPED] %s %s: %s", country.slug, path.name, problem)
                self.outcomes[country.slug] = CountryOutcome(
                    country.slug, Status.SKIPPED, f"{path.name}: {problem}; not sent",
                    source_file=path.name)
            else:
                sources[country.slug] = path
        return sources

    def input_problem(self, path: Path) -> str | None:
        """Why a taxation file must not be sent (over the size cap, not text, empty)."""
        cap = self.settings.max_input_bytes
        try:
            size = path.stat().st_size
            if size > cap:  # not even read: it may be huge
                return (f"{size:,} bytes is over the input cap of {cap:,} bytes "
                        "(TAXDATA_MAX_INPUT_BYTES)")
            return source_problem(path.read_bytes(), cap)
        except OSError as exc:
            return f"cannot read: {exc.strerror or exc}"

    def up_to_date(self, slug: str, raw: bytes, model: str | None) -> bool:
        """The record was extracted from these very bytes, with this prompt and model."""
        provenance = (self.previous.get(slug) or {}).get("provenance") or {}
        return (not self.args.force
                and provenance.get("source_sha256") == hashlib.sha256(raw).hexdigest()
                and provenance.get("prompt_version") == PROMPT_VERSION
                and provenance.get("model") == model)

    def process(self, client: LLMClient, extractor: Extractor, slug: str,
                path: Path) -> CountryOutcome:
        country = self.registry.get(slug)
        raw = path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
        info = parse_sources(text)
        outcome = CountryOutcome(slug, source_file=path.name, source_kind=info.kind,
                                 unverified=info.unverified, model=client.model)
        if self.up_to_date(slug, raw, client.model):
            outcome.status = Status.UNCHANGED
            outcome.reason = "source unchanged since the last extraction (--force to redo)"
            return outcome
        started = time.monotonic()
        try:
            result = extractor.extract(country, text, check_quotes=not info.unverified)
        except ExtractionFailed as exc:
            outcome.status, outcome.reason = Status.FAILED, str(exc)
            outcome.unsupported = exc.unsupported
            outcome.attempts, outcome.http_attempts = exc.attempts, exc.http_attempts
            outcome.latency_s = round(time.monotonic() - started, 3)
            outcome.model = client.model
            raise CountryFailed(outcome) from exc
        outcome.latency_s = round(time.monotonic() - started, 3)
        outcome.attempts, outcome.http_attempts = result.asked, result.http_attempts
        outcome.model = result.model
        outcome.warnings, outcome.missing = result.warnings, missing_fields(result.extraction)
        check = result.check
        if check is not None:
            outcome.evidence = check.verified
            outcome.unsupported = [u.report() for u in check.unsupported]
        outcome.record = build_record(result.extraction, country)
        outcome.provenance = _provenance(path, raw, info, result.model,
                                         check.verified if check else None).model_dump()
        self.cross_check(outcome, info, path)
        outcome.status = Status.PENDING  # ADDED/MODIFIED/UNCHANGED is decided against the dataset
        return outcome

    def cross_check(self, outcome: CountryOutcome, info: SourceInfo, path: Path) -> None:
        """Compare the validated record with the references; a DISPUTED VAT is held back."""
        own = (info.title or path.name) + (f", rev {info.revision}" if info.revision else "")
        check = crosscheck.check_record(outcome.slug, outcome.record, own, self.references)
        outcome.crosscheck = check.report()
        outcome.warnings += check.warnings
        if check.classification != crosscheck.NO_REFERENCE:
            outcome.provenance["crosscheck"] = check.report()  # why anyone may doubt it
        if check.disputes:
            logger.warning("[DISPUTED] %s %s %s", thread_label(), outcome.slug, check.summary())
        if check.vat_disputed and not getattr(self.args, "accept_disputed", False):
            outcome.status, outcome.record = Status.FAILED, None
            outcome.reason = (f"DISPUTED {check.summary()}; held back, previous record kept "
                              "(--accept-disputed writes it)")
            raise CountryFailed(outcome)

    def persist(self, outcome: CountryOutcome) -> None:
        """Record a finished country at once (called as each result arrives, on one thread).

        The dataset in memory is updated and the record appended to the fsync'd journal: cost
        per country independent of the dataset's size. The whole files follow at checkpoints.
        """
        if outcome.record is None:  # up to date: nothing new to write
            self.outcomes[outcome.slug] = outcome
            return
        started = time.perf_counter()
        countries = self.dataset["countries"]
        old = (countries.get(outcome.slug) or {}).get("record")
        changes = diff_records(old, outcome.record)
        outcome.compare(old, changes)
        entry = {"record": outcome.record, "provenance": outcome.provenance}
        self.journal.append({"slug": outcome.slug, **entry})
        countries[outcome.slug] = entry
        self.dataset["updated_at"] = now_utc()
        self.dirty = True
        self.outcomes[outcome.slug] = outcome
        self.costs["saved"] += 1
        self.costs["journal_s"] += time.perf_counter() - started
        if time.monotonic() - self._checkpointed >= CHECKPOINT_SECONDS:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Rewrite tax_data.json and taxData.js together from memory; the journal restarts."""
        started = time.perf_counter()
        if self.dirty:
            self.dataset["countries"] = dict(sorted(self.dataset["countries"].items()))
            self.data.write_text(DATASET_FILE, dump_json(self.dataset))
            self.data.write_text(JS_FILE, render_js(self.calculator_view(), self.outcomes,
                                                    self.model))
            self.journal.clear()
            self.dirty = False
            self.costs["checkpoints"] += 1
            self.costs["checkpoint_s"] += time.perf_counter() - started
        self._checkpointed = time.monotonic()

    def calculator_view(self) -> dict[str, Any]:
        """The dataset as taxData.js shows it: registry countries only."""
        view = dict(self.dataset)
        view["countries"] = {slug: entry for slug, entry in self.dataset["countries"].items()
                             if self.registry.has_slug(slug)}
        return view

    def finish(self, interrupted: bool) -> None:
        """Write tax_data.json and taxData.js (in step), then the report; drop the journal."""
        for slug in self.dataset["countries"]:
            if not self.registry.has_slug(slug):
                self.outcomes[slug] = CountryOutcome(
                    slug, Status.REMOVED, "not in the country registry: left out of taxData.js "
                    "(its record stays in tax_data.json)")
        started = time.perf_counter()
        if self.dirty:
            self.dataset["countries"] = dict(sorted(self.dataset["countries"].items()))
            self.data.write_text(DATASET_FILE, dump_json(self.dataset))
        self.data.write_text(JS_FILE, render_js(self.calculator_view(), self.outcomes, self.model))
        self.dirty = False
        self.journal.remove()
        costs = self.costs
        logger.info("[PERSIST] %d %s saved: journal %.2fs, %d %s %.2fs, final write %.2fs",
                    costs["saved"], "country" if costs["saved"] == 1 else "countries",
                    costs["journal_s"], costs["checkpoints"],
                    "checkpoint" if costs["checkpoints"] == 1 else "checkpoints",
                    costs["checkpoint_s"], time.perf_counter() - started)
        counts = status_counts(self.outcomes)
        report = {
            "started_at": self.started, "finished_at": now_utc(), "interrupted": interrupted,
            "model": self.model, "llm_url": self.settings.llm_url,
            "prompt_version": PROMPT_VERSION, "taxdata_version": __version__,
            "counts": counts,
            "crosscheck": {"references": [r.label for r in self.references],
                           "tolerance": crosscheck.TOLERANCE, "counts": crosscheck_counts(self)},
            "countries": {slug: self.outcomes[slug].report() for slug in sorted(self.outcomes)},
        }
        stamp = self.started.replace(":", "").replace("-", "")
        # Claimed with an exclusive create: runs started in the same second keep both reports.
        self.report_path = self.data.write_new_text(f"reports/update-{stamp}", ".json",
                                                    json.dumps(report, indent=2) + "\n")
        write_html_report(self.data, self.report_path.relative_to(self.data.root).as_posix(),
                          report, self.calculator_view())


def recover(data: DataDir, registry) -> int:
    """Finish what a killed run left: replay its journal into tax_data.json, re-render taxData.js.

    Returns how many journal entries were replayed (0 when the last run finished its writes).
    """
    path = data.path(JOURNAL_FILE)
    try:
        entries = read_journal(path)
    except OSError as exc:  # e.g. a directory in its place: say so, touch nothing
        raise UsageError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
    if entries is None:
        return 0
    dataset = load_dataset(data)
    for entry in entries:
        slug = entry.get("slug")
        if isinstance(slug, str) and isinstance(entry.get("record"), dict):
            dataset["countries"][slug] = {"record": entry["record"],
                                          "provenance": entry.get("provenance")}
    if entries:
        dataset["countries"] = dict(sorted(dataset["countries"].items()))
        dataset["updated_at"] = now_utc()
        data.write_text(DATASET_FILE, dump_json(dataset))
    view = dict(dataset, countries={s: e for s, e in dataset["countries"].items()
                                    if registry.has_slug(s)})
    if dataset["countries"] or data.path(JS_FILE).exists():
        data.write_text(JS_FILE, render_js(view, {}, None, note="recovered after an "
                                           "interrupted run"))
    Journal(path).remove()
    if entries:
        logger.warning("[RECOVERED] the last run ended without finishing its writes: %d finished "
                       "countries replayed into %s, %s re-rendered", len(entries), DATASET_FILE,
                       JS_FILE)
    else:
        logger.info("[RECOVERED] the last run ended without finishing its writes: %s "
                    "re-rendered from %s", JS_FILE, DATASET_FILE)
    return len(entries)


def _provenance(path: Path, raw: bytes, info: SourceInfo, model: str,
                evidence: dict[str, str] | None = None) -> Provenance:
    return Provenance(
        source_file=path.name, source_sha256=hashlib.sha256(raw).hexdigest(),
        source_url=info.url, source_revision=info.revision, source_kind=info.kind,
        unverified=info.unverified, model=model, prompt_version=PROMPT_VERSION,
        evidence=evidence, extracted_at=now_utc())


def status_counts(outcomes: dict[str, CountryOutcome]) -> dict[str, int]:
    return {s: sum(o.status == s for o in outcomes.values()) for s in STATUSES}


def render_js(dataset: dict[str, Any], outcomes: dict[str, CountryOutcome],
              model: str | None, note: str | None = None) -> str:
    counts = status_counts(outcomes)
    header = [
        "taxData.js - generated by taxdata tax_data_updater; edit the taxation files, not this.",
        f"Updated {dataset.get('updated_at') or now_utc()} with model {model or 'n/a'}.",
        "This run: " + (note or ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n)
                        or "no country processed"),
    ]
    comments = {}
    for slug, entry in dataset["countries"].items():
        outcome = outcomes.get(slug)
        provenance = entry.get("provenance") or {}
        tag = "[UNCHANGED]"
        if outcome is None:
            tag += " not processed in this run"
        elif outcome.status in (Status.ADDED, Status.UNCHANGED):
            tag = f"[{outcome.status}]"
        elif outcome.status == Status.MODIFIED:
            tag = f"[MODIFIED] {outcome.reason}"
        elif outcome.status in (Status.FAILED, Status.SKIPPED):
            tag += f" {outcome.status.lower()} in this run, previous record kept"
        if provenance.get("unverified"):
            tag += " (UNVERIFIED: from model knowledge, not a cited source)"
        if (provenance.get("crosscheck") or {}).get("classification") == crosscheck.DISPUTED:
            tag += " (DISPUTED by a reference: see its provenance.crosscheck)"
        comments[slug] = tag
    records = {slug: entry["record"] for slug, entry in dataset["countries"].items()}
    return render_tax_data_js(records, header_lines=header, comments=comments)


def print_summary(run: UpdateRun, seconds: float) -> None:
    counts = status_counts(run.outcomes)
    width = max(len(s) for s in STATUSES)
    print(f"\nUpdate summary ({seconds:.1f}s, model {run.model or 'n/a'})")
    for status, count in counts.items():
        print(f"  {status:<{width}}  {count:>3}")
    failed = [o for o in run.outcomes.values()
              if o.status == Status.FAILED and not o.reason.startswith("DISPUTED ")]  # listed below
    for outcome in sorted(failed, key=lambda o: o.slug):
        print(f"  FAILED {outcome.slug}: {_few_words(outcome.reason)}")
    _print_unsupported(run.outcomes)
    unverified = sorted(o.slug for o in run.outcomes.values()
                        if o.unverified and o.status not in (Status.FAILED, Status.SKIPPED))
    if unverified:
        print(f"  UNVERIFIED (model-knowledge sources, check by hand): {', '.join(unverified)}")
    print_crosscheck(run)
    if getattr(run, "report_path", None):
        print(f"  Report: {run.report_path}")


def _print_unsupported(outcomes: dict[str, CountryOutcome], most: int = 20) -> None:
    """Figures not written for want of a verified quote: counts, then a line per country
    (at most ``most`` lines; the report has all)."""
    held = {slug: o.unsupported for slug, o in sorted(outcomes.items()) if o.unsupported}
    own = sum(not u["withheld"] for items in held.values() for u in items)
    withheld = sum(u["withheld"] for items in held.values() for u in items)
    noun = "country" if len(held) == 1 else "countries"
    print(f"  UNSUPPORTED figures: {own} in {len(held)} {noun} (no verified quote; not written)"
          + (f", {withheld} more withheld with them" if withheld else ""))
    for slug, items in list(held.items())[:most]:
        paths = [u["path"] for u in items if not u["withheld"]]
        print(f"  UNSUPPORTED {slug}: {_few_words(', '.join(paths))}")
    if len(held) > most:
        print(f"  ... and {len(held) - most} more countries with UNSUPPORTED figures "
              "(see the report)")


def crosscheck_counts(run: UpdateRun) -> dict[str, int]:
    """CORROBORATED / DISPUTED / NO REFERENCE among the countries checked in this run."""
    found = [o.crosscheck["classification"] for o in run.outcomes.values() if o.crosscheck]
    return {name: found.count(name) for name in crosscheck.CLASSES}


def print_crosscheck(run: UpdateRun, most: int = 20) -> None:
    """The cross-check counts and the disputes (at most ``most`` lines; the report has all)."""
    counts = crosscheck_counts(run)
    if not any(counts.values()):
        return
    sources = ", ".join(r.label for r in run.references) or "none available"
    print(f"  Cross-check against {sources}: "
          + ", ".join(f"{name} {count}" for name, count in counts.items()))
    disputed = sorted((o for o in run.outcomes.values()
                       if o.crosscheck and o.crosscheck["classification"] == crosscheck.DISPUTED),
                      key=lambda o: o.slug)
    for outcome in disputed[:most]:
        texts = [c["text"] for c in outcome.crosscheck["comparisons"] if c["verdict"] == "disputed"]
        fate = "held back" if outcome.status == Status.FAILED else "written"
        print(f"  DISPUTED {outcome.slug} ({fate}): {_few_words('; '.join(texts), 160)}")
    if len(disputed) > most:
        print(f"  ... and {len(disputed) - most} more DISPUTED (see the report)")


def _few_words(reason: str, limit: int = 100) -> str:
    """``reason`` on one line, cut at a word boundary (never mid-word) when longer than
    ``limit``."""
    reason = " ".join(reason.split())
    if len(reason) <= limit:
        return reason
    cut = reason[: limit - 3]
    if reason[limit - 3] != " " and " " in cut:  # the cut fell inside a word: drop that word
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "..."


def check_args(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work: a usage error before anything is read or written."""
    if getattr(args, "write", False):
        raise UsageError("--write goes with --discover-countries (the updater always writes; "
                         "--dry-run previews)")
    if args.import_only and not args.import_js:
        raise UsageError("--import-only needs --import-js FILE (there is nothing to import)")
    if getattr(args, "prune", False) and not args.import_js:
        raise UsageError("--prune needs --import-js FILE (it removes the countries that file "
                         "lacks)")
    if args.max_chars < 1:
        raise UsageError(f"--max-chars must be at least 1, got {args.max_chars}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The whole updater run (the script's one call)."""
    started = time.monotonic()
    if getattr(args, "discover_countries", False):
        from taxdata.update.discover import discover  # only this mode needs it
        return discover(args, settings)
    update = prepare(args, settings)
    if args.import_js:
        code = run_import(update, args, started)
        if code is not None:
            return code
    sources = update.plan()
    client = LLMClient.from_settings(settings)
    extractor = Extractor(client, args.max_chars, settings.max_reasks)
    if args.dry_run:
        return dry_run(update, extractor, sources)
    update.model = client.preflight()
    update.previous = dict(update.dataset["countries"])
    update.journal.open()
    if update.dirty:  # the import is on disk before the first request
        update.checkpoint()

    def work(slug: str) -> CountryOutcome:
        return update.process(client, extractor, slug, sources[slug])

    def on_result(result: TaskResult[CountryOutcome]) -> None:
        update.persist(result.value)

    if sources and not getattr(args, "no_list_reference", False):
        # Once per run, before the workers start; unreachable: one warning, no list reference.
        listed = fetch_list_reference(settings.wikipedia_api, settings.user_agent, update.registry)
        if listed is not None:
            update.references.insert(0, listed)

    summary = run_tasks(sources, work, max_workers=settings.max_workers, on_result=on_result,
                        describe=lambda outcome: outcome.status, progress=not args.no_progress,
                        clear_stop=True)
    for slug, result in summary.results.items():
        if slug not in update.outcomes or not result.ok:
            update.outcomes[slug] = _outcome_of(slug, result)
    update.finish(summary.interrupted)
    print_summary(update, time.monotonic() - started)
    report_endpoints(client, (r.error for r in summary.results.values()))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    failed = any(o.status == Status.FAILED for o in update.outcomes.values())
    return EXIT_FAILED if failed else EXIT_OK


def prepare(args: argparse.Namespace, settings: Settings) -> UpdateRun:
    """Check the arguments, the reference file and the data directory (locked, recovered,
    dataset loaded) before any request: every problem here is a usage error."""
    check_args(args)
    update = UpdateRun(args, settings)
    if getattr(args, "reference", None):  # a bad file is a usage error before any request
        try:
            update.references.append(load_reference_csv(args.reference, update.registry))
        except ReferenceTableError as exc:
            raise UsageError(str(exc)) from None
        for warning in update.references[-1].warnings:
            logger.warning("[REFERENCE] %s %s", thread_label(), warning)
    if not args.dry_run:  # a dry run writes (and deletes, and locks) nothing
        update.data.check_writable()
        update.data.acquire_run_lock(SCRIPT_NAME)
        update.data.sweep_stale_temps()
        recover(update.data, update.registry)
    # A broken dataset is an error before any LLM call.
    update.dataset = load_dataset(update.data)
    return update


def run_import(update: UpdateRun, args: argparse.Namespace, started: float) -> int | None:
    """Merge ``--import-js`` into the dataset; the exit code if the run ends with the import
    (--dry-run, --import-only), else None: the LLM run follows."""
    imported = read_import(Path(args.import_js), update.registry)
    merge_import(update, imported, getattr(args, "prune", False))
    if args.dry_run:
        return dry_run_import(update)
    if args.import_only:
        update.journal.open()
        update.finish(interrupted=False)
        print_summary(update, time.monotonic() - started)
        return EXIT_FAILED if imported.invalid or imported.unknown else EXIT_OK
    return None


def _outcome_of(slug: str, result: TaskResult[CountryOutcome]) -> CountryOutcome:
    """The outcome of a task whose result persist() did not record."""
    if result.ok:  # Ctrl-C landed while its result was being saved
        return result.value
    if isinstance(result.error, CountryFailed):
        return result.error.outcome
    if result.cancelled:
        return CountryOutcome(slug, Status.SKIPPED, "interrupted before it ran")
    # An unexpected error (a bug, a disk error): nothing was written for it.
    return CountryOutcome(slug, Status.FAILED, f"{type(result.error).__name__}: {result.error}")


def dry_run_import(update: UpdateRun) -> int:
    """What an import would do to the dataset; nothing is written."""
    print("Dry run: the import would change the dataset like this (nothing written):")
    for slug, outcome in sorted(update.outcomes.items()):
        print(f"  {outcome.status:<9} {slug:<24} {_few_words(outcome.reason)}")
    return EXIT_OK


def dry_run(update: UpdateRun, extractor: Extractor, sources: dict[str, Path]) -> int:
    """List what would run and each prompt's size; send nothing, write nothing."""
    noun = "country" if len(sources) == 1 else "countries"
    print(f"Dry run: {len(sources)} {noun} would be sent to {update.settings.llm_url} "
          f"with {update.settings.max_workers} workers")
    for slug, path in sources.items():
        text = path.read_text(encoding="utf-8", errors="replace")
        parts = extractor.parts(text)
        sizes = [sum(len(m["content"]) for m in extractor.messages(update.registry.get(slug), p))
                 for p in parts]
        print(f"  {slug:<24} {path.name:<28} {len(parts)} request(s), prompt "
              f"{sum(sizes):,} chars (~{sum(sizes) // 4:,} tokens)")
    skipped = [o for o in update.outcomes.values() if o.status == Status.SKIPPED]
    no_file = [o.slug for o in skipped if o.reason.startswith("no taxation file")]
    if no_file:
        print(f"  SKIPPED (no taxation file): {', '.join(no_file)}")
    for outcome in skipped:
        if outcome.slug not in no_file:
            print(f"  SKIPPED {outcome.slug}: {outcome.reason}")
    return EXIT_OK
