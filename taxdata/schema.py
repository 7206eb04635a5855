"""Tax-record schema: what the LLM must return, how it is checked, and how records are compared.

The updater sends a country's taxation text to the LLM together with
:func:`extraction_json_schema` (structured output).  The reply goes through:

1. :func:`parse_reply` -- the reply must be exactly one JSON object (optionally inside a single
   ```json fenced block).  Nothing is repaired: prose around the JSON or truncated JSON is an error.
2. :func:`validate_extraction` -- pydantic type checks (strict: ``"19"`` is not a number, unknown
   keys are errors) and then the semantic rules (rate ranges, bracket layout, system consistency,
   VAT consistency, currency / country code against the registry).  Every error is one line that
   starts with the field path (``vat.standard: 190 is outside 0..100``) because the list is sent
   back to the model verbatim for one re-ask.
3. :func:`build_record` -- turns a valid :class:`Extraction` plus the registry country into the
   calculator's record (a dict in the calculator's key order).  :class:`Provenance` is kept beside
   the record, never inside it.

:func:`diff_records` / :func:`summarize_changes` describe what an update changed.

No tax facts live in this module: every number comes from the model's reply and is only checked
for plausibility here.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .strictjson import DuplicateKeyError, no_duplicate_keys
from .taxfile import FileSourceKind

__all__ = [
    "CountryLike",
    "Bracket",
    "VAT",
    "SocialSecurity",
    "SpecialTax",
    "Evidence",
    "EVIDENCE_PATHS",
    "Extraction",
    "TaxRecord",
    "Provenance",
    "ReplyError",
    "ValidationOutcome",
    "FieldChange",
    "RECORD_KEYS",
    "extraction_json_schema",
    "parse_reply",
    "validate_extraction",
    "missing_fields",
    "build_record",
    "diff_records",
    "summarize_changes",
]

TaxSystem = Literal["progressive", "flat", "zero_personal"]

# Plausibility thresholds: exceeding them is a *warning* for a human to look at, never an error
# (a real system may legitimately exceed them).  These are review triggers, not tax facts.
VAT_WARN_ABOVE = 27.0
BRACKET_RATE_WARN_ABOVE = 60.0
EMPLOYEE_SS_WARN_ABOVE = 30.0

# Contiguity of brackets: the next bracket's min must lie in [prev.max, prev.max + 1] inclusive.
# That accepts shared boundaries (0-10000, 10000-...), whole-unit steps (0-10000, 10001-...) and
# decimal-currency steps (0-10000.00, 10000.01-...).  _EPS only absorbs float noise.
BRACKET_STEP_MAX = 1.0
_EPS = 1e-6


@runtime_checkable
class CountryLike(Protocol):
    """What this module needs from ``taxdata.registry.Country`` (any object with these works)."""

    @property
    def slug(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def code(self) -> str: ...  # ISO 3166-1 alpha-2
    @property
    def currency(self) -> str: ...  # ISO 4217
    @property
    def wikipedia_title(self) -> str | None: ...
    @property
    def coordinates(self) -> tuple[float, float]: ...


# --------------------------------------------------------------------------------------------
# Models.  Strict mode: the model's JSON must carry real numbers/booleans, not strings that
# happen to look like them; NaN/Infinity are refused.  Descriptions are written for the LLM:
# they end up in the JSON schema it is constrained by.
# --------------------------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Bracket(BaseModel):
    """One personal income tax bracket: income from `min` up to `max` is taxed at `rate`."""

    model_config = _STRICT

    min: float = Field(
        ge=0,
        description="Lower bound of the bracket: annual taxable income in the local currency. "
        "The first bracket starts at 0.",
    )
    max: float | None = Field(
        None,
        description="Upper bound of the bracket: annual taxable income in the local currency. "
        "null only for the last (open-ended) bracket.",
    )
    rate: float = Field(description="Tax rate in percent (e.g. 25 for 25%), not a fraction.")
    description: str | None = Field(
        None, description="Short label for the bracket as the source gives it, or null."
    )


class VAT(BaseModel):
    """Value-added tax / goods and services tax."""

    model_config = _STRICT

    hasVAT: bool | None = Field(
        None,
        description="true if the country levies a VAT/GST, false if the source says it does "
        "not, null if the source does not state it.",
    )
    standard: float | None = Field(
        None,
        description="Standard VAT rate in percent (e.g. 20 for 20%). null if the source does not "
        "state it or if there is no VAT.",
    )
    reduced: list[float] = Field(
        default_factory=list,
        description="Reduced VAT rates in percent, each below the standard rate. Empty list if "
        "none are stated or if there is no VAT.",
    )
    description: str | None = Field(
        None, description="Short description of the VAT as the source gives it, or null."
    )
    notes: str | None = Field(
        None, description="Exemptions or other remarks from the source, or null."
    )


class SocialSecurity(BaseModel):
    """Social security contributions on wages."""

    model_config = _STRICT

    employeeRate: float | None = Field(
        None,
        description="Total social security contribution paid by the employee, in percent of "
        "gross salary. null if the source does not state it.",
    )
    employerRate: float | None = Field(
        None,
        description="Total social security contribution paid by the employer, in percent of "
        "gross salary. null if the source does not state it.",
    )
    notes: str | None = Field(
        None, description="Caps, components or other remarks from the source, or null."
    )


class SpecialTax(BaseModel):
    """A tax other than personal income tax, VAT and social security."""

    model_config = _STRICT

    type: str = Field(description="Kind of tax, e.g. corporate, capital_gains, property, excise.")
    target: str = Field(description="Who or what is taxed, e.g. companies, dividends, fuel.")
    rate: float | None = Field(
        None,
        description="Rate in percent. null if the tax is not a single percentage or the source "
        "does not state it.",
    )
    description: str = Field(description="One-sentence description from the source.")


# The fields a quote may be given for (``[i]`` is a list index); taxdata.evidence checks them.
EVIDENCE_PATHS: tuple[str, ...] = (
    "system", "vat.standard", "vat.reduced[i]", "brackets[i].rate", "brackets[i].min",
    "brackets[i].max", "socialSecurity.employeeRate", "socialSecurity.employerRate",
)


class Evidence(BaseModel):
    """A short verbatim quote from the source that states one figure of the reply."""

    model_config = _STRICT

    field: str = Field(
        description="Which figure the quote states: " + ", ".join(EVIDENCE_PATHS)
        + " (i is the 0-based position in the list, e.g. brackets[1].rate)."
    )
    quote: str = Field(
        description="A short quote copied exactly from the source text (one sentence or one "
        "table row) that states this figure and says what it is."
    )


class Extraction(BaseModel):
    """Tax facts of one country, taken only from the source text; null where it does not say."""

    model_config = _STRICT

    currency: str | None = Field(
        None,
        description="ISO 4217 code of the currency the amounts are in (e.g. EUR). null if the "
        "source does not state it.",
    )
    countryCode: str | None = Field(
        None,
        description="ISO 3166-1 alpha-2 code of the country (e.g. DE). null if the source does "
        "not state it.",
    )
    system: TaxSystem | None = Field(
        None,
        description="Personal income tax system: progressive (several brackets with different "
        "rates), flat (one rate for all income), zero_personal (no personal income tax). null if "
        "the source does not state it.",
    )
    brackets: list[Bracket] | None = Field(
        None,
        description="Personal income tax brackets for a resident individual, sorted by min, "
        "thresholds in the local currency per year, rates in percent. null if the source does "
        "not state them.",
    )
    vat: VAT | None = Field(
        None, description="Value-added tax. null if the source says nothing about VAT."
    )
    socialSecurity: SocialSecurity | None = Field(
        None,
        description="Social security contributions. null if the source says nothing about them.",
    )
    special_taxes: list[SpecialTax] = Field(
        default_factory=list,
        description="Other notable taxes stated in the source (corporate, capital gains, ...). "
        "Empty list if none.",
    )
    notes: str | None = Field(
        None, description="Short remarks that matter for the figures above, or null."
    )
    evidence: list[Evidence] = Field(
        default_factory=list,
        description="One entry per figure given above (system, each VAT rate, each bracket's "
        "rate, min and max, each social security rate): the field and a verbatim quote from "
        "the source text stating it. A figure without a quote is not used.",
    )


class TaxRecord(BaseModel):
    """A stored record, in the calculator's shape and key order (see :data:`RECORD_KEYS`)."""

    model_config = _STRICT

    name: str
    currency: str
    system: TaxSystem | None
    countryCode: str
    coordinates: list[float] = Field(min_length=2, max_length=2)
    brackets: list[Bracket] | None = None
    vat: VAT | None = None
    socialSecurity: SocialSecurity | None = None
    special_taxes: list[SpecialTax] = Field(default_factory=list)
    notes: str | None = None


