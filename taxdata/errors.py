"""Exit codes and the one error root, shared by the CLI, the pipelines and the benchmarks.

Exit codes: 0 all succeeded, 1 some failed, 2 configuration, input or preflight error,
130 interrupted (128 + SIGINT, as shells report it).

Every error taxdata raises on purpose is a :class:`TaxdataError` and carries the exit code a
program ends with when it reaches the command line (which catches the root once and prints its
first line). Below the root, four kinds:

- :class:`UsageError` - the user asked for something that cannot work (flags, settings,
  an unknown country): exit 2;
- :class:`PreflightError` - a server or source is not usable, found before any work: exit 2;
- :class:`DataError` - a file's content cannot be used (dataset, registry, reference table,
  an import, a path outside the data directory): exit 2;
- :class:`ServerError` - a server gave no usable answer during the work (LLM, Wikipedia,
  extractor): exit 1, the country fails and the others go on.

The modules that raise them define their own subclasses (``LLMTimeout``, ``RegistryError``, ...).
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class TaxdataError(Exception):
    """The root of every error taxdata raises on purpose."""

    exit_code = EXIT_FAILED


class UsageError(TaxdataError, ValueError):
    """Bad input from the user (unknown country, flags that cannot work): one line, exit 2."""

    exit_code = EXIT_USAGE


class PreflightError(TaxdataError):
    """A server or source is not usable (checked before any work); the message says how to fix
    it: exit 2."""

    exit_code = EXIT_USAGE


class DataError(TaxdataError, ValueError):
    """A file's content cannot be used (a dataset, registry, reference or import file): exit 2."""

    exit_code = EXIT_USAGE


class ServerError(TaxdataError):
    """A server gave no usable answer (LLM, Wikipedia, extractor): that work fails, exit 1."""


def first_line(error: BaseException | None) -> str:
    """The error's first line; its type name when the message is empty (``RuntimeError()``)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
