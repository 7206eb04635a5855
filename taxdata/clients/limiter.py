"""Adaptive concurrency: how many requests each endpoint gets at once, and which endpoint next.

**The limit per endpoint** follows AIMD (additive increase, multiplicative decrease), as TCP's
congestion control does, on the explicit overload signals (503/429 or a queue-full message, and
timeouts): cut the limit to ``decrease`` (0.7, as TCP CUBIC) times the requests that were in
flight, once per round (a busy answer to a request sent before the last cut was already counted);
add ``increase / limit`` per success while the permits are all in use and more work waits for one
(no probing near the end of a run, when nothing would gain from it). Each cut halves the step
(down to ``MIN_INCREASE``), so a server whose capacity is what it is gets probed ever more
rarely: every probe above it is a busy answer, and the request it risked waits out the floor
(late in a run, that wait is the run's tail). A probe that works (a request sent with more in
flight than had succeeded since the last cut) doubles the step again, up to ``increase``: a
server that has room again gets it back quickly. ``max_workers`` is the
ceiling and the starting point, so a healthy server is never throttled.

**Capacity learned from the server.** A server that queues instead of refusing (llama.cpp with
one slot, Ollama with ``OLLAMA_NUM_PARALLEL=1``) sends no overload signal: it shows in the time to
the first token. A request whose first token came only after another of our streams to that
endpoint had ended, and much later than the fastest first token seen there (normalised by the
prompt's size, like TCP Vegas's base RTT), waited in the server's queue: the limit drops to the
number of our streams producing tokens at that moment (the parallelism the server really has),
and the next probe above it comes more slowly (the increase halves each time). A stream the
server ended early to serve another request (llama-cpp-python's ``interrupt_requests``) says the
same. Where the server states its slots (llama.cpp's ``/props``, ``/slots``), they are the
ceiling from the start.

**Routing** over several endpoints is *least expected work*: a request goes to the endpoint
with the smallest ``(in flight + 1) x recent seconds per request / concurrency limit`` (an EWMA
of its successful requests; an endpoint not yet measured counts as 0, so each is tried), the
cost a new request would wait there, in the spirit of Finagle's Peak-EWMA balancer. When the
cheapest endpoint has no free permit, the request waits for one rather than going to a server
where it is expected to take longer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from taxdata.cancel import STOP, Interrupted, stopped
from taxdata.clients.breaker import CLOSED, GONE, CircuitBreaker
from taxdata.errors import ServerError
from taxdata.events import LimitChanged, emit

# Feedback from one request (see EndpointPool.release).
# OK raises the limit, BUSY and TIMEOUT cut it, DOWN counts towards the breaker, FAILED (an
# answer that is an error: 500, not JSON) is only counted, NEUTRAL (e.g. a form fallback) neither;
# PREEMPTED (the server ended our stream to serve another) drops it to the streams it serves.
OK, BUSY, TIMEOUT, DOWN, FAILED, NEUTRAL = "ok", "busy", "timeout", "down", "failed", "neutral"
PREEMPTED = "preempted"
# BROKE: a reply that broke off mid-stream: a failure, but the server had answered, so it says
# nothing to the breaker either way (neither down nor proven healthy).
BROKE = "broke"

EWMA_WEIGHT = 0.3  # the share of the newest request in an endpoint's seconds per request
QUEUED_FACTOR = 3.0  # a first token this many times later than expected: it was queued
QUEUED_GRACE = 0.25  # ... and at least this many seconds later (less is noise)
MIN_INCREASE = 0.025


class AllEndpointsGone(ServerError):
    """Every endpoint's breaker gave up: no server left to send to."""