RECORD_KEYS: tuple[str, ...] = tuple(TaxRecord.model_fields)


class Provenance(BaseModel):
    """Where a record came from.  Stored beside the record, never inside it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source_file: str
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    source_url: str | None = None
    source_revision: str | None = None
    source_kind: Literal[FileSourceKind, Literal["imported"]]
    # True for "research" files: they hold the model's own knowledge, not a cited source.
    unverified: bool
    model: str | None = None
    prompt_version: str | None = None
    # Verified quotes, figure path -> the source's words that state it (taxdata.evidence).
    # None where quotes are not checked: imported records, research (model knowledge) files.
    evidence: dict[str, str] | None = None
    extracted_at: str = Field(description="ISO 8601 timestamp in UTC, e.g. 2024-05-01T12:00:00Z")

    @field_validator("extracted_at")
    @classmethod
    def _utc_iso8601(cls, value: str) -> str:
        # fromisoformat() only learned "Z" in 3.11; normalise so 3.10 behaves the same.
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
        if stamp.utcoffset() != timedelta(0):
            raise ValueError(f"{value!r} is not in UTC (needs Z or +00:00)")
        return value

    @model_validator(mode="after")
    def _research_is_unverified(self) -> Provenance:
        # Model-knowledge files must never be presented as sourced facts.
        if self.source_kind == "research" and not self.unverified:
            raise ValueError("source_kind 'research' must be marked unverified")
        if self.source_kind == "research" and self.evidence is not None:
            raise ValueError("source_kind 'research' has no verified quotes "
                             "(evidence must be null)")
        return self


# --------------------------------------------------------------------------------------------
# JSON schema for the server
# --------------------------------------------------------------------------------------------

_SCHEMA_CACHE: dict[str, Any] | None = None
# Schema keywords that only add noise for grammar conversion ("default" is moot once every
# property is required; titles duplicate the property names).
_DROP_KEYWORDS = frozenset({"title", "default", "$defs"})


def _grammar_friendly(node: Any, defs: dict[str, Any], stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_grammar_friendly(item, defs, stack) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in stack:  # a recursive model cannot be inlined
            raise ValueError(f"recursive $ref {name!r} cannot be inlined")
        target = _grammar_friendly(defs[name], defs, stack + (name,))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings}  # a field's own description wins over the model docstring
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYWORDS:
            continue
        if key == "properties":  # keys here are property names, not schema keywords
            out[key] = {p: _grammar_friendly(s, defs, stack) for p, s in value.items()}
        else:
            out[key] = _grammar_friendly(value, defs, stack)
    if out.get("type") == "object" or "properties" in out:
        props = out.setdefault("properties", {})
        out["required"] = list(props)  # nullability is expressed by anyOf [..., null]
        out["additionalProperties"] = False
    return out


def extraction_json_schema() -> dict[str, Any]:
    """JSON schema of :class:`Extraction` for structured output (llama.cpp / Ollama grammars).

    Generated from the model, then: ``$ref`` inlined (no ``$defs``), every property required
    (optional ones are nullable via ``anyOf`` with ``{"type": "null"}``), ``additionalProperties:
    false`` on every object, titles/defaults removed.  Returns a fresh copy on every call.
    """
    global _SCHEMA_CACHE
    if _SCHEMA_CACHE is None:
        raw = Extraction.model_json_schema()
        _SCHEMA_CACHE = _grammar_friendly(raw, raw.get("$defs", {}), ())
    return copy.deepcopy(_SCHEMA_CACHE)


# --------------------------------------------------------------------------------------------
# Reply parsing
# --------------------------------------------------------------------------------------------


class ReplyError(ValueError):
    """The LLM reply is not exactly one JSON object.  ``str(err)`` is one line, fit to re-ask."""


_REPLY = "reply is not a JSON object"


def _reject_constant(name: str) -> Any:
    raise ReplyError(f"{_REPLY}: {name} is not valid JSON")


def _unfence(text: str) -> str:
    """Return the body of a reply that is one ```json fenced block and nothing else."""
    newline = text.find("\n")
    if newline == -1:
        raise ReplyError(f"{_REPLY}: malformed code fence")
    info = text[3:newline].strip()
    if info.lower() not in ("", "json"):
        raise ReplyError(f"{_REPLY}: code fence language is {info!r}, expected json")
    body = text[newline + 1 :]
    close = body.find("```")
    if close == -1:
        raise ReplyError(f"{_REPLY}: code fence is not closed (truncated reply?)")
    after = body[close + 3 :].strip()
    if after:
        where = "more than one code fence" if "```" in after else "prose after the code fence"
        raise ReplyError(f"{_REPLY}: {where}")
    return body[:close].strip()


