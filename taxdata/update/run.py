"""The updater pipeline: taxation files -> LLM -> validated records -> the calculator dataset.

For each country: read ``<input>/<slug>.md``, ask the model for the tax facts the text states
(structured JSON, with a verbatim quote per figure), validate them, re-ask with the exact
errors (``TAXDATA_MAX_REASKS`` times, default 2), withhold every figure whose quote the text
does not bear out (taxdata.evidence.check), and only then write the record into ``tax_data.json``
(as each country completes, so an interrupted run keeps what it finished). At the end:
``taxData.js`` for the calculator, ``reports/update-<time>.json`` and a summary table. A country
that fails keeps its previous record exactly as it was.

This module runs it: the plan, the workers, the end, the dry runs. What it is asked to do is
:class:`~taxdata.update.options.UpdateOptions`; the steps live beside it (``extract``,
``country``, ``dataset``, ``imports``, ``summary``; ``discover`` for ``--discover-countries``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from taxdata import __version__
from taxdata.cancel import STOP, request_stop, unless_stopped
from taxdata.clients.llm import LLMClient, report_endpoints
from taxdata.clients.wikipedia import WikipediaClient
from taxdata.config import Settings
from taxdata.countries.registry import RegistryError, load_registry
from taxdata.errors import (
    EXIT_FAILED,
    EXIT_OK,
    DataError,
    TaxdataError,
    UsageError,
    first_line,
)
from taxdata.evidence.originals import REVISION_RETRY, Originals, read_original
from taxdata.log import logger, thread_label
from taxdata.outcome import Status, exit_code, outcome_of
from taxdata.references import crosscheck
from taxdata.references.listpage import fetch_list_reference
from taxdata.references.table import Reference, ReferenceTableError
from taxdata.runner import TaskResult, run_tasks
from taxdata.store.datadir import DataDir
from taxdata.store.locks import DataDirError, run_lock_scope
from taxdata.store.quarantine import Quarantine
from taxdata.store.taxfile import source_problem, taxation_path
from taxdata.timestamps import now_utc
from taxdata.update.country import UP_TO_DATE, CountryUpdater
from taxdata.update.dataset import DatasetStore, PersistFailed
from taxdata.update.datasetindex import stamp_of
from taxdata.update.extract import PROMPT_VERSION, Extractor
from taxdata.update.imports import merge_import, read_import
from taxdata.update.options import UpdateOptions
from taxdata.update.outcome import CountryOutcome, report_counts
from taxdata.update.pruning import keep_or_prune
from taxdata.update.recovery import recover
from taxdata.update.reports import report_countries, write_reports
from taxdata.update.sources import (
    STAT_CACHE,
    StatCache,
    list_directory,
    listed_taxation_path,
    read_source,
)
from taxdata.update.summary import (
    crosscheck_counts,
    few_words,
    print_closing_line,
    print_report_paths,
    print_update_summary,
    summary_totals,
)

SCRIPT_NAME = "tax_data_updater.py"


class NotSaved(TaxdataError):
    """A finished country the disk did not take; the run stopped once, with one line."""

    reported_once = True


class UpdateRun:
    """One run of the updater: which countries, where from, where to; the results so far."""

    def __init__(self, options: UpdateOptions, settings: Settings) -> None:
        try:
            self.registry = load_registry(settings.countries_file, data_dir=settings.data_dir)
            self.countries = self.registry.select(options.countries)
        except RegistryError as exc:
            raise UsageError(str(exc)) from None
        self.options = options
        self.settings = settings
        self.data = DataDir(options.output_dir or settings.data_dir)
        self.input_dir = Path(options.input_dir or Path(settings.data_dir) / "taxation")
        self.started = now_utc()
        self.outcomes: dict[str, CountryOutcome] = {}
        # The dataset's countries when the run started (set once the model is known).
        self.previous: Mapping[str, Any] = {}
        self.model: str | None = None
        self.references: list[Reference] = []  # the second sources to cross-check against
        self.list_fetched = False  # Wikipedia's list page was asked for (once per run)
        stamp = self.started.replace(":", "").replace("-", "")
        self.quarantine = Quarantine(self.data, stamp)  # what the gate refused, kept aside
        self.store = DatasetStore(self.data, self.registry,
                                  None if options.dry_run else self.quarantine)
        self.digests: dict[str, str] = {}  # slug -> sha256 of its taxation file, as planned
        self.stat_cache = StatCache(self.input_dir, _read_quietly(self.data, STAT_CACHE))
        self.stopped: str | None = None  # why the run stopped early (the disk), if it did
        self._stop_lock = threading.Lock()
        self.report_path: Path | None = None

    # Which countries have a source file; the others are SKIPPED.
    def plan(self) -> dict[str, Path]:
        if self.input_dir.exists() and not self.input_dir.is_dir():
            raise UsageError(f"input directory {self.input_dir} is a file, not a directory")
        if not self.input_dir.is_dir():
            raise UsageError(f"input directory {self.input_dir} does not exist - run the "
                             "generators first or pass --input-dir")
        sources = {}
        listing = list_directory(self.input_dir)
        for country in self.countries:
            path = (taxation_path(self.input_dir, country.slug) if listing is None
                    else listed_taxation_path(self.input_dir, listing, country.slug))
            if path is None:
                self.outcomes[country.slug] = CountryOutcome(
                    country.slug, Status.SKIPPED, f"no taxation file in {self.input_dir}")
                continue
            if self.known_unchanged(country.slug, path, listing):
                sources[country.slug] = path
                continue
            problem = self.input_problem(path, country.slug)
            if problem:
                logger.warning("[SKIPPED] %s %s: %s", country.slug, path.name, problem)
                self.outcomes[country.slug] = CountryOutcome(
                    country.slug, Status.SKIPPED, f"{path.name}: {problem}; not sent",
                    source_file=path.name)
            else:
                sources[country.slug] = path
        return sources

    def input_problem(self, path: Path, slug: str | None = None) -> str | None:
        """Why a taxation file must not be sent (over the size cap, not text, empty); its
        digest is kept (``slug``) to tell an up-to-date country without reading it again."""
        raw, problem, stat = read_source(path, self.settings.max_input_bytes)
        if raw is None:
            return problem
        if slug is not None:
            digest = self.digests[slug] = hashlib.sha256(raw).hexdigest()
            if stat is not None:
                self.stat_cache.remember(path.name, stat, digest)
            if digest == self.extracted_from(slug):
                return None  # the very bytes a record was made from: checked back then
        return source_problem(raw, self.settings.max_input_bytes)

    def known_unchanged(self, slug: str, path: Path, listing: dict | None) -> bool:
        """The file's stat says it is the one a record was made from (no read needed)."""
        entry = listing.get(path.name) if listing else None
        try:
            stat = entry.stat() if entry is not None else os.stat(path)
        except OSError:
            return False
        digest = self.stat_cache.digest(path.name, stat)
        if digest is None or digest != self.extracted_from(slug):
            return False
        self.digests[slug] = digest
        return True

    def extracted_from(self, slug: str) -> str | None:
        """The sha256 of the source the dataset's record of ``slug`` was extracted from."""
        digest = self.store.stamp(slug)["source_sha256"]
        return digest if isinstance(digest, str) else None

    def fetch_list_reference(self) -> None:
        """Wikipedia's list page as the first reference, asked for once per run (before the
        workers start); unreachable: one warning and no list reference."""
        if self.list_fetched or not self.options.list_reference:
            return
        self.list_fetched = True
        listed = fetch_list_reference(self.settings.wikipedia_api, self.settings.user_agent,
                                      self.registry)
        if listed is not None:
            self.references.insert(0, listed)

    def current(self, sources: dict[str, Path], judge: CountryUpdater) -> dict[str, Path]:
        """The sources that must be sent; the up-to-date ones (the very bytes the record was
        extracted from, with this prompt and model) are UNCHANGED here, never a task."""
        send = {}
        for slug, path in sources.items():
            if judge.up_to_date_digest(slug, self.digests.get(slug), self.model):
                stamp = stamp_of(self.previous, slug)
                self.outcomes[slug] = CountryOutcome(
                    slug, Status.UNCHANGED, UP_TO_DATE, source_file=path.name,
                    source_kind=stamp["source_kind"], unverified=bool(stamp["unverified"]),
                    model=self.model)
            else:
                send[slug] = path
        return send

    def persist(self, outcome: CountryOutcome) -> None:
        """Record a finished country at once (called as each result arrives, on one thread):
        in memory and the journal; the whole files follow at checkpoints. A disk that refuses
        stops the run (one line; what the journal holds is kept)."""
        try:
            if outcome.record is not None:  # None: up to date, nothing new to write
                self.store.save(outcome)  # journaled on its worker: in memory now
            self.outcomes[outcome.slug] = outcome
            if self.stopped:  # no more checkpoints; the journal holds it for the next run
                if outcome.journaled is not None:
                    outcome.reason = (f"{outcome.reason}; " if outcome.reason else "") + \
                        "saved in the journal only: the next run writes it"
            elif outcome.record is not None and self.store.checkpoint_due():
                self.checkpoint()
        except (OSError, PersistFailed) as exc:
            self.stop(exc)
            raise NotSaved(self.stopped) from None

    def write_ahead(self, outcome: CountryOutcome) -> None:
        """On a worker: the new record into the journal (:meth:`DatasetStore.write_ahead`); a
        disk that refuses stops the run (one line)."""
        if self.stopped:
            raise NotSaved(self.stopped)
        try:
            self.store.write_ahead(outcome)
        except OSError as exc:
            self.stop(exc)
            raise NotSaved(self.stopped) from None

    def stop(self, error: BaseException) -> None:
        """The disk refused a write: stop sending work (one line for the whole run)."""
        with self._stop_lock:  # workers may all hit it at once: one line
            if self.stopped:
                return
            what = getattr(error, "strerror", None) or first_line(error)
            self.stopped = f"finished but not saved ({what}); previous record kept"
        logger.error("[STOPPED] cannot write to %s: %s; the run stops, what it saved so far is "
                     "kept (%d %s in the journal); free space and re-run to continue",
                     self.data.root, what, self.store.journal.lines,
                     "country" if self.store.journal.lines == 1 else "countries")
        # Queued countries are not started (one line for the lot); the ones in flight end unsaved.
        request_stop("the disk refused a write")

    def checkpoint(self) -> None:
        self.store.checkpoint(self.outcomes, self.model)

    def finish(self, interrupted: bool, seconds: float = 0.0,
               endpoints: list[str] | None = None) -> None:
        """Write tax_data.json and taxData.js (in step), then the report and its review page;
        drop the journal. ``seconds``: the run's wall time; ``endpoints``: the LLM servers'
        summary lines (the page shows them as the summary prints them)."""
        if not self.stopped:
            try:
                self.store.finish(self.outcomes, self.model)
            except PersistFailed as exc:
                self.stop(exc)
        if self.stopped:
            self.store.journal.close()  # it holds what was finished: the next run recovers it
        report = {
            "started_at": self.started, "finished_at": now_utc(), "interrupted": interrupted,
            "model": self.model, "llm_url": self.settings.llm_url,
            "prompt_version": PROMPT_VERSION, "taxdata_version": __version__,
            "seconds": round(seconds, 1), "counts": report_counts(self.outcomes),
            "totals": summary_totals(self.outcomes), "llm_endpoints": endpoints or [],
            "crosscheck": {"references": [r.label for r in self.references],
                           "rule": crosscheck.RULE,
                           "counts": crosscheck_counts(self.outcomes)},
            "stopped": self.stopped, "quarantined": self.quarantine.report(),
            **report_countries(self.outcomes),
        }
        # A run that only found countries up to date shows no entry: the dataset stays as it
        # is on disk, not decoded (its SAMPLE flag is in its index).
        shown = self.store.view() if report.get("countries") else None
        self.report_path = write_reports(self.data, self.started, report, shown,
                                         self.previous, self.source_text,
                                         self.settings.keep_reports,
                                         sample=self.store.holds_sample())
        if self.stat_cache.changed:  # a cache: a disk that refuses it costs the next run a read
            with contextlib.suppress(OSError, DataError):
                self.data.write_text(STAT_CACHE, self.stat_cache.content())

    def source_text(self, slug: str, source: Mapping[str, Any] | None) -> str | None:
        """The text a country's quotes are shown in: its taxation file, or (``source``: the
        original its grounded figures name, ``provenance.original``) that original, as kept in
        the data directory and still matching its SHA-256."""
        if source is not None:
            return read_original(self.data, source)
        outcome = self.outcomes.get(slug)
        path = self.input_dir / outcome.source_file if outcome and outcome.source_file else None
        try:
            if path is None or path.stat().st_size > self.settings.max_input_bytes:
                return None
            return path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return None

    def print_summary(self, seconds: float) -> None:
        print_update_summary(self.outcomes, seconds, model=self.model,
                             references=self.references, quarantined=self.quarantine.items)

    def exit_code(self, interrupted: bool) -> int:
        """The dataset's status; a quarantined entry or a refused write is a failure too."""
        code = exit_code(self.outcomes, interrupted)
        if code == EXIT_OK and (self.quarantine.items or self.stopped):
            return EXIT_FAILED
        return code


