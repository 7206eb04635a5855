"""Cancellation: the Ctrl-C flag every layer checks, the exception a stopped task raises, and
SIGTERM taken as the first Ctrl-C.

At the bottom of the package (imports nothing from it), so the request layer (http, limiter,
breaker) and the runner can all use it without importing each other.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

from taxdata.errors import EXIT_INTERRUPTED, TaxdataError

# Set on Ctrl-C: clients stop retrying and backing off, queued work is not started.
STOP = threading.Event()


class Interrupted(TaxdataError):
    """Raised inside a task that noticed :data:`STOP` before it could finish."""

    exit_code = EXIT_INTERRUPTED


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM (what docker and systemd send) is the first Ctrl-C: queued
    work is cancelled, the requests in flight are closed (the servers stop generating), what
    finished is saved and the summary printed. Only the main thread can install it; elsewhere
    the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