def parse_reply(text: str) -> dict[str, Any]:
    """Parse an LLM reply that must be exactly one JSON object.

    Accepted: the object itself, with surrounding whitespace, or a single ```json (or bare ```)
    fenced block that is the whole reply.  Everything else raises :class:`ReplyError`: prose
    before/after the JSON, invalid or truncated JSON (message carries json's line/column),
    NaN/Infinity, duplicate keys, or a JSON value that is not an object.  Nothing is repaired.
    """
    text = text.strip()
    if text.startswith("```"):
        text = _unfence(text)
    if not text:
        raise ReplyError(f"{_REPLY}: empty reply")
    if text[0] not in "{[":
        where = "prose before JSON" if "{" in text else "no JSON object found"
        raise ReplyError(f"{_REPLY}: {where}")
    decoder = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=no_duplicate_keys)
    try:
        value, end = decoder.raw_decode(text)
    except DuplicateKeyError as exc:
        raise ReplyError(f"{_REPLY}: duplicate key {exc.key!r}") from None
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(text) or exc.msg.startswith("Unterminated string")
        hint = "; the reply ends early (truncated?)" if cut else ""
        raise ReplyError(
            f"{_REPLY}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}){hint}"
        ) from None
    if text[end:].strip():
        raise ReplyError(f"{_REPLY}: prose after JSON")
    if not isinstance(value, dict):  # only an array can get here: text starts with { or [
        raise ReplyError(f"{_REPLY}: got a JSON array")
    return value


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@dataclass
class ValidationOutcome:
    """Result of :func:`validate_extraction`.  ``extraction`` is None when types did not check."""

    extraction: Extraction | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.extraction is not None and not self.errors


