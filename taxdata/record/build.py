"""Records: a valid :class:`~taxdata.record.models.Extraction` plus the registry country becomes the
calculator's record (a dict in the calculator's key order); :func:`diff_records` and
:func:`summarize_changes` describe what an update changed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from taxdata.record.models import (
    CALCULATOR_FIELDS,
    CountryLike,
    Extraction,
    RecordSocialSecurity,
    RecordVAT,
    TaxRecord,
    without_calculator_fields,
)
from taxdata.record.validation import semantic_errors, short_repr, show_number

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
    errors = semantic_errors(extraction, country)
    if errors:
        raise ValueError("extraction is not valid: " + "; ".join(errors))
    vat, ss = extraction.vat, extraction.socialSecurity
    record = TaxRecord(
        name=country.name,
        currency=country.currency,
        system=extraction.system,
        countryCode=country.code,
        coordinates=[float(c) for c in country.coordinates],
        brackets=extraction.brackets,
        vat=None if vat is None else RecordVAT.model_validate(vat.model_dump()),
        socialSecurity=None if ss is None else RecordSocialSecurity.model_validate(
            ss.model_dump()),
        special_taxes=extraction.special_taxes,
        notes=extraction.notes,
    )
    return _compact_numbers(without_calculator_fields(record.model_dump(mode="json")))


def carry_calculator_fields(record: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    """Copy the calculator's own fields that ``previous`` has into ``record`` (where the new
    record has the object that holds them); the paths copied. An update never drops what the
    calculator computes with, and the provenance says which fields were not in the source."""
    carried: list[str] = []
    if not isinstance(previous, dict):
        return carried
    for path in CALCULATOR_FIELDS:
        *parents, key = path.split(".")
        old: Any = previous
        new: Any = record
        for parent in parents:
            old = old.get(parent) if isinstance(old, dict) else None
            new = new.get(parent) if isinstance(new, dict) else None
        if isinstance(old, dict) and key in old and old[key] is not None and isinstance(new, dict):
            new[key] = old[key]
            carried.append(path)
    return carried


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
    if old is not None and _same_json(old, new):
        return []  # an unchanged record (most of a re-run): one encoding each, not a walk
    out: list[FieldChange] = []
    _diff("", old, new, out)
    return out


def _same_json(old: Any, new: Any) -> bool:
    # Equal JSON is equal records field by field (JSON keeps 1 and 1.0 and true apart, so no
    # difference _diff would report can hide); unequal JSON (key order too) gets the walk.
    try:
        return json.dumps(old, ensure_ascii=False) == json.dumps(new, ensure_ascii=False)
    except (TypeError, ValueError):
        return False


_LONG_TEXT = 30


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return show_number(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, str):
        return value if value else '""'
    return short_repr(value, _LONG_TEXT)


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
