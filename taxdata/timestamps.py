"""The one timestamp format taxdata writes: UTC, to the second, ISO 8601 with a ``Z``."""

from __future__ import annotations

from datetime import datetime, timezone


def now_utc() -> str:
    """Now as ``2026-11-30T01:23:45Z`` (records, provenance, reports, lock holders)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