def _num(value: Any) -> str:
    """Numbers as a person writes them: 190 not 190.0, 0.5 stays 0.5."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "<root>"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pydantic_errors(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        path = _loc(tuple(err["loc"]))
        kind = err["type"]
        if kind == "extra_forbidden":
            lines.append(f"{path}: unknown field, not in the schema")
        elif kind == "missing":
            lines.append(f"{path}: required field is missing")
        else:
            lines.append(f"{path}: {err['msg']} (got {_short(err.get('input'))})")
    return lines


def _check_rate(path: str, rate: float | None, errors: list[str]) -> None:
    if rate is not None and not 0 <= rate <= 100:
        errors.append(f"{path}: {_num(rate)} is outside 0..100 (rates are percentages)")


def _check_brackets(ext: Extraction, errors: list[str], partial: bool) -> None:
    brackets = ext.brackets
    if brackets is None:
        if not partial and ext.system is not None and ext.system != "zero_personal":
            errors.append(
                f"brackets: null, but system is '{ext.system}'; give the brackets "
                "(only zero_personal may leave them null)"
            )
        return
    if not brackets:
        errors.append("brackets: empty list; use null when the source does not state brackets")
        return
    if ext.system is None and not partial:
        errors.append("system: null, but brackets are given; state progressive, flat or "
                      "zero_personal")
    sorted_ = _check_bracket_layout(brackets, errors)
    # Gap/overlap messages on an unsorted list would only be noise on top of the sort error.
    if sorted_:
        _check_contiguity(brackets, errors)
    _check_system_brackets(ext.system, brackets, errors)


def _check_bracket_layout(brackets: list[Bracket], errors: list[str]) -> bool:
    """Rates, the first min, open ends, max above min, sort order; True if sorted by min."""
    last = len(brackets) - 1
    if brackets[0].min != 0:
        errors.append(f"brackets[0].min: {_num(brackets[0].min)} must be 0 "
                      "(the first bracket starts at 0)")
    unsorted = False
    for i, b in enumerate(brackets):
        _check_rate(f"brackets[{i}].rate", b.rate, errors)
        if b.max is None and i != last:
            errors.append(f"brackets[{i}].max: null, but only the last bracket may be open-ended")
        if b.max is not None and i == last:
            errors.append(f"brackets[{i}].max: {_num(b.max)}, but the last bracket must be "
                          "open-ended (null)")
        if b.max is not None and not b.max > b.min:
            errors.append(f"brackets[{i}].max: {_num(b.max)} is not above its min {_num(b.min)}")
        if i and b.min < brackets[i - 1].min:
            unsorted = True
            errors.append(
                f"brackets[{i}].min: {_num(b.min)} is below brackets[{i - 1}].min "
                f"{_num(brackets[i - 1].min)}; brackets must be sorted by min"
            )
    return not unsorted


def _check_contiguity(brackets: list[Bracket], errors: list[str]) -> None:
    for i in range(1, len(brackets)):
        prev_max, lo = brackets[i - 1].max, brackets[i].min
        if prev_max is None:
            continue  # already reported as a non-last open-ended bracket
        hi = prev_max + BRACKET_STEP_MAX
        if lo < prev_max - _EPS:
            errors.append(
                f"brackets[{i}].min: {_num(lo)} overlaps brackets[{i - 1}] "
                f"(max {_num(prev_max)}); it must be between {_num(prev_max)} and {_num(hi)}"
            )
        elif lo > hi + _EPS:
            errors.append(
                f"brackets[{i}].min: {_num(lo)} leaves a gap after brackets[{i - 1}].max "
                f"{_num(prev_max)}; it must be between {_num(prev_max)} and {_num(hi)}"
            )


def _check_system_brackets(system: str | None, brackets: list[Bracket],
                           errors: list[str]) -> None:
    if system == "flat" and len(brackets) != 1:
        errors.append(f"system: 'flat' needs exactly one bracket, got {len(brackets)}")
    elif system == "zero_personal":
        for i, b in enumerate(brackets):
            if b.rate != 0:
                errors.append(
                    f"brackets[{i}].rate: {_num(b.rate)}, but system 'zero_personal' needs every "
                    "rate to be 0"
                )
    elif system == "progressive":
        # Rates need not rise monotonically (some real schedules dip); only require a schedule.
        if len(brackets) < 2:
            errors.append(f"system: 'progressive' needs at least two brackets, got {len(brackets)}")
        elif len({b.rate for b in brackets}) < 2:
            errors.append(
                "system: 'progressive' needs more than one distinct rate, all brackets are "
                f"{_num(brackets[0].rate)}"
            )


def _check_vat(vat: VAT | None, errors: list[str], partial: bool) -> None:
    if vat is None:
        return
    _check_rate("vat.standard", vat.standard, errors)
    for i, rate in enumerate(vat.reduced):
        _check_rate(f"vat.reduced[{i}]", rate, errors)
    if vat.hasVAT is False:
        if vat.standard is not None:
            errors.append(f"vat.standard: {_num(vat.standard)}, but vat.hasVAT is false "
                          "(must be null)")
        if vat.reduced:
            errors.append(
                f"vat.reduced: [{', '.join(_num(r) for r in vat.reduced)}], but vat.hasVAT is "
                "false (must be empty)"
            )
        return
    if vat.hasVAT is None and (vat.standard is not None or vat.reduced) and not partial:
        errors.append("vat.hasVAT: null, but VAT rates are given (set it to true)")
    if vat.standard is not None:
        for i, rate in enumerate(vat.reduced):
            if not rate < vat.standard:
                errors.append(
                    f"vat.reduced[{i}]: {_num(rate)} is not below vat.standard {_num(vat.standard)}"
                )


def _check_identity(ext: Extraction, country: CountryLike, errors: list[str]) -> None:
    for key, expected in (("currency", country.currency), ("countryCode", country.code)):
        given = getattr(ext, key)
        if given is not None and given.strip() != expected:
            errors.append(f"{key}: {given!r} does not match the registry's {expected!r}")


def _semantic_errors(ext: Extraction, country: CountryLike, partial: bool = False) -> list[str]:
    errors: list[str] = []
    _check_identity(ext, country, errors)
    _check_brackets(ext, errors, partial)
    _check_vat(ext.vat, errors, partial)
    if ext.socialSecurity is not None:
        _check_rate("socialSecurity.employeeRate", ext.socialSecurity.employeeRate, errors)
        _check_rate("socialSecurity.employerRate", ext.socialSecurity.employerRate, errors)
    for i, tax in enumerate(ext.special_taxes):
        _check_rate(f"special_taxes[{i}].rate", tax.rate, errors)
    return errors


def _warnings(ext: Extraction) -> list[str]:
    warnings: list[str] = []
    if ext.vat is not None and ext.vat.standard is not None and ext.vat.standard > VAT_WARN_ABOVE:
        warnings.append(f"vat.standard: {_num(ext.vat.standard)} is above "
                        f"{_num(VAT_WARN_ABOVE)}; check the source")
    for i, b in enumerate(ext.brackets or []):
        if b.rate > BRACKET_RATE_WARN_ABOVE:
            warnings.append(f"brackets[{i}].rate: {_num(b.rate)} is above "
                            f"{_num(BRACKET_RATE_WARN_ABOVE)}; check the source")
    ss = ext.socialSecurity
    if ss is not None and ss.employeeRate is not None and ss.employeeRate > EMPLOYEE_SS_WARN_ABOVE:
        warnings.append(
            f"socialSecurity.employeeRate: {_num(ss.employeeRate)} is above "
            f"{_num(EMPLOYEE_SS_WARN_ABOVE)}; check the source"
        )
    for i, tax in enumerate(ext.special_taxes):
        if tax.rate is None:
            warnings.append(f"special_taxes[{i}].rate: null ({tax.type} on {tax.target} has no "
                            "percentage)")
    return warnings


def validate_extraction(data: dict[str, Any], country: CountryLike, *,
                        partial: bool = False) -> ValidationOutcome:
    """Check a parsed reply against the schema and the rules; never raises on bad data.

    Type errors (strict; unknown fields included) are reported alone: the semantic rules need a
    typed extraction.  Otherwise all rule violations are reported at once so one re-ask can fix
    them all.  Warnings never make the outcome fail.

    ``partial``: the reply covers one part of a split source, so the rules tying fields that
    different parts may state separately (system with brackets, hasVAT with rates) are left to
    the check of the merged parts.
    """
    if not isinstance(data, dict):
        return ValidationOutcome(None, ["<root>: expected a JSON object, got "
                                        f"{type(data).__name__}"])
    try:
        ext = Extraction.model_validate(data)
    except ValidationError as exc:
        return ValidationOutcome(None, _pydantic_errors(exc))
    return ValidationOutcome(ext, _semantic_errors(ext, country, partial), _warnings(ext))


def missing_fields(extraction: Extraction) -> list[str]:
    """Dotted paths of tax facts the source did not state (null), for the report.

    Free text (notes, descriptions) is never listed; ``brackets`` is not missing for a
    zero_personal system; ``vat.standard`` is not missing when ``vat.hasVAT`` is false.
    """
    missing: list[str] = [k for k in ("currency", "countryCode", "system")
                          if getattr(extraction, k) is None]
    if extraction.brackets is None and extraction.system != "zero_personal":
        missing.append("brackets")
    vat = extraction.vat
    if vat is None:
        missing.append("vat")
    else:
        if vat.hasVAT is None:
            missing.append("vat.hasVAT")
        if vat.standard is None and vat.hasVAT is not False:
            missing.append("vat.standard")
    ss = extraction.socialSecurity
    if ss is None:
        missing.append("socialSecurity")
    else:
        missing += [f"socialSecurity.{k}" for k in ("employeeRate", "employerRate")
                    if getattr(ss, k) is None]
    return missing


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def _compact_numbers(value: Any) -> Any:
    # Write 19 rather than 19.0 so stored files match hand-written data and diff cleanly.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _compact_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact_numbers(v) for v in value]
    return value


def build_record(extraction: Extraction, country: CountryLike) -> dict[str, Any]:
    """The calculator record for ``country`` (keys in :data:`RECORD_KEYS` order).

    Identity fields (name, currency, countryCode, coordinates) come from the registry, tax
    fields from the extraction.  Raises ``ValueError`` if the extraction breaks any rule, so an
    invalid extraction can never be turned into a record by accident.
    """
    errors = _semantic_errors(extraction, country)
    if errors:
        raise ValueError("extraction is not valid: " + "; ".join(errors))
    record = TaxRecord(
        name=country.name,
        currency=country.currency,
        system=extraction.system,
        countryCode=country.code,
        coordinates=[float(c) for c in country.coordinates],
        brackets=extraction.brackets,
        vat=extraction.vat,
        socialSecurity=extraction.socialSecurity,
        special_taxes=extraction.special_taxes,
        notes=extraction.notes,
    )
    return _compact_numbers(record.model_dump(mode="json"))


# --------------------------------------------------------------------------------------------
# Diffs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One changed value.  For a list of objects whose length changed, old/new are the counts."""

    path: str
    old: Any
    new: Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)  # 19 == 19.0
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, bool) != isinstance(b, bool):
        return False  # True == 1 in Python, but not in a record
    return a == b


