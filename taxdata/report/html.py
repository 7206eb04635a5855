"""The HTML run report: a self-contained page next to each JSON report (no network, no CDN).

It shows what the run did as a picture: a timeline with one lane per worker thread and one bar
per LLM request (coloured by outcome: ok, retried, invalid reply, failed; waits before a retry
drawn after the bar), a panel per endpoint (requests, failures, requests in flight over time
and, when adaptive concurrency changes it, its limit), and the per-country table.

The timeline is built from the run's events (:mod:`taxdata.events`, collected by
:func:`~taxdata.events.recording` while a program runs, whatever the log level): a bar per
``RequestStarted``, ended by its ``RequestEnded``; the ``Retry``, ``GaveUp`` and
``ReplyRejected`` events that name a request by its id settle that bar's outcome; the
``LimitChanged`` events draw the limits. The page is rendered with Jinja2 and inline SVG.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

import jinja2

from taxdata import events
from taxdata.events import (
    BreakerChanged,
    Event,
    GaveUp,
    LimitChanged,
    ReplyRejected,
    RequestEnded,
    RequestStarted,
    Retry,
    recorded_events,
)

OUTCOMES = ("ok", "retried", "invalid", "failed")
# The events that span the time axis: the requests' and the servers' (not the tasks').
_ON_THE_AXIS = (RequestStarted, RequestEnded, Retry, GaveUp, ReplyRejected, LimitChanged,
                BreakerChanged)
TIMELINE_WIDTH = 1000  # px of the time axis in the SVGs (the page scales them to fit)
LANE_HEIGHT = 18
CHART_HEIGHT = 60


# -- from events to a timeline ---------------------------------------------------------------

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
    settled: bool = False  # its outcome is final: a retry, a give-up or a rejection said so


@dataclass
class Endpoint:
    name: str
    requests: int = 0
    retries: int = 0
    limits: list[tuple[float, int]] = field(default_factory=list)  # from LimitChanged


@dataclass
class Timeline:
    bars: list[Bar]
    endpoints: dict[str, Endpoint]
    start: float
    end: float


def _lane_key(label: str) -> tuple:
    """Thread-2 before Thread-10, Thread-2.1 after Thread-2."""
    return tuple(int(p) if p.isdigit() else p for p in label.replace("-", ".").split("."))


def _take(event: Event, bars: dict[int, Bar], endpoints: dict[str, Endpoint]) -> None:
    """Fold one event into the bars (by request id) and the endpoints."""
    if isinstance(event, RequestStarted):
        name = urlsplit(event.url).netloc or event.url
        endpoint = endpoints.setdefault(name, Endpoint(name))
        endpoint.requests += 1
        bars[event.request_id] = Bar(event.worker, name, event.label, event.at)
    elif isinstance(event, LimitChanged):
        endpoint = endpoints.setdefault(event.endpoint, Endpoint(event.endpoint))
        if not endpoint.limits:
            endpoint.limits.append((event.at, event.before))
        endpoint.limits.append((event.at, event.after))
    elif isinstance(event, (RequestEnded, Retry, GaveUp, ReplyRejected)):
        # About one request, named by its id (None: no LLM request's, e.g. a Wikipedia retry,
        # or a rejection with no reply to point at).
        bar = bars.get(event.request_id) if event.request_id is not None else None
        if bar is not None and not bar.settled:
            _follow(bar, event, endpoints[bar.endpoint])


def _follow(bar: Bar, event: RequestEnded | Retry | GaveUp | ReplyRejected,
            endpoint: Endpoint) -> None:
    """What became of ``bar``'s request: its answer, then a retry, a give-up or a rejection."""
    if isinstance(event, RequestEnded):
        bar.end, bar.status = event.at, event.status
        if event.answer == events.TRUNCATED:  # a reply, but half of one: not usable
            bar.outcome, bar.note = "invalid", "reply cut off at the token limit"
        elif event.answer != events.REPLY:  # failed, unless a retry follows
            bar.outcome = "failed"
            bar.note = f"HTTP {event.status}" if event.status is not None else event.reason
    elif isinstance(event, Retry):
        bar.end = bar.end or event.at
        bar.outcome, bar.wait, bar.note, bar.settled = "retried", event.delay, event.reason, True
        endpoint.retries += 1
    elif isinstance(event, GaveUp):  # the request failed for good
        bar.end = bar.end or event.at
        bar.outcome, bar.note, bar.settled = "failed", event.error + event.note, True
    elif bar.outcome == "ok":  # its reply was rejected by the caller's checks
        bar.outcome, bar.note = "invalid", f"{event.subject}: {event.detail}"
        bar.settled = True


def build_timeline(recorded: Sequence[Event]) -> Timeline:
    """One bar per LLM request, its outcome from the events naming it; endpoint figures."""
    bars: dict[int, Bar] = {}  # by request id, in the order the requests started
    endpoints: dict[str, Endpoint] = {}
    for event in recorded:
        _take(event, bars, endpoints)
    times = [e.at for e in recorded if isinstance(e, _ON_THE_AXIS)] or [0.0]
    end = max(times + [(b.end or b.start) + b.wait for b in bars.values()])
    for bar in bars.values():
        if bar.end is None:  # never answered (interrupted): drawn up to the end of the run
            bar.end = end
            if bar.outcome == "ok":
                bar.outcome, bar.note = "failed", "no answer recorded"
    return Timeline(list(bars.values()), endpoints, min(times), end)


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


def render_html(report: dict[str, Any], recorded: Sequence[Event],
                dataset: dict[str, Any] | None = None, *, title: str = "taxdata run report") -> str:
    """The whole page for one run (``recorded``: its events) as a string."""
    timeline = build_timeline(recorded)
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
