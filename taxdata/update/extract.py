"""The updater's extraction: one taxation file -> the model -> a validated, evidence-checked
extraction.

The prompts ask for the facts the text states, as JSON with a verbatim quote per figure; a reply
that fails validation is asked again with the exact errors (``TAXDATA_MAX_REASKS`` times,
default 2); a long file is sent in parts and the parts' replies merged (a conflict between parts
fails the country); every figure whose quote the text does not bear out is withheld
(taxdata.evidence.check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taxdata.clients.llm import LLMClient, LLMError, LLMTruncated
from taxdata.countries.registry import Country
from taxdata.errors import TaxdataError
from taxdata.events import ReplyRejected, emit
from taxdata.evidence.check import EvidenceCheck, Quote, check_evidence
from taxdata.evidence.grounding import Original
from taxdata.evidence.sourcetext import source_of
from taxdata.log import logger, thread_label, truncate
from taxdata.record.models import Extraction
from taxdata.record.replies import ReplyError, parse_reply
from taxdata.record.schema import extraction_json_schema
from taxdata.record.validation import validate_extraction
from taxdata.store.taxfile import DEFAULT_MAX_CHARS, request_parts

PROMPT_VERSION = "updater-2"
# Characters of each raw reply kept in the run report (and shown by -v): enough to see what the
# model said, bounded so a runaway reply cannot bloat the report.
REPLY_LIMIT = 4096

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


@dataclass
class Extracted:
    """A validated extraction and what getting it took."""

    extraction: Extraction
    warnings: list[str]
    asked: int  # model replies asked for (a validation re-ask counts)
    http_attempts: int
    model: str
    replies: list[dict[str, Any]] = field(default_factory=list)  # each ask's reply (bounded)


@dataclass
class CheckedExtraction(Extracted):
    """:meth:`Extractor.extract`'s result: the extraction with the evidence check applied."""

    check: EvidenceCheck | None = None  # None for research sources (nothing to quote from)


class ExtractionFailed(TaxdataError):
    """The model's replies never passed validation; the message lists why."""

    def __init__(self, message: str, attempts: int, http_attempts: int,
                 unsupported: list[dict[str, Any]] | None = None,
                 replies: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.attempts, self.http_attempts = attempts, http_attempts
        self.unsupported = unsupported or []
        self.replies = replies or []  # each ask's raw reply (bounded) and why it was rejected


def reply_entry(ask: int, part: int, parts: int, request_id: int | None, text: str | None,
                rejected: list[str]) -> dict[str, Any]:
    """One ask's reply as the report keeps it: the text bounded to REPLY_LIMIT characters, and
    the errors it was rejected for (empty: accepted)."""
    return {"ask": ask, "part": f"{part}/{parts}" if parts > 1 else None,
            "request_id": request_id, "chars": len(text) if text is not None else None,
            "reply": truncate(text, REPLY_LIMIT) if text is not None else None,
            "rejected": rejected}


def rejected_after_all(country: Country, reason: str, replies: list[dict[str, Any]]) -> None:
    """Replies that passed validation but whose country then fails (no verified quote, parts
    that disagree, nothing stated): each is rejected after all, in its entry and as an event,
    so the run report draws its request as an invalid reply, not as a good one."""
    for entry in replies:
        if not entry["rejected"]:
            entry["rejected"] = [reason]
            emit(ReplyRejected(thread_label(), f"{country.slug} reply {entry['ask']} rejected",
                               reason, entry["request_id"]))


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
                  for source, r in zip(map(source_of, parts), results)
                  for e in r.extraction.evidence]
        if len(results) == 1:
            return results[0], quotes
        merged, conflicts = merge_extractions([r.extraction for r in results])
        asked = sum(r.asked for r in results)
        http = sum(r.http_attempts for r in results)
        replies = [entry for r in results for entry in r.replies]
        outcome = None if conflicts else validate_extraction(merged.model_dump(), country)
        if outcome is None or not outcome.ok:
            reason = ("parts of the source disagree: " + "; ".join(conflicts) if conflicts
                      else "merged parts invalid: " + "; ".join(outcome.errors))
            rejected_after_all(country, reason, replies)
            raise ExtractionFailed(reason, asked, http, replies=replies)
        warnings = [w for r in results for w in r.warnings] + outcome.warnings
        return Extracted(outcome.extraction, list(dict.fromkeys(warnings)), asked, http,
                         results[-1].model, replies), quotes

    def extract(self, country: Country, text: str, *, check_quotes: bool = True,
                original: Original | None = None) -> CheckedExtraction:
        """The validated extraction, its warnings, costs and evidence check; or ExtractionFailed.

        With ``check_quotes`` every figure needs a verified quote (taxdata.evidence.check): the
        returned extraction has the unsupported ones set to null, and a reply whose key figures
        (VAT standard rate, the brackets) all lack one fails. Without it (research sources, the
        model's own knowledge: there is no text to hold quotes against) the check is None.
        With ``original`` (the text the file was written from) every figure must also be found
        there (taxdata.evidence.grounding).
        """
        found, quotes = self._extract_all(country, text)
        result = CheckedExtraction(**vars(found))
        if check_quotes:
            check = check_evidence(result.extraction, quotes, original)
            unsupported = [u.report() for u in check.unsupported]
            for item in check.unsupported:
                logger.warning("[UNSUPPORTED] %s %s %s %s: %s", thread_label(), country.slug,
                               item.path, item.report()["value"], item.reason)
            if check.failed:
                rejected_after_all(country, check.failed, result.replies)
                raise ExtractionFailed(check.failed, result.asked, result.http_attempts,
                                       unsupported, result.replies)
            outcome = validate_extraction(check.extraction.model_dump(), country)
            if not outcome.ok:  # withholding figures must never make a record invalid
                reason = ("figures withheld for want of evidence leave an invalid record: "
                          + "; ".join(outcome.errors))
                rejected_after_all(country, reason, result.replies)
                raise ExtractionFailed(reason, result.asked, result.http_attempts, unsupported,
                                       result.replies)
            result.extraction = check.extraction
            result.warnings = result.warnings + check.notes
            result.check = check
        facts = result.extraction
        if all(getattr(facts, key) is None
               for key in ("system", "brackets", "vat", "socialSecurity")):
            # A record of nothing but nulls would wipe the previous one: that needs a human.
            reason = ("the reply states no tax facts (system, brackets, VAT and social security "
                      "all null)")
            rejected_after_all(country, reason, result.replies)
            raise ExtractionFailed(reason, result.asked, result.http_attempts,
                                   replies=result.replies)
        return result

    def _extract_part(self, country: Country, text: str, part: int,
                      parts: int) -> Extracted:
        messages = self.messages(country, text, part, parts)
        label = f"Extracting {country.slug}" + (f" part {part}/{parts}" if parts > 1 else "")
        http_attempts = 0
        errors: list[str] = []
        replies: list[dict[str, Any]] = []  # each ask's reply, for the run report
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
                replies.append(reply_entry(asked, part, parts, None, None, [str(exc)]))
                raise ExtractionFailed(str(exc), asked, http_attempts + exc.attempts,
                                       replies=replies) from exc
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
                    replies.append(reply_entry(asked, part, parts, reply.request_id, text, []))
                    return Extracted(outcome.extraction, outcome.warnings, asked, http_attempts,
                                     reply.model, replies)
            replies.append(reply_entry(asked, part, parts,
                                       reply.request_id if text is not None else None, text,
                                       list(errors)))
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
        raise ExtractionFailed("; ".join(errors), asks, http_attempts, replies=replies)


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

