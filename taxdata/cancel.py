"""Cancellation: the Ctrl-C flag every layer checks, and the exception a stopped task raises.

At the bottom of the package (imports nothing from it), so the request layer (http, limiter,
breaker) and the runner can all use it without importing each other.
"""

from __future__ import annotations

import threading

from taxdata.errors import EXIT_INTERRUPTED, TaxdataError

# Set on Ctrl-C: clients stop retrying and backing off, queued work is not started.
STOP = threading.Event()


class Interrupted(TaxdataError):
    """Raised inside a task that noticed :data:`STOP` before it could finish."""

    exit_code = EXIT_INTERRUPTED
