"""What the updater knows about one country at the end of a run: an entry of its report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from taxdata.outcome import Outcome, Status, status_counts
from taxdata.record.build import FieldChange, summarize_changes

# The statuses a finished run reports, in the order the summary and the report list them.
STATUSES = (Status.ADDED, Status.MODIFIED, Status.UNCHANGED, Status.FAILED, Status.SKIPPED,
            Status.REMOVED)

# The keys of a country's entry in reports/update-<time>.json, in their order.
REPORT_KEYS = ("slug", "status", "reason", "changes", "missing", "warnings", "attempts",
               "http_attempts", "latency_s", "model", "source_file", "source_kind", "unverified",
               "evidence", "unsupported", "crosscheck", "original", "grounding", "replies")


@dataclass
class CountryOutcome(Outcome):
    """What happened to one country in this run (one entry of the report)."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    attempts: int = 0  # model replies asked for (a validation re-ask counts)
    http_attempts: int = 0
    model: str | None = None
    source_file: str | None = None
    source_kind: str | None = None
    unverified: bool = False
    # Verified quotes (path -> quote) and figures withheld for want of one (path, value, the
    # model's quote, reason); research sources are not checked (unverified says so).
    evidence: dict[str, str] = field(default_factory=dict)
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    crosscheck: dict[str, Any] | None = None  # classification against the references
    # The original the figures were verified in, and where it states each (quote, offsets).
    original: dict[str, Any] | None = None
    grounding: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Each ask's raw reply (bounded) and why it was rejected, to debug a failed country.
    replies: list[dict[str, Any]] = field(default_factory=list)
    record: dict[str, Any] | None = field(default=None, repr=False)
    provenance: dict[str, Any] | None = field(default=None, repr=False)
    # Set by the worker that journaled it (taxdata.update.dataset): the entry and its line of
    # tax_data.json, or why the gate refused it.
    journaled: tuple[dict[str, Any], bytes] | None = field(default=None, repr=False)
    refused: str | None = field(default=None, repr=False)

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
        return {key: getattr(self, key) for key in REPORT_KEYS}


def report_counts(outcomes: Mapping[str, CountryOutcome]) -> dict[Status, int]:
    """The count of every reported status (0 included), in the report's order."""
    return status_counts(outcomes, STATUSES)
