"""What the updater knows about one country at the end of a run: an entry of its report."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, Mapping

from taxdata.errors import TaxdataError
from taxdata.record.build import FieldChange, summarize_changes


class Status(str, Enum):
    """A country's fate in one run. The values are what reports, logs and taxData.js say (a str
    subclass, so JSON and comparisons with plain strings keep working)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    UNCHANGED = "UNCHANGED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    REMOVED = "REMOVED"
    # Extracted, validated and cross-checked; persist() decides ADDED/MODIFIED/UNCHANGED
    # against the dataset. Never in a report.
    PENDING = "PENDING"

    def __str__(self) -> str:
        return self.value


# The statuses a finished run reports, in the order the summary lists them.
STATUSES = (Status.ADDED, Status.MODIFIED, Status.UNCHANGED, Status.FAILED, Status.SKIPPED,
            Status.REMOVED)


@dataclass
class CountryOutcome:
    """What happened to one country in this run (one entry of the report)."""

    slug: str
    status: Status = Status.SKIPPED
    reason: str = ""
    changes: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    attempts: int = 0  # model replies asked for (a validation re-ask counts)
    http_attempts: int = 0
    latency_s: float = 0.0
    model: str | None = None
    source_file: str | None = None
    source_kind: str | None = None
    unverified: bool = False
    # Verified quotes (path -> quote) and figures withheld for want of one (path, value, the
    # model's quote, reason); research sources are not checked (unverified says so).
    evidence: dict[str, str] = field(default_factory=dict)
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    crosscheck: dict[str, Any] | None = None  # classification against the references
    record: dict[str, Any] | None = field(default=None, repr=False)
    provenance: dict[str, Any] | None = field(default=None, repr=False)

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
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("record", "provenance")}


class CountryFailed(TaxdataError):
    """A country's update failed; carries its outcome for the report."""

    def __init__(self, outcome: CountryOutcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def report_counts(outcomes: Mapping[str, CountryOutcome]) -> dict[Status, int]:
    """The count of every reported status (0 included), in the report's order."""
    return {s: sum(o.status == s for o in outcomes.values()) for s in STATUSES}
