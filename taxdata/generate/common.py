"""What the three file generators share: per-country outcomes, running, the summary, exit codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from taxdata.clients.llm import LLMClient, report_endpoints
from taxdata.config import Settings
from taxdata.countries.registry import Country, load_registry
from taxdata.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, first_line
from taxdata.options import RunOptions
from taxdata.runner import run_tasks
from taxdata.store.datadir import DataDir, check_slug
from taxdata.store.taxfile import source_problem, taxation_path

TAXATION_DIR = "taxation"
RAW_DIR = "raw"


@dataclass
class FileOutcome:
    """One country's result: WRITTEN, SKIPPED (with why) or FAILED (with why)."""

    slug: str
    status: str
    reason: str = ""
    path: str = ""


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
    return raw.decode("utf-8")


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
    outcomes: dict[str, FileOutcome] = {}

    def task(slug: str) -> FileOutcome:
        try:
            return work(slug)
        except Skip as skip:
            return FileOutcome(slug, "SKIPPED", str(skip))

    summary = run_tasks(slugs, task, max_workers=settings.max_workers, what=what,
                        describe=lambda o: o.status if o.status == "WRITTEN"
                        else f"{o.status} ({o.reason})",
                        progress=progress, clear_stop=True)
    for slug, result in summary.results.items():
        if result.ok:
            outcomes[slug] = result.value
        else:
            status = "SKIPPED" if result.cancelled else "FAILED"
            outcomes[slug] = FileOutcome(slug, status, "interrupted" if result.cancelled
                                         else first_line(result.error))
    print_summary(outcomes, summary.seconds)
    if client is not None:
        report_endpoints(client, (r.error for r in summary.results.values()))
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(o.status == "FAILED" for o in outcomes.values()) else EXIT_OK


def print_summary(outcomes: dict[str, FileOutcome], seconds: float) -> None:
    counts = {s: sum(o.status == s for o in outcomes.values())
              for s in ("WRITTEN", "SKIPPED", "FAILED")}
    print(f"\nSummary ({seconds:.1f}s): "
          + ", ".join(f"{n} {s.lower()}" for s, n in counts.items()))
    for outcome in outcomes.values():
        detail = outcome.path if outcome.status == "WRITTEN" else outcome.reason
        print(f"  {outcome.status:<8} {outcome.slug:<24} {detail}")
