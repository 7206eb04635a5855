"""Deadlines that a blocked read cannot ignore: one watchdog thread closes a request's connection
when its time is up, or when Ctrl-C (:data:`~taxdata.cancel.STOP`) asks everything to stop.

A socket's read timeout only bounds one ``recv``: a server that drips a byte a second, or one that
sends keep-alive pings while it generates nothing, never trips it. So each request carries a
:class:`Watch` with three limits, all measured on our clock:

- ``first``: until the reply starts (headers and the first token: queueing plus prompt processing);
- ``idle``: between two tokens once it streams (only tokens count; pings and blank lines do not);
- ``total``: the whole request, whatever it does.

When one passes, the watchdog shuts the request's socket down (``SHUT_RDWR`` wakes the reader at
once, and the server sees the client leave, so it stops generating); the reader then raises and
asks :attr:`Watch.expired` why. The socket is known from the moment the request is sent (not only
once a response exists), through :class:`TrackingAdapter`, so a server that drips its headers is
cut off too.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from taxdata.cancel import STOP

# Why a watch ended its request (Watch.expired).
FIRST, IDLE, TOTAL, STOPPED = "first token", "idle", "deadline", "stopped"
TICK = 0.05  # seconds between the watchdog's looks while requests are watched

_current = threading.local()  # the watch of the request this thread is sending


class Watch:
    """One request's limits (seconds; None: no limit) and what it has seen so far."""

    def __init__(self, *, first: float | None = None, idle: float | None = None,
                 total: float | None = None) -> None:
        self.first, self.idle, self.total = first, idle, total
        self.started = time.monotonic()
        self.last_token: float | None = None  # None: no token yet
        self.expired: str | None = None  # set by the watchdog when it closed the connection
        self.connection: HTTPConnection | None = None  # set when the request goes out
        self._shut: socket.socket | None = None  # the socket cut() shut down

    def token(self) -> None:
        """A token arrived: the idle clock starts again (and the first-token wait is over)."""
        self.last_token = time.monotonic()

    def due(self, now: float) -> str | None:
        """The limit that has passed at ``now``, if any."""
        if self.total is not None and now - self.started > self.total:
            return TOTAL
        if self.last_token is None:
            if self.first is not None and now - self.started > self.first:
                return FIRST
        elif self.idle is not None and now - self.last_token > self.idle:
            return IDLE
        return None

    def limit(self, reason: str) -> float | None:
        """The seconds of the limit ``reason`` names, for messages."""
        return {FIRST: self.first, IDLE: self.idle, TOTAL: self.total}.get(reason)

    def cut(self, reason: str) -> None:
        """End the request now: shut its socket down (the reader wakes; the server sees us go).
        The watchdog calls it again each tick while the limit stands: a request whose socket
        was not connected yet (a stop that lands as it is sent) is cut once it is."""
        self.expired = self.expired or reason
        connection = self.connection
        sock = getattr(connection, "sock", None)
        if sock is not None and sock is not self._shut:
            self._shut = sock
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """The one thread that enforces every :class:`Watch`; started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._watches: set[Watch] = set()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, watch: Watch) -> Iterator[Watch]:
        """Enforce ``watch`` while the block sends and reads its request (on this thread)."""
        with self._lock:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
                self._thread.start()
            self._lock.notify_all()
        _current.watch = watch
        try:
            yield watch
        finally:
            _current.watch = None
            with self._lock:
                self._watches.discard(watch)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._watches:
                    self._lock.wait()
                watches = list(self._watches)
            now = time.monotonic()
            stopping = STOP.is_set()
            for watch in watches:
                reason = watch.expired or (STOPPED if stopping else watch.due(now))
                if reason is not None:
                    watch.cut(reason)
            time.sleep(TICK)


WATCHDOG = Watchdog()


# -- knowing a request's socket from the moment it is sent ---------------------------------------

class _TrackedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.connection = self
        super().request(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.connection = self
        super().request(*args, **kwargs)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class TrackingAdapter(HTTPAdapter):
    """requests' adapter whose connections tell the thread's :class:`Watch` who carries it."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackedHTTPPool,
                                                   "https": _TrackedHTTPSPool}
