"""The HTML run report: a self-contained review page next to each JSON report (no network, no CDN).

One page per updater run, for the person who checks it:

- a header with the run's totals: wall time, countries per status, UNVERIFIED, DISPUTED and
  UNSUPPORTED figures (the numbers the summary printed), and a DEMO/SAMPLE banner on SAMPLE data;
- per country (:mod:`taxdata.report.review`) the written figures with old -> new, each quote
  highlighted inside its source passage, the figures not written and why, the disputes, and for a
  failed country the model's raw replies; UNCHANGED and SKIPPED countries collapsed; a small
  inline script filters by status (without it, everything shows);
- the requests as a picture (:mod:`taxdata.report.timeline`): one lane per worker thread, one
  bar per LLM request coloured by its real outcome, and a panel per endpoint.

Rendered with Jinja2 (autoescaped) and inline SVG.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2

from taxdata.events import Event, recorded_events
from taxdata.report.review import SourceTexts, review
from taxdata.report.timeline import build_timeline, timeline_view

__all__ = ["build_timeline", "html_path", "render_html", "write_html_report"]


def show_value(value: Any) -> str:
    """A figure as the page shows it: 19 not 19.0, no bound as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}" if abs(value) >= 10000 else str(int(value))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # One per process: its template cache spares a recompile per report (runs in one process:
    # the tests, a demo's steps).
    environment = jinja2.Environment(loader=jinja2.PackageLoader("taxdata.report", "templates"),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters["figure"] = show_value
    return environment


def render_html(report: Mapping[str, Any], recorded: Sequence[Event],
                dataset: Mapping[str, Any] | None = None, *,
                previous: Mapping[str, Any] | None = None, sources: SourceTexts | None = None,
                title: str = "taxdata run report") -> str:
    """The whole page for one run (``recorded``: its events; ``previous``: the dataset's
    countries before it; ``sources``: the source texts the quotes are shown in) as a string."""
    return _environment().get_template("run_report.html.j2").render(
        title=title, report=report, review=review(report, dataset, previous, sources),
        endpoint_lines=report.get("llm_endpoints") or [], **timeline_view(recorded))


def html_path(json_path: Path) -> Path:
    """``reports/update-<time>.json`` -> ``reports/update-<time>.html``."""
    return Path(json_path).with_suffix(".html")


def write_html_report(data, json_relpath: str, report: Mapping[str, Any],
                      dataset: Mapping[str, Any] | None = None, *,
                      previous: Mapping[str, Any] | None = None,
                      sources: SourceTexts | None = None) -> Path:
    """Write the page beside the JSON report through ``data`` (a DataDir: atomic, locked)."""
    page = render_html(report, recorded_events(), dataset, previous=previous, sources=sources)
    return data.write_text(str(Path(json_relpath).with_suffix(".html")), page)
