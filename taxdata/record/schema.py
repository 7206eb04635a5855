"""The JSON schema sent to LLM servers for structured output: :class:`Extraction`'s, made
grammar-friendly (no titles or defaults, definitions inlined, every property required).
"""

from __future__ import annotations

import copy
from typing import Any

from taxdata.record.models import Extraction

# --------------------------------------------------------------------------------------------
# JSON schema for the server
# --------------------------------------------------------------------------------------------

_SCHEMA_CACHE: dict[str, Any] | None = None
# Schema keywords that only add noise for grammar conversion ("default" is moot once every
# property is required; titles duplicate the property names).
_DROP_KEYWORDS = frozenset({"title", "default", "$defs"})


def _grammar_friendly(node: Any, defs: dict[str, Any], stack: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_grammar_friendly(item, defs, stack) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in stack:  # a recursive model cannot be inlined
            raise ValueError(f"recursive $ref {name!r} cannot be inlined")
        target = _grammar_friendly(defs[name], defs, stack + (name,))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings}  # a field's own description wins over the model docstring
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYWORDS:
            continue
        if key == "properties":  # keys here are property names, not schema keywords
            out[key] = {p: _grammar_friendly(s, defs, stack) for p, s in value.items()}
        else:
            out[key] = _grammar_friendly(value, defs, stack)
    if out.get("type") == "object" or "properties" in out:
        props = out.setdefault("properties", {})
        out["required"] = list(props)  # nullability is expressed by anyOf [..., null]
        out["additionalProperties"] = False
    return out


def extraction_json_schema() -> dict[str, Any]:
    """JSON schema of :class:`Extraction` for structured output (llama.cpp / Ollama grammars).

    Generated from the model, then: ``$ref`` inlined (no ``$defs``), every property required
    (optional ones are nullable via ``anyOf`` with ``{"type": "null"}``), ``additionalProperties:
    false`` on every object, titles/defaults removed.  Returns a fresh copy on every call.
    """
    global _SCHEMA_CACHE
    if _SCHEMA_CACHE is None:
        raw = Extraction.model_json_schema()
        _SCHEMA_CACHE = _grammar_friendly(raw, raw.get("$defs", {}), ())
    return copy.deepcopy(_SCHEMA_CACHE)


def schema_outline(schema: dict[str, Any]) -> str:
    """The schema in a compact notation for a prompt (a server without structured output gets
    it there): every key, in order, its type, ``|null`` where it may be null, enums spelled out,
    e.g. ``{"rate": number, "notes": string|null}``. A few hundred characters instead of the
    schema's thousands."""
    return _outline(schema)


def _outline(node: Any) -> str:
    if not isinstance(node, dict):
        return "any"
    if "anyOf" in node:
        return "|".join(dict.fromkeys(_outline(option) for option in node["anyOf"]))
    if "enum" in node:
        return "|".join(f'"{value}"' for value in node["enum"])
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        fields = ", ".join(f'"{name}": {_outline(sub)}'
                           for name, sub in (node.get("properties") or {}).items())
        return "{" + fields + "}"
    if kind == "array":
        return "[" + _outline(node.get("items")) + "]"
    return str(kind or "any")
