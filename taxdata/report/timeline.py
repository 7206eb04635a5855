"""The run's LLM requests as a picture: one bar per request on its worker thread's lane, and a
panel per endpoint (requests in flight over time, the adaptive concurrency limit).

Built from the run's events (:mod:`taxdata.events`, collected by
:func:`~taxdata.events.recording` while a program runs, whatever the log level): a bar per
``RequestStarted``, ended by its ``RequestEnded``; the ``Retry``, ``GaveUp`` and
``ReplyRejected`` events that name a request by its id settle that bar's outcome (a reply the
caller rejected is "invalid", never "ok"); the ``LimitChanged`` events draw the limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence
from urllib.parse import urlsplit

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


def ticks(timeline: Timeline) -> list[dict[str, Any]]:
    """Time-axis labels: at most about ten, at round steps."""
    duration = timeline.end - timeline.start
    if duration <= 0:
        return []
    step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600,
                            float("inf")) if duration / s <= 10)
    if step == float("inf"):
        return []
    return [{"x": round(i * step * _scale(timeline), 1), "label": f"{i * step:g}s"}
            for i in range(int(duration / step) + 1)]


def timeline_view(recorded: Sequence[Event]) -> dict[str, Any]:
    """What the template draws of the requests: lanes, ticks, endpoint panels, outcome counts."""
    timeline = build_timeline(recorded)
    lanes = _lanes(timeline)
    return {"lanes": lanes, "ticks": ticks(timeline), "width": TIMELINE_WIDTH,
            "lane_height": LANE_HEIGHT, "chart_height": CHART_HEIGHT,
            "lanes_height": max(len(lanes), 1) * LANE_HEIGHT,
            "duration": timeline.end - timeline.start,
            "outcome_counts": {o: sum(b.outcome == o for b in timeline.bars) for o in OUTCOMES},
            "endpoints": _endpoint_panels(timeline), "outcomes": OUTCOMES}
