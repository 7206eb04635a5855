"""The standard taxation file: one markdown file per country, ending in a Sources section.

The generators write the file; the updater reads it. The Sources section is written by code,
never by the model, so the updater can trust it for provenance: where the facts came from
(Wikipedia revision, extractor URL, or "model knowledge, unverified"), which model wrote the
file and with which prompt version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

SOURCES_HEADING = "## Sources"
UNVERIFIED = "model knowledge, unverified"
# Where a taxation file's text came from (its "## Sources" kind); records add "imported".
FileSourceKind = Literal["wikipedia", "extractor", "research", "manual"]
SOURCE_KINDS: tuple[str, ...] = get_args(FileSourceKind)
# Source characters per LLM request (~6k tokens), leaving room for the answer; longer sources
# are split on section boundaries (request_parts).
DEFAULT_MAX_CHARS = 24_000

# The section headings the model is asked to produce, in order (prompts refer to this list).
SECTIONS = (
    "Overview",
    "Personal Income Tax",
    "VAT / GST",
    "Social Security and Payroll Taxes",
    "Additional Information",
)

# The shape the model is asked to fill in; the code adds the Sources section afterwards.
FORMAT_TEMPLATE = """\
# Taxation in {name}

## Overview
Two to four sentences on the tax system.

## Personal Income Tax
- System: progressive | flat | no personal income tax
- Currency: the currency of all amounts
- Period: annual (say so explicitly; if the source gives another period, name it)
- Brackets:

| Taxable income from | Taxable income to | Rate (%) |
|---|---|---|
| 0 | ... | ... |

- Allowances and deductions: ...

## VAT / GST
- Standard rate: ...
- Reduced rates: ...
- Exemptions: ...

## Social Security and Payroll Taxes
- Employee rate: ...
- Employer rate: ...
- Ceilings: ...

## Additional Information
- Tax year: ...
- Notes: ...
"""


# Headings models write for the standard sections, normalised as by _heading_key (lowercase,
# "and" for "&", no "/"-spacing, no numbering or emphasis). Only clear equivalents belong here.
_SECTION_ALIASES = {
    "overview": "Overview",
    "tax overview": "Overview",
    "personal income tax": "Personal Income Tax",
    "personal income taxes": "Personal Income Tax",
    "individual income tax": "Personal Income Tax",
    "vat/gst": "VAT / GST",
    "gst/vat": "VAT / GST",
    "vat": "VAT / GST",
    "gst": "VAT / GST",
    "vat or gst": "VAT / GST",
    "value added tax": "VAT / GST",
    "value added tax/gst": "VAT / GST",
    "value added tax/goods and services tax": "VAT / GST",
    "goods and services tax": "VAT / GST",
    "social security and payroll taxes": "Social Security and Payroll Taxes",
    "social security and payroll tax": "Social Security and Payroll Taxes",
    "social security/payroll taxes": "Social Security and Payroll Taxes",
    "social security contributions and payroll taxes": "Social Security and Payroll Taxes",
    "additional information": "Additional Information",
    "additional info": "Additional Information",
}
_ANY_HEADING = re.compile(r"^(#{1,6})[ \t]*(.*?)[ \t]*#*[ \t]*$")
# "1.", "1)", "(1)", "2.3", "1 -", "IV.", "a)" before the words of a heading.
_NUMBERING = re.compile(r"^(?:\(?\d+(?:\.\d+)*[.):]?|\(?[ivx]+[.):]|\(?[a-e][.):])"
                        r"\s*[-\u2013:]?\s+", re.IGNORECASE)


def _heading_key(title: str) -> str:
    key = re.sub(r"[*_`]+", "", title).strip()
    key = _NUMBERING.sub("", key)
    key = key.lower().replace("&", " and ").replace("-", " ").rstrip(":. ")
    key = re.sub(r"\s*/\s*", "/", key)
    return re.sub(r"\s+", " ", key).strip()


def standard_section(title: str) -> str | None:
    """The standard section a heading's text clearly means, or None."""
    key = _heading_key(title)
    if key in _SECTION_ALIASES:
        return _SECTION_ALIASES[key]
    bare = re.sub(r"\s*\([^)]*\)\s*", " ", key).strip()  # "value added tax (vat)"
    return _SECTION_ALIASES.get(re.sub(r"\s+", " ", bare))


