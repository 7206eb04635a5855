"""The run's reports on disk: ``reports/update-<time>.json`` and its review page, kept small and
few.

A country that was up to date (not sent, nothing written) is one name in the report's
``unchanged`` list, not an entry of its own, so an unchanged run of 5,000 countries writes a
report of a few tens of KB, its review page likewise. The countries are one per line (the C
JSON encoder, as in ``tax_data.json``). Old reports are removed beyond the newest
``TAXDATA_KEEP_REPORTS`` (default 100; 0 keeps all). A report that cannot be written (a full
disk, a symlink in the way) is one line: the dataset is written as the summary says, and the
run's exit code stays the dataset's.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from taxdata.errors import DataError
from taxdata.log import logger
from taxdata.outcome import Status
from taxdata.report.html import write_html_report
from taxdata.store import confined
from taxdata.store.datadir import DataDir
from taxdata.update.country import UP_TO_DATE
from taxdata.update.outcome import CountryOutcome

REPORT_DIR = "reports"
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPORT_NAME = re.compile(r"^update-(\d{8}T\d{6}Z)(?:-(\d+))?\.(json|html)$")


def report_countries(outcomes: Mapping[str, CountryOutcome]) -> dict[str, Any]:
    """The report's ``countries`` (an entry each) and ``unchanged`` (the up-to-date ones, by
    name: their entry would only say so)."""
    countries, unchanged = {}, []
    for slug in sorted(outcomes):
        outcome = outcomes[slug]
        if (outcome.status == Status.UNCHANGED and outcome.reason == UP_TO_DATE
                and not outcome.attempts and not outcome.warnings):
            unchanged.append(slug)
        else:
            countries[slug] = outcome.report()
    return {"countries": countries,
            "unchanged": {"reason": UP_TO_DATE, "countries": unchanged}}


def report_text(report: Mapping[str, Any]) -> str:
    """The JSON report: the run's own keys indented, then one country per line."""
    head = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False, default=str)}"
            for key, value in report.items() if key != "countries"]
    lines = [f"    {json.dumps(slug)}: {json.dumps(entry, ensure_ascii=False, default=str)}"
             for slug, entry in (report.get("countries") or {}).items()]
    countries = ('  "countries": {\n' + ",\n".join(lines) + "\n  }") if lines else \
        '  "countries": {}'
    text = "{\n" + ",\n".join([*head, countries]) + "\n}\n"
    # A lone surrogate from a hostile input cannot be written as UTF-8: its JSON escape can.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_reports(data: DataDir, started: str, report: Mapping[str, Any],
                  dataset: Mapping[str, Any] | None, previous: Mapping[str, Any],
                  sources: Callable[..., str | None], keep: int,
                  sample: bool | None = None) -> Path | None:
    """Write the JSON report and its review page; remove the reports beyond the newest
    ``keep``. The JSON report's path, or None (one line said why) when it cannot be written.
    ``sample``: whether the dataset is SAMPLE data (None: the page looks in ``dataset``)."""
    stamp = started.replace(":", "").replace("-", "")
    try:
        # Claimed with an exclusive create: runs started in the same second keep both reports.
        path = data.write_new_text(f"{REPORT_DIR}/update-{stamp}", ".json", report_text(report))
    except (OSError, DataError) as exc:
        logger.error("[REPORT] cannot write the report in %s: %s; the dataset is written as "
                     "the summary says", data.root / REPORT_DIR, _why(exc))
        return None
    try:
        write_html_report(data, path.relative_to(data.root).as_posix(), report, dataset,
                          previous=previous, sources=sources, sample=sample)
    except (OSError, DataError) as exc:
        logger.error("[REPORT] cannot write the review page beside %s: %s", path, _why(exc))
    prune_reports(data, keep, path)
    return path


def prune_reports(data: DataDir, keep: int, current: Path | None = None) -> list[str]:
    """Remove the update reports (JSON and page) older than the newest ``keep`` runs' (by their
    time stamp, then by when they were written: a name freed by a removal can be claimed
    again); never ``current``'s. The names removed. ``keep`` 0: keep all."""
    if keep <= 0:
        return []
    runs: dict[tuple[str, int], list[tuple[str, int]]] = {}
    try:
        with confined.directory(data.root, REPORT_DIR, create=False) as dir_fd:
            for name in os.listdir(dir_fd):
                match = _REPORT_NAME.match(name)
                if match:
                    written = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mtime_ns
                    runs.setdefault((match.group(1), int(match.group(2) or 1)), []).append(
                        (name, written))
    except (OSError, DataError):
        return []
    mine = current.stem if current is not None else None
    order = sorted(runs, key=lambda run: (run[0], max(w for _, w in runs[run])))
    removed = []
    for run in order[:-keep]:
        for name, _ in runs[run]:
            if Path(name).stem == mine:
                continue
            try:
                confined.unlink(data.root, f"{REPORT_DIR}/{name}")
                removed.append(name)
            except (OSError, DataError):
                pass  # one that cannot go stays; the next run tries again
    return removed


def _why(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)
