"""What the three file generators share: choosing countries, sources, running, the summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from taxdata.clients.llm import LLMClient, report_endpoints
from taxdata.config import Settings
from taxdata.countries.registry import Country, load_registry
from taxdata.options import RunOptions
from taxdata.outcome import Outcome, Status, exit_code, outcome_of, print_summary
from taxdata.runner import run_tasks
from taxdata.store.datadir import DataDir, check_slug
from taxdata.store.hiddenmarkup import strip_hidden_markup
from taxdata.store.taxfile import source_problem, taxation_path

TAXATION_DIR = "taxation"
RAW_DIR = "raw"

# The statuses a generator's summary counts, in its order.
STATUSES = (Status.WRITTEN, Status.SKIPPED, Status.FAILED)


@dataclass
class FileOutcome(Outcome):
    """One country's result: WRITTEN (with the file), SKIPPED (with why) or FAILED (with why)."""

    path: str = ""
    # Figures of the written file that its original does not state (taxdata.evidence.grounding).
    unstated: list[str] = field(default_factory=list)


class Skip(Exception):
    """Raised by a task that has nothing to do for its country (the reason is the message)."""


def select_countries(options: RunOptions, settings: Settings,
                     script: str = "a generator") -> tuple[list[Country], DataDir]:
    """The chosen countries and the data directory, checked before any work.

    Unless it is a dry run (which writes, deletes and locks nothing): the directory must take
    a real write, and no other script may be running on it (``script`` names this one to a
    second run that stops).
    """
    registry = load_registry(settings.countries_file, data_dir=settings.data_dir)
    data = DataDir(settings.data_dir)
    countries = registry.select(options.countries)
    if not options.dry_run:
        data.check_writable()
        data.acquire_run_lock(script)
        data.sweep_stale_temps()
    return countries, data


def checked_source(source: str | bytes, settings: Settings, what: str) -> str:
    """The source text, or :class:`Skip` when it must not be sent (too big, not text, empty)."""
    raw = source.encode("utf-8") if isinstance(source, str) else source
    problem = source_problem(raw, settings.max_input_bytes)
    if problem:
        raise Skip(f"{what}: {problem}; not sent")
    # What no reader of the source sees (comments, hidden elements) is never sent.
    return strip_hidden_markup(raw.decode("utf-8"))


def taxation_relpath(slug: str) -> str:
    return f"{TAXATION_DIR}/{check_slug(slug)}.md"


def read_taxation(data: DataDir, slug: str) -> str | None:
    """The country's taxation file as the updater would read it (``<slug>.md`` or legacy name)."""
    path = taxation_path(data.path(TAXATION_DIR), check_slug(slug))
    # Read for its Sources section only: a stray non-UTF-8 byte must not fail the country.
    return None if path is None else path.read_text(encoding="utf-8", errors="replace")


def run_per_country(slugs: list[str], work: Callable[[str], FileOutcome], *, settings: Settings,
                    progress: bool, what: str, client: LLMClient | None = None) -> int:
    """Run ``work`` per country on the runner, print the summary, return the exit code.

    With the LLM ``client`` the summary adds one line per endpoint, and one line if the server
    stopped answering (how many countries that left undone).
    """

    def task(slug: str) -> FileOutcome:
        try:
            return work(slug)
        except Skip as skip:
            return FileOutcome(slug, Status.SKIPPED, str(skip))

    summary = run_tasks(slugs, task, max_workers=settings.max_workers, what=what,
                        describe=lambda o: o.status if o.status == Status.WRITTEN
                        else f"{o.status} ({o.reason})",
                        progress=progress, clear_stop=True)
    outcomes = {slug: outcome_of(result, FileOutcome) for slug, result in summary.results.items()}
    print_summary("Summary", outcomes, summary.seconds, statuses=STATUSES, detail=_detail,
                  sections=unstated_lines(outcomes))
    if client is not None:
        report_endpoints(client, (r.error for r in summary.results.values()))
    return exit_code(outcomes, summary.interrupted)


def unstated_lines(outcomes: dict[str, FileOutcome], most: int = 20) -> list[str]:
    """The summary's count of figures the model's rewrites introduced, and a line per file."""
    marked = {slug: o.unstated for slug, o in sorted(outcomes.items()) if o.unstated}
    if not marked:
        return []
    total = sum(len(items) for items in marked.values())
    noun = "file" if len(marked) == 1 else "files"
    lines = [f"UNGROUNDED figures: {total} in {len(marked)} {noun} (not stated in the original; "
             "marked in the file, the updater will not write them as verified)"]
    lines += [f"UNGROUNDED {slug}: {', '.join(items)}" for slug, items in
              list(marked.items())[:most]]
    if len(marked) > most:
        lines.append(f"... and {len(marked) - most} more files with UNGROUNDED figures")
    return lines


def _detail(outcome: Outcome) -> str:
    """A summary line's detail: the file written, else why not."""
    if outcome.status == Status.WRITTEN and isinstance(outcome, FileOutcome):
        return outcome.path
    return outcome.reason
