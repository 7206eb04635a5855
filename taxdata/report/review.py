"""The review half of the run report: what the run wrote, per country, and why.

From a run's JSON report, the dataset after it, the dataset before it and the source texts:
per country the written figures (old -> new), each with its quote highlighted inside its source
passage (:mod:`taxdata.report.passages`; the record's grounding offsets when it has them, else
the quote found in its source); the figures not written (UNSUPPORTED, with the model's quote and
why) and the disputes with a reference; for a failed country, the model's raw replies. The
header's totals come from the report itself (the updater writes there what its summary prints),
so the page and the summary cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from taxdata.report.passages import Passage, passage

# Statuses shown in full, in this order; the others (nothing written) are collapsed lists.
SHOWN = ("FAILED", "MODIFIED", "ADDED", "REMOVED")
COLLAPSED = ("UNCHANGED", "SKIPPED")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")

# (slug, the source a grounded figure names, or None for the country's taxation file) -> text
SourceTexts = Callable[[str, Mapping[str, Any] | None], "str | None"]


@dataclass
class Figure:
    """One written figure: its value before and after the run, and why it is what it is."""

    path: str
    new: Any
    old: Any = None
    changed: bool = False
    quote: str | None = None
    passage: Passage | None = None
    note: str = ""  # why there is no quote or passage


@dataclass
class CountryView:
    slug: str
    name: str
    status: str
    reason: str = ""
    figures: list[Figure] = field(default_factory=list)
    other_changes: list[str] = field(default_factory=list)  # changed paths that are not figures
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    disputes: list[str] = field(default_factory=list)
    crosscheck: str | None = None  # CORROBORATED, DISPUTED, NO REFERENCE
    warnings: list[str] = field(default_factory=list)
    replies: list[dict[str, Any]] = field(default_factory=list)
    unverified: bool = False
    source_kind: str = ""
    source_file: str = ""
    url: str | None = None
    url_is_local: bool = False  # a stand-in's URL on this machine: not a link worth following
    revision: str | None = None
    attempts: int = 0
    seconds: float = 0.0

    @property
    def needs_a_look(self) -> list[str]:
        """Why a reviewer should open this country first (empty: nothing stands out)."""
        why = [self.status] if self.status == "FAILED" else []
        if self.crosscheck == "DISPUTED":
            why.append("disputed")
        if any(not u.get("withheld") for u in self.unsupported):
            why.append("unsupported")
        if self.unverified and self.status in ("ADDED", "MODIFIED"):
            why.append("unverified")
        if self.warnings and not why:
            why.append("warnings")
        return why


def written_figures(record: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """The record's tax figures as (path, value), in the order a reader goes through them."""
    if not record:
        return []
    out: list[tuple[str, Any]] = []
    if record.get("system") is not None:
        out.append(("system", record["system"]))
    for i, bracket in enumerate(record.get("brackets") or []):
        for key in ("min", "max", "rate"):
            out.append((f"brackets[{i}].{key}", (bracket or {}).get(key)))
    vat = record.get("vat") or {}
    if vat.get("standard") is not None:
        out.append(("vat.standard", vat["standard"]))
    for i, rate in enumerate(vat.get("reduced") or []):
        out.append((f"vat.reduced[{i}]", rate))
    social = record.get("socialSecurity") or {}
    for key in ("employeeRate", "employerRate"):
        if social.get(key) is not None:
            out.append((f"socialSecurity.{key}", social[key]))
    return out


def _value_at(record: Mapping[str, Any] | None, path: str) -> Any:
    values = dict(written_figures(record))
    return values.get(path)


def _figure(path: str, new: Any, old: Any, status: str, quotes: Mapping[str, str],
            grounding: Mapping[str, Any], original: Mapping[str, Any] | None,
            text_for: Callable[[Mapping[str, Any] | None], str | None],
            unverified: bool) -> Figure:
    figure = Figure(path, new, old, changed=status == "MODIFIED" and old != new)
    ground = grounding.get(path) if isinstance(grounding.get(path), Mapping) else None
    figure.quote = (ground or {}).get("quote") or quotes.get(path)
    if figure.quote is None:
        figure.note = ("model knowledge: no source to quote (UNVERIFIED)" if unverified
                       else "no upper bound: the top bracket" if path.endswith(".max")
                       and new is None
                       else "needs no quote (follows the bracket before)"
                       if path.endswith(".min") else "no quote recorded")
        return figure
    # A grounded figure is shown in the original its offsets point into (the article revision,
    # the page); the others in the taxation file.
    source = original if ground is not None and isinstance(original, Mapping) else None
    figure.passage = passage(text_for(source), figure.quote, (ground or {}).get("start"),
                             (ground or {}).get("end"))
    if figure.passage is None and source is not None:  # the original is not here: the file
        figure.passage = passage(text_for(None), figure.quote)
    if figure.passage is None:
        figure.note = "quote not located in the source text available here"
    return figure


def _is_local(url: str | None) -> bool:
    return bool(url) and (urlsplit(url).hostname or "") in _LOOPBACK


