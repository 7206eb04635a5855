"""Logging: tagged lines (``[LLM-REQUEST] Thread-2 POST ...``) that never garble the progress bar.

Every line names the worker doing the work with :func:`thread_label`: ``Thread-N`` is the 1-based
index of the pool worker (set by the runner when the worker starts), ``Main`` elsewhere.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from pathlib import Path

from tqdm import tqdm

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


class _TqdmHandler(logging.Handler):
    """Writes through ``tqdm.write`` so a line clears and redraws the bar instead of tearing it."""

    def __init__(self, stream=None) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text, stream = self.format(record), self.stream or sys.stderr
            if getattr(tqdm, "_instances", None):  # a bar is showing: clear it, write, redraw it
                tqdm.write(text, file=stream)
            else:  # no bar (--no-progress, not a terminal): tqdm.write's locking is pure cost
                stream.write(text + "\n")
                stream.flush()
        except Exception:  # logging must never take a worker down
            self.handleError(record)


def setup_logging(level: str | int = "INFO", log_file: str | Path | None = None,
                  verbose: bool = False, stream=None) -> None:
    """Configure the ``taxdata`` logger: stderr (bar-safe) plus an optional file, same lines.

    ``verbose`` lowers the level to DEBUG, where request payloads are logged.
    """
    if verbose:
        level = logging.DEBUG
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = _OneLineFormatter("%(message)s")
    console = _TqdmHandler(stream)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(_OneLineFormatter("%(asctime)s %(message)s"))
        logger.addHandler(file_handler)
    logger.setLevel(level)
    logger.propagate = False
