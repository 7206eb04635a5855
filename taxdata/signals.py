"""Stop signals: SIGINT (Ctrl-C) and SIGTERM (docker, systemd) become stop requests.

- The first SIGINT or SIGTERM stops the run (:func:`taxdata.cancel.request_stop`): queued work
  is cancelled, the requests in flight are closed (the LLM servers stop generating), what
  finished is saved, the summary and report are written.
- After SIGTERM the run has ``grace`` seconds (``TAXDATA_STOP_GRACE``) for that; then it stops
  now, as after a second signal.
- A second signal stops now (:func:`taxdata.cancel.request_stop_now`): nothing in flight is
  waited for; every reply already validated is still saved, the summary and report written.
- A third quits at once (exit 130) without saving more: every write is atomic and each
  validated record is in the journal first, so the next run recovers it.
- Before a program's scope starts (while it loads), :func:`catch_early` makes a signal end the
  process at once with one line: nothing has been done yet.

Why no Python code runs at a signal: a handler runs in the main thread between two bytecodes,
maybe while that thread holds a lock (logging's, a Condition's). Raising there
(``KeyboardInterrupt``) can leave a lock held for good, and taking one there can deadlock. And
Python calls a handler once for signals that arrive before it runs (two Ctrl-C within
milliseconds would be one). So the handlers do nothing; the interpreter's C-level handler writes
each signal's number to a pipe (:func:`signal.set_wakeup_fd`), and a relay thread reading it acts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from typing import Any, Iterator

from taxdata.cancel import NOW, request_stop, request_stop_now, reset_stop
from taxdata.errors import EXIT_INTERRUPTED

DEFAULT_GRACE = 5.0  # seconds after SIGTERM (docker stop waits 10 before its SIGKILL)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_QUIT_LINE = (b"[INTERRUPTED] quitting at once (exit 130); what the journal holds is recovered "
              b"by the next run\n")
_EARLY_LINE = b"[INTERRUPTED] stopped while starting, before any work (exit 130)\n"
_early = {"catching": False}


def _warn(message: str, *args: object) -> None:
    # taxdata.log (and tqdm) load on the first signal, not with this module: catch_early is
    # imported by a program's first line, and what it imports delays the catching.
    from taxdata.log import logger
    logger.warning(message, *args)


def catch_early() -> None:
    """For a program's first line: until :func:`stop_signals` takes over, SIGINT and SIGTERM end
    the process at once with one line, not a ``KeyboardInterrupt`` traceback out of an import
    (nothing has been done yet, so there is nothing to save)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _early["catching"] = True
    for sig in _SIGNALS:
        signal.signal(sig, _early_handler)


def _early_handler(signum: int, frame: Any) -> None:
    if _early["catching"]:  # only a write and an exit: no lock, no Python-level state
        with contextlib.suppress(OSError):
            os.write(2, _EARLY_LINE)
        os._exit(EXIT_INTERRUPTED)
    # After a program's scope ended: Python's own behaviour (KeyboardInterrupt; SIGTERM ends it).
    signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                  else signal.SIG_DFL)
    os.kill(os.getpid(), signum)


class _Relay:
    """The thread that acts on the signals the pipe carries (see the module docstring)."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # what set_wakeup_fd needs
        self.count = 0
        self.deadline: float | None = None  # when SIGTERM's grace period ends
        self.thread = threading.Thread(target=self._run, name="stop-signals", daemon=True)

    @staticmethod
    def handler(signum: int, frame: Any) -> None:
        """Nothing: the C-level handler already wrote the signal to the pipe."""

    def end(self) -> None:
        """The scope is over: the relay thread reads a 0 (no signal has that number) and ends."""
        os.write(self.write_fd, b"\0")
        self.thread.join()
        os.close(self.read_fd)
        os.close(self.write_fd)

    def _run(self) -> None:
        while True:
            wait = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            ready, _, _ = select.select([self.read_fd], [], [], wait)
            if not ready:
                self.deadline = None
                self._grace_over()
                continue
            for signum in os.read(self.read_fd, 64):
                if signum == 0:
                    return
                if signum in _SIGNALS:  # the pipe carries every signal Python handles
                    self._take(signum)

    def _take(self, signum: int) -> None:
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        self.count += 1
        if self.count == 1:
            request_stop(name, interrupt=True)
            grace = f"; {self.grace:g}s grace" if signum == signal.SIGTERM else ""
            _warn("[INTERRUPTED] %s: stopping - queued work is cancelled, requests in flight "
                  "are closed, what finished is saved%s (Ctrl-C again to stop now)", name, grace)
            if signum == signal.SIGTERM:
                self.deadline = time.monotonic() + self.grace
        elif self.count == 2:
            self.deadline = None
            request_stop_now(name)
            _warn("[INTERRUPTED] %s again: stopping now - nothing in flight is waited for; "
                  "every reply already validated is saved (a third time quits at once)", name)
        else:  # written straight to the file descriptor: no lock another thread might hold
            with contextlib.suppress(OSError):
                os.write(2, _QUIT_LINE)
            os._exit(EXIT_INTERRUPTED)

    def _grace_over(self) -> None:
        if NOW.is_set():
            return
        request_stop_now("SIGTERM")
        _warn("[INTERRUPTED] the %gs grace period after SIGTERM is over: stopping now - nothing "
              "in flight is waited for; every reply already validated is saved "
              "(TAXDATA_STOP_GRACE)", self.grace)


_active: list[_Relay] = []  # the installed relay (at most one: the outermost scope's)


@contextlib.contextmanager
def stop_signals(grace: float | None = None, *, reset: bool = True) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM stop it as the module docstring says.

    Only the outermost scope on the main thread installs the handlers (and, with ``reset``,
    forgets a stop of an earlier run in this process); an inner one, or one on another thread,
    runs its block as it is (elsewhere ``reset`` still clears an earlier stop). ``grace``:
    SIGTERM's grace period in seconds (None: :data:`DEFAULT_GRACE`, or the outer scope's).
    """
    if _active or threading.current_thread() is not threading.main_thread():
        if grace is not None and _active:
            _active[0].grace = grace
        elif reset and not _active:
            reset_stop()
        yield
        return
    _early["catching"] = False  # from here on a signal stops the run, saving what it did
    if reset:
        reset_stop()
    relay = _Relay(DEFAULT_GRACE if grace is None else grace)
    relay.thread.start()
    previous_fd = signal.set_wakeup_fd(relay.write_fd, warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, relay.handler) for sig in _SIGNALS}
    _active.append(relay)
    try:
        yield
    finally:
        _active.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        relay.end()


def set_grace(seconds: float) -> None:
    """SIGTERM's grace period of the installed scope (known once the settings are read)."""
    if _active:
        _active[0].grace = seconds


def leave(code: int) -> int:
    """``code``, once the run is over; after a stop *now* with work still running on other
    threads (requests being closed, a task's CPU work), the process ends here with ``code``
    instead of waiting for them at exit. Everything the run saved is on disk by now."""
    if not NOW.is_set() or _active or threading.current_thread() is not threading.main_thread():
        return code
    here = threading.current_thread()
    if not any(not t.daemon and t is not here for t in threading.enumerate()):
        return code
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
