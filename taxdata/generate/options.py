"""The typed options of the three file generators (what their flags say, for Python callers too).

``enhanced.run(EnhancedOptions(countries="germany", from_raw=True), settings)`` does what
``generate_enhanced_taxation_files.py --countries germany --from-raw`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from taxdata.options import RunOptions, check_max_chars
from taxdata.store.taxfile import DEFAULT_MAX_CHARS

# What research does without --countries: the countries it is for (see research.without_article).
RESEARCH_DEFAULT_CHOICE = "the registry's countries with no Wikipedia article"


@dataclass(frozen=True, kw_only=True)
class EnhancedOptions(RunOptions):
    """generate_enhanced_taxation_files: Wikipedia (or raw text, or the extractor's files) ->
    taxation files."""

    refresh: bool = False  # fetch articles again instead of using the cache
    # The article's latest revision, not the newest that has stood TAXDATA_WIKIPEDIA_MIN_AGE.
    latest_revision: bool = False
    from_raw: bool = False  # data/raw/<slug>.txt as the source
    process_existing: bool = False  # reformat the extractor service's saved taxation* files
    list_txt_files: bool = False  # list the extractor service's taxation* files and stop
    max_chars: int = DEFAULT_MAX_CHARS  # source characters per request

    def __post_init__(self) -> None:
        check_max_chars(self.max_chars)  # else every country would fail, one by one


@dataclass(frozen=True, kw_only=True)
class RawOptions(RunOptions):
    """generate_taxation_files: raw page text per country."""

    extractor: Literal["service", "builtin"] = "service"


@dataclass(frozen=True, kw_only=True)
class ResearchOptions(RunOptions):
    """research_and_format: taxation files from the model's own knowledge."""

    missing: bool = False  # every registry country that has no taxation file