def normalize_headings(text: str) -> str:
    """Write the headings that clearly name a standard section as ``## <standard name>``.

    Models drift: ``### 1. Personal Income Tax``, ``## VAT/GST``, ``## Value Added Tax (VAT)``.
    Only the first heading for each section is rewritten (a later one is a sub-heading), and
    anything unclear is left for :func:`missing_sections` to report.
    """
    seen: set[str] = set()
    lines = text.split("\n")
    for i, line in enumerate(lines):
        match = _ANY_HEADING.match(line)
        if not match:
            continue
        name = standard_section(match.group(2))
        if name is not None and name not in seen:
            seen.add(name)
            lines[i] = f"## {name}"
    return "\n".join(lines)


def missing_sections(text: str) -> list[str]:
    """The standard sections (``## <name>``) that ``text`` lacks."""
    present = {m.group(1).strip().lower()
               for m in re.finditer(r"^##\s+(.+?)\s*$", text, flags=re.MULTILINE)}
    return [name for name in SECTIONS if name.lower() not in present]


_FIELDS = {  # label in the file -> attribute
    "Source": "kind",
    "Title": "title",
    "URL": "url",
    "Revision": "revision",
    "Revision chosen": "revision_policy",  # why this revision (taxdata.clients.revisions)
    "Fetched": "fetched_at",
    "Model": "model",
    "Prompt version": "prompt_version",
    "Generated": "generated_at",
    # The original the model rewrote (its text's SHA-256), and what of the rewrite the code
    # did not find in it (taxdata.evidence.grounding.unstated_figures).
    "Original SHA-256": "original_sha256",
    "Not in the original": "unstated",
}
_LINE = re.compile(r"^- ([A-Za-z0-9 -]+): (.*)$")


@dataclass(frozen=True)
class SourceInfo:
    """What a taxation file says about its own origin."""

    kind: str = "manual"  # wikipedia | extractor | research | manual
    title: str | None = None
    url: str | None = None
    revision: str | None = None
    fetched_at: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    generated_at: str | None = None
    original_sha256: str | None = None
    unstated: str | None = None  # "2 figures: 25% (VAT / GST), 1000 (Personal Income Tax)"
    revision_policy: str | None = None  # "the newest that has stood 24 h, saved ..."

    @property
    def unverified(self) -> bool:
        return self.kind == "research"


def render_sources(info: SourceInfo) -> str:
    """The Sources section for ``info`` (starts with the heading, ends with a newline)."""
    lines = [SOURCES_HEADING, ""]
    kind = f"research ({UNVERIFIED})" if info.kind == "research" else info.kind
    lines.append(f"- Source: {kind}")
    for label, attr in list(_FIELDS.items())[1:]:
        value = getattr(info, attr)
        if value not in (None, ""):
            lines.append(f"- {label}: {' '.join(str(value).split())}")
    if info.unverified:
        lines += ["", f"> WARNING: written from {UNVERIFIED}. No source document was given to "
                      "the model; check every figure against an official source before use."]
    if info.unstated:
        lines += ["", f"> WARNING: the original does not state {info.unstated}. The model's "
                      "rewrite introduced them: the updater will not write them as verified."]
    return "\n".join(lines) + "\n"


def compose(body: str, info: SourceInfo) -> str:
    """A whole file: the model's body (any Sources section it wrote dropped) + our Sources."""
    return strip_sources(body).rstrip() + "\n\n" + render_sources(info)


