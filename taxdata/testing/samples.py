"""The bundled SAMPLE data (``taxdata/data/samples``): fictional countries, made-up figures.

Used by the demo and by the stand-in servers when started on their own. Nothing here describes
a real tax system; every file says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"
REGISTRY_FILE = SAMPLES_DIR / "countries.json"
RESEARCH_ANSWER_FILE = SAMPLES_DIR / "research-answer.md"
WIKIPEDIA_BASE = "https://en.wikipedia.org/wiki/"


@dataclass(frozen=True)
class SampleArticle:
    """One sample "Taxation in X" article (MediaWiki parser HTML)."""

    slug: str
    title: str
    html: str

    @property
    def url(self) -> str:
        """The article URL the registry would give (what the extractor is asked for)."""
        return WIKIPEDIA_BASE + self.title.replace(" ", "_")


def sample_articles() -> list[SampleArticle]:
    """Every bundled article; the title is the registry's (``Taxation in X (SAMPLE)``)."""
    countries = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))["countries"]
    articles = []
    for slug, entry in sorted(countries.items()):
        file = SAMPLES_DIR / f"taxation_in_{slug}.html"
        if entry.get("wikipedia_title") and file.is_file():
            articles.append(SampleArticle(slug, entry["wikipedia_title"],
                                          file.read_text(encoding="utf-8")))
    return articles


def research_answer(name: str, currency: str) -> str:
    """The stand-in model's SAMPLE answer to a research request (made-up figures, labelled)."""
    return RESEARCH_ANSWER_FILE.read_text(encoding="utf-8").format(name=name, currency=currency)


def sample_text(html: str) -> str:
    """Plain text of a sample article (for the extractor stand-in's page and file answers)."""
    from taxdata.clients.htmlclean import clean_html

    return re.sub(r"\n{3,}", "\n\n", clean_html(html)).strip() + "\n"
