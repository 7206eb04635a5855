"""Evidence: code, not the model, checks that each figure is stated by the source text, and
stated by the original the source was written from.

The model returns, beside each figure, a short verbatim quote from the source (``Extraction.
evidence``: ``{"field": "vat.standard", "quote": "The standard VAT rate is 21 %"}``).
:func:`check_evidence` verifies every quote with the per-figure checks of
:mod:`taxdata.evidence.quotechecks` (found in the text the model was sent, the figure among its
numbers, its tax, its label, its bracket, not a worked example, a past rate, a local rate, an
average, a range ...), then, given the original (:class:`~taxdata.evidence.grounding.Original`),
finds the figure in the original text (:meth:`~taxdata.evidence.grounding.Original.ground`): a
figure the rewrite introduced is not verified whatever its quote. It withholds every figure
that fails either step:

What is withheld (set to null) when its quote fails: a VAT or social security rate alone; one
reduced VAT rate alone (each is its own fact); the system and the whole bracket list together
when any of them fails (part of a schedule is wrong data, and brackets without their system
cannot be used).  Which figures need a quote: ``system``, ``vat.standard``, each
``vat.reduced[i]``, each ``brackets[i].rate``, each bracket's ``max`` except the open-ended
last one, and the social security rates.  A bracket's ``min`` needs none: the first is 0 and
each later one is tied to the previous ``max`` by validation.  A zero_personal system's quote
covers its zero-rate brackets.

No tax facts live here: only words that say what a figure is, never a rate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from taxdata.evidence.bracketchecks import Bounds
from taxdata.evidence.grounding import Original
from taxdata.evidence.quotechecks import figure_reason
from taxdata.evidence.sourcetext import Source
from taxdata.record.models import Extraction, Grounding, OriginalRef

__all__ = ["Quote", "Unsupported", "EvidenceCheck", "check_evidence", "required_paths",
           "NOT_STATED"]

# How an unsupported figure's reason starts when its quote passed in the file but the original
# does not state it (taxdata.evidence.grounding).
NOT_STATED = "not stated in "


@dataclass(frozen=True)
class Quote:
    """One quote the model gave, with the source text it must be found in."""

    field: str
    quote: str
    source: Source


@dataclass(frozen=True)
class Unsupported:
    """A figure that is not written: its value, the quote the model gave, and why it failed."""

    path: str
    value: Any
    quote: str | None
    reason: str
    withheld: bool = False  # its quote may be fine: it goes with a figure whose quote is not

    def report(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 19, as the records write it, not 19.0
        return {"path": self.path, "value": value, "quote": self.quote,
                "reason": self.reason, "withheld": self.withheld}


# --------------------------------------------------------------------------------------------
# Checking a whole extraction
# --------------------------------------------------------------------------------------------


def required_paths(extraction: Extraction) -> dict[str, Any]:
    """The figures that need a verified quote, path -> value (see the module docstring)."""
    paths: dict[str, Any] = {}
    if extraction.system is not None:
        paths["system"] = extraction.system
    if extraction.brackets and extraction.system != "zero_personal":
        for i, b in enumerate(extraction.brackets):
            paths[f"brackets[{i}].rate"] = b.rate
            if b.max is not None:
                paths[f"brackets[{i}].max"] = b.max
    vat = extraction.vat
    if vat is not None:
        if vat.standard is not None:
            paths["vat.standard"] = vat.standard
        for i, rate in enumerate(vat.reduced):
            paths[f"vat.reduced[{i}]"] = rate
    ss = extraction.socialSecurity
    if ss is not None:
        for key in ("employeeRate", "employerRate"):
            if getattr(ss, key) is not None:
                paths[f"socialSecurity.{key}"] = getattr(ss, key)
    return paths


def _optional_paths(extraction: Extraction) -> dict[str, Any]:
    """Figures that may carry a quote but need none (bracket lower bounds)."""
    if not extraction.brackets or extraction.system == "zero_personal":
        return {}
    return {f"brackets[{i}].min": b.min for i, b in enumerate(extraction.brackets)}


@dataclass
class EvidenceCheck:
    """Result of :func:`check_evidence`."""

    extraction: Extraction  # the figures that may be written (unsupported ones are null)
    verified: dict[str, str] = field(default_factory=dict)  # path -> the quote, as given
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # quotes that were given but not needed
    key_figures: set[str] = field(default_factory=set)  # "vat.standard" / "income" if given
    # Where the original states each verified figure (with an original to check against).
    grounding: dict[str, Grounding] = field(default_factory=dict)
    original: OriginalRef | None = None

    @property
    def failed(self) -> str | None:
        """Why the record must not be written (all its key figures unsupported), else None."""
        key = [p for p in ("vat.standard", "income") if p in self.key_figures]
        held = {u.path for u in self.unsupported}
        lost = [p for p in key if (p == "income" and any(_is_income(h) for h in held))
                or p in held]
        if key and len(lost) == len(key):
            return ("no key figure is supported by a verified quote ("
                    + "; ".join(f"{u.path}: {u.reason}" for u in self.unsupported[:3])
                    + (" ..." if len(self.unsupported) > 3 else "") + "); previous record kept")
        return None

    def _drop(self, path: str) -> str | None:
        self.grounding.pop(path, None)
        return self.verified.pop(path, None)


def _is_income(path: str) -> bool:
    return path == "system" or path.startswith("brackets")


_DOTTED_INDEX = re.compile(r"\.(\d+)(?=\.|$)")


def _field_path(field_name: str) -> str:
    # "brackets.1.rate" and "brackets[1].rate" name the same figure.
    return _DOTTED_INDEX.sub(r"[\1]", field_name.strip().replace(" ", ""))


def check_evidence(extraction: Extraction, quotes: list[Quote],
                   original: Original | None = None) -> EvidenceCheck:
    """Verify each figure's quotes; return the extraction with unsupported figures set to null.

    ``quotes`` are the model's evidence entries, each with the source text it must occur in.
    With ``original``, a figure whose quote passes must also be found in the original text
    (its grounding is kept). A figure is supported when any of its quotes passes every check;
    the first such quote is kept.  The reason reported for an unsupported figure is that of its
    first quote.
    """
    by_path: dict[str, list[Quote]] = {}
    for quote in quotes:
        by_path.setdefault(_field_path(quote.field), []).append(quote)
    bounds = Bounds.of(extraction.brackets) if extraction.brackets else None

    result = EvidenceCheck(extraction, original=original.ref if original else None)
    required = required_paths(extraction)
    failures: dict[str, Unsupported] = {}
    for path, value in {**required, **_optional_paths(extraction)}.items():
        reasons: list[str] = []
        for quote in by_path.get(path, []):
            reason = figure_reason(path, value, quote.quote, quote.source, extraction, bounds)
            if reason is None and original is not None:
                # A person's file is its own original: the quote was just checked in it.
                found = original.ground(path, value, quote.quote, extraction, bounds,
                                        checked=original.ref.kind == "manual")
                if isinstance(found, str):
                    reason = found
                else:
                    result.grounding[path] = found
            if reason is None:
                result.verified[path] = quote.quote
                break
            reasons.append(reason)
        else:
            given = by_path.get(path)
            failure = Unsupported(path, value, given[0].quote if given else None,
                                  _first_reason(reasons) if reasons else "no quote given")
            if path in required:
                failures[path] = failure
            elif given:
                result.notes.append(f"{path}: quote not verified ({failure.reason}); "
                                    "the figure is kept (it follows from the bracket above)")
    result.key_figures = {"vat.standard"} if "vat.standard" in required else set()
    if any(_is_income(p) for p in required):
        result.key_figures.add("income")
    _withhold(result, extraction, required, failures)
    return result


def _first_reason(reasons: list[str]) -> str:
    # A quote that passed in the file but not in the original says the most: report that one.
    return next((r for r in reasons if r.startswith(NOT_STATED)), reasons[0])


def _withhold(result: EvidenceCheck, extraction: Extraction, required: dict[str, Any],
              failures: dict[str, Unsupported]) -> None:
    """Set the unsupported figures to null, with what goes with them (see the module
    docstring), and list them."""
    update: dict[str, Any] = {}
    unsupported = list(failures.values())
    if any(_is_income(p) for p in failures):
        # Brackets are written whole or not at all, and never without their system.
        for path in [p for p in required if _is_income(p) and p not in failures]:
            unsupported.append(Unsupported(
                path, required[path], result._drop(path),
                "withheld with the rest of the income tax schedule (an unsupported bracket "
                "figure or system withholds them all)", withheld=True))
        for path in [p for p in result.verified if p.startswith("brackets")]:
            result._drop(path)
        update["system"] = None
        update["brackets"] = None
    vat = extraction.vat
    if vat is not None and any(p.startswith("vat.") for p in failures):
        update["vat"] = vat.model_copy(update={
            "standard": None if "vat.standard" in failures else vat.standard,
            "reduced": [r for i, r in enumerate(vat.reduced)
                        if f"vat.reduced[{i}]" not in failures]})
        # Keep the verified quotes' indices pointing at the rates that are still written.
        kept = [i for i in range(len(vat.reduced)) if f"vat.reduced[{i}]" not in failures]
        for new, old in enumerate(kept):
            grounding = result.grounding.pop(f"vat.reduced[{old}]", None)
            quote = result.verified.pop(f"vat.reduced[{old}]", None)
            if quote is not None:
                result.verified[f"vat.reduced[{new}]"] = quote
            if grounding is not None:
                result.grounding[f"vat.reduced[{new}]"] = grounding
    ss = extraction.socialSecurity
    if ss is not None and any(p.startswith("socialSecurity.") for p in failures):
        update["socialSecurity"] = ss.model_copy(update={
            k: None for k in ("employeeRate", "employerRate")
            if f"socialSecurity.{k}" in failures})
    order = list(required)
    # The figures whose own quote failed first, then those withheld with them.
    result.unsupported = sorted(unsupported, key=lambda u: (u.withheld, order.index(u.path)))
    result.extraction = extraction.model_copy(update=update)
