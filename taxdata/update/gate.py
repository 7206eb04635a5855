"""The one gate every dataset entry passes, whichever way it comes: a model's reply, an
``--import-js`` file, a journal line being replayed, ``tax_data.json`` as it is read.

An entry is ``{"record": {...}, "provenance": {...}}`` under a slug. It passes when the slug has
a registry slug's shape (and, for new work, is in the registry), the whole entry is JSON the
calculator can hold (:func:`taxdata.store.strictjson.value_problem`: nesting, integers within
JavaScript's exact range, no lone surrogates), the record meets every rule a model's reply meets
(:func:`taxdata.record.validation.validate_record`: ranges, brackets, identity against the
registry) and the provenance is an object whose known fields have their types. What fails is
quarantined by the caller (:mod:`taxdata.store.quarantine`), never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, ValidationError

from taxdata.countries.registry import SLUG_MAX, Registry, is_slug
from taxdata.record.models import Provenance
from taxdata.record.validation import validate_record
from taxdata.store.strictjson import encode_checked

GATE_VERSION = "gate-1"  # a change of the rules below must re-check datasets checked before
_ENTRY_KEYS = {"record", "provenance"}


class StoredProvenance(Provenance):
    """A provenance as stored: the model's fields typed, the keys the updater adds beside them
    (``crosscheck``, ``carried_over``, ``grounding``) allowed."""

    model_config = ConfigDict(extra="allow", strict=True)


@dataclass(frozen=True)
class _OwnIdentity:
    """A country the registry does not (or no longer) hold: its record's own identity."""

    slug: str
    name: str
    code: str
    currency: str
    wikipedia_title: str | None = None
    coordinates: tuple[float, float] = (0.0, 0.0)


def slug_problem(slug: Any, registry: Registry, *, known: bool) -> str | None:
    """Why ``slug`` may not name a dataset entry (``known``: it must be in the registry)."""
    if not is_slug(slug):
        return (f"not a country slug (lowercase letters, digits and '_', at most {SLUG_MAX} "
                "characters)")
    if known and not registry.has_slug(slug):
        return f"not in the country registry {registry.source}"
    return None


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: why an entry may not enter (``problem``), else the entry as one line
    of JSON in UTF-8 (``data``: encoding it was part of the check, so the caller writes that)."""

    problem: str | None
    data: bytes | None = None


def admit(slug: Any, entry: Any, registry: Registry, *, known: bool = True,
          encoded: tuple[str | None, bytes | None] | None = None) -> Verdict:
    """Whether this entry may enter the dataset; see the module docstring.

    ``encoded``: what :func:`~taxdata.store.strictjson.encode_checked` said of ``entry``, when
    the caller has it already (the journal's encoding is the JSON check).

    ``known=False`` (the dataset as it is read): a slug the registry lacks is kept, its record
    checked against its own currency and code, since only ``--prune`` removes such countries.
    """
    problem = slug_problem(slug, registry, known=known)
    if problem:
        return Verdict(problem)
    if not isinstance(entry, dict):
        return Verdict(f"the entry is {_kind(entry)}, not an object")
    if "record" not in entry:
        return Verdict("the entry has no record")
    extra = sorted(set(entry) - _ENTRY_KEYS)
    if extra:
        return Verdict(f"unknown key(s) in the entry: {', '.join(map(repr, extra))[:80]}")
    problem, data = encode_checked(entry) if encoded is None else encoded
    if problem:
        return Verdict(problem)
    record, provenance = entry["record"], entry.get("provenance")
    if not isinstance(record, dict):
        return Verdict(f"record: {_kind(record)}, not an object")
    country = registry.get(slug) if registry.has_slug(slug) else _own_identity(slug, record)
    errors = validate_record(record, country, json_checked=True)
    if errors:
        more = f" (+{len(errors) - 2} more)" if len(errors) > 2 else ""
        return Verdict("record: " + "; ".join(errors[:2]) + more)
    problem = _provenance_problem(provenance)
    return Verdict(problem) if problem else Verdict(None, data)


def entry_problem(slug: Any, entry: Any, registry: Registry, *, known: bool = True) -> str | None:
    """Why this entry may not enter the dataset (one line), or None when it may."""
    return admit(slug, entry, registry, known=known).problem


def _own_identity(slug: str, record: dict[str, Any]) -> _OwnIdentity:
    def text(key: str) -> str:
        value = record.get(key)
        return value.strip() if isinstance(value, str) else ""
    return _OwnIdentity(slug, text("name"), text("countryCode"), text("currency"))


def _provenance_problem(provenance: Any) -> str | None:
    if provenance is None:  # written by versions that kept none; nothing in it to trust
        return None
    if not isinstance(provenance, dict):
        return f"provenance: {_kind(provenance)}, not an object"
    try:
        StoredProvenance.model_validate(provenance)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "<root>"
        return f"provenance.{where}: {error['msg']}"
    return None


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"
