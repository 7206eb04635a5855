"""Typed events: what the clients and the runner report as they work, as data.

The LLM client, the request layer (``clients.http.send``), the concurrency limiter, the circuit
breakers, the runner and the re-ask loops describe what happens with these frozen dataclasses
and hand each to :func:`emit`, which makes two renderings of the same event:

- its log line (the tagged wording and level the README documents, through the ``taxdata``
  logger, so the level still filters what a user reads);
- the event object itself, for every active :func:`recording` (whatever the log level): the
  HTML run report (:mod:`taxdata.report.html`) draws its timeline from these objects, so no
  consumer reads log text.

Events about one LLM request carry its ``request_id``: a retry, a give-up or a rejected reply
names the request it is about instead of leaving a reader to guess from the thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

from taxdata.log import logger

# What came of one LLM request (RequestEnded.answer).
REPLY = "reply"  # a usable reply (the caller may still reject its content: ReplyRejected)
TRUNCATED = "truncated"  # a reply cut off at the token limit
BAD_REPLY = "bad reply"  # HTTP 200, but not the API's JSON
FORM_REFUSED = "form refused"  # the server refused the structured-output form (a fallback)
BUSY = "busy"  # 429/503 or a queue-full message
REFUSED = "refused"  # an error status not worth another attempt (400, 401, ...)
SERVER_ERROR = "server error"  # an error status worth another attempt (500, 502, ...)
NO_ANSWER = "no answer"  # no HTTP answer: connection failed, timed out or broke
CONTEXT_EXCEEDED = "context exceeded"  # the prompt did not fit the server's context
PREEMPTED = "preempted"  # the server ended the reply early to serve another request
CUT = "cut"  # the client closed the reply: a timeout or Ctrl-C (the server stops generating)

# How a task ended (TaskFinished.status).
COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
# Breaker states (BreakerChanged.state); taxdata.clients.breaker uses these names.
OPEN, CLOSED, GONE = "open", "closed", "gone"


@dataclass(frozen=True)
class Event:
    """Something that happened during a run; ``at``: when (epoch seconds, like a log record)."""

    at: float = field(default_factory=time.time, kw_only=True, compare=False)

    @property
    def level(self) -> int:
        return logging.INFO

    def line(self) -> str | None:
        """The log line (None: the event has no line of its own)."""
        raise NotImplementedError


def _prefix(what: str) -> str:
    return f"{what} " if what else ""


@dataclass(frozen=True)
class RequestStarted(Event):
    """An LLM request is sent (``[LLM-REQUEST]``)."""

    worker: str
    url: str
    model: str
    label: str
    request_id: int

    def line(self) -> str:
        suffix = f" - {self.label}" if self.label else ""
        return f"[LLM-REQUEST] {self.worker} POST {self.url} model={self.model}{suffix}"


@dataclass(frozen=True)
class RequestEnded(Event):
    """An LLM request ended: answered (``[LLM-RESPONSE]``) or not (``status`` None: no line, the
    ``[RETRY]`` or ``[ERROR]`` that follows says why). ``answer``: what came of it (REPLY, ...);
    ``reason``: for no answer, the error."""

    worker: str
    request_id: int
    status: int | None
    seconds: float
    answer: str
    reason: str = ""
    # The server's usage figures, where it gave them (prompt tokens, of them from its prefix
    # cache, reply tokens), and the seconds until the first token of a streamed reply.
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    first_token: float | None = None
    endpoint: str = ""  # the chat URL that answered

    def line(self) -> str | None:
        if self.status is None:
            return None
        tokens = "" if self.prompt_tokens is None else (
            f" ({self.prompt_tokens}+{self.completion_tokens or 0} tokens"
            + (f", {self.cached_tokens} cached" if self.cached_tokens else "") + ")")
        return f"[LLM-RESPONSE] {self.worker} HTTP {self.status} in {self.seconds:.2f}s{tokens}"


@dataclass(frozen=True)
class Retry(Event):
    """An attempt failed and another follows after ``delay`` seconds (``[RETRY]``).

    ``what`` names the client ("Wikipedia"; empty for the LLM); ``attempt`` is the number of the
    next attempt, out of ``attempts`` (None for busy answers, bounded by a deadline instead).
    """

    worker: str
    what: str
    reason: str
    attempt: int
    attempts: int | None
    delay: float
    request_id: int | None = None

    @property
    def level(self) -> int:
        return logging.WARNING

    def line(self) -> str:
        counter = f"attempt {self.attempt}" + (
            f"/{self.attempts}" if self.attempts is not None else "")
        return (f"[RETRY] {self.worker} {_prefix(self.what)}{self.reason}, {counter} "
                f"in {self.delay:.1f}s")


@dataclass(frozen=True)
class GaveUp(Event):
    """A request failed for good (``[ERROR]``); ``note`` says why no retry, e.g. the count."""

    worker: str
    what: str
    error: str
    note: str = ""
    request_id: int | None = None

    @property
    def level(self) -> int:
        return logging.ERROR

    def line(self) -> str:
        return f"[ERROR] {self.worker} {_prefix(self.what)}{self.error}{self.note}"


@dataclass(frozen=True)
class ReplyRejected(Event):
    """A reply failed the caller's checks; it is asked again or given up (``[INVALID]``).

    ``subject`` says whose reply and how it failed ("belgium reply 1 rejected"), ``detail`` the
    errors; ``request_id`` is the request whose reply this was (None: no reply to point at).
    """

    worker: str
    subject: str
    detail: str
    request_id: int | None = None

    @property
    def level(self) -> int:
        return logging.WARNING

    def line(self) -> str:
        return f"[INVALID] {self.worker} {self.subject}: {self.detail}"


@dataclass(frozen=True)
class LimitChanged(Event):
    """An endpoint's adaptive concurrency limit moved (``[ADAPT]``); down: a warning."""

    endpoint: str  # host:port
    before: int
    after: int
    reason: str

    @property
    def level(self) -> int:
        return logging.WARNING if self.after < self.before else logging.INFO

    def line(self) -> str:
        return f"[ADAPT] {self.endpoint} concurrency {self.before} -> {self.after} ({self.reason})"


