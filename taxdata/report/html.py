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

import contextlib
import functools
import os
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


TEMPLATE_CACHE = ".cache/templates"  # in the data directory: the compiled page template


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """The compiled template, kept between runs: compiling it costs a run 50 ms, reading it back
    a few. Jinja2 checks it against the template's source (a changed template is compiled
    again); a cache that cannot be read or written is passed over, never an error."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - cut short, or not ours (unpickling fails many ways)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):  # a full or read-only disk: the next run compiles
            super().dump_bytecode(bucket)


@functools.lru_cache(maxsize=4)
def _environment(cache_dir: str | None = None) -> jinja2.Environment:
    # One per process and cache: its template cache spares a recompile per report (runs in one
    # process: the tests, a demo's steps); the bytecode cache, one per run.
    cache = None
    if cache_dir is not None:
        with contextlib.suppress(OSError):
            os.makedirs(cache_dir, exist_ok=True)
            cache = _TemplateCache(cache_dir)
    environment = jinja2.Environment(loader=jinja2.PackageLoader("taxdata.report", "templates"),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                     bytecode_cache=cache)
    environment.filters["figure"] = show_value
    return environment


def render_html(report: Mapping[str, Any], recorded: Sequence[Event],
                dataset: Mapping[str, Any] | None = None, *,
                previous: Mapping[str, Any] | None = None, sources: SourceTexts | None = None,
                title: str = "taxdata run report", cache_dir: str | None = None,
                sample: bool | None = None) -> str:
    """The whole page for one run (``recorded``: its events; ``previous``: the dataset's
    countries before it; ``sources``: the source texts the quotes are shown in; ``cache_dir``:
    where the compiled template is kept between runs; ``sample``: the dataset is SAMPLE data,
    None to look in ``dataset``) as a string."""
    return _environment(cache_dir).get_template("run_report.html.j2").render(
        title=title, report=report, review=review(report, dataset, previous, sources, sample),
        endpoint_lines=report.get("llm_endpoints") or [], **timeline_view(recorded))


def html_path(json_path: Path) -> Path:
    """``reports/update-<time>.json`` -> ``reports/update-<time>.html``."""
    return Path(json_path).with_suffix(".html")


def write_html_report(data, json_relpath: str, report: Mapping[str, Any],
                      dataset: Mapping[str, Any] | None = None, *,
                      previous: Mapping[str, Any] | None = None,
                      sources: SourceTexts | None = None, sample: bool | None = None) -> Path:
    """Write the page beside the JSON report through ``data`` (a DataDir: atomic, locked)."""
    page = render_html(report, recorded_events(), dataset, previous=previous, sources=sources,
                       cache_dir=str(data.path(TEMPLATE_CACHE)), sample=sample)
    return data.write_text(str(Path(json_relpath).with_suffix(".html")), page)
