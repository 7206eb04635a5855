"""JSON as taxdata reads it: no duplicate keys, no NaN, bounded nesting, nothing the calculator
cannot hold.

``json`` silently keeps the last of two keys, which hides mistakes (a doubled registry entry) and
ambiguity (a model reply with two values for one key); it accepts ``NaN`` and ``Infinity``, which
are not JSON; and it recurses once per level, so a file of 100,000 ``[`` ends in a
RecursionError. :func:`loads` refuses all three with a :class:`JSONProblem` (one line).
:func:`value_problem` says what in an already parsed value the calculator could not take:
nesting deeper than :data:`MAX_DEPTH`, an integer beyond JavaScript's exact range, a lone
surrogate (it cannot be written as UTF-8), a float that is not finite.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from taxdata.errors import DataError

MAX_DEPTH = 64  # no file taxdata reads nests deeper than about 8 levels
SAFE_INTEGER = 2**53 - 1  # Number.MAX_SAFE_INTEGER: the calculator's exact integers end here


class DuplicateKeyError(DataError):
    """A key given twice in one JSON object; ``key`` is the key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class JSONProblem(DataError):
    """Text that is not JSON taxdata may read; the message is one line (without the file)."""


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :mod:`json`: the object as a dict, or
    :class:`DuplicateKeyError`."""
    result = dict(pairs)
    if len(result) != len(pairs):  # rare: find the first key given twice
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return result


def _reject_constant(name: str) -> Any:
    raise JSONProblem(f"{name} is not a JSON number")


def loads(text: str | bytes, *, duplicates: bool = False, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text``; :class:`JSONProblem` (one line) for invalid JSON, NaN/Infinity, nesting
    deeper than ``max_depth`` (checked after parsing, so the value is walked once; 0: only as
    deep as the decoder can go, for a caller that checks each part itself) and, unless
    ``duplicates``, a key given twice in one object."""
    hook = None if duplicates else no_duplicate_keys
    if isinstance(text, (bytes, bytearray)):
        try:  # json would guess an encoding (and let a byte it cannot read pass as an error
            text = bytes(text).decode("utf-8")  # somewhere else): taxdata's files are UTF-8
        except UnicodeDecodeError as exc:
            raise JSONProblem(f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                              f"{exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=hook)
    except DuplicateKeyError as exc:
        raise JSONProblem(f"duplicate key {exc.key!r}") from None
    except JSONProblem:
        raise
    except json.JSONDecodeError as exc:
        raise JSONProblem(f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                          f"{exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise JSONProblem(f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                          f"{exc.start})") from None
    except RecursionError:  # the C decoder recurses once per level: far beyond max_depth
        raise JSONProblem(f"nested deeper than {max_depth or MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4,300 digits
        raise JSONProblem(f"invalid JSON: {exc}") from None
    if max_depth and _deeper_than(value, max_depth):
        raise JSONProblem(f"nested deeper than {max_depth} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


# Every digit to "0", everything else to " ": a run of 16 digits (2**53 has 16, every shorter
# integer is in range) is then a plain substring search, far cheaper than a regex.
_DIGITS_ONLY = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_SIXTEEN_DIGITS = b"0" * 16


_EXPONENT = re.compile(r"\d[eE]")


def may_hold_problem(text: str) -> bool:
    """False when the JSON value parsed from ``text`` cannot hold what :func:`value_problem`
    reports: fewer brackets than :data:`MAX_DEPTH`, no run of 16 digits (every shorter integer
    is in range), no exponent (a finite literal without one is a finite float), no escape and
    no character beyond ASCII (so no lone surrogate). Reading ``text`` this way costs a
    fraction of walking the value; True only says the walk is needed."""
    return (text.count("{") + text.count("[") >= MAX_DEPTH or not text.isascii()
            or "\\u" in text or _EXPONENT.search(text) is not None
            or _SIXTEEN_DIGITS in text.encode("ascii").translate(_DIGITS_ONLY))


def encode_checked(value: Any) -> tuple[str | None, bytes | None]:
    """``(problem, data)``: what :func:`value_problem` would say, and the value as one line of
    JSON (C encoder, UTF-8) when there is no problem. The common case costs one encoding: only
    text with many brackets or a long run of digits is walked."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        data = text.encode("utf-8")  # a lone surrogate cannot be
    except (TypeError, ValueError, RecursionError):
        return value_problem(value) or "not a JSON value", None
    if (text.count("{") + text.count("[") >= MAX_DEPTH
            or _SIXTEEN_DIGITS in data.translate(_DIGITS_ONLY)):
        problem = value_problem(value)
        if problem:
            return problem, None
    return None, data


def value_problem(value: Any, where: str = "", max_depth: int = MAX_DEPTH) -> str | None:
    """What in ``value`` the dataset and the calculator cannot hold (``path: why``), or None."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            problem = _string_problem(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            problem = (None if -SAFE_INTEGER <= item <= SAFE_INTEGER else
                       f"{_digits(item)} is beyond the calculator's exact integers "
                       f"(at most {SAFE_INTEGER:,} either way)")
        elif isinstance(item, float):
            problem = None if math.isfinite(item) else f"{item!r} is not a number JSON can hold"
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                return f"{_short(path)}: nested deeper than {max_depth} levels"
            children = (item.items() if isinstance(item, dict) else enumerate(item))
            for key, child in children:
                if isinstance(key, str) and _string_problem(key):
                    return f"{_short(path)}: a key {_string_problem(key)}"
                step = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                stack.append((child, step.lstrip("."), depth + 1))
            continue
        else:
            problem = f"a {type(item).__name__} is not a JSON value"
        if problem:
            return f"{_short(path)}: {problem}"
    return None


def _short(path: str) -> str:
    return path[:60] + "..." if len(path) > 60 else path or "<root>"


def _string_problem(text: str) -> str | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (f"holds a lone surrogate (U+{ord(text[exc.start]):04X} at character "
                f"{exc.start}): not text")
    return None


def _digits(number: int) -> str:
    # str() of a huge int is slow, and refused past 4,300 digits: say its size instead.
    if abs(number) < 10**30:
        return str(number)
    return f"an integer of about {int(number.bit_length() * math.log10(2)) + 1:,} digits"
