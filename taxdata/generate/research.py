"""research_and_format: the LLM writes taxation files from its own knowledge.

For countries without a usable source. Every such file is marked in its Sources section as
"model knowledge, unverified" with model and date; the updater carries that into the record's
provenance and flags the country in its report. A file with a real source (Wikipedia, the
extractor, or written by hand) is never replaced by research unless ``--force``.
"""

from __future__ import annotations

from dataclasses import replace

from taxdata.config import Settings
from taxdata.generate.common import (
    FileOutcome,
    Skip,
    read_taxation,
    run_per_country,
    select_countries,
    taxation_relpath,
)
from taxdata.generate.formatter import PROMPT_VERSION, start_formatter
from taxdata.generate.options import ResearchOptions
from taxdata.outcome import Status
from taxdata.store.locks import run_lock_scope
from taxdata.store.taxfile import SourceInfo, compose, parse_sources
from taxdata.timestamps import now_utc

# Countries the original tool had no usable source for; --countries or --missing choose others.
DEFAULT_COUNTRIES = ("france", "italy", "spain", "netherlands", "sweden", "norway", "denmark",
                     "finland", "poland", "switzerland")


@run_lock_scope()
def run(options: ResearchOptions, settings: Settings) -> int:
    """The whole run (the script's one call)."""
    if options.countries is None and not options.missing:  # a copy: the caller's stay as given
        options = replace(options, countries=",".join(DEFAULT_COUNTRIES))
    countries, data = select_countries(options, settings, "research_and_format.py")

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

    formatter = start_formatter(settings)  # a dry run checks the server too
    if options.dry_run:
        for slug in by_slug:
            print(f"  {slug:<24} {existing_reason(slug) or 'research'}")
        return 0

    def work(slug: str) -> FileOutcome:
        reason = existing_reason(slug)
        if reason:
            raise Skip(reason)
        result = formatter.from_knowledge(by_slug[slug])
        info = SourceInfo(kind="research", model=result.model, prompt_version=PROMPT_VERSION,
                          generated_at=now_utc())
        path = data.write_text(taxation_relpath(slug), compose(result.body, info))
        return FileOutcome(slug, Status.WRITTEN, path=str(path))

    return run_per_country(list(by_slug), work, settings=settings, progress=options.progress,
                           what="LLM research", client=formatter.client)
