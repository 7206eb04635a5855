"""One country's update: its taxation file -> an extraction -> a record, cross-checked.

Runs on the worker threads; reads the dataset as it was when the run started and writes
nothing (the run saves each outcome as it arrives, on one thread).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from taxdata.countries.registry import Registry
from taxdata.evidence.check import EvidenceCheck
from taxdata.evidence.grounding import Original
from taxdata.evidence.originals import Originals, OriginalUnavailable
from taxdata.log import logger, thread_label
from taxdata.outcome import CountryFailed, Status
from taxdata.record.build import build_record, carry_calculator_fields
from taxdata.record.models import Provenance
from taxdata.record.validation import missing_fields
from taxdata.references import crosscheck
from taxdata.references.table import Reference
from taxdata.store.hiddenmarkup import strip_hidden_markup
from taxdata.store.taxfile import SourceInfo, parse_sources
from taxdata.timestamps import now_utc
from taxdata.update.datasetindex import HAS_ORIGINAL, stamp_of
from taxdata.update.extract import PROMPT_VERSION, ExtractionFailed, Extractor
from taxdata.update.outcome import CountryOutcome

UP_TO_DATE = "source unchanged since the last extraction (--force to redo)"


@dataclass
class CountryUpdater:
    """Turns a country's taxation file into its outcome; shared by all worker threads."""

    registry: Registry
    extractor: Extractor
    references: list[Reference]  # the second sources to cross-check against
    previous: Mapping[str, Any]  # the dataset's countries when the run started (a Snapshot)
    force: bool = False  # extract again even when the source has not changed
    accept_disputed: bool = False  # write a record that a reference disputes (VAT or top rate)
    # Where each file's original is found, to verify every figure in it (taxdata.evidence.
    # grounding); None verifies against the taxation files alone (Python callers' choice).
    originals: Originals | None = None

    def up_to_date(self, slug: str, raw: bytes, model: str | None) -> bool:
        """The record was extracted from these very bytes, with this prompt and model (and, when
        originals are checked, verified in its original: records from before that are redone)."""
        return self.up_to_date_digest(slug, hashlib.sha256(raw).hexdigest(), model)

    def up_to_date_digest(self, slug: str, digest: str | None, model: str | None) -> bool:
        """:meth:`up_to_date` for bytes whose sha256 is ``digest``."""
        stamp = stamp_of(self.previous, slug)  # its provenance, as far as this needs it
        grounded = self.originals is None or stamp["unverified"] or stamp[HAS_ORIGINAL]
        return (not self.force and digest is not None and bool(grounded)
                and stamp["source_sha256"] == digest
                and stamp["prompt_version"] == PROMPT_VERSION and stamp["model"] == model)

    def fate(self, slug: str) -> str:
        """What a failed country's dataset entry keeps: its record, or none exists yet."""
        if (self.previous.get(slug) or {}).get("record") is not None:
            return "previous record kept"
        return "no record exists yet (none written)"

    def process(self, slug: str, path: Path) -> CountryOutcome:
        """The country's outcome: PENDING with the new record, UNCHANGED when up to date; or
        :class:`CountryFailed` with a FAILED outcome."""
        client = self.extractor.client
        country = self.registry.get(slug)
        raw = path.read_bytes()
        # What no reviewer of the file sees (comments, hidden elements) is not part of it.
        text = strip_hidden_markup(raw.decode("utf-8", errors="replace"))
        info = parse_sources(text)
        outcome = CountryOutcome(slug, source_file=path.name, source_kind=info.kind,
                                 unverified=info.unverified, model=client.model)
        if self.up_to_date(slug, raw, client.model):
            outcome.status = Status.UNCHANGED
            outcome.reason = UP_TO_DATE
            return outcome
        started = time.monotonic()
        original = self.original_of(outcome, path, text, info)
        try:
            result = self.extractor.extract(country, text, check_quotes=not info.unverified,
                                            original=original)
        except ExtractionFailed as exc:
            outcome.status, outcome.reason = Status.FAILED, f"{_cause(exc)}; {self.fate(slug)}"
            outcome.unsupported, outcome.replies = exc.unsupported, exc.replies
            outcome.attempts, outcome.http_attempts = exc.attempts, exc.http_attempts
            outcome.latency_s = round(time.monotonic() - started, 3)
            outcome.model = client.model
            raise CountryFailed(outcome) from exc
        outcome.latency_s = round(time.monotonic() - started, 3)
        outcome.attempts, outcome.http_attempts = result.asked, result.http_attempts
        outcome.replies = result.replies
        outcome.model = result.model
        outcome.warnings, outcome.missing = result.warnings, missing_fields(result.extraction)
        check = result.check
        if check is not None:
            outcome.evidence = check.verified
            outcome.unsupported = [u.report() for u in check.unsupported]
            outcome.grounding = {p: g.model_dump() for p, g in check.grounding.items()}
            outcome.original = check.original.model_dump() if check.original else None
        outcome.record = build_record(result.extraction, country)
        # The calculator's own fields (the model is never asked for them) stay, flagged.
        carried = carry_calculator_fields(outcome.record,
                                          (self.previous.get(slug) or {}).get("record"))
        if carried:
            outcome.warnings.append("kept from the previous record, not from the source: "
                                    + ", ".join(carried))
        provenance = _provenance(path, raw, info, result.model, check)
        provenance.endpoint = result.endpoint or None
        if result.server_model and result.server_model != result.model:
            provenance.server_model = result.server_model
        outcome.provenance = provenance.model_dump()
        if carried:  # which figures no source of this record states (the previous record's)
            outcome.provenance["carried_over"] = carried
        self.cross_check(outcome, info, path)
        outcome.status = Status.PENDING  # ADDED/MODIFIED/UNCHANGED is decided against the dataset
        return outcome

    def original_of(self, outcome: CountryOutcome, path: Path, text: str,
                    info: SourceInfo) -> Original | None:
        """The original to verify the file's figures in; FAILED (before any request: nothing
        could be verified) when it cannot be found."""
        if self.originals is None or info.unverified:
            return None
        try:
            return self.originals.find(outcome.slug, path.name, text, info)
        except OriginalUnavailable as exc:
            outcome.status = Status.FAILED
            outcome.reason = (f"cannot verify the figures: {exc}; nothing sent, previous record "
                              "kept")
            logger.warning("[ORIGINAL] %s %s %s", thread_label(), outcome.slug, outcome.reason)
            raise CountryFailed(outcome) from exc

    def cross_check(self, outcome: CountryOutcome, info: SourceInfo, path: Path) -> None:
        """Compare the validated record with the references; a DISPUTED record (its VAT or its
        top rate) is held back."""
        own = (info.title or path.name) + (f", rev {info.revision}" if info.revision else "")
        check = crosscheck.check_record(outcome.slug, outcome.record, own, self.references)
        outcome.crosscheck = check.report()
        outcome.warnings += check.warnings
        if check.classification != crosscheck.NO_REFERENCE:
            outcome.provenance["crosscheck"] = check.report()  # why anyone may doubt it
        if check.disputes:
            logger.warning("[DISPUTED] %s %s %s", thread_label(), outcome.slug, check.summary())
        if check.disputes and not self.accept_disputed:
            outcome.status, outcome.record = Status.FAILED, None
            outcome.reason = (f"DISPUTED {check.summary()}; held back, {self.fate(outcome.slug)} "
                              "(--accept-disputed writes it)")
            raise CountryFailed(outcome)


def _cause(error: ExtractionFailed) -> str:
    """Why the extraction failed, without a verdict on the record: only the run knows whether
    there is a previous record to keep (see CountryUpdater.fate)."""
    return re.sub(r";?\s*previous record kept$", "", str(error))


def _provenance(path: Path, raw: bytes, info: SourceInfo, model: str,
                check: EvidenceCheck | None = None) -> Provenance:
    grounded = check is not None and check.original is not None
    return Provenance(
        source_file=path.name, source_sha256=hashlib.sha256(raw).hexdigest(),
        source_url=info.url, source_revision=info.revision, source_kind=info.kind,
        unverified=info.unverified, model=model, prompt_version=PROMPT_VERSION,
        evidence=check.verified if check else None,
        original=check.original if grounded else None,
        grounding=check.grounding if grounded else None, extracted_at=now_utc())
