"""Adaptive concurrency: how many requests each endpoint gets at once, and which endpoint next.

The limit per endpoint follows AIMD (additive increase, multiplicative decrease), as TCP's
congestion control does. We chose it over a gradient (latency-based) limiter because an LLM
server's latency says little about its load (it grows with prompt and reply length), while its
overload signals are explicit: 503/429 or a queue-full message, and timeouts. So: on such a
signal cut the limit to ``decrease`` (0.7, as TCP CUBIC) times the requests that were in flight,
once per round (a busy answer to a request sent before the last cut was already counted); add
``increase / limit`` per success while the permits are all in use and more work waits for one
(no probing near the end of a run, when nothing would gain from it), i.e. one more permit about
every 1/increase rounds of full use, so probing for more capacity costs few busy answers.
``max_workers`` is the ceiling and the starting point, so a healthy server is never throttled.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from taxdata.cancel import STOP, Interrupted
from taxdata.clients.breaker import CLOSED, GONE, CircuitBreaker
from taxdata.errors import ServerError
from taxdata.events import LimitChanged, emit

# Feedback from one request (see EndpointPool.release).
# OK raises the limit, BUSY and TIMEOUT cut it, DOWN counts towards the breaker, FAILED (an
# answer that is an error: 500, not JSON) is only counted, NEUTRAL (e.g. a form fallback) neither.
OK, BUSY, TIMEOUT, DOWN, FAILED, NEUTRAL = "ok", "busy", "timeout", "down", "failed", "neutral"


class AllEndpointsGone(ServerError):
    """Every endpoint's breaker gave up: no server left to send to."""


@dataclass
class Member:
    """One endpoint in the pool, with its limit, breaker and counters."""

    target: Any  # what the client sends to (an Endpoint)
    name: str  # host:port, for the logs
    limit: float
    breaker: CircuitBreaker
    in_flight: int = 0
    peak_in_flight: int = 0
    requests: int = 0
    busy: int = 0
    failures: int = 0
    last_cut: float = field(default=0.0)
    # Permits known to work: the in-flight count of a success since the last cut. A request
    # that was just turned away busy only takes one of these, so a probe for more capacity
    # (a permit above them) always risks a fresh request, never the same one again.
    confirmed: int = 0

    @property
    def permits(self) -> int:
        return max(1, int(self.limit))


class EndpointPool:
    """Permits for several endpoints; thread-safe, one condition for all waits.

    ``acquire()`` blocks until some endpoint whose breaker is closed has a free permit and takes
    the one with the most free permits; ``release()`` gives it back with the request's outcome.
    """

    def __init__(self, targets: Sequence[tuple[Any, str]], ceiling: int, *,
                 probe: Callable[[Any], bool], adaptive: bool = True, increase: float = 0.2,
                 decrease: float = 0.7,
                 breaker_threshold: int = 3, breaker_wait: float = 15.0) -> None:
        self.ceiling = max(1, ceiling)
        self.adaptive = adaptive
        self.increase = increase
        self.decrease = decrease
        self.changed = threading.Condition()
        self.waiting = 0  # requests waiting for a permit: the demand for a higher limit
        self.members = [
            Member(target, name, float(self.ceiling),
                   CircuitBreaker(name, (lambda t=target: probe(t)), self.changed,
                                  threshold=breaker_threshold, wait=breaker_wait))
            for target, name in targets]

    def acquire(self, cautious: bool = False) -> Member:
        """A permit on the best endpoint; ``cautious`` (after a busy answer): a confirmed one."""
        with self.changed:
            while True:
                if STOP.is_set():
                    raise Interrupted("stopped by Ctrl-C")
                best, best_key = None, (False, 0)
                alive = False
                for member in self.members:
                    state = member.breaker.state
                    alive = alive or state != GONE
                    permits = member.permits
                    if cautious and member.confirmed:
                        permits = min(permits, member.confirmed)
                    free = permits - member.in_flight
                    # An endpoint that just failed to connect comes last, even before its breaker
                    # opens: a dead server has the most free permits, it answers so fast.
                    key = (member.breaker.consecutive == 0, free)
                    if state == CLOSED and free > 0 and (best is None or key > best_key):
                        best, best_key = member, key
                if best is not None:
                    best.in_flight += 1
                    best.requests += 1
                    best.peak_in_flight = max(best.peak_in_flight, best.in_flight)
                    return best
                if not alive:
                    raise AllEndpointsGone(", ".join(m.name for m in self.members))
                # Woken by a release or a breaker change; the timeout only re-checks STOP.
                self.waiting += 1
                try:
                    self.changed.wait(0.25)
                finally:
                    self.waiting -= 1

    def release(self, member: Member, sent_at: float, signal: str, reason: str = "") -> None:
        """Return ``member``'s permit; ``signal`` (OK, BUSY, TIMEOUT, DOWN, NEUTRAL) adapts it."""
        with self.changed:
            saturated = member.in_flight >= member.permits
            member.in_flight -= 1
            before = member.permits
            if signal == DOWN:
                member.failures += 1
                member.breaker.failure(reason)
            else:
                member.breaker.success()
                if signal == OK:
                    member.confirmed = max(member.confirmed, member.in_flight + 1)
                    # Probe for more only when all permits are in use and work is waiting.
                    if (self.adaptive and saturated and self.waiting
                            and member.limit < self.ceiling):
                        member.limit = min(float(self.ceiling),
                                           member.limit + self.increase / member.limit)
                elif signal in (BUSY, TIMEOUT):
                    if signal == BUSY:
                        member.busy += 1
                    else:
                        member.failures += 1
                    if self.adaptive and sent_at >= member.last_cut:
                        # From what was really in flight when the server said no (with a limit
                        # of 8 but 3 in flight, 8 x 0.7 would cut nothing).
                        in_use = min(member.limit, member.in_flight + 1)
                        member.limit = max(1.0, in_use * self.decrease)
                        member.last_cut = time.monotonic()
                        member.confirmed = member.permits
                elif signal == FAILED:
                    member.failures += 1
            after = member.permits
            self.changed.notify_all()
        if after != before:
            emit(LimitChanged(member.name, before, after,
                              reason if after < before else "answering"))

    def gone_names(self) -> list[str]:
        with self.changed:
            return [m.name for m in self.members if m.breaker.state == GONE]

    def summary(self) -> list[str]:
        """One line per endpoint: requests, busy answers, failures, final concurrency limit."""
        with self.changed:
            return [f"{m.name}: {m.requests} requests, {m.busy} busy, {m.failures} failures, "
                    f"concurrency limit {m.permits} of {self.ceiling}"
                    + ("" if m.breaker.state == CLOSED else f" ({m.breaker.state})")
                    for m in self.members]
