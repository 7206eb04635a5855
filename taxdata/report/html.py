"""The HTML run report: a self-contained page next to each JSON report (no network, no CDN).

It shows what the run did as a picture: a timeline with one lane per worker thread and one bar
per LLM request (coloured by outcome: ok, retried, invalid reply, failed; waits before a retry
drawn after the bar), a panel per endpoint (requests, failures, requests in flight over time
and, when adaptive concurrency logs ``[ADAPT]`` lines, its limit), and the per-country table.

The timeline is built from the run's log records (the documented tags ``[LLM-REQUEST]``,
``[LLM-RESPONSE]``, ``[RETRY]``, ``[ERROR]``, ``[INVALID]``, ``[ADAPT]`` with thread labels and
``record.created`` times), collected by :func:`recording` while a program runs, so it does not
depend on how the LLM client is built. The page is rendered with Jinja2 and inline SVG.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import jinja2

from taxdata.log import logger

OUTCOMES = ("ok", "retried", "invalid", "failed")
TIMELINE_WIDTH = 1000  # px of the time axis in the SVGs (the page scales them to fit)
LANE_HEIGHT = 18
CHART_HEIGHT = 60

_REQUEST = re.compile(r"^\[LLM-REQUEST\] (\S+) POST (\S+)(?: model=(\S*))?(?: - (.*))?$")
_RESPONSE = re.compile(r"^\[LLM-RESPONSE\] (\S+) HTTP (\d+) in ([\d.]+)s")
_RETRY = re.compile(r"^\[RETRY\] (\S+) (.*) in ([\d.]+)s$")
_ERROR = re.compile(r"^\[ERROR\] (\S+) (.*)$")
_INVALID = re.compile(r"^\[INVALID\] (\S+) (.*)$")
_ADAPT = re.compile(r"^\[ADAPT\] (\S+) concurrency (\d+) -> (\d+)(?: \((.*)\))?")
_TAGS = ("[LLM-REQUEST]", "[LLM-RESPONSE]", "[RETRY]", "[ERROR]", "[INVALID]", "[ADAPT]",
         "[BREAKER]")


@dataclass
class LogEvent:
    """One tagged log line and when it was emitted (``record.created``, epoch seconds)."""

    created: float
    message: str


class RunRecorder(logging.Handler):
    """Keeps the tagged log records of one run (the report's raw material)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[LogEvent] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a broken log call must not break the run
            return
        if message.startswith(_TAGS):
            self.events.append(LogEvent(record.created, message))


_current: RunRecorder | None = None


@contextlib.contextmanager
def recording() -> Iterator[RunRecorder]:
    """Collect the ``taxdata`` logger's tagged records while the block runs."""
    global _current
    recorder, previous = RunRecorder(), _current
    logger.addHandler(recorder)
    _current = recorder
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
        _current = previous


def recorded_events() -> list[LogEvent]:
    """The events recorded so far in the current :func:`recording` block (none outside one)."""
    return list(_current.events) if _current is not None else []


# -- from log lines to a timeline ------------------------------------------------------------

@dataclass
class Bar:
    """One LLM request on a worker's lane."""

    lane: str
    endpoint: str
    label: str
    start: float
    end: float | None = None
    status: int | None = None
    outcome: str = "ok"
    wait: float = 0.0  # seconds waited after this attempt before the retry
    note: str = ""
    settled: bool = False  # its outcome is final: later lines on the lane are not about it


@dataclass
class Endpoint:
    name: str
    requests: int = 0
    retries: int = 0
    limits: list[tuple[float, int]] = field(default_factory=list)  # from [ADAPT]


@dataclass
class Timeline:
    bars: list[Bar]
    endpoints: dict[str, Endpoint]
    start: float
    end: float


def _lane_key(label: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"[-.]", label))


