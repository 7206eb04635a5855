"""The updater's summary on stdout: the shared summary (taxdata.outcome) plus its own sections.

After the counts and the FAILED countries: the figures withheld for want of a verified quote
(UNSUPPORTED; how many of them the original does not state), the countries whose source is
the model's own knowledge (UNVERIFIED), the cross-check against the references (with the
disputes) and where the report went. Each section is short (at most ``most`` lines per list);
the report has everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

from taxdata.evidence.check import NOT_STATED
from taxdata.outcome import Status, print_summary
from taxdata.references import crosscheck
from taxdata.references.table import Reference
from taxdata.store.quarantine import Quarantined
from taxdata.update.outcome import STATUSES, CountryOutcome


def print_update_summary(outcomes: Mapping[str, CountryOutcome], seconds: float, *,
                         model: str | None, references: Sequence[Reference],
                         quarantined: Sequence[Quarantined] = ()) -> None:
    """The summary of a finished run (or import); :func:`print_report_paths` follows it."""
    sections = [*quarantine_lines(quarantined), *removed_lines(outcomes),
                *unsupported_lines(outcomes),
                *unverified_lines(outcomes), *crosscheck_lines(outcomes, references)]
    print_summary("Update summary", dict(sorted(outcomes.items())), seconds, statuses=STATUSES,
                  note=f"model {model or 'n/a'}", listed=_listed,
                  detail=lambda outcome: few_words(outcome.reason), sections=sections)


def print_report_paths(report_path: Path | None) -> None:
    """The run's last lines: where its report and its review page are."""
    if report_path is not None:
        print(f"  Report: {report_path}")
        print(f"  Review page: {report_path.with_suffix('.html')}")


def quarantine_lines(quarantined: Sequence[Quarantined], most: int = 20) -> Iterator[str]:
    """The entries the gate refused: kept aside, never written (where: the report says)."""
    if quarantined:
        yield (f"QUARANTINED {len(quarantined)} (refused by the checks, kept in "
               "data/quarantine/, not written):")
        for item in quarantined[:most]:
            yield f"  {item.slug} (from {item.origin}): {few_words(item.reason, 120)}"
        if len(quarantined) > most:
            yield f"  ... and {len(quarantined) - most} more (see the report)"


def removed_lines(outcomes: Mapping[str, CountryOutcome], most: int = 20) -> Iterator[str]:
    """The REMOVED countries by name (a count alone says nothing about which)."""
    removed = sorted(o.slug for o in outcomes.values() if o.status == Status.REMOVED)
    if removed:
        shown = ", ".join(removed[:most]) + (f" and {len(removed) - most} more"
                                             if len(removed) > most else "")
        yield f"REMOVED: {shown}"


def _listed(outcome: CountryOutcome) -> bool:
    """A country gets a line of its own when it FAILED (a DISPUTED one: in the cross-check's)."""
    return outcome.status == Status.FAILED and not outcome.reason.startswith("DISPUTED ")


def summary_totals(outcomes: Mapping[str, CountryOutcome]) -> dict[str, int]:
    """The totals the summary prints, for the report (its review page shows these very ones)."""
    held = [u for o in outcomes.values() for u in o.unsupported]
    return {"unsupported": sum(not u["withheld"] for u in held),
            "withheld": sum(bool(u["withheld"]) for u in held),
            # of the unsupported: the figures the original does not state (a rewrite's error)
            "unstated": sum(not u["withheld"] and u["reason"].startswith(NOT_STATED)
                            for u in held),
            "unsupported_countries": sum(bool(o.unsupported) for o in outcomes.values()),
            "unverified": len(unverified_slugs(outcomes)),
            "disputed": crosscheck_counts(outcomes)[crosscheck.DISPUTED]}


