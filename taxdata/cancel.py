"""Cancellation: the stop flags every layer checks, who is woken when they go up, and the
exception a stopped task raises.

Two steps, each a flag:

- :data:`STOP` (Ctrl-C, SIGTERM, a disk that refuses a write): queued work is not started,
  clients stop retrying and close the requests in flight; what finished is saved.
- :data:`NOW` (a second Ctrl-C, SIGTERM's grace period over): nothing in flight is waited for;
  what already finished is still saved.

A stop is asked for with :func:`request_stop` / :func:`request_stop_now`, never from a signal
handler (:mod:`taxdata.signals` hands signals to a thread that calls these). At the bottom of the
package (imports nothing from it but its errors), so the request layer (http, limiter, breaker)
and the runner can all use it without importing each other.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, TypeVar

from taxdata.errors import EXIT_INTERRUPTED, TaxdataError

# Set on the first stop: clients stop retrying and backing off, queued work is not started.
STOP = threading.Event()
# Set on the second: the runner stops waiting for work in flight.
NOW = threading.Event()

_lock = threading.Lock()
_wakers: list[Callable[[], None]] = []  # called on every stop request (the runners' queues)
_state = {"reason": "", "interrupted": False}


class Interrupted(TaxdataError):
    """Raised inside a task that noticed :data:`STOP` before it could finish."""

    exit_code = EXIT_INTERRUPTED


def request_stop(reason: str, *, interrupt: bool = False) -> bool:
    """Stop: set :data:`STOP` and wake every waiting runner. ``reason`` says why in lines (the
    first reason stays); ``interrupt``: a signal asked (the run ends as interrupted, exit 130).
    True if this was the first stop."""
    with _lock:
        first = not STOP.is_set()
        if first:
            _state["reason"] = reason
        _state["interrupted"] = _state["interrupted"] or interrupt
        STOP.set()
        wakers = list(_wakers)
    for wake in wakers:
        wake()
    return first


def request_stop_now(reason: str) -> None:
    """Stop now: :func:`request_stop` and :data:`NOW` (always an interruption)."""
    NOW.set()
    request_stop(reason, interrupt=True)


def stop_reason() -> str:
    """Why the run stops ("Ctrl-C", "SIGTERM", "the disk refused a write"); "" if it does not."""
    with _lock:
        return _state["reason"] if STOP.is_set() else ""


def stopped() -> str:
    """What a request or task cut short by the stop says: "stopped by Ctrl-C", "stopped by
    SIGTERM", "stopped: the disk refused a write"."""
    reason = stop_reason() or "Ctrl-C"
    return f"stopped by {reason}" if reason in ("Ctrl-C", "SIGTERM") else f"stopped: {reason}"


def interrupted() -> bool:
    """True if a signal stopped the run (not a disk that refused a write)."""
    with _lock:
        return bool(_state["interrupted"]) and STOP.is_set()


def reset_stop() -> None:
    """A program's run starts afresh: no stop of an earlier run in this process counts."""
    with _lock:
        STOP.clear()
        NOW.clear()
        _state.update(reason="", interrupted=False)


@contextlib.contextmanager
def woken_on_stop(wake: Callable[[], None]) -> Iterator[None]:
    """Call ``wake()`` on every stop request while the block runs (from the thread that asks:
    it must not block)."""
    with _lock:
        _wakers.append(wake)
    try:
        yield
    finally:
        with _lock:
            _wakers.remove(wake)


StepT = TypeVar("StepT")


def unless_stopped(step: Callable[[], StepT]) -> StepT | None:
    """A program's start-up step (a server's preflight check); None when a stop ended it. Its
    caller goes on to the runner, which starts no task once stopped, so the summary (and the
    report) still say what happened to every country. A request the stop closed may read as a
    timeout or an unreachable server to the step: any of taxdata's errors then counts as the stop.
    """
    try:
        return step()
    except TaxdataError:
        if STOP.is_set():
            return None
        raise