def _take(event: LogEvent, bars: list[Bar], last: dict[str, Bar],
          endpoints: dict[str, Endpoint]) -> None:
    """Fold one log line into the bars (``last``: each lane's latest LLM request) and endpoints."""
    text, now = event.message, event.created
    if m := _REQUEST.match(text):
        parts = urlsplit(m.group(2))
        name = parts.netloc or m.group(2)
        endpoint = endpoints.setdefault(name, Endpoint(name))
        endpoint.requests += 1
        bar = Bar(m.group(1), name, m.group(4) or "", now)
        bars.append(bar)
        last[m.group(1)] = bar
    elif m := _RESPONSE.match(text):
        bar = last.get(m.group(1))
        if bar is not None and bar.end is None:
            bar.end, bar.status = now, int(m.group(2))
            if bar.status != 200:
                bar.outcome, bar.note = "failed", f"HTTP {bar.status}"
    elif m := _RETRY.match(text):
        bar = last.get(m.group(1))
        # A retry of the LLM request (open, or answered with an error); else, e.g. a
        # Wikipedia retry on the same thread, it is not this bar's.
        if bar is not None and not bar.settled and bar.status != 200:
            bar.end = bar.end or now
            bar.outcome, bar.wait, bar.note = "retried", float(m.group(3)), m.group(2)
            bar.settled = True
            endpoints[bar.endpoint].retries += 1
    elif m := _ERROR.match(text):
        bar = last.get(m.group(1))
        if bar is not None and not bar.settled:  # the request failed for good
            bar.end = bar.end or now
            bar.outcome, bar.note, bar.settled = "failed", m.group(2), True
    elif m := _INVALID.match(text):
        bar = last.get(m.group(1))
        if bar is not None and bar.status == 200 and not bar.settled:
            bar.outcome, bar.note, bar.settled = "invalid", m.group(2), True
    elif m := _ADAPT.match(text):
        endpoint = endpoints.setdefault(m.group(1), Endpoint(m.group(1)))
        if not endpoint.limits:
            endpoint.limits.append((now, int(m.group(2))))
        endpoint.limits.append((now, int(m.group(3))))


def build_timeline(events: list[LogEvent]) -> Timeline:
    """Pair the request/response/retry lines per thread into bars; collect endpoint figures."""
    bars: list[Bar] = []
    last: dict[str, Bar] = {}  # per lane: its latest LLM request
    endpoints: dict[str, Endpoint] = {}
    for event in events:
        _take(event, bars, last, endpoints)
    times = [e.created for e in events] or [0.0]
    end = max(times + [(b.end or b.start) + b.wait for b in bars])
    for bar in bars:
        if bar.end is None:  # never answered (interrupted): drawn up to the end of the run
            bar.end = end
            if bar.outcome == "ok":
                bar.outcome, bar.note = "failed", "no answer logged"
    return Timeline(bars, endpoints, min(times), end)


# -- geometry for the template ---------------------------------------------------------------

def _scale(timeline: Timeline) -> float:
    return TIMELINE_WIDTH / max(timeline.end - timeline.start, 1e-3)


def _lanes(timeline: Timeline) -> list[dict[str, Any]]:
    scale = _scale(timeline)
    names = sorted({b.lane for b in timeline.bars}, key=_lane_key)
    lanes = []
    for index, name in enumerate(names):
        shapes = []
        for bar in (b for b in timeline.bars if b.lane == name):
            x = (bar.start - timeline.start) * scale
            width = max((bar.end - bar.start) * scale, 1.0)
            seconds = bar.end - bar.start
            shapes.append({
                "x": round(x, 1), "width": round(width, 1), "outcome": bar.outcome,
                "wait_x": round(x + width, 1), "wait_width": round(bar.wait * scale, 1),
                "title": f"{name} {bar.label or 'request'} -> {bar.endpoint}: {bar.outcome}"
                         f" ({seconds:.2f}s{', ' + bar.note if bar.note else ''}"
                         f"{f', waited {bar.wait:.1f}s' if bar.wait else ''})"})
        lanes.append({"name": name, "y": index * LANE_HEIGHT, "shapes": shapes,
                      "requests": len(shapes)})
    return lanes


def _steps(points: list[tuple[float, int]], timeline: Timeline, top: int) -> str:
    """An SVG polyline (step chart) of ``points`` scaled to the chart box."""
    scale, coords = _scale(timeline), []
    value = 0
    for when, new in points:
        x = round((when - timeline.start) * scale, 1)
        coords += [(x, value), (x, new)]
        value = new
    coords.append((TIMELINE_WIDTH, value))
    height = CHART_HEIGHT - 4
    return " ".join(f"{x},{round(CHART_HEIGHT - 2 - v * height / max(top, 1), 1)}"
                    for x, v in coords)


