"""What happened to each country in a pipeline run, and the summary a run prints at its end.

One vocabulary for every pipeline: :class:`Status`, :class:`Outcome` (the updater extends it with
what a record needs, the generators with the file they wrote), one mapping from a runner
:class:`~taxdata.runner.TaskResult` to an outcome (:func:`outcome_of`), one exit code rule and
one summary printer (:func:`print_summary`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from taxdata.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TaxdataError, first_line
from taxdata.runner import TaskResult


class Status(str, Enum):
    """A country's fate in one run. The values are what reports, logs and taxData.js say (a str
    subclass, so JSON and comparisons with plain strings keep working)."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    UNCHANGED = "UNCHANGED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    REMOVED = "REMOVED"
    WRITTEN = "WRITTEN"  # a generator wrote the country's file
    # Extracted, validated and cross-checked; the updater decides ADDED/MODIFIED/UNCHANGED
    # against the dataset. Never in a report.
    PENDING = "PENDING"

    def __str__(self) -> str:
        return self.value


@dataclass
class Outcome:
    """What happened to one country in this run."""

    slug: str
    status: Status = Status.SKIPPED
    reason: str = ""
    latency_s: float = 0.0  # seconds the country's work took (0: it never ran)

    def __post_init__(self) -> None:
        self.status = Status(self.status)  # "WRITTEN" and Status.WRITTEN are one status


OutcomeT = TypeVar("OutcomeT", bound=Outcome)


class CountryFailed(TaxdataError):
    """A country's work failed; carries the outcome it reached, for the summary and report."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


def outcome_of(result: TaskResult[OutcomeT], kind: type[OutcomeT]) -> OutcomeT:
    """The outcome of one country's task: the one it returned or failed with; else a ``kind``
    outcome, SKIPPED when a stop cancelled it (in the queue, or in flight: its request closed),
    FAILED (with the error) when it raised."""
    if result.ok:
        outcome = result.value
    elif isinstance(result.error, CountryFailed):
        outcome = result.error.outcome
    elif result.in_flight:
        outcome = kind(result.task_id, Status.SKIPPED, "cancelled in flight: the run was "
                                                       "interrupted")
    elif result.cancelled:
        outcome = kind(result.task_id, Status.SKIPPED, "interrupted before it ran")
    else:  # an error the work did not expect (a bug, a disk error): nothing was written for it
        outcome = kind(result.task_id, Status.FAILED, failure_reason(result.error))
    if not outcome.latency_s:  # the work did not time itself: the task's time is the best known
        outcome.latency_s = round(result.seconds, 3)
    return outcome


def failure_reason(error: BaseException | None) -> str:
    """One line on why a task failed: taxdata's own errors are written to be read as they are;
    any other exception is named by its type, which says more than its message alone."""
    if isinstance(error, TaxdataError) or not str(error).strip():
        return first_line(error)
    return f"{type(error).__name__}: {first_line(error)}"


def status_counts(outcomes: Mapping[str, Outcome],
                  statuses: Sequence[Status]) -> dict[Status, int]:
    """How many countries reached each of ``statuses`` (every one listed, 0 included)."""
    counted = Counter(o.status for o in outcomes.values())
    return {s: counted[s] for s in statuses}


def exit_code(outcomes: Mapping[str, Outcome], interrupted: bool) -> int:
    """130 when Ctrl-C stopped the run, 1 when a country FAILED, else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(o.status == Status.FAILED for o in outcomes.values()) else EXIT_OK


def _every(outcome: Outcome) -> bool:
    return True


def _reason(outcome: Outcome) -> str:
    return outcome.reason


def print_summary(title: str, outcomes: Mapping[str, OutcomeT], seconds: float, *,
                  statuses: Sequence[Status], note: str | None = None,
                  listed: Callable[[OutcomeT], bool] = _every,
                  detail: Callable[[OutcomeT], str] = _reason,
                  sections: Iterable[str] = ()) -> None:
    """A run's summary on stdout: a header with the time (and ``note``), the count of each of
    ``statuses``, one ``STATUS slug: detail`` line per ``listed`` country (in the mapping's
    order), then the ``sections`` lines a pipeline adds."""
    print(f"\n{title} ({seconds:.1f}s{f', {note}' if note else ''})")
    width = max(len(s) for s in statuses)
    for status, count in status_counts(outcomes, statuses).items():
        print(f"  {status:<{width}}  {count:>3}")
    for outcome in outcomes.values():
        if listed(outcome):
            print(f"  {outcome.status} {outcome.slug}: {detail(outcome)}")
    for line in sections:
        print(f"  {line}")
