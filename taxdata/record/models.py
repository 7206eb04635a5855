"""The tax-record models: what the LLM must return (:class:`Extraction`, with its evidence), the
stored record (:class:`TaxRecord`, :data:`RECORD_KEYS`) and its :class:`Provenance`.

The stored record also models the fields of the original calculator's ``taxData.js`` that the LLM
is never asked for (:data:`CALCULATOR_FIELDS`: ``socialSecurity.employeeRateTaxDeductible``,
which the calculator's tax sums read, ``vat.target``, ``vat.zeroRated``, which its VAT text
reads, ``corporateIncomeTax``), so an imported record keeps them and ``taxData.js`` writes them
back; the schema sent to the model is unchanged.

Strict pydantic models; their field descriptions are written for the LLM (they end up in the JSON
schema it is constrained by, taxdata.record.schema). No tax facts live here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taxdata.store.taxfile import FileSourceKind

TaxSystem = Literal["progressive", "flat", "zero_personal"]


@runtime_checkable
class CountryLike(Protocol):
    """What this module needs from ``taxdata.countries.registry.Country`` (any object with these
    works)."""

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


# The fields a quote may be given for (``[i]`` is a list index); taxdata.evidence.check checks
# them.
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


class RecordVAT(VAT):
    """The stored VAT: the extracted fields plus the calculator's own."""

    target: str | None = None  # what the VAT is levied on, as the calculator's file says
    zeroRated: bool | None = None  # the calculator shows "Zero-rated items available"


class RecordSocialSecurity(SocialSecurity):
    """The stored social security: the extracted rates plus the calculator's own flag."""

    # The calculator subtracts the employee contribution from taxable income when this is true.
    employeeRateTaxDeductible: bool | None = None


class CorporateIncomeTax(BaseModel):
    """The calculator's ``corporateIncomeTax`` object: a rate and whatever notes it carries.

    Other keys are kept as the file has them (the calculator does not compute with this field,
    so nothing here narrows what it may say); every number under a key naming a rate is still
    checked to be a percentage (taxdata.record.validation).
    """

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    rate: float | None = None
    description: str | None = None
    notes: str | None = None


class TaxRecord(BaseModel):
    """A stored record, in the calculator's shape and key order (see :data:`RECORD_KEYS`)."""

    model_config = _STRICT

    name: str
    currency: str
    system: TaxSystem | None
    countryCode: str
    coordinates: list[float] = Field(min_length=2, max_length=2)
    brackets: list[Bracket] | None = None
    vat: RecordVAT | None = None
    socialSecurity: RecordSocialSecurity | None = None
    special_taxes: list[SpecialTax] = Field(default_factory=list)
    notes: str | None = None
    # The calculator's own, never extracted by the model: a rate in percent or an object.
    corporateIncomeTax: float | CorporateIncomeTax | None = None


# The calculator's fields the model is never asked for: kept from an import, carried over by an
# update (taxdata.update.country), written back to taxData.js.
CALCULATOR_FIELDS: tuple[str, ...] = (
    "socialSecurity.employeeRateTaxDeductible", "vat.target", "vat.zeroRated",
    "corporateIncomeTax")

def without_calculator_fields(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (changed in place) without the calculator's own fields
    (:data:`CALCULATOR_FIELDS`): what the model's extraction holds of it."""
    for path in CALCULATOR_FIELDS:
        *parents, key = path.split(".")
        holder: Any = record
        for parent in parents:
            holder = holder.get(parent) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(key, None)
    return record


# The keys of a record the updater builds from an extraction, in the calculator's order.
RECORD_KEYS: tuple[str, ...] = tuple(k for k in TaxRecord.model_fields if k not in
                                     CALCULATOR_FIELDS)


class OriginalRef(BaseModel):
    """The original source text a record's figures were found in (taxdata.evidence.grounding): the
    Wikipedia article revision, the extractor's page, or a hand-written taxation file itself.

    ``sha256`` is of the text's UTF-8 bytes; the grounding offsets count its characters."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["wikipedia", "extractor", "manual"]
    label: str = Field(description='How reasons name it, e.g. "Taxation in Latvia rev 1234567"')
    url: str | None = None
    revision: str | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    chars: int = Field(ge=0)
    # Where the text is kept, relative to the data directory (the Wikipedia cache, raw/, ...).
    location: str | None = None


class Grounding(BaseModel):
    """One figure found in the original: the original's own characters ``[start, end)``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    quote: str
    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Grounding:
        if self.end - self.start != len(self.quote):
            raise ValueError("a grounding's offsets must span its quote exactly")
        return self


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
    # Verified quotes, figure path -> the source's words that state it (taxdata.evidence.check).
    # None where quotes are not checked: imported records, research (model knowledge) files.
    evidence: dict[str, str] | None = None
    # The original source text and, per verified figure, where the original states it. None in
    # records written before grounding existed, and where nothing is verified (research,
    # imports).
    original: OriginalRef | None = None
    grounding: dict[str, Grounding] | None = None
    # Which server answered (its chat URL) and the model name it reported, when that differs
    # from ``model`` (a gateway's alias, a GGUF path).
    endpoint: str | None = None
    server_model: str | None = None
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
    def _unchecked_sources_are_unverified(self) -> Provenance:
        # Model-knowledge files and imported records must never be presented as sourced facts.
        if self.source_kind in ("research", "imported") and not self.unverified:
            raise ValueError(f"source_kind {self.source_kind!r} must be marked unverified")
        if self.source_kind in ("research", "imported") and (
                self.evidence is not None or self.grounding is not None):
            raise ValueError(f"source_kind {self.source_kind!r} has no verified quotes "
                             "(evidence and grounding must be null)")
        if self.grounding and self.original is None:
            raise ValueError("grounding offsets need the original they point into")
        if self.grounding and self.original is not None and any(
                g.end > self.original.chars for g in self.grounding.values()):
            raise ValueError("a grounding's offsets run past the end of its original")
        return self