def country_view(slug: str, entry: Mapping[str, Any], new: Mapping[str, Any] | None,
                 old: Mapping[str, Any] | None, sources: SourceTexts | None) -> CountryView:
    """One country's part of the page. ``new``/``old``: its dataset entries (record and
    provenance) after and before the run."""
    provenance = (new or {}).get("provenance") or {}
    record = (new or {}).get("record") if entry.get("status") in ("ADDED", "MODIFIED") else None
    old_record = (old or {}).get("record")
    crosscheck = entry.get("crosscheck") or {}
    url = provenance.get("source_url")
    view = CountryView(
        slug, ((new or old or {}).get("record") or {}).get("name") or slug,
        entry.get("status", ""), entry.get("reason", ""),
        unsupported=[u for u in entry.get("unsupported") or [] if isinstance(u, Mapping)],
        disputes=[c.get("text", "") for c in crosscheck.get("comparisons") or []
                  if c.get("verdict") == "disputed"],
        crosscheck=crosscheck.get("classification"), warnings=list(entry.get("warnings") or []),
        replies=list(entry.get("replies") or []) if entry.get("status") == "FAILED" else [],
        unverified=bool(entry.get("unverified")), source_kind=entry.get("source_kind") or
        provenance.get("source_kind") or "", source_file=entry.get("source_file") or "",
        url=url, url_is_local=_is_local(url), revision=provenance.get("source_revision"),
        attempts=entry.get("attempts") or 0, seconds=entry.get("latency_s") or 0.0)
    quotes = {**(provenance.get("evidence") or {}), **(entry.get("evidence") or {})}
    grounding = provenance.get("grounding") if isinstance(provenance.get("grounding"),
                                                         Mapping) else {}
    original = provenance.get("original") if isinstance(provenance.get("original"),
                                                       Mapping) else None
    texts: dict[Any, str | None] = {}

    def text_for(source: Mapping[str, Any] | None) -> str | None:
        key = tuple(sorted(source.items())) if source else None
        if key not in texts:  # one read per source, however many figures quote it
            texts[key] = sources(slug, source) if sources else None
        return texts[key]

    for path, value in written_figures(record):
        view.figures.append(_figure(path, value, _value_at(old_record, path), view.status,
                                    quotes, grounding, original, text_for, view.unverified))
    figure_paths = {f.path for f in view.figures}
    view.other_changes = [c.get("path", "") for c in entry.get("changes") or []
                          if c.get("path") not in figure_paths]
    return view


def fallback_totals(countries: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Totals for a report that has none of its own (written before the review page)."""
    unsupported = [u for e in countries.values() for u in e.get("unsupported") or []
                   if isinstance(u, Mapping)]
    return {"unsupported": sum(not u.get("withheld") for u in unsupported),
            "withheld": sum(bool(u.get("withheld")) for u in unsupported),
            "unsupported_countries": sum(bool(e.get("unsupported")) for e in countries.values()),
            "unverified": sum(bool(e.get("unverified")) and e.get("status") in ("ADDED",
                              "MODIFIED", "UNCHANGED") for e in countries.values()),
            "disputed": sum((e.get("crosscheck") or {}).get("classification") == "DISPUTED"
                            for e in countries.values())}


SAMPLE_MARK = "(SAMPLE)"  # in every demo and bundled-sample country's name


def holds_sample(countries: Mapping[str, Any]) -> bool:
    """Some country of a dataset's ``countries`` is SAMPLE data (by its record's name)."""
    for entry in countries.values():
        record = entry.get("record") if isinstance(entry, dict) else None
        name = record.get("name") if isinstance(record, dict) else None
        if isinstance(name, str) and SAMPLE_MARK in name:
            return True
    return False


def review(report: Mapping[str, Any], dataset: Mapping[str, Any] | None,
           previous: Mapping[str, Any] | None, sources: SourceTexts | None,
           sample: bool | None = None) -> dict[str, Any]:
    """What the template shows of the countries: the sections in full, the collapsed lists,
    what needs a look first, the totals and whether this is SAMPLE data (``sample``: whether
    the dataset is, None to look in ``dataset``)."""
    after = (dataset or {}).get("countries") or {}
    before = previous or {}
    entries = report.get("countries") or {}
    views = [country_view(slug, entry, after.get(slug), before.get(slug), sources)
             for slug, entry in sorted(entries.items())]
    shown = [v for status in SHOWN for v in views if v.status == status]
    shown += [v for v in views if v.status not in SHOWN + COLLAPSED]
    collapsed = {status: [v for v in views if v.status == status] for status in COLLAPSED}
    if sample is None:
        sample = holds_sample(after)
    sample = sample or "DEMO" in str(report.get("model") or "").upper()
    unchanged = report.get("unchanged") if isinstance(report.get("unchanged"), Mapping) else {}
    return {"shown": shown, "collapsed": {k: v for k, v in collapsed.items() if v},
            # Up-to-date countries the report lists by name only (a line, not a row each).
            "unchanged": list(unchanged.get("countries") or []),
            "unchanged_reason": unchanged.get("reason") or "up to date",
            "quarantined": [q for q in report.get("quarantined") or [] if isinstance(q, Mapping)],
            "attention": [v for v in views if v.needs_a_look],
            "totals": report.get("totals") or fallback_totals(entries),
            "statuses": [s for s in (*SHOWN, *COLLAPSED) if any(v.status == s for v in views)
                         or (s == "UNCHANGED" and unchanged.get("countries"))],
            "sample": sample}
