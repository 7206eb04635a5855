"""A circuit breaker per endpoint: stop sending to a server that no longer answers.

Several connection-level failures in a row (across all workers) open the breaker. While it is
open no request goes to that server; one background thread probes it (the model-list call) with
jittered backoff. A probe that succeeds closes the breaker and the waiting work resumes; if the
server stays down past ``wait`` seconds the breaker is *gone* for the rest of the run, so the
remaining work fails at once instead of each task running its own retry schedule.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from taxdata.cancel import STOP
from taxdata.clients.http import RetryPolicy

# The states (closed, open, gone) are the events' names for them.
from taxdata.events import CLOSED, GONE, OPEN, BreakerChanged, emit


class CircuitBreaker:
    """State of one endpoint. ``changed`` (a Condition shared by the caller) is notified on
    every state change; all methods must be called with that condition's lock held."""

    def __init__(self, name: str, probe: Callable[[], bool], changed: threading.Condition, *,
                 threshold: int = 3, wait: float = 15.0,
                 backoff: RetryPolicy | None = None) -> None:
        self.name = name
        self.probe = probe
        self.changed = changed
        self.threshold = threshold
        self.wait = wait
        self.backoff = backoff or RetryPolicy(base=0.5, cap=2.0, floor=0.25)
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = 0.0

    def success(self) -> None:
        self.consecutive = 0

    def failure(self, reason: str) -> None:
        """A connection-level failure; the ``threshold``-th in a row opens the breaker."""
        self.consecutive += 1
        if self.state == CLOSED and self.consecutive >= self.threshold:
            self.state = OPEN
            self.opened_at = time.monotonic()
            emit(BreakerChanged(self.name, OPEN, self.wait, self.consecutive, reason))
            threading.Thread(target=self._probe_until_back, name=f"probe {self.name}",
                             daemon=True).start()
            self.changed.notify_all()

    def _probe_until_back(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            left = self.wait - (time.monotonic() - self.opened_at)
            if left <= 0:
                with self.changed:
                    self.state = GONE
                    self.changed.notify_all()
                emit(BreakerChanged(self.name, GONE, self.wait))
                return
            if STOP.wait(min(self.backoff.delay(attempt), left)):
                return
            try:
                back = self.probe()
            except Exception:  # noqa: BLE001 - any failure of the probe means "still down"
                back = False
            if back:
                with self.changed:
                    self.state = CLOSED
                    self.consecutive = 0
                    self.changed.notify_all()
                emit(BreakerChanged(self.name, CLOSED, self.wait,
                                    seconds=time.monotonic() - self.opened_at))
                return