def _endpoint_panels(timeline: Timeline) -> list[dict[str, Any]]:
    panels = []
    for endpoint in timeline.endpoints.values():
        bars = [b for b in timeline.bars if b.endpoint == endpoint.name]
        changes = sorted([(b.start, 1) for b in bars] + [(b.end, -1) for b in bars])
        in_flight, level, peak = [], 0, 0
        for when, delta in changes:
            level += delta
            peak = max(peak, level)
            in_flight.append((when, level))
        top = max([peak] + [limit for _, limit in endpoint.limits])
        seconds = [b.end - b.start for b in bars if b.status == 200]
        panels.append({
            "name": endpoint.name, "requests": endpoint.requests,
            "failures": sum(b.outcome == "failed" for b in bars), "retries": endpoint.retries,
            "invalid": sum(b.outcome == "invalid" for b in bars), "peak": peak,
            "mean_s": sum(seconds) / len(seconds) if seconds else None, "top": top,
            "in_flight": _steps(in_flight, timeline, top),
            "limit": _steps(endpoint.limits, timeline, top) if endpoint.limits else None,
            "limit_changes": len(endpoint.limits) - 1 if endpoint.limits else 0})
    return panels


def _country_rows(report: dict[str, Any], dataset: dict[str, Any] | None) -> list[dict[str, Any]]:
    entries = (dataset or {}).get("countries") or {}
    rows = []
    for slug, outcome in sorted((report.get("countries") or {}).items()):
        provenance = (entries.get(slug) or {}).get("provenance") or {}
        rows.append({
            "slug": slug, "status": outcome.get("status", ""),
            "reason": outcome.get("reason", ""),
            "changes": [c.get("path", "") for c in outcome.get("changes") or []],
            "warnings": outcome.get("warnings") or [],
            # figures not written for want of a verified quote (the evidence check)
            "unsupported": [u.get("path", "") for u in outcome.get("unsupported") or []
                            if isinstance(u, dict)],
            "source": outcome.get("source_kind") or provenance.get("source_kind") or "",
            "source_file": outcome.get("source_file") or "",
            "url": provenance.get("source_url"), "revision": provenance.get("source_revision"),
            "unverified": outcome.get("unverified", False),
            "attempts": outcome.get("attempts", 0), "latency_s": outcome.get("latency_s", 0)})
    return rows


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # One per process: its template cache spares a recompile per report (runs in one process:
    # the tests, a demo's steps).
    return jinja2.Environment(loader=jinja2.PackageLoader("taxdata.report", "templates"),
                              autoescape=True,
                              trim_blocks=True, lstrip_blocks=True)


def render_html(report: dict[str, Any], events: list[LogEvent],
                dataset: dict[str, Any] | None = None, *, title: str = "taxdata run report") -> str:
    """The whole page for one run as a string."""
    timeline = build_timeline(events)
    lanes = _lanes(timeline)
    ticks = []
    duration = timeline.end - timeline.start
    if duration > 0:
        step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600,
                                float("inf")) if duration / s <= 10)
        if step != float("inf"):
            ticks = [{"x": round(i * step * _scale(timeline), 1), "label": f"{i * step:g}s"}
                     for i in range(int(duration / step) + 1)]
    outcome_counts = {o: sum(b.outcome == o for b in timeline.bars) for o in OUTCOMES}
    return _environment().get_template("run_report.html.j2").render(
        title=title, report=report, lanes=lanes, ticks=ticks, width=TIMELINE_WIDTH,
        lane_height=LANE_HEIGHT, chart_height=CHART_HEIGHT,
        lanes_height=max(len(lanes), 1) * LANE_HEIGHT, duration=duration,
        outcome_counts=outcome_counts, endpoints=_endpoint_panels(timeline),
        rows=_country_rows(report, dataset), outcomes=OUTCOMES)


def html_path(json_path: Path) -> Path:
    """``reports/update-<time>.json`` -> ``reports/update-<time>.html``."""
    return Path(json_path).with_suffix(".html")


def write_html_report(data, json_relpath: str, report: dict[str, Any],
                      dataset: dict[str, Any] | None = None) -> Path:
    """Write the page beside the JSON report through ``data`` (a DataDir: atomic, locked)."""
    page = render_html(report, recorded_events(), dataset)
    return data.write_text(str(Path(json_relpath).with_suffix(".html")), page)
