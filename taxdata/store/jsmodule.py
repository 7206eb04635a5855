"""Safe import and export of the map calculator's ``taxData.js``.

The calculator ships its data as an ES module (``export const taxData = {...};``
followed by helper functions).  We must read existing files written by people
and older tools, and write new ones the browser loads as code.  Both directions
are done here without ``eval``, Node or any other JS engine:

* :func:`parse_tax_data_js` locates the ``taxData =`` assignment and reads the
  object literal after it with a small tokenizer + recursive-descent parser
  that accepts only *data* (strings, numbers, booleans, null/undefined,
  objects, arrays).  Anything executable - calls, identifier references,
  template substitutions, spreads - is a :class:`JSParseError` with a
  ``file:line:col`` position, so a tampered or LLM-mangled file can never run.
* :func:`render_tax_data_js` writes a deterministic, diff-friendly module whose
  strings and comments cannot escape their syntax (U+2028/U+2029, lone
  surrogates and newlines in comments are all neutralised).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from taxdata.errors import DataError

__all__ = ["JSParseError", "parse_tax_data_js", "render_comment", "render_tax_data_entry",
           "render_tax_data_js", "split_tax_data_entries", "tax_data_module"]


class JSParseError(DataError):
    """Malformed or non-literal taxData.js; message is ``source:LINE:COL: what (expected ...)``."""

    def __init__(self, source: str, line: int, col: int, what: str, expected: str) -> None:
        self.source, self.line, self.col = source, line, col
        self.what, self.expected = what, expected
        super().__init__(f"{source}:{line}:{col}: {what} (expected {expected})")


# --------------------------------------------------------------------------- lexer
# Why a hand-written lexer instead of regex search or json after some rewriting:
# "taxData =" and the closing "}" may appear inside strings and comments (a note
# saying "};" or "// see ..."), so finding where the literal starts and ends
# already requires knowing what is a string and what is a comment.  Once we
# have tokens, parsing values is a few lines more.  Each token is matched with
# simple, anchored character-class regexes (no nested quantifiers), so the
# whole parse is linear in the file size.  The lexer is a pure function of the
# position, which gives free lookahead and means text after the literal (helper
# functions, possibly with regex literals) is never tokenized.

class _Tok(NamedTuple):
    kind: str  # punct | ident | string | number | eof
    value: Any
    start: int
    end: int


_WS = re.compile(r"[ \t\n\r\v\f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*")
_LINE_COMMENT = re.compile(r"[^\n\r\u2028\u2029]*")
_IDENT = re.compile(r"(?:[^\W\d]|\$)[\w$\u200c\u200d]*")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+"
                     r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.A)
_PUNCT = re.compile(r"\.\.\.|=>|===?|.", re.S)
_HEX = re.compile(r"[0-9a-fA-F]*")
_STR_CHUNK = {q: re.compile(rf"[^{q}\\\n\r]*") for q in "\"'"}
_TPL_CHUNK = re.compile(r"[^`\\$\r]*")
_SIMPLE_ESC = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}
_LINE_TERMINATORS = "\n\r\u2028\u2029"
_MAX_DEPTH = 200
_DIGITS = "0123456789"  # ASCII only: str.isdigit() would accept e.g. Arabic-Indic digits


# A finite double has at most 309 integer digits (1e308), 1,100 binary ones; a longer literal
# is no number the calculator can hold (and int() refuses 4,300 digits and more).
_MAX_NUMBER_CHARS = 1_100


def _fail(text: str, source: str, pos: int, what: str, expected: str) -> JSParseError:
    line = text.count("\n", 0, pos) + 1
    return JSParseError(source, line, pos - (text.rfind("\n", 0, pos) + 1) + 1, what, expected)


def _lex(text: str, pos: int, source: str) -> _Tok:
    while True:  # skip whitespace and comments
        pos = _WS.match(text, pos).end()
        if text.startswith("//", pos):
            pos = _LINE_COMMENT.match(text, pos).end()
        elif text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            if end < 0:
                raise _fail(text, source, pos, "unterminated block comment", "'*/'")
            pos = end + 2
        else:
            break
    if pos >= len(text):
        return _Tok("eof", None, pos, pos)
    c = text[pos]
    if c in "\"'`":
        return _lex_string(text, pos, source)
    if c in _DIGITS or (c == "." and len(text) > pos + 1 and text[pos + 1] in _DIGITS):
        m = _NUMBER.match(text, pos)
        s, end = m.group(), m.end()
        if end < len(text) and (text[end].isalnum() or text[end] in "_$"):
            raise _fail(text, source, end, f"invalid character {text[end]!r} in number",
                        "a digit or separator")
        if len(s) > 1 and s[0] == "0" and s[1].isdigit():
            raise _fail(text, source, pos, f"legacy octal literal {s!r}", "a decimal number")
        if len(s) > _MAX_NUMBER_CHARS:  # beyond any finite double; int() would balk at it
            raise _fail(text, source, pos, f"number of {len(s):,} characters out of range",
                        "a finite number")
        if s[:2].lower() in ("0x", "0o", "0b"):
            value = int(s, 0)
        else:
            value = float(s) if any(ch in s for ch in ".eE") else int(s)
        if value == math.inf:
            raise _fail(text, source, pos, f"number {s!r} out of range", "a finite number")
        return _Tok("number", value, pos, end)
    m = _IDENT.match(text, pos)
    if m:
        return _Tok("ident", m.group(), pos, m.end())
    m = _PUNCT.match(text, pos)
    return _Tok("punct", m.group(), pos, m.end())


def _lex_string(text: str, start: int, source: str) -> _Tok:
    quote, n = text[start], len(text)
    chunk = _TPL_CHUNK if quote == "`" else _STR_CHUNK[quote]
    parts: list[str] = []
    pos = start + 1
    while True:
        m = chunk.match(text, pos)
        parts.append(m.group())
        pos = m.end()
        c = text[pos] if pos < n else ""
        if c == quote:
            break
        if c == "\\":
            pos = _escape(text, pos + 1, source, parts)
        elif quote == "`" and c == "$":
            if text.startswith("${", pos):
                raise _fail(text, source, pos, "template literal substitution '${'",
                            "a plain string")
            parts.append(c)
            pos += 1
        elif quote == "`" and c == "\r":  # templates normalise CR and CRLF to LF
            parts.append("\n")
            pos += 2 if text.startswith("\r\n", pos) else 1
        else:  # raw newline or end of input
            raise _fail(text, source, start, "unterminated string literal", f"closing {quote}")
    s = "".join(parts)
    if any("\ud800" <= ch <= "\udfff" for ch in s):  # join \uD83D\uDE00-style surrogate pairs
        s = s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return _Tok("string", s, start, pos + 1)


def _escape(text: str, pos: int, source: str, parts: list[str]) -> int:
    """Decode the escape whose character is at ``pos`` (after the backslash); return the new
    position."""
    c = text[pos : pos + 1]
    if c in _SIMPLE_ESC:
        parts.append(_SIMPLE_ESC[c])
        return pos + 1
    if c == "0" and not text[pos + 1 : pos + 2].isdigit():
        parts.append("\0")
        return pos + 1
    if c.isdigit():
        raise _fail(text, source, pos - 1, "octal escape sequence",
                    "a valid escape; octal is not allowed in modules")
    if c in ("x", "u"):
        if c == "u" and text.startswith("{", pos + 1):
            digits = _HEX.match(text, pos + 2).group()
            end = pos + 2 + len(digits)
            if not digits or not text.startswith("}", end) or int(digits, 16) > 0x10FFFF:
                raise _fail(text, source, pos - 1, "invalid \\u{...} escape",
                            "1-6 hex digits up to 10FFFF and '}'")
            parts.append(chr(int(digits, 16)))
            return end + 1
        width = 2 if c == "x" else 4
        digits = _HEX.match(text, pos + 1, pos + 1 + width).group()
        if len(digits) != width:
            raise _fail(text, source, pos - 1, f"invalid \\{c} escape", f"{width} hex digits")
        parts.append(chr(int(digits, 16)))
        return pos + 1 + width
    if c and c in _LINE_TERMINATORS:  # line continuation: backslash-newline contributes nothing
        return pos + (2 if text.startswith("\r\n", pos) else 1)
    if not c:
        raise _fail(text, source, pos, "unterminated string literal", "an escape character")
    parts.append(c)  # \" \' \\ \/ and any other identity escape
    return pos + 1


# -------------------------------------------------------------------------- parser

def _describe(tok: _Tok) -> str:
    if tok.kind == "eof":
        return "unexpected end of input"
    if tok.kind == "string":
        s = tok.value
        return f"unexpected string {s[:30]!r}" + ("..." if len(s) > 30 else "")
    if tok.kind == "number":
        return f"unexpected number {tok.value!r}"
    return f"unexpected {'identifier ' if tok.kind == 'ident' else ''}{tok.value!r}"


class _Parser:
    def __init__(self, text: str, source: str, start: _Tok) -> None:
        self.text, self.source, self.tok = text, source, start

    def _advance(self) -> _Tok:
        tok, self.tok = self.tok, _lex(self.text, self.tok.end, self.source)
        return tok

    def _error(self, what: str, expected: str, tok: _Tok | None = None) -> JSParseError:
        return _fail(self.text, self.source, (tok or self.tok).start, what, expected)

    def _is(self, punct: str) -> bool:
        return self.tok.kind == "punct" and self.tok.value == punct

    def value(self, depth: int = 0) -> Any:
        tok = self.tok
        if depth > _MAX_DEPTH:
            raise self._error("nesting too deep", f"at most {_MAX_DEPTH} levels")
        if tok.kind in ("string", "number"):
            return self._advance().value
        if tok.kind == "punct":
            if tok.value == "{":
                return self._object(depth + 1)
            if tok.value == "[":
                return self._array(depth + 1)
            if tok.value in ("+", "-"):
                self._advance()
                if self.tok.kind != "number":
                    raise self._error(f"{_describe(self.tok)} after {tok.value!r}", "a number")
                num = self._advance().value
                return -num if tok.value == "-" else num
            if tok.value == "...":
                raise self._error("spread '...'", "a literal value")
        if tok.kind == "ident":
            literals = {"true": True, "false": False, "null": None, "undefined": None}
            if tok.value in literals:
                self._advance()
                return literals[tok.value]
            nxt = _lex(self.text, tok.end, self.source)
            if nxt.kind == "punct" and nxt.value == "(":
                raise self._error(f"function call '{tok.value}(...)'", "a literal value")
            raise self._error(f"identifier reference {tok.value!r}", "a literal value")
        raise self._error(_describe(tok), "a value")

    def _object(self, depth: int) -> dict[str, Any]:
        self._advance()  # '{'
        obj: dict[str, Any] = {}
        while not self._is("}"):
            key_tok = self._advance()
            if key_tok.kind in ("ident", "string"):
                key = key_tok.value
            elif key_tok.kind == "number":
                v = key_tok.value  # JS turns numeric keys into their canonical string
                key = str(v) if isinstance(v, int) else str(int(v)) if v.is_integer() else repr(v)
            elif key_tok.kind == "punct" and key_tok.value == "...":
                raise self._error("spread '...'", "a property name", key_tok)
            elif key_tok.kind == "punct" and key_tok.value == "[":
                raise self._error("computed property name '['", "a property name", key_tok)
            else:
                raise self._error(_describe(key_tok), "a property name or '}'", key_tok)
            if not self._is(":"):
                if key_tok.kind == "ident" and (self._is(",") or self._is("}")):
                    raise self._error(f"shorthand property {key!r}", "':' and a value", key_tok)
                raise self._error(_describe(self.tok), "':'")
            self._advance()
            obj[key] = self.value(depth)  # duplicate keys: the later one wins, as in JS
            if self._is(","):
                self._advance()
            elif not self._is("}"):
                raise self._error(_describe(self.tok), "',' or '}'")
        self._advance()  # '}'
        return obj

    def _array(self, depth: int) -> list[Any]:
        self._advance()  # '['
        arr: list[Any] = []
        while not self._is("]"):
            if self._is(","):
                raise self._error("array hole ','", "a value or ']'")
            arr.append(self.value(depth))
            if self._is(","):
                self._advance()
            elif not self._is("]"):
                raise self._error(_describe(self.tok), "',' or ']'")
        self._advance()  # ']'
        return arr


def _find_literal(text: str, source: str) -> _Tok:
    """Return the '{' token of ``[export] const|let|var taxData = {``
    (or ``module.exports = {``)."""
    pos, fallback, window = 0, None, []
    while True:
        tok = _lex(text, pos, source)
        if tok.kind == "eof":
            break
        if tok.kind == "punct" and tok.value == "=":
            # Any `taxData =` works (const/let/var, window.taxData, exports.taxData).
            module_exports = window[-3:] == ["module", ".", "exports"]
            if window[-1:] == ["taxData"] or (fallback is None and module_exports):
                brace = _lex(text, tok.end, source)
                if brace.kind != "punct" or brace.value != "{":
                    raise _fail(text, source, brace.start, _describe(brace) + " after '='",
                                "'{' starting the object literal")
                if window[-1:] == ["taxData"]:
                    return brace
                fallback = brace
        window = (window + [tok.value if tok.kind in ("ident", "punct") else None])[-3:]
        pos = tok.end
    if fallback is not None:
        return fallback
    raise _fail(text, source, 0, "no 'taxData = {' assignment found", "'export const taxData = {'")


def parse_tax_data_js(text: str, *, source: str = "taxData.js") -> dict[str, Any]:
    """Parse the ``taxData`` object literal of a calculator data file, without executing anything.

    Only JSON-like literals are accepted (plus JS conveniences: comments, unquoted
    keys, single quotes, trailing commas, hex numbers, ``undefined`` -> None).
    Text after the literal's closing brace is ignored.  Raises :class:`JSParseError`.
    """
    parser = _Parser(text, source, _find_literal(text, source))
    result = parser.value()
    if not isinstance(result, dict):  # pragma: no cover - _find_literal guarantees '{'
        raise parser._error("taxData is not an object", "'{'")
    return result


# ------------------------------------------------------------------------ renderer

_IDENT_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_JS_LINE_BREAK = re.compile(r"\r\n|[\r\n\u2028\u2029]")  # everything that ends a // comment in JS
_UNSAFE_IN_STRING = re.compile(r"[\u2028\u2029\ud800-\udfff]")
_WIDTH = 100  # max line length for putting a flat object/array on one line


def _js_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"object keys must be str, not {type(key).__name__}: {key!r}")
    return key if _IDENT_KEY.match(key) else _js_string(key)


def _js_string(s: str) -> str:
    # json.dumps handles quotes, backslashes and control characters; JS also needs
    # U+2028/U+2029 escaped (older engines) and lone surrogates (unencodable in UTF-8).
    return _UNSAFE_IN_STRING.sub(lambda m: f"\\u{ord(m.group()):04x}",
                                 json.dumps(s, ensure_ascii=False))


def _js_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"cannot represent {v!r} in taxData.js")
        # 19.0 -> "19" (no noise); otherwise repr is the shortest round-tripping form, valid JS.
        return str(int(v)) if v.is_integer() and abs(v) < 1e16 else repr(v)
    if isinstance(v, str):
        return _js_string(v)
    raise TypeError(f"cannot render {type(v).__name__} value {v!r} as JS")


def _is_container(v: Any) -> bool:
    if isinstance(v, (dict, list, tuple)):  # the common case, without the ABC checks' cost
        return True
    if isinstance(v, (str, int, float, bool, type(None))):
        return False
    return isinstance(v, Mapping) or (isinstance(v, Sequence) and not isinstance(v, (str, bytes)))


def _inline(v: Any) -> str | None:
    """One-line form for scalars, arrays of scalars and objects of scalars/scalar arrays; else None.

    Objects never go inline inside other containers, so a list of brackets is
    always one bracket per line and adding a bracket is a one-line diff.
    """
    if isinstance(v, Mapping):
        parts = []
        for k, x in v.items():
            if not _is_container(x):
                s = _js_scalar(x)
            else:
                s = None if isinstance(x, Mapping) and x else _inline(x)
            if s is None:
                return None
            parts.append(f"{_js_key(k)}: {s}")
        return "{ " + ", ".join(parts) + " }" if parts else "{}"
    if _is_container(v):
        if any(_is_container(x) for x in v):
            return None
        return "[" + ", ".join(_js_scalar(x) for x in v) + "]"
    return _js_scalar(v)


def _render(v: Any, level: int, prefix_len: int, force_multiline: bool = False) -> str:
    if not _is_container(v):
        return _js_scalar(v)
    if not force_multiline:
        one = _inline(v)
        if one is not None and 2 * level + prefix_len + len(one) + 1 <= _WIDTH:
            return one
    pad = "  " * (level + 1)
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        body = []
        for k, x in v.items():
            prefix = f"{_js_key(k)}: "
            body.append(f"{pad}{prefix}{_render(x, level + 1, len(prefix))},")
        return "{\n" + "\n".join(body) + "\n" + "  " * level + "}"
    if not v:
        return "[]"
    items = "\n".join(f"{pad}{_render(x, level + 1, 0)}," for x in v)
    return "[\n" + items + "\n" + "  " * level + "]"


def _comment(text: Any, pad: str) -> list[str]:
    # Split on every JS line terminator so comment text can never become code;
    # lone surrogates cannot be written as UTF-8, so they become U+FFFD.
    text = re.sub("[\ud800-\udfff]", "\ufffd", str(text))
    return [f"{pad}// {part}".rstrip() for part in _JS_LINE_BREAK.split(text)]


def render_tax_data_js(
    dataset: Mapping[str, Mapping[str, Any]],
    *,
    header_lines: Sequence[str] = (),
    comments: Mapping[str, str] | None = None,
) -> str:
    """Render ``export const taxData = {...};`` deterministically (same input -> same bytes).

    Countries are written in ``dataset`` order, each preceded by ``comments[key]``
    (if any) as ``//`` lines.  Raises ValueError for NaN/Infinity, TypeError for
    values that have no JSON-like JS form.
    """
    return tax_data_module(header_lines, (
        render_tax_data_entry(key, country, (comments or {}).get(key))
        for key, country in dataset.items()))


def render_tax_data_entry(key: str, country: Mapping[str, Any], comment: str | None = None
                          ) -> str:
    """One country of :func:`render_tax_data_js`: its comment lines and its entry, each line
    ending in a newline (so a caller can keep them and re-render only what changed)."""
    out = _comment(comment, "  ") if comment is not None else []
    prefix = f"{_js_key(key)}: "
    out.append(f"  {prefix}{_render(country, 1, len(prefix), force_multiline=True)},")
    return "\n".join(out) + "\n"


def render_comment(text: str, indent: str = "  ") -> str:
    """``text`` as ``//`` comment lines (each ending in a newline) that cannot become code."""
    return "\n".join(_comment(text, indent)) + "\n"


def split_tax_data_entries(text: str) -> list[tuple[str, str]] | None:
    """The countries of a module :func:`render_tax_data_js` wrote, as ``(key prefix, entry)``
    in the file's order (each entry as :func:`render_tax_data_entry` renders it without its
    comment), so a caller can reuse them; None for a file of any other shape."""
    start = text.find("\nexport const taxData = {\n")
    end = text.rfind("\n};\n")
    if start < 0 or end < start:
        return None
    entries: list[tuple[str, str]] = []
    current: list[str] = []
    for line in text[start + 26:end + 1].split("\n")[:-1]:
        if not current:
            if line.startswith("  //"):
                continue
            if not line.startswith("  ") or line.startswith("   ") or ": " not in line:
                return None
            current.append(line)
            if line.endswith(","):  # a country on one line (an empty object)
                entries.append((line[2:line.index(": ") + 2], line + "\n"))
                current = []
        else:
            current.append(line)
            if line == "  },":
                entries.append((current[0][2:current[0].index(": ") + 2],
                                "\n".join(current) + "\n"))
                current = []
    return None if current else entries


def tax_data_module(header_lines: Sequence[str] | str, entries: Iterable[str]) -> str:
    """The module around rendered entries (:func:`render_tax_data_entry`)."""
    if isinstance(header_lines, str):
        header_lines = [header_lines]
    head = [line for h in header_lines for line in _comment(h, "")]
    prologue = "\n".join(head) + "\n\n" if head else ""
    return prologue + "export const taxData = {\n" + "".join(entries) + "};\n"