def strip_sources(text: str) -> str:
    """``text`` without its Sources section (the model must not write provenance)."""
    match = re.search(r"^##\s+Sources\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    if not match:
        return text
    rest = text[match.end():]
    following = re.search(r"^#{1,2}\s+\S", rest, flags=re.MULTILINE)
    tail = rest[following.start():] if following else ""
    return text[: match.start()].rstrip() + ("\n\n" + tail if tail else "\n")


def parse_sources(text: str) -> SourceInfo:
    """Read the Sources section; a file without one is ``manual`` (written by hand)."""
    match = re.search(r"^##\s+Sources\s*$", text, flags=re.MULTILINE | re.IGNORECASE)
    if not match:
        return SourceInfo()
    values: dict[str, str] = {}
    for line in text[match.end():].splitlines():
        if re.match(r"^#{1,2}\s+\S", line):
            break
        found = _LINE.match(line.strip())
        if found and found.group(1) in _FIELDS:
            values[_FIELDS[found.group(1)]] = found.group(2).strip()
    kind = values.get("kind", "manual").split(" ", 1)[0].lower()
    values["kind"] = kind if kind in SOURCE_KINDS else "manual"
    return SourceInfo(**values)


def source_problem(raw: bytes, max_bytes: int) -> str | None:
    """Why ``raw`` must not be sent to the model (too big, not text, empty), or None if usable."""
    if len(raw) > max_bytes:
        return (f"{len(raw):,} bytes is over the input cap of {max_bytes:,} bytes "
                "(TAXDATA_MAX_INPUT_BYTES)")
    if b"\x00" in raw:
        return "not text (contains NUL bytes: a binary file?)"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
    if not strip_sources(text).strip():
        return "empty (no text besides any Sources section)"
    return None


def taxation_path(directory: Path, slug: str) -> Path | None:
    """The country's taxation file: ``<slug>.md``, or the legacy ``taxation_<slug>.txt``."""
    for name in (f"{slug}.md", f"taxation_{slug}.txt"):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


# -- splitting -----------------------------------------------------------------------------

_SECTION_START = re.compile(r"^## ", re.MULTILINE)
_PARAGRAPH_END = re.compile(r"\n{2,}")


def request_parts(text: str, max_chars: int) -> list[str]:
    """The parts of a taxation file sent to the model, one request each: its body without the
    "## Sources" section (provenance is ours, not a fact for the model), split to ``max_chars``."""
    body = strip_sources(text)
    return split_sections(body, max_chars) or [body]


def split_sections(text: str, max_chars: int) -> list[str]:
    """Cut markdown-like text into parts of at most ``max_chars``, preferring ``## `` boundaries.

    Whole sections are packed together while they fit. A section longer than ``max_chars`` gets
    parts of its own, cut between paragraphs (a table or list is one paragraph, so it stays whole
    when it can); only a single paragraph longer than the limit is cut, between lines, and a
    single line longer than the limit is left whole. ``"".join(parts) == text``: nothing is lost.
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    starts = [m.start() for m in _SECTION_START.finditer(text)]
    bounds = sorted({0, *starts, len(text)})
    sections = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    parts: list[str] = []
    current = ""
    for section in sections:
        if len(section) > max_chars:
            if current:
                parts.append(current)
                current = ""
            parts.extend(_pack(_pieces(section, max_chars), max_chars))
        elif len(current) + len(section) > max_chars:
            parts.append(current)
            current = section
        else:
            current += section
    if current:
        parts.append(current)
    return parts


def _pieces(section: str, max_chars: int) -> list[str]:
    """The section cut after each blank line; paragraphs still too long are cut into lines."""
    cuts = [m.end() for m in _PARAGRAPH_END.finditer(section)]
    bounds = sorted({0, *cuts, len(section)})
    pieces: list[str] = []
    for a, b in zip(bounds, bounds[1:]):
        paragraph = section[a:b]
        if len(paragraph) > max_chars:
            pieces.extend(paragraph.splitlines(keepends=True))
        else:
            pieces.append(paragraph)
    return pieces


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + len(piece) > max_chars:
            parts.append(current)
            current = ""
        current += piece
    if current:
        parts.append(current)
    return parts
