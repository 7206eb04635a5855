"""generate_enhanced_taxation_files: Wikipedia "Taxation in X" -> LLM -> data/taxation/<slug>.md.

Per country: fetch the article (cached by title and revision), have the model restructure it
into the standard taxation file, add the Sources section (article URL, revision, fetch date,
model, prompt version, the SHA-256 of the original text) and write the file atomically. The
rewrite's figures are checked against the original by code as soon as it is written: a number
the original does not state under the same tax is logged (``[UNGROUNDED]``), marked in the
Sources section ("Not in the original") and counted in the summary; the updater will not write
it as verified. A file that is already up to date (same
revision, same prompt version) is skipped without any LLM request unless ``--force``.

``--from-raw`` takes ``data/raw/<slug>.txt`` (from generate_taxation_files) as the source;
``--process-existing`` reformats the extractor service's saved ``taxation*`` files instead.
"""

from __future__ import annotations

import re
from dataclasses import replace

from taxdata.cancel import STOP, unless_stopped
from taxdata.clients.extractor import ExtractorClient, ExtractorError, check_file_name
from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import ArticleNotFound, NoStableRevision, WikipediaClient
from taxdata.config import Settings
from taxdata.countries.registry import Country
from taxdata.errors import PreflightError
from taxdata.evidence.grounding import Original, unstated_figures
from taxdata.evidence.originals import keep_original
from taxdata.generate.common import (
    FileOutcome,
    Skip,
    checked_source,
    read_taxation,
    run_per_country,
    select_countries,
    taxation_relpath,
)
from taxdata.generate.formatter import PROMPT_VERSION, start_formatter
from taxdata.generate.options import EnhancedOptions
from taxdata.generate.raw import raw_relpath
from taxdata.log import logger, thread_label
from taxdata.outcome import Status
from taxdata.store.datadir import DataDir
from taxdata.store.locks import run_lock_scope
from taxdata.store.rawfile import read_raw
from taxdata.store.taxfile import SourceInfo, compose, parse_sources
from taxdata.timestamps import now_utc

SCRIPT_NAME = "generate_enhanced_taxation_files.py"


def _keep_existing(data: DataDir, slug: str, force: bool, revision: str | None = None) -> None:
    """Skip the country when its file must not be rewritten: hand-written, or up to date."""
    existing = read_taxation(data, slug)
    if existing is None or force:
        return
    info = parse_sources(existing)
    if info.kind == "manual":  # a person wrote it: never replaced silently
        raise Skip("hand-written file (no Sources section); --force to replace it")
    if (revision is not None and info.kind == "wikipedia" and info.revision == revision
            and info.prompt_version == PROMPT_VERSION):
        raise Skip(f"up to date (revision {revision}, prompt {PROMPT_VERSION})")


def _write(data: DataDir, slug: str, body: str, info: SourceInfo,
           original: Original) -> FileOutcome:
    """Write the file, with what of it the original does not state marked in its Sources
    section (and logged): figures the model's rewrite introduced (taxdata.evidence.grounding)."""
    unstated = unstated_figures(body, original)
    for item in unstated:
        logger.warning('[UNGROUNDED] %s %s: %s under "%s" ("%s") is not stated in %s',
                       thread_label(), slug, item.value, item.section or "-", item.passage,
                       original.ref.label)
    shown = [item.describe() for item in unstated]
    if shown:
        noun = "figure" if len(shown) == 1 else "figures"
        info = replace(info, unstated=f"{len(shown)} {noun}: " + ", ".join(shown))
    info = replace(info, original_sha256=original.ref.sha256)
    path = data.write_text(taxation_relpath(slug), compose(body, info))
    return FileOutcome(slug, Status.WRITTEN, path=str(path), unstated=shown)