@dataclass
class Ticket:
    """One request in flight on a member, from its sending to its release."""

    sent_at: float
    ends_at_send: int  # the member's ended streams when it was sent
    prompt_chars: int
    probe: bool = False  # sent with more in flight than the permits known to work
    active: bool = False  # producing tokens


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
    increase: float = 0.2  # the additive step; halved each time queueing is seen
    slots: int | None = None  # what the server says it serves at once (a hard ceiling)
    active: int = 0  # our streams producing tokens now
    ended: int = 0  # our requests to it that have ended
    queued: int = 0  # requests seen waiting in its queue
    seconds: float | None = None  # EWMA of its successful requests' seconds
    # The fastest first token of a request served at once: (seconds, its prompt's characters).
    first_token: tuple[float, int] | None = None

    @property
    def permits(self) -> int:
        return max(1, int(self.limit))

    def cost(self) -> float:
        """The expected wait of one more request here (see the module docstring)."""
        return (self.seconds or 0.0) * (self.in_flight + 1) / self.permits


class EndpointPool:
    """Permits for several endpoints; thread-safe, one condition for all waits.

    ``acquire()`` blocks until some endpoint whose breaker is closed has a free permit and takes
    the one a request is expected to finish soonest on; ``release()`` gives it back with the
    request's outcome.
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
                                  threshold=breaker_threshold, wait=breaker_wait),
                   increase=increase)
            for target, name in targets]

    def set_slots(self, target: Any, slots: int) -> None:
        """The server at ``target`` says it serves ``slots`` requests at once: the ceiling."""
        with self.changed:
            for member in self.members:
                if member.target == target:
                    before = member.permits
                    member.slots = max(1, slots)
                    member.limit = min(member.limit, float(member.slots))
                    after = member.permits
            self.changed.notify_all()
        if after != before:
            emit(LimitChanged(member.name, before, after, f"the server has {slots} slot"
                              f"{'s' if slots != 1 else ''}"))

    def acquire(self, cautious: bool = False) -> Member:
        """A permit on the best endpoint; ``cautious`` (after a busy answer): a confirmed one."""
        with self.changed:
            while True:
                if STOP.is_set():
                    raise Interrupted(stopped())
                best = self._choose(cautious)
                if best is not None:
                    best.in_flight += 1
                    best.requests += 1
                    best.peak_in_flight = max(best.peak_in_flight, best.in_flight)
                    return best
                if not any(m.breaker.state != GONE for m in self.members):
                    raise AllEndpointsGone(", ".join(m.name for m in self.members))
                # Woken by a release or a breaker change; the timeout only re-checks STOP.
                self.waiting += 1
                try:
                    self.changed.wait(0.25)
                finally:
                    self.waiting -= 1

    def _choose(self, cautious: bool) -> Member | None:
        """The endpoint to send to now, or None to wait (lock held)."""
        open_now, cheapest = [], None
        for member in self.members:
            if member.breaker.state != CLOSED:
                continue
            permits = member.permits
            if cautious and member.confirmed:
                permits = min(permits, member.confirmed)
            # An endpoint that just failed to connect comes last, even before its breaker
            # opens: a dead server has the most free permits, it answers so fast.
            key = (member.breaker.consecutive != 0, member.cost())
            if cheapest is None or key < cheapest[0]:
                cheapest = (key, member)
            if permits - member.in_flight > 0:
                open_now.append((key, -(permits - member.in_flight), member))
        if not open_now:
            return None
        best_key, _, best = min(open_now, key=lambda item: item[:2])
        if cheapest is not None and cheapest[1] is not best and not cheapest[0][0] \
                and cheapest[1].cost() < best.cost():
            return None  # the cheapest is full: its next permit comes sooner than the others'
        return best

    def sent(self, member: Member, prompt_chars: int) -> Ticket:
        """A request goes out on ``member`` (after :meth:`acquire`)."""
        with self.changed:
            return Ticket(time.monotonic(), member.ended, max(prompt_chars, 1),
                          probe=member.in_flight > member.confirmed)

    def first_token(self, member: Member, ticket: Ticket) -> None:
        """The request's first token arrived: was it queued in the server (see the module
        docstring)? If so, the limit drops to the streams the server is really serving."""
        now = time.monotonic()
        waited = now - ticket.sent_at
        with self.changed:
            ticket.active = True
            member.active += 1
            others_ended = member.ended - ticket.ends_at_send
            if member.first_token is None:
                member.first_token = (waited, ticket.prompt_chars)
            base, base_chars = member.first_token
            # Only a longer prompt may take longer to start; a shorter one is not expected sooner.
            expected = base * max(1.0, ticket.prompt_chars / base_chars)
            queued = others_ended > 0 and waited > QUEUED_FACTOR * expected + QUEUED_GRACE
            if others_ended == 0 and waited * base_chars < base * ticket.prompt_chars:
                member.first_token = (waited, ticket.prompt_chars)  # the fastest start yet
            if not queued:
                return
            member.queued += 1
            before = member.permits
            if self.adaptive and ticket.sent_at >= member.last_cut:
                # What the server served at once: our streams producing tokens (a one-slot
                # server: 1), or at least a multiplicative cut of what we had in flight.
                self._cut_to(member, max(member.active, int(member.in_flight * self.decrease)))
            after = member.permits
        if after != before:
            emit(LimitChanged(member.name, before, after,
                              f"queued in the server: first token after {waited:.1f}s"))

    def _cut_to(self, member: Member, parallel: int) -> None:
        """Queueing seen: the limit is what the server served at once (lock held)."""
        if parallel >= member.limit:
            return
        member.limit = float(max(1, parallel))
        member.last_cut = time.monotonic()
        member.confirmed = member.permits
        member.increase = max(MIN_INCREASE, member.increase / 2)

    def release(self, member: Member, sent_at: float, signal: str, reason: str = "",
                ticket: Ticket | None = None) -> None:
        """Return ``member``'s permit; ``signal`` (OK, BUSY, TIMEOUT, DOWN, NEUTRAL, PREEMPTED)
        adapts it."""
        with self.changed:
            saturated = member.in_flight >= member.permits
            member.in_flight -= 1
            member.ended += 1
            if ticket is not None and ticket.active:
                member.active -= 1
                ticket.active = False
            before = member.permits
            if signal == DOWN:
                member.failures += 1
                member.breaker.failure(reason)
            elif signal == BROKE:
                member.failures += 1
            else:
                member.breaker.success()
                self._adapt(member, sent_at, signal, saturated, ticket)
            after = member.permits
            self.changed.notify_all()
        if after != before:
            emit(LimitChanged(member.name, before, after,
                              reason if after < before else "answering"))

    def _adapt(self, member: Member, sent_at: float, signal: str, saturated: bool,
               ticket: Ticket | None = None) -> None:
        """The limit's answer to one request's outcome (lock held)."""
        ceiling = min(self.ceiling, member.slots or self.ceiling)
        if signal == OK:
            seconds = time.monotonic() - sent_at
            member.seconds = seconds if member.seconds is None else (
                EWMA_WEIGHT * seconds + (1 - EWMA_WEIGHT) * member.seconds)
            if ticket is not None and ticket.probe and sent_at >= member.last_cut:
                # A probe above the permits known to work worked: the server has room again,
                # and the steps speed up again.
                member.increase = min(self.increase, member.increase * 2)
            member.confirmed = max(member.confirmed, member.in_flight + 1)
            # Probe for more only when all permits are in use and work is waiting.
            if self.adaptive and saturated and self.waiting and member.limit < ceiling:
                member.limit = min(float(ceiling), member.limit + member.increase / member.limit)
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
                # The next probe comes more slowly: each costs the request it risks a busy
                # retry (the floor), and one late in a run makes the run's tail.
                member.increase = max(MIN_INCREASE, member.increase / 2)
        elif signal == PREEMPTED:
            member.busy += 1
            if self.adaptive and sent_at >= member.last_cut:
                self._cut_to(member, max(member.active, 1))
        elif signal == FAILED:
            member.failures += 1

    def gone_names(self) -> list[str]:
        with self.changed:
            return [m.name for m in self.members if m.breaker.state == GONE]

    def summary(self) -> list[str]:
        """One line per endpoint: requests, busy answers, failures, final concurrency limit."""
        with self.changed:
            return [f"{m.name}: {m.requests} requests, {m.busy} busy, {m.failures} failures, "
                    f"concurrency limit {m.permits} of {self.ceiling}"
                    + (f" ({m.queued} queued in the server)" if m.queued else "")
                    + ("" if m.breaker.state == CLOSED else f" ({m.breaker.state})")
                    for m in self.members]