def _thawed_after(function: Callable[..., int]) -> Callable[..., int]:
    """:func:`prepare` freezes the heap it read (``gc.freeze``); after the run what it froze is
    collectable again (a process may run the updater many times: the tests, the demo).

    During the run the cyclic collector runs every :data:`YOUNG_OBJECTS` new objects, not every
    700: a country's work makes thousands of short-lived objects that reference counting frees
    (next to none are cycles), and at the default each collection walked what the run had
    built so far (2.6 % of a 2,000-country run's CPU; 0.3 % with this)."""
    @functools.wraps(function)
    def thawed(*args: Any, **kwargs: Any) -> int:
        thresholds = gc.get_threshold()
        gc.set_threshold(max(YOUNG_OBJECTS, thresholds[0]), *thresholds[1:])
        try:
            return function(*args, **kwargs)
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
    return thawed


YOUNG_OBJECTS = 50_000


@run_lock_scope()
@_thawed_after
def run(options: UpdateOptions, settings: Settings) -> int:
    """The whole updater run (the script's one call)."""
    started = time.monotonic()
    if options.discover_countries:
        from taxdata.update.discover import discover  # only this mode needs it
        return discover(settings, write=options.write and not options.dry_run)
    update = prepare(options, settings)
    if options.import_js:
        code = run_import(update, started)
        if code is not None:
            return code
    sources = update.plan()
    client = LLMClient.from_settings(settings)
    extractor = Extractor(client, options.max_chars, settings.max_reasks)
    # A dry run checks the server too: a dead URL must not pass as "would work".
    # Stopped meanwhile: nothing is sent; the summary and report still come.
    update.model = unless_stopped(extractor.prepare) or settings.model
    update.previous = update.store.snapshot()
    if options.dry_run:
        return dry_run(update, extractor, sources)
    try:
        update.store.journal.open()
        if update.store.dirty:  # the import (or a quarantine) is on disk before any request
            update.checkpoint()
    except (OSError, PersistFailed) as exc:
        raise DataDirError(f"cannot write to {update.data.root}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None

    one_country = CountryUpdater(update.registry, extractor, update.references, update.previous,
                                 force=options.force, accept_disputed=options.accept_disputed,
                                 originals=originals_for(settings))
    sources = update.current(sources, one_country)  # those up to date need no task
    if sources and not update.store.decoded:
        # Results will be saved into it: decoded now, and frozen as prepare() froze it.
        update.store.decode()
        gc.freeze()
    if sources and not STOP.is_set():  # stopped: the runner cancels every country
        unless_stopped(update.fetch_list_reference)
        unless_stopped(extractor.probe)  # once per server, before any worker sends

    def work(slug: str) -> CountryOutcome:
        outcome = one_country.process(slug, sources[slug])
        update.write_ahead(outcome)  # in the journal before the run calls it finished
        return outcome

    def on_result(result: TaskResult[CountryOutcome]) -> None:
        update.persist(result.value)

    summary = run_tasks(sources, work, max_workers=settings.max_workers, on_result=on_result,
                        describe=lambda outcome: outcome.status, progress=options.progress,
                        clear_stop=True)
    for slug, result in summary.results.items():
        if slug not in update.outcomes or not result.ok:
            update.outcomes[slug] = outcome_of(result, CountryOutcome)
            if result.cancelled and update.stopped:
                update.outcomes[slug].reason = (
                    "cancelled in flight" if result.in_flight else "not run") + \
                    ": the run stopped (the disk refused a write)"
    update.finish(summary.interrupted, time.monotonic() - started, client.endpoint_summary())
    update.print_summary(time.monotonic() - started)
    report_endpoints(client, (r.error for r in summary.results.values()))
    print_report_paths(update.report_path)  # the last lines: where to look ...
    print_closing_line(update.outcomes)  # ... and, if nothing written was checked, that
    return update.exit_code(summary.interrupted)


def _read_quietly(data: DataDir, relpath: str) -> bytes | None:
    """A cache file's bytes, or None (missing, unreadable, a symlink out: no cache)."""
    try:
        return data.path(relpath).read_bytes()
    except (OSError, DataError):
        return None


def originals_for(settings: Settings) -> Originals:
    """Where the run finds each taxation file's original: the data directory the generators
    wrote (their caches, raw/), and Wikipedia for a revision the cache lacks."""
    data = DataDir(settings.data_dir)
    wikipedia = WikipediaClient(settings.wikipedia_api, settings.user_agent, cache_dir=data,
                                retry=REVISION_RETRY)
    return Originals(data, wikipedia)


def prepare(options: UpdateOptions, settings: Settings) -> UpdateRun:
    """Check the reference file and the data directory (locked, recovered, dataset loaded)
    before any request: every problem here is a usage error."""
    update = UpdateRun(options, settings)
    if options.reference:  # a bad file is a usage error before any request
        # The CSV reader loads only when there is a file to read (most runs have none).
        from taxdata.references.csvfile import load_reference_csv, parse_column_spec

        try:
            reference = load_reference_csv(options.reference, update.registry,
                                           parse_column_spec(options.reference_columns))
        except ReferenceTableError as exc:
            raise UsageError(str(exc)) from None
        update.references.append(reference)
        read = ", ".join(f"{what} from {name!r}" for what, name in reference.columns.items())
        logger.info("[REFERENCE] %s %s: %s; %d rows, %d registry countries", thread_label(),
                    reference.label, read, len(reference.rows), reference.matched)
        for warning in reference.warnings:
            logger.warning("[REFERENCE] %s %s", thread_label(), warning)
    if not options.dry_run:  # a dry run writes (and deletes, and locks) nothing
        update.data.check_writable()
        update.data.acquire_run_lock(SCRIPT_NAME)
        update.data.sweep_stale_temps()
        try:
            recover(update.data, update.registry, update.quarantine)
        except PersistFailed as exc:  # the disk is still full: the journal waits for space
            raise DataDirError(f"cannot recover the last run's work: {exc}; the journal is "
                               "kept, free space and re-run") from None
    # A broken dataset is an error before any LLM call.
    try:
        update.store.load()
    except PersistFailed as exc:
        raise DataDirError(str(exc)) from None
    update.outcomes.update(keep_or_prune(update.store, update.registry, options.prune))
    # The dataset and registry just read (300,000 objects at 5,000 countries) live for the whole
    # run and hold no cycles: later collections need not scan them again and again.
    gc.freeze()
    return update


def run_import(update: UpdateRun, started: float) -> int | None:
    """Merge ``--import-js`` into the dataset; the exit code if the run ends with the import
    (--dry-run, --import-only), else None: the LLM run follows."""
    options = update.options
    imported = read_import(Path(options.import_js), update.registry,
                           update.settings.max_import_bytes)
    if not options.dry_run:  # a dry run sends nothing: only a reference file checks it
        update.fetch_list_reference()
    outcomes, changed = merge_import(update.store.dataset, imported, options.prune,
                                     update.references, options.accept_disputed)
    update.outcomes.update(outcomes)
    update.store.dirty = update.store.dirty or changed
    if options.dry_run:
        return dry_run_import(update)
    if options.import_only:
        try:
            update.store.journal.open()
        except OSError as exc:
            raise DataDirError(f"cannot write to {update.data.root}: {exc.strerror or exc}"
                               ) from None
        update.finish(interrupted=False, seconds=time.monotonic() - started)
        update.print_summary(time.monotonic() - started)
        print_report_paths(update.report_path)
        print_closing_line(update.outcomes)
        return update.exit_code(interrupted=False)
    return None


def dry_run_import(update: UpdateRun) -> int:
    """What an import would do to the dataset; nothing is written."""
    print("Dry run: the import would change the dataset like this (nothing written):")
    for slug, outcome in sorted(update.outcomes.items()):
        print(f"  {outcome.status:<9} {slug:<24} {few_words(outcome.reason)}")
    return EXIT_OK


def dry_run(update: UpdateRun, extractor: Extractor, sources: dict[str, Path]) -> int:
    """List what a real run would send (the up-to-date countries are not sent, as in a real
    run) and each prompt's size; send no work, write nothing."""
    judge = CountryUpdater(update.registry, extractor, [], update.previous,
                           force=update.options.force)
    current = [slug for slug in sources
               if judge.up_to_date_digest(slug, update.digests.get(slug), update.model)]
    sent = {slug: path for slug, path in sources.items() if slug not in current}
    noun = "country" if len(sent) == 1 else "countries"
    print(f"Dry run: {len(sent)} {noun} would be sent to "
          f"{', '.join(e.url for e in extractor.client.endpoints)} (model {update.model}) "
          f"with {update.settings.max_workers} workers")
    if current:
        print(f"  UNCHANGED (up to date, not sent; --force sends them): {', '.join(current)}")
    for slug, path in sent.items():
        text = path.read_text(encoding="utf-8", errors="replace")
        parts = extractor.parts(text)
        sizes = [sum(len(m["content"]) for m in extractor.messages(update.registry.get(slug), p))
                 for p in parts]
        print(f"  {slug:<24} {path.name:<28} {len(parts)} request(s), prompt "
              f"{sum(sizes):,} chars (~{sum(sizes) // 4:,} tokens)")
    skipped = [o for o in update.outcomes.values() if o.status == Status.SKIPPED]
    no_file = [o.slug for o in skipped if o.reason.startswith("no taxation file")]
    if no_file:
        print(f"  SKIPPED (no taxation file): {', '.join(no_file)}")
    for outcome in skipped:
        if outcome.slug not in no_file:
            print(f"  SKIPPED {outcome.slug}: {outcome.reason}")
    return EXIT_OK
