"""research_and_format: the LLM writes taxation files from its own knowledge.

For countries without a usable source. Every such file is marked in its Sources section as
"model knowledge, unverified" with model and date; the updater carries that into the record's
provenance and flags the country in its report. A file with a real source (Wikipedia, the
extractor, or written by hand) is never replaced by research unless ``--force``.

No silent fill from memory: ``--missing`` researches a country that lacks a file only when it
has no article. A country whose registry entry names a Wikipedia article is researched only once
Wikipedia says that article does not exist; when the article is there (its file is missing
because a generator run failed or has not run), or Wikipedia cannot be reached, the country is
SKIPPED with that reason, never filled from the model's memory.
"""

from __future__ import annotations

from typing import Iterable

from taxdata.cancel import STOP, unless_stopped
from taxdata.clients.http import RetryPolicy
from taxdata.clients.wikipedia import (
    ArticleNotFound,
    DisambiguationPage,
    WikipediaClient,
    WikipediaError,
)
from taxdata.config import Settings
from taxdata.countries.registry import Country
from taxdata.errors import PreflightError, first_line
from taxdata.generate.common import (
    FileOutcome,
    Skip,
    read_taxation,
    run_per_country,
    select_countries,
    taxation_relpath,
)
from taxdata.generate.formatter import PROMPT_VERSION, start_formatter
from taxdata.generate.options import RESEARCH_DEFAULT_CHOICE, ResearchOptions
from taxdata.log import logger, thread_label
from taxdata.outcome import Status
from taxdata.store.datadir import DataDir
from taxdata.store.locks import run_lock_scope
from taxdata.store.taxfile import SourceInfo, compose, parse_sources
from taxdata.timestamps import now_utc

DEFAULT_CHOICE = RESEARCH_DEFAULT_CHOICE  # what research does without --countries


def without_article(countries: Iterable[Country]) -> list[Country]:
    """The countries research is for: those the registry knows no Wikipedia article for. A
    country with an article gets its file from the article (``generate``), never from the model's
    memory, even when the article could not be fetched this time."""
    return [c for c in countries if not c.wikipedia_title]


@run_lock_scope()
def run(options: ResearchOptions, settings: Settings) -> int:
    """The whole run (the script's one call)."""
    countries, data = select_countries(options, settings, "research_and_format.py")
    if options.countries is None and not options.missing:
        countries = without_article(countries)

    if options.missing:
        countries = [c for c in countries if read_taxation(data, c.slug) is None]
    by_slug = {c.slug: c for c in countries}

    def existing_reason(slug: str) -> str | None:
        text = read_taxation(data, slug)
        if text is None or options.force:
            return None
        kind = parse_sources(text).kind
        if kind == "research":
            return "research file exists (--force to research again)"
        return f"has a {kind}-sourced file; research never replaces it (--force to do so)"

    # A dry run checks the server too. Stopped meanwhile: no task starts (formatter unused).
    formatter = unless_stopped(lambda: start_formatter(settings))
    if options.dry_run and not STOP.is_set():
        for slug, country in by_slug.items():
            reason = existing_reason(slug)
            if reason is None and options.missing and country.wikipedia_title:
                reason = (f"research only if Wikipedia says {country.wikipedia_title!r} does not "
                          "exist")
            print(f"  {slug:<24} {reason or 'research'}")
        return 0
    articles = ArticleCheck(settings, data) if options.missing else None
    if formatter and articles is not None and any(c.wikipedia_title for c in by_slug.values()):
        unless_stopped(articles.check)

    def work(slug: str) -> FileOutcome:
        reason = existing_reason(slug)
        if reason:
            raise Skip(reason)
        if articles is not None:
            articles.require_no_article(by_slug[slug])
        result = formatter.from_knowledge(by_slug[slug])
        info = SourceInfo(kind="research", model=result.model, prompt_version=PROMPT_VERSION,
                          generated_at=now_utc())
        path = data.write_text(taxation_relpath(slug), compose(result.body, info))
        return FileOutcome(slug, Status.WRITTEN, path=str(path))

    return run_per_country(list(by_slug), work, settings=settings, progress=options.progress,
                           what="LLM research", client=formatter.client)


class ArticleCheck:
    """``--missing``: is there a Wikipedia article for a country whose registry entry names one?

    One preflight request first; then one look-up per such country (from the data directory's
    Wikipedia cache when the enhanced generator fetched it before; the client keeps at most 3
    requests in flight).
    """

    def __init__(self, settings: Settings, data: DataDir) -> None:
        self.client = WikipediaClient(settings.wikipedia_api, settings.user_agent, cache_dir=data,
                                      retry=RetryPolicy.from_settings(settings))
        self.connect_timeout = settings.connect_timeout
        self.unreachable: str | None = None  # why Wikipedia could not be asked, if it could not

    def check(self) -> None:
        try:
            self.client.check(self.connect_timeout)
        except PreflightError as exc:
            self.unreachable = first_line(exc)
            logger.warning("[RESEARCH] %s %s: countries with a Wikipedia article in the registry "
                           "are not researched", thread_label(), self.unreachable)

    def require_no_article(self, country: Country) -> None:
        """Return when research may fill ``country``; :class:`Skip` (with why) when it may not."""
        title = country.wikipedia_title
        if not title:
            logger.info("[RESEARCH] %s %s: no Wikipedia article in the registry", thread_label(),
                        country.slug)
            return
        if self.unreachable is not None:
            raise Skip(f"the registry names Wikipedia's {title!r}, and Wikipedia is unreachable: "
                       "not filled from model memory (run generate_enhanced_taxation_files.py "
                       "when it is reachable)")
        try:
            article = self.client.fetch(title)
        except (ArticleNotFound, DisambiguationPage) as exc:
            logger.info("[RESEARCH] %s %s: %s: researching", thread_label(), country.slug, exc)
            return
        except WikipediaError as exc:
            raise Skip(f"could not confirm that Wikipedia has no {title!r} ({first_line(exc)}): "
                       "not filled from model memory") from None
        raise Skip(f"Wikipedia has {article.title!r} (rev {article.revision_id}): run "
                   "generate_enhanced_taxation_files.py; research is only for countries without "
                   "an article")
