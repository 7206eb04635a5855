"""JSON objects without duplicate keys: ``json`` silently keeps the last of two, which hides
mistakes (a doubled registry entry) and ambiguity (a model reply with two values for one key)."""

from __future__ import annotations

from typing import Any

from taxdata.errors import DataError


class DuplicateKeyError(DataError):
    """A key given twice in one JSON object; ``key`` is the key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :mod:`json`: the object as a dict, or
    :class:`DuplicateKeyError`."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(key)
        result[key] = value
    return result
