"""Reply parsing: the model's reply must be exactly one JSON object (optionally inside a single
```json fenced block, with whitespace around it). Control characters inside strings (a raw newline
in a quote) are taken as written. Nothing else is repaired: prose around the JSON or truncated
JSON is an error, so the caller asks again.
"""

from __future__ import annotations

import json
import re
from typing import Any

from taxdata.errors import ServerError
from taxdata.store.strictjson import (
    MAX_DEPTH,
    DuplicateKeyError,
    may_hold_problem,
    no_duplicate_keys,
    value_problem,
)

# --------------------------------------------------------------------------------------------
# Reply parsing
# --------------------------------------------------------------------------------------------


class ReplyError(ServerError, ValueError):
    """The LLM reply is not exactly one JSON object.  ``str(err)`` is one line, fit to re-ask."""


_REPLY = "reply is not a JSON object"


def _reject_constant(name: str) -> Any:
    raise ReplyError(f"{_REPLY}: {name} is not valid JSON")


# One fenced block: ``` or ~~~, an optional language word (the body may start on the same
# line: small models write ```json {"a": 1}```), the body, the same fence closing it.
_FENCE = re.compile(r"(```|~~~)[ \t]*([A-Za-z][\w+-]*)?[ \t]*\n?(.*)", re.S)


def _unfence(text: str) -> str:
    """Return the body of a reply that is one ```json fenced block and nothing else."""
    match = _FENCE.fullmatch(text)
    if match is None:  # only a fence marker with nothing after it
        raise ReplyError(f"{_REPLY}: malformed code fence")
    fence, info, body = match.groups()
    if info is not None and info.lower() != "json":
        raise ReplyError(f"{_REPLY}: code fence language is {info!r}, expected json")
    close = body.find(fence)
    if close == -1:
        raise ReplyError(f"{_REPLY}: code fence is not closed (truncated reply?)")
    after = body[close + 3 :].strip()
    if after:
        where = "more than one code fence" if fence in after else "prose after the code fence"
        raise ReplyError(f"{_REPLY}: {where}")
    return body[:close].strip()


def parse_reply(text: str) -> dict[str, Any]:
    """Parse an LLM reply that must be exactly one JSON object.

    Accepted: the object itself, with surrounding whitespace, or a single ```json (or bare ```,
    or ~~~) fenced block that is the whole reply, its body on the fence's line or the next;
    control characters inside strings.  Everything else raises :class:`ReplyError`: prose
    before/after the JSON, invalid or truncated JSON (message carries json's line/column),
    NaN/Infinity, duplicate keys, or a JSON value that is not an object.  Nothing is repaired.
    """
    text = text.strip()
    if text.startswith(("```", "~~~")):
        text = _unfence(text)
    if not text:
        raise ReplyError(f"{_REPLY}: empty reply")
    if text[0] not in "{[":
        where = "prose before JSON" if "{" in text else "no JSON object found"
        raise ReplyError(f"{_REPLY}: {where}")
    # strict=False: a raw newline or tab inside a string (real models write them in quotes and
    # notes) is the text the model meant, not a reason to throw the reply away.
    decoder = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=no_duplicate_keys,
                               strict=False)
    try:
        value, end = decoder.raw_decode(text)
    except DuplicateKeyError as exc:
        raise ReplyError(f"{_REPLY}: duplicate key {exc.key!r}") from None
    except json.JSONDecodeError as exc:
        cut = exc.pos >= len(text) or exc.msg.startswith("Unterminated string")
        hint = "; the reply ends early (truncated?)" if cut else ""
        raise ReplyError(
            f"{_REPLY}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}){hint}"
        ) from None
    except RecursionError:  # the decoder recurses once per level
        raise ReplyError(f"{_REPLY}: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4,300 digits
        raise ReplyError(f"{_REPLY}: invalid JSON: {exc}") from None
    if text[end:].strip():
        raise ReplyError(f"{_REPLY}: prose after JSON")
    problem = value_problem(value) if may_hold_problem(text) else None
    if problem:  # too deep, an integer beyond the calculator's, a lone surrogate
        raise ReplyError(f"{_REPLY}: {problem}")
    if not isinstance(value, dict):  # only an array can get here: text starts with { or [
        raise ReplyError(f"{_REPLY}: got a JSON array")
    return value
