"""Exit codes and the user-input error, shared by the CLI, the pipelines and the benchmarks.

Exit codes: 0 all succeeded, 1 some failed, 2 configuration, input or preflight error,
130 interrupted (128 + SIGINT, as shells report it).
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """Bad input from the user (unknown country, malformed file): one line, exit code 2."""


def first_line(error: BaseException | None) -> str:
    """The error's first line; its type name when the message is empty (``RuntimeError()``)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