@dataclass(frozen=True)
class BreakerChanged(Event):
    """An endpoint's circuit breaker opened, closed again or gave up (``[BREAKER]``).

    Opening carries the ``failures`` in a row and the last ``reason``; closing, the ``seconds``
    the endpoint was away; ``wait`` is how long the breaker waits before it is gone.
    """

    endpoint: str
    state: str  # OPEN, CLOSED or GONE
    wait: float
    failures: int = 0
    reason: str = ""
    seconds: float = 0.0

    @property
    def level(self) -> int:
        return logging.ERROR if self.state == GONE else logging.WARNING

    def line(self) -> str:
        if self.state == OPEN:
            return (f"[BREAKER] {self.endpoint} open after {self.failures} connection failures "
                    f"in a row ({self.reason}); waiting up to {self.wait:g}s for it to answer "
                    "again")
        if self.state == GONE:
            return f"[BREAKER] {self.endpoint} gone: no answer for {self.wait:g}s"
        return f"[BREAKER] {self.endpoint} closed: answering again after {self.seconds:.1f}s"


@dataclass(frozen=True)
class TaskFinished(Event):
    """One task of a parallel run ended (``[COMPLETED]``, ``[FAILED]``, ``[CANCELLED]``).

    ``detail``: the success's description, the error's first line, or how a task was cancelled.
    ``reported_once``: the cause is reported once for the whole run (a server that went away; the
    one line for the queue a stop cancelled), so the line is DEBUG.
    """

    task_id: str
    status: str  # COMPLETED, FAILED or CANCELLED
    detail: str = ""
    worker: str = ""
    reported_once: bool = False

    @property
    def level(self) -> int:
        if self.status in (FAILED, CANCELLED) and self.reported_once:
            return logging.DEBUG
        return logging.ERROR if self.status == FAILED else logging.INFO

    def line(self) -> str:
        if self.status == CANCELLED:
            return f"[CANCELLED] {self.task_id} - {self.detail or 'not finished'}"
        if self.status == FAILED:
            return f"[FAILED] {self.task_id} - {self.detail} ({self.worker})"
        return f"[COMPLETED] {self.task_id} - {self.detail}"


class Recorder:
    """The events of one run, in the order they were emitted (from any thread)."""

    def __init__(self) -> None:
        self._events: list[Event] = []

    def add(self, event: Event) -> None:
        self._events.append(event)  # list.append is atomic: no lock for the workers to share

    @property
    def events(self) -> list[Event]:
        return list(self._events)


# The active recorders, innermost last: replaced (under the lock), never changed in place, so
# emit reads it without one.
_recorders: tuple[Recorder, ...] = ()
_recorders_lock = threading.Lock()


def emit(event: Event) -> None:
    """Record ``event`` in every active recording and log its line at its level."""
    for recorder in _recorders:
        recorder.add(event)
    level = event.level
    if logger.isEnabledFor(level):
        line = event.line()
        if line is not None:
            # logger.log(level, line) without its walk up the stack for the caller's file and
            # line (two or three per request): that caller is always this function. No args:
            # a "%" in the line is printed as it is.
            logger.handle(logger.makeRecord(logger.name, level, __file__, 0, line, (), None,
                                            "emit"))


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    """Collect every event emitted while the block runs (by any thread)."""
    global _recorders
    recorder = Recorder()
    with _recorders_lock:
        _recorders = _recorders + (recorder,)
    try:
        yield recorder
    finally:
        with _recorders_lock:
            _recorders = tuple(r for r in _recorders if r is not recorder)


def recorded_events() -> list[Event]:
    """The events recorded so far by the innermost :func:`recording` block (none outside one)."""
    return _recorders[-1].events if _recorders else []
