"""generate_taxation_files: raw page text per country through a Web Content Extractor.

Sequential by design (the extractor service handles one page at a time): for each country, POST
the article URL to the extractor and write ``data/raw/<slug>.txt`` with a header naming the URL
and date. ``--extractor builtin`` does the extraction in-process instead. The enhanced generator
reads these files with ``--from-raw``.
"""

from __future__ import annotations

from taxdata.cancel import STOP, unless_stopped
from taxdata.clients.extractor import ExtractorClient, ExtractorError, extract_builtin
from taxdata.clients.http import RetryPolicy, make_session
from taxdata.clients.wikipedia import WikipediaClient
from taxdata.config import Settings
from taxdata.errors import PreflightError
from taxdata.generate.common import (
    RAW_DIR,
    FileOutcome,
    Skip,
    run_per_country,
    select_countries,
)
from taxdata.generate.options import RawOptions
from taxdata.outcome import Status
from taxdata.store.datadir import check_slug
from taxdata.store.locks import run_lock_scope
from taxdata.store.rawfile import render_raw
from taxdata.timestamps import now_utc


def raw_relpath(slug: str) -> str:
    return f"{RAW_DIR}/{check_slug(slug)}.txt"


@run_lock_scope()
def run(options: RawOptions, settings: Settings) -> int:
    """The whole run (the script's one call)."""
    countries, data = select_countries(options, settings, "generate_taxation_files.py")
    builtin = options.extractor == "builtin"
    retry = RetryPolicy.from_settings(settings)
    session = make_session(user_agent=settings.user_agent)
    service = ExtractorClient(settings.extractor_url, retry=retry, session=session)
    wikipedia = WikipediaClient(settings.wikipedia_api, settings.user_agent, cache_dir=data,
                                retry=retry, session=session) if builtin else None
    by_slug = {c.slug: c for c in countries}
    # Before any work (and in a dry run): the source answers. Without it every country would
    # wait out its retries, one at a time.
    if builtin:
        if wikipedia is not None and any(c.wikipedia_url for c in countries):
            unless_stopped(lambda: wikipedia.check(settings.connect_timeout))
    else:
        try:
            unless_stopped(service.check)
        except ExtractorError as exc:
            raise PreflightError(str(exc)) from None
    if options.dry_run and not STOP.is_set():
        for country in countries:
            exists = data.path(raw_relpath(country.slug)).exists()
            action = "skip (exists)" if exists and not options.force else "extract"
            print(f"  {country.slug:<24} {action:<14} {country.wikipedia_url or 'no article URL'}")
        return 0
    label = "built-in extraction" if builtin else settings.extractor_url

    def work(slug: str) -> FileOutcome:
        country = by_slug[slug]
        relpath = raw_relpath(slug)
        if data.path(relpath).exists() and not options.force:
            raise Skip(f"{relpath} exists (--force to fetch again)")
        url = country.wikipedia_url
        if url is None:
            raise Skip("no Wikipedia article in the registry")
        if builtin:
            content = extract_builtin(url, session=session, wikipedia=wikipedia, retry=retry)
        else:
            content = service.extract(url)
        if not content.strip():
            raise ExtractorError(f"empty content for {url}")
        path = data.write_text(relpath, render_raw(url, now_utc(), label, content))
        return FileOutcome(slug, Status.WRITTEN, path=str(path))

    return run_per_country([c.slug for c in countries], work, settings=settings,
                           progress=options.progress, what="content extraction")