@run_lock_scope()
def run(options: EnhancedOptions, settings: Settings) -> int:
    """The whole run (the script's one call); ``options`` were checked when they were made."""
    countries, data = select_countries(options, settings, SCRIPT_NAME)
    retry = RetryPolicy.from_settings(settings)
    if options.list_txt_files or options.process_existing:
        return _process_existing(options, settings, data, retry)
    wikipedia = WikipediaClient(settings.wikipedia_api, settings.user_agent, cache_dir=data,
                                retry=retry)
    by_slug = {c.slug: c for c in countries}
    # Fresh vandalism: the newest revision that has stood this long (taxdata.clients.revisions).
    min_age = 0.0 if options.latest_revision else settings.wikipedia_min_age * 3600
    # A dry run checks the servers too. Stopped meanwhile: no task starts (formatter unused).
    formatter = unless_stopped(lambda: start_formatter(settings, options.max_chars))
    if formatter and not options.from_raw and any(c.wikipedia_title for c in countries):
        unless_stopped(lambda: wikipedia.check(settings.connect_timeout))
    if options.dry_run and not STOP.is_set():
        for country in countries:
            print(f"  {country.slug:<24} {_plan(country, options, data, wikipedia)}")
        return 0

    def from_wikipedia(country: Country) -> FileOutcome:
        if not country.wikipedia_title:
            raise Skip("no Wikipedia article in the registry (use research_and_format.py)")
        logger.info("[FETCH] %s Getting Wikipedia content for %s", thread_label(), country.slug)
        try:
            article = wikipedia.fetch(country.wikipedia_title, refresh=options.refresh,
                                      min_age=min_age)
        except (ArticleNotFound, NoStableRevision) as exc:
            raise Skip(str(exc)) from None
        _keep_existing(data, country.slug, options.force, str(article.revision_id))
        text = checked_source(article.text, settings, f'article "{article.title}"')
        result = formatter.from_source(country, text,
                                       f'Wikipedia article "{article.title}"')
        original = Original.of(text, "wikipedia", f"{article.title} rev {article.revision_id}")
        return _write(data, country.slug, result.body, SourceInfo(
            kind="wikipedia", title=article.title, url=article.url,
            revision=str(article.revision_id), fetched_at=article.fetched_at,
            revision_policy=(article.chosen_because
                             or ("the latest (--latest-revision)" if not min_age else None)),
            model=result.model, prompt_version=PROMPT_VERSION, generated_at=now_utc()),
            original)

    def from_raw(country: Country) -> FileOutcome:
        relpath = raw_relpath(country.slug)
        path = data.path(relpath)
        if not path.is_file():
            raise Skip(f"no {relpath} (run generate_taxation_files.py)")
        size = path.stat().st_size
        if size > settings.max_input_bytes:  # not even read: it may be huge
            raise Skip(f"{relpath}: {size:,} bytes is over the input cap of "
                       f"{settings.max_input_bytes:,} bytes (TAXDATA_MAX_INPUT_BYTES); not sent")
        text = checked_source(path.read_bytes(), settings, relpath)
        _keep_existing(data, country.slug, options.force)
        fields, content = read_raw(text)
        if not content.strip():
            raise Skip(f"{relpath}: empty (a header and no page text); not sent")
        url = fields.get("Source URL")
        keep_original(data, content)  # the updater verifies the file's figures in it
        result = formatter.from_source(country, content, f"page {url or 'of unknown origin'}")
        return _write(data, country.slug, result.body, SourceInfo(
            kind="extractor", url=url, fetched_at=fields.get("Fetched"), model=result.model,
            prompt_version=PROMPT_VERSION, generated_at=now_utc()),
            Original.of(content, "extractor", url or relpath))

    def work(slug: str) -> FileOutcome:
        country = by_slug[slug]
        return from_raw(country) if options.from_raw else from_wikipedia(country)

    return run_per_country(list(by_slug), work, settings=settings, progress=options.progress,
                           what="LLM processing", client=formatter.client)


def _plan(country: Country, options: EnhancedOptions, data: DataDir,
          wikipedia: WikipediaClient) -> str:
    """What a real run would do for ``country``, as far as it can be known without a request
    (the same skip rules; an article's current revision is known only when it is cached)."""
    cached = None
    if options.from_raw:
        if not data.path(raw_relpath(country.slug)).is_file():
            return f"SKIPPED: no {raw_relpath(country.slug)} (run generate_taxation_files.py)"
        action = f"format {data.path(raw_relpath(country.slug))}"
    elif not country.wikipedia_title:
        return "SKIPPED: no Wikipedia article in the registry (use research_and_format.py)"
    else:
        cached = None if options.refresh else wikipedia.cached(country.wikipedia_title)
        action = (f"format {cached.title!r} rev {cached.revision_id} (cached)" if cached
                  else f"fetch and format {country.wikipedia_title!r}")
    try:
        _keep_existing(data, country.slug, options.force,
                       str(cached.revision_id) if cached else None)
    except Skip as skip:
        return f"SKIPPED: {skip}"
    return action


def _process_existing(options: EnhancedOptions, settings: Settings, data: DataDir,
                      retry: RetryPolicy) -> int:
    """Reformat the extractor's saved ``taxation*`` files (``--process-existing``)."""
    service = ExtractorClient(settings.extractor_url, retry=retry)
    try:
        service.check()
        names = [n for n in service.list_txt_files() if n.startswith("taxation")]
    except ExtractorError as exc:
        raise PreflightError(str(exc)) from None
    if options.list_txt_files:
        for name in names:
            print(name)
        print(f"{len(names)} taxation files on {settings.extractor_url}")
        return 0
    registry_countries, _ = select_countries(options, settings, SCRIPT_NAME)
    wanted = {c.slug: c for c in registry_countries}
    jobs: dict[str, tuple[str, Country]] = {}
    for name in names:
        slug = re.sub(r"\.txt$", "", re.sub(r"^taxation[_-]?", "", name)).lower()
        if slug in wanted:
            jobs[slug] = (name, wanted[slug])
        elif options.countries is None:
            logger.warning("[SKIPPED] %s: no registry country %r", name, slug)
    formatter = start_formatter(settings, options.max_chars)  # a dry run checks it too
    if options.dry_run:
        for slug, (name, _) in jobs.items():
            print(f"  {slug:<24} {name}")
        return 0

    def work(slug: str) -> FileOutcome:
        name, country = jobs[slug]
        _keep_existing(data, slug, options.force)
        try:
            text = service.get_file(check_file_name(name))
        except ValueError as exc:  # a hostile name from the service: never used as a path
            raise Skip(str(exc)) from None
        text = checked_source(text, settings, f"extractor file {name}")
        keep_original(data, text)  # the updater verifies the file's figures in it
        result = formatter.from_source(country, text, f"extractor file {name}")
        url = f"{service.base_url}/files/{name}"
        return _write(data, slug, result.body, SourceInfo(
            kind="extractor", title=name, url=url, model=result.model,
            prompt_version=PROMPT_VERSION, generated_at=now_utc()),
            Original.of(text, "extractor", f"extractor file {name}"))

    return run_per_country(list(jobs), work, settings=settings, progress=options.progress,
                           what="LLM processing", client=formatter.client)

