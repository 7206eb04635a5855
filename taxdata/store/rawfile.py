"""The raw page file (``data/raw/<slug>.txt``): a page's text as the Web Content Extractor gave
it, under a short header naming where it came from.

generate_taxation_files writes it; the enhanced generator (``--from-raw``) reads it; the
updater reads it again to find a taxation file's original (taxdata.evidence.originals).
"""

from __future__ import annotations

HEADER_END = "---"


def render_raw(url: str, fetched_at: str, extractor: str, content: str) -> str:
    return (f"Source URL: {url}\nFetched: {fetched_at}\nExtractor: {extractor}\n{HEADER_END}\n\n"
            f"{content.strip()}\n")


def read_raw(text: str) -> tuple[dict[str, str], str]:
    """(header fields, content) of a raw file; a file without our header is all content."""
    head, sep, body = text.partition(f"\n{HEADER_END}\n")
    if not sep:
        return {}, text
    fields = {}
    for line in head.splitlines():
        key, colon, value = line.partition(": ")
        if not colon:
            return {}, text
        fields[key.strip()] = value.strip()
    return fields, body.lstrip("\n")
