"""Logging: tagged lines (``[LLM-REQUEST] Thread-2 POST ...``) that never garble the progress bar.

Every line names the worker doing the work with :func:`thread_label`: ``Thread-N`` is the 1-based
index of the pool worker (set by the runner when the worker starts), ``Main`` elsewhere.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import sys
import threading
from pathlib import Path

logger = logging.getLogger("taxdata")

_local = threading.local()

# Secrets never reach a log line, whatever a verbose payload dump contains.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?bearer\s+)[^\s\"',}]+"),
    re.compile(r"(?i)([\"']?api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
]


def thread_label() -> str:
    """``Thread-N`` for a pool worker (stable for that thread), ``Main`` otherwise."""
    return getattr(_local, "label", "Main")


def set_thread_label(label: str) -> None:
    """Name the calling thread in log lines; the runner calls this as each worker starts."""
    _local.label = label


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask API keys and bearer tokens (and any literal ``secrets``) in ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


def truncate(text: str, limit: int = 2000) -> str:
    """Shorten long payloads for verbose logs, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more chars]"


def one_line(text: str, limit: int | None = None) -> str:
    """``text`` on one line: its lines joined with `` | ``, blank ones dropped; optionally cut.

    Log lines are parsed by their tag, one record per line: a server's multi-line error text (a
    traceback pasted into an HTTP body) must not start lines of its own.
    """
    flat = ""
    for line in (piece.strip() for piece in str(text).splitlines()):
        if line:  # "...text\n)" reads as "...text)", not "...text | )"
            flat += line if not flat or line[0] in ")]},;.:" else " | " + line
    return truncate(flat, limit) if limit is not None else flat


class _OneLineFormatter(logging.Formatter):
    """Every record is one line, whatever its message (or exception) holds."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return one_line(text) if "\n" in text or "\r" in text else text


class _Sink:
    """One destination of the log lines: the console (bar-safe) or the log file."""

    def __init__(self, formatter: logging.Formatter, stream=None, path: Path | None = None) -> None:
        self.formatter, self.path = formatter, path
        self.stream = stream
        self.file = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        self.broken = False

    def write(self, text: str) -> None:
        if self.broken:
            return
        if self.file is not None:
            try:
                self.file.write(text + "\n")
                self.file.flush()
            except (OSError, ValueError) as exc:  # a full disk, /dev/full, a closed file
                self.broken = True
                _log_file_failed(self.path, exc)
            return
        stream = self.stream or sys.stderr
        bars = sys.modules.get("tqdm")  # tqdm not imported: no bar can be showing
        if bars is not None and getattr(bars.tqdm, "_instances", None):
            bars.tqdm.write(text, file=stream)  # clears the bar, writes, redraws it
        else:  # no bar (--no-progress, not a terminal): tqdm.write's locking is pure cost
            stream.write(text + "\n")
            stream.flush()

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError, ValueError):
                self.file.close()


FLUSH_WAIT = 5.0  # seconds a flush at exit waits for another thread's write to end


class _LineHandler(logging.Handler):
    """Writes each record to every sink without making a worker wait for another's write.

    A record is formatted in the thread that logs it, then queued; whichever thread holds the
    writer's lock writes the queue in order, and a thread that finds the lock taken leaves its
    line to the holder instead of waiting (the holder drains the queue before it lets go). Every
    line keeps its text, each thread's lines keep their order, and when the last ``log`` call
    has returned every line is written: no listener thread to stop or flush.
    """

    def __init__(self, sinks: list[_Sink]) -> None:
        super().__init__()
        self.sinks = sinks
        self._pending: collections.deque[list[str]] = collections.deque()
        self._writing = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if not self.filter(record):
            return False
        try:
            self._pending.append([sink.formatter.format(record) for sink in self.sinks])
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not fatal
            self.handleError(record)
            return True
        self._drain()
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def _drain(self) -> None:
        # Appended before trying the lock: a holder that is about to let go sees the line.
        while self._pending and self._writing.acquire(blocking=False):
            try:
                self._write_pending()
            finally:
                self._writing.release()

    def _write_pending(self) -> None:
        """Write the queued lines in order (the caller holds the writer's lock)."""
        while self._pending:
            for sink, text in zip(self.sinks, self._pending.popleft()):
                with contextlib.suppress(Exception):  # logging never takes a worker down
                    sink.write(text)

    def flush(self) -> None:
        """Every line queued so far is written when this returns: waits (bounded) for a thread
        that holds the writer's lock, so lines are never lost at exit because the holder was
        descheduled while another thread ended the process."""
        if not self._writing.acquire(timeout=FLUSH_WAIT):
            return  # a writer stuck for that long (a blocked terminal): leave its lines
        try:
            self._write_pending()
        finally:
            self._writing.release()

    def close(self) -> None:
        self.flush()
        for sink in self.sinks:
            sink.close()
        super().close()


_failed: list[str] = []  # the log file's write error, once per run


def _log_file_failed(path: Path | None, exc: BaseException) -> None:
    reason = getattr(exc, "strerror", None) or str(exc)
    _failed.append(f"{path}: {reason}")
    with contextlib.suppress(Exception):  # stderr itself may be gone
        sys.stderr.write(f"error: cannot write the log file {path}: {reason}; its further lines "
                         "are dropped (the run goes on, and exits 1)\n")
        sys.stderr.flush()


def log_file_error() -> str | None:
    """The log file's write error of this run (``PATH: reason``), or None when it was written."""
    return _failed[0] if _failed else None


def setup_logging(level: str | int = "INFO", log_file: str | Path | None = None,
                  verbose: bool = False, stream=None) -> None:
    """Configure the ``taxdata`` logger: stderr (bar-safe) plus an optional file, same lines.

    ``verbose`` lowers the level to DEBUG, where request payloads are logged. A log file that
    cannot be opened raises OSError; one that fails later (a full disk) is said once, on
    stderr, and :func:`log_file_error` tells the caller (the programs then exit 1).
    """
    if verbose:
        level = logging.DEBUG
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    _failed.clear()
    sinks = [_Sink(_OneLineFormatter("%(message)s"), stream=stream)]
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        sinks.append(_Sink(_OneLineFormatter("%(asctime)s %(message)s"), path=path))
    logger.addHandler(_LineHandler(sinks))
    logger.setLevel(level)
    logger.propagate = False