def unsupported_lines(outcomes: Mapping[str, CountryOutcome], most: int = 20) -> Iterator[str]:
    """Figures not written for want of a verified quote: counts, then a line per country
    (at most ``most`` lines)."""
    held = {slug: o.unsupported for slug, o in sorted(outcomes.items()) if o.unsupported}
    totals = summary_totals(outcomes)
    own, withheld, unstated = totals["unsupported"], totals["withheld"], totals["unstated"]
    noun = "country" if len(held) == 1 else "countries"
    yield (f"UNSUPPORTED figures: {own} in {len(held)} {noun} (no verified quote; not written)"
           + (f", {unstated} of them not stated in the original" if unstated else "")
           + (f", {withheld} more withheld with them" if withheld else ""))
    for slug, items in list(held.items())[:most]:
        paths = [u["path"] for u in items if not u["withheld"]]
        yield f"UNSUPPORTED {slug}: {few_words(', '.join(paths))}"
    if len(held) > most:
        yield f"... and {len(held) - most} more countries with UNSUPPORTED figures (see the report)"


def unverified_slugs(outcomes: Mapping[str, CountryOutcome]) -> list[str]:
    """The written countries whose record no source bears out (model knowledge, an import)."""
    return sorted(o.slug for o in outcomes.values()
                  if o.unverified and o.status not in (Status.FAILED, Status.SKIPPED))


def unverified_lines(outcomes: Mapping[str, CountryOutcome], most: int = 20) -> Iterator[str]:
    """The written countries whose record no source bears out, at most ``most`` by name."""
    unverified = unverified_slugs(outcomes)
    if unverified:
        shown = ", ".join(unverified[:most])
        more = f" and {len(unverified) - most} more" if len(unverified) > most else ""
        yield (f"UNVERIFIED (model knowledge or imported, not checked against a source; check "
               f"by hand): {shown}{more}")


def closing_line(outcomes: Mapping[str, CountryOutcome]) -> str | None:
    """The run's last line when every record it wrote is unverified (None otherwise): a run that
    filled the dataset from model knowledge or an import must not end like a checked one."""
    written = [o for o in outcomes.values() if o.status in (Status.ADDED, Status.MODIFIED)]
    if not written or not all(o.unverified for o in written):
        return None
    kinds = ", ".join(sorted({o.source_kind or "unknown" for o in written}))
    if len(written) == 1:
        return (f"The one record written in this run is UNVERIFIED ({kinds}: no source checked "
                "it); review it before publishing")
    return (f"All {len(written)} records written in this run are UNVERIFIED ({kinds}: no source "
            "checked them); review them before publishing")


def print_closing_line(outcomes: Mapping[str, CountryOutcome]) -> None:
    line = closing_line(outcomes)
    if line:
        print(f"  {line}")


def crosscheck_counts(outcomes: Mapping[str, CountryOutcome]) -> dict[str, int]:
    """CORROBORATED / DISPUTED / NO REFERENCE among the countries checked in this run."""
    found = [o.crosscheck["classification"] for o in outcomes.values() if o.crosscheck]
    return {name: found.count(name) for name in crosscheck.CLASSES}


def crosscheck_lines(outcomes: Mapping[str, CountryOutcome], references: Sequence[Reference],
                     most: int = 20) -> Iterator[str]:
    """The cross-check counts and the disputes (at most ``most`` lines); nothing when no
    country was checked."""
    counts = crosscheck_counts(outcomes)
    if not any(counts.values()):
        return
    sources = ", ".join(r.label for r in references) or "none available"
    yield (f"Cross-check against {sources}: "
           + ", ".join(f"{name} {count}" for name, count in counts.items()))
    disputed = sorted((o for o in outcomes.values()
                       if o.crosscheck and o.crosscheck["classification"] == crosscheck.DISPUTED),
                      key=lambda o: o.slug)
    for outcome in disputed[:most]:
        texts = [c["text"] for c in outcome.crosscheck["comparisons"] if c["verdict"] == "disputed"]
        fate = "held back" if outcome.status == Status.FAILED else "written"
        yield f"DISPUTED {outcome.slug} ({fate}): {few_words('; '.join(texts), 160)}"
    if len(disputed) > most:
        yield f"... and {len(disputed) - most} more DISPUTED (see the report)"


def few_words(reason: str, limit: int = 100) -> str:
    """``reason`` on one line, cut at a word boundary (never mid-word) when longer than
    ``limit``."""
    reason = " ".join(reason.split())
    if len(reason) <= limit:
        return reason
    cut = reason[: limit - 3]
    if reason[limit - 3] != " " and " " in cut:  # the cut fell inside a word: drop that word
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "..."
