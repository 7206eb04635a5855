"""What every pipeline accepts besides its settings: the typed options the CLI builds from flags.

A pipeline is ``run(options, settings) -> exit code``. The options say what to do in this run
(which countries, redo or not, preview or not); :class:`taxdata.config.Settings` says where and
how (servers, data directory, workers). Each pipeline extends :class:`RunOptions` with its own
fields (``taxdata.update.options``, ``taxdata.generate.options``); from Python, pass keywords:
``UpdateOptions(countries="germany", progress=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from taxdata.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """The options every pipeline shares (``--countries``, ``--force``, ``--dry-run``,
    ``--no-progress``)."""

    countries: str | None = None  # comma-separated slugs or names; None: the pipeline's default
    force: bool = False  # redo work that is up to date
    dry_run: bool = False  # show what would run; send nothing, write nothing
    progress: bool = True  # a progress bar on a terminal


def check_max_chars(max_chars: int) -> None:
    """``--max-chars`` below 1 cannot split anything: a usage error before any work."""
    if max_chars < 1:
        raise UsageError(f"--max-chars must be at least 1, got {max_chars}")
