"""Validation of a parsed reply: pydantic type checks (strict: ``"19"`` is not a number,
unknown keys are errors), then the semantic rules (rate ranges, bracket layout, system
consistency, VAT consistency, currency / country code against the registry).

Every error is one line that starts with the field path (``vat.standard: 190 is outside 0..100``)
because the list is sent back to the model verbatim for one re-ask. Warnings (plausibility
thresholds, review triggers - not tax facts) never make a reply fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from taxdata.record.models import (
    VAT,
    Bracket,
    CountryLike,
    Extraction,
    TaxRecord,
)
from taxdata.store.strictjson import value_problem

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


def show_number(value: Any) -> str:
    """Numbers as a person writes them: 190 not 190.0, 0.5 stays 0.5."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


_num = show_number  # the many messages below read better with a short name


def _loc(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "<root>"


def short_repr(value: Any, limit: int = 60) -> str:
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
            lines.append(f"{path}: {err['msg']} (got {short_repr(err.get('input'))})")
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


def semantic_errors(ext: Extraction, country: CountryLike, partial: bool = False) -> list[str]:
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
    return ValidationOutcome(ext, semantic_errors(ext, country, partial), _warnings(ext))


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


def validate_record(record: Any, country: CountryLike, *, json_checked: bool = False
                    ) -> list[str]:
    """Why a stored record (an imported one, or any entry at the dataset's gate) may not enter
    the dataset; [] when it may.

    What JSON and the calculator cannot hold (nesting, integers beyond 2**53, lone surrogates;
    ``json_checked``: the caller checked that already), the record model's types (strict;
    unknown keys are errors, the calculator's own fields are known), then the rules a model's
    reply meets (:func:`semantic_errors`, the identity against the registry included), the
    calculator fields' rates, and the fields a reply never carries: a name, coordinates in
    range, a currency and a country code.
    """
    if not isinstance(record, dict):
        return [f"<root>: expected an object, got {type(record).__name__}"]
    problem = None if json_checked else value_problem(record)
    if problem:
        return [problem]
    try:
        typed = TaxRecord.model_validate(record)
    except ValidationError as exc:
        return _pydantic_errors(exc)
    # The typed record has every field the rules read (vat, brackets, ...), typed as in a
    # reply: no second validation of a copy without the calculator's fields.
    errors = semantic_errors(typed, country)  # type: ignore[arg-type]
    errors += _calculator_field_errors(record)
    if not record["name"].strip():
        errors.append("name: required, a non-empty string")
    lat, lng = record["coordinates"]
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        errors.append(f"coordinates: must be [latitude, longitude] in degrees, got "
                      f"{record['coordinates']!r}")
    return errors


def _calculator_field_errors(record: dict[str, Any]) -> list[str]:
    """The calculator's corporateIncomeTax: a percentage, or an object whose rates are."""
    errors: list[str] = []
    cit = record.get("corporateIncomeTax")
    if isinstance(cit, dict):
        for key, value in cit.items():
            values = value if isinstance(value, list) else [value]
            if "rate" in key.lower() and all(isinstance(v, (int, float)) and not isinstance(
                    v, bool) for v in values):
                for i, rate in enumerate(values):
                    where = f"[{i}]" if isinstance(value, list) else ""
                    _check_rate(f"corporateIncomeTax.{key}{where}", rate, errors)
    elif cit is not None:
        _check_rate("corporateIncomeTax", cit, errors)
    return errors