def _is_object_list(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(item, dict) for item in value)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _diff(path: str, old: Any, new: Any, out: list[FieldChange]) -> None:
    if isinstance(old, dict) or isinstance(new, dict):
        if (old is None or isinstance(old, dict)) and (new is None or isinstance(new, dict)):
            old_d, new_d = old or {}, new or {}
            for key in list(new_d) + [k for k in old_d if k not in new_d]:
                _diff(_child(path, key), old_d.get(key), new_d.get(key), out)
            return
    elif _is_object_list(old) or _is_object_list(new):
        old_n = len(old) if isinstance(old, list) else None
        new_n = len(new) if isinstance(new, list) else None
        if old_n != new_n:
            out.append(FieldChange(path, old_n, new_n))
        else:
            for i, (a, b) in enumerate(zip(old, new)):
                _diff(f"{path}[{i}]", a, b, out)
        return
    # Scalars and lists of scalars (vat.reduced, coordinates) compare as a whole.
    if not _same(old, new):
        out.append(FieldChange(path, old, new))


def diff_records(old: dict[str, Any] | None, new: dict[str, Any]) -> list[FieldChange]:
    """Changes from ``old`` to ``new`` as dotted paths (``vat.standard``, ``brackets[2].rate``).

    Numbers compare numerically; a missing key counts as null; lists of objects report a count
    change under their own path when the length differs, else per item; lists of scalars
    compare whole.  ``old=None`` (a new record) reports every non-null field.
    """
    out: list[FieldChange] = []
    _diff("", old, new, out)
    return out


_LONG_TEXT = 30


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return _num(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else '""'
    return _short(value, _LONG_TEXT)


def summarize_changes(changes: list[FieldChange], limit: int = 6) -> str:
    """One line such as ``vat.standard 21 -> 22; brackets 3 -> 4; +2 more``.

    Long or multi-line text is shown as ``<path> changed`` instead of its value.
    """
    if not changes:
        return "no changes"
    parts = []
    for change in changes[: max(limit, 0)]:
        texts = [v for v in (change.old, change.new) if isinstance(v, str)]
        if any(len(t) > _LONG_TEXT or "\n" in t for t in texts):
            parts.append(f"{change.path} changed")
        else:
            parts.append(f"{change.path} {_show(change.old)} -> {_show(change.new)}")
    if len(changes) > limit:
        parts.append(f"+{len(changes) - max(limit, 0)} more")
    return "; ".join(parts)
