"""Reading a streamed LLM reply as it comes: Ollama's NDJSON lines, OpenAI's server-sent events, or
a whole reply from a server that does not stream.

Each token restarts the request's idle clock (:class:`~taxdata.clients.watch.Watch`); pings and
blank lines do not. The client ends a reply itself, closing the connection so the server stops
generating, when the reply runs past what the request can need:

- more tokens than the cap it asked for (a server that ignores its cap);
- for a JSON request, text after the object has closed: prose (the reply will be asked again
  anyway) or a run of whitespace (a grammar-constrained model that cannot stop);
- more bytes than ``max_bytes`` (``TAXDATA_MAX_REPLY_BYTES``).
"""

from __future__ import annotations

import http.client
import json
import re
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Callable, Iterator

import requests
import urllib3.exceptions

from taxdata.clients.chunked import READ_SIZE, blocks_of
from taxdata.clients.dialects import Chunk, Dialect
from taxdata.clients.watch import Watch

# Whitespace the client accepts after a JSON object before it calls the reply done.
TRAILING_WHITESPACE = 64
# Tokens past the cap a server may send before the client cuts (some count a few differently).
CAP_SLACK = 16


class StreamBroken(Exception):
    """The connection ended or failed before the reply was complete."""


class ReplyTooLarge(requests.RequestException):
    """The answer is larger than the configured cap (TAXDATA_MAX_REPLY_BYTES); not read on."""


@dataclass
class Streamed:
    """What a (streamed) reply came to."""

    text: str = ""
    final: bool = False  # the server said the reply is complete
    stop_reason: str | None = None  # "stop", "length", ...; None: no finish reason given
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    tokens: int = 0  # content pieces received
    done_marker: bool = False  # OpenAI's "data: [DONE]"
    cut: str | None = None  # the client ended it early: why
    error: str | None = None  # an error the server sent inside the stream
    unreadable: str | None = None  # the body is neither a stream nor a reply: a sample of it
    read_to_end: bool = False  # the body ended (else the client stopped reading: close it)


_STRUCTURAL = re.compile(r'[{}"\\]')


class JsonEnd:
    """Follows a growing reply to where its first top-level JSON object closes, and keeps what
    comes after it (``after``)."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = self.in_string = self.escape = False
        self.closed = False
        self.after = ""

    def wants(self, piece: str) -> bool:
        """Whether ``piece`` can change what this follower says: once the object has closed,
        or when it holds a brace, a quote or a backslash (or an escape is pending); most
        tokens are plain words."""
        return self.closed or self.escape or _STRUCTURAL.search(piece) is not None

    def feed(self, piece: str) -> None:
        """Read the next piece of the reply (only its braces, quotes and backslashes matter)."""
        if self.closed:
            self.after += piece
            return
        if not self.wants(piece):
            return
        skip = 0  # characters before this index are escaped (or already read)
        if self.escape:
            self.escape, skip = False, 1
        for match in _STRUCTURAL.finditer(piece, skip):
            index = match.start()
            if index < skip:
                continue
            char = piece[index]
            if self.in_string:
                if char == "\\":
                    if index + 1 == len(piece):
                        self.escape = True  # the next piece's first character is escaped
                        return
                    skip = index + 2
                elif char == '"':
                    self.in_string = False
            elif char == "{":
                self.depth += 1
                self.started = True
            elif not self.started:
                continue  # prose or a fence before the object
            elif char == '"':
                self.in_string = True
            elif char == "}":
                self.depth -= 1
                if self.depth == 0:
                    self.closed = True
                    self.after = piece[index + 1:]
                    return

    def feed_open(self, text: str) -> int | None:
        """Feed ``text`` unless the object closes in it (or has closed): then nothing is read
        and it says where in ``text`` (the closing brace's index; 0 when it had closed), so
        the caller can feed the pieces before that one at once and cut at the right one. None:
        all of ``text`` was read and the object is still open."""
        if self.closed:
            return 0
        if not self.wants(text):
            return None
        state = self.depth, self.started, self.in_string, self.escape
        self.feed(text)
        if self.closed:
            at = len(text) - len(self.after) - 1
            self.depth, self.started, self.in_string, self.escape = state
            self.closed, self.after = False, ""
            return at
        return None

    def past_the_object(self) -> str | None:
        """Why the reply should stop now that its object has closed, if it should."""
        if not self.closed:
            return None
        rest = self.after.strip()
        fence = rest[:3]
        if rest and not (set(fence) <= set("`") or set(fence) <= set("~")) or rest[3:].strip():
            return "text after the JSON object"  # more than (a piece of) the closing fence
        if len(self.after) > TRAILING_WHITESPACE:
            return "only whitespace after the JSON object"
        return None


def read_reply(response: requests.Response, dialect: Dialect, watch: Watch, *, max_bytes: int,
               cap: int | None, expect_json: bool,
               on_first_token: Callable[[], None] | None = None) -> Streamed:
    """Read a 200 answer to its end (or until the client cuts it); see the module docstring.

    Raises :class:`StreamBroken` when the connection fails or ends before a complete reply
    (the watch's ``expired`` says whether the watchdog ended it), :class:`ReplyTooLarge`.
    """
    reader = _Reader(dialect, watch, cap, expect_json, on_first_token)
    total, buffer, after_final = 0, b"", 0
    pieces = _pieces(response.raw)
    while True:
        try:
            data = next(pieces, b"")
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError,
                ValueError) as exc:
            if reader.result.final or reader.result.done_marker:
                break  # the reply had ended; only the connection's own end was untidy
            raise StreamBroken(type(exc).__name__) from None
        if not data:
            break
        total += len(data)
        if total > max_bytes:
            raise ReplyTooLarge(f"reply larger than {max_bytes:,} bytes "
                                "(TAXDATA_MAX_REPLY_BYTES); not read further")
        if reader.result.final or reader.result.done_marker:
            after_final += len(data)
        if buffer:
            data = buffer + data
        whole = data.rfind(b"\n") + 1  # the lines that have come whole; the rest waits
        buffer = data[whole:]
        if whole:
            reader.block(data if whole == len(data) else data[:whole])
        if reader.result.cut or reader.result.error or after_final > READ_SIZE:
            reader.result.text = reader.text
            return reader.result
    reader.line(buffer)
    reader.result.read_to_end = True
    return reader.finish()


_scan = json.JSONDecoder().scan_once  # the C scanner json.loads ends in, without its layers
_loads = json.JSONDecoder().decode  # json.loads without its per-call type checks


def _parse_object(line: bytes) -> Any:
    """``json.loads(line)`` for one stream line (UTF-8, as every server sends), at a third of
    its cost per token: ValueError unless the line is exactly one JSON value."""
    text = line.decode("utf-8")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def _token_objects(text: str) -> tuple[list[Any], bool, int] | None:
    """The values of the whole lines ``text`` from the first on, one a line, while each line is
    exactly one JSON value: NDJSON lines, or server-sent events (``data: `` lines, each followed
    by a blank line); the last line may be another (``data: [DONE]``, a comment), and is then
    left out. Returns the values, whether they are events, and the count of lines; None when
    the lines are not such values.

    JSON holds no raw line break outside its strings, nor inside them (a strict parser refuses
    one), so the line breaks are the framing alone: replaced by commas they make one array
    exactly when no line is empty and no value is cut across lines; the count then says that
    no line held two values."""
    body = text.rstrip("\n")
    events = body.startswith("data: ")
    if events:  # OpenAI's events: "data: {...}" and a blank line, each
        body = body[6:].replace("\n\ndata: ", "\n")
    lines = body.count("\n") + 1
    for upto in (len(body), body.rfind("\n")):
        if upto <= 0 or not body.startswith("{"):
            return None
        try:
            values = _loads("[" + body[:upto].replace("\n", ",") + "]")
        except ValueError:
            continue
        whole = lines if upto == len(body) else lines - 1
        return (values, events, lines) if len(values) == whole else None
    return None


def _plain_token(text: str, pos: int, eol: int,
                 token: Callable[[Any], tuple[str, Any] | None]) -> tuple[str, Any] | None:
    """The line ``text[pos:eol]`` as a plain token (``Dialect.token``'s answer), or None when it
    is anything else: not exactly one JSON object (an OpenAI ``data:`` event's included), or an
    object that is not a plain token. The caller then reads the line with ``_Reader.line``."""
    start = pos + 6 if text.startswith("data: {", pos) else pos  # OpenAI's events
    if not text.startswith("{", start):
        return None
    try:
        value, end = _scan(text, start)
        if end > eol or (end != eol and not text[end:eol].isspace()):
            return None  # more than one value on the line, or one that runs past it
        return token(value)
    except (StopIteration, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _pieces(raw: Any) -> Iterator[bytes]:
    """The body as it arrives. A chunked body (what streaming servers send) a block at a time:
    every chunk one read brought (:mod:`taxdata.clients.chunked`), or, for a body that module
    leaves alone, urllib3's ``read_chunked`` chunk by chunk under one error guard for the whole
    body; any other body by ``read1``, which returns what has come (a plain ``read(n)`` would
    wait for n bytes)."""
    blocks = blocks_of(raw)
    if blocks is not None:
        yield from blocks
        return
    if raw.chunked and raw.supports_chunked_reads():
        yield from raw.read_chunked(READ_SIZE)
        return
    while data := raw.read1(READ_SIZE):
        yield data


class _Reader:
    """Turns the lines of an answer into a :class:`Streamed`."""

    def __init__(self, dialect: Dialect, watch: Watch, cap: int | None, expect_json: bool,
                 on_first_token: Callable[[], None] | None) -> None:
        self.dialect, self.watch, self.cap = dialect, watch, cap
        self.json_end = JsonEnd() if expect_json else None
        self.on_first_token = on_first_token
        self.result = Streamed()
        self.pieces: list[str] = []
        self.other: list[bytes] = []  # lines that are not stream objects (a whole JSON body?)
        self.objects = 0

    def block(self, data: bytes) -> None:
        """Whole lines (what one read brought). The plain tokens among them (nearly all) are
        taken in one pass and counted once (:meth:`took`); any other line goes to :meth:`line`
        in its turn. A cut or an error stops the block where :meth:`line` would have stopped."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # a broken line: each line as it is, the broken one refused
            for line in data.split(b"\n"):
                self.line(line)
                if self.result.cut or self.result.error:
                    return
            return
        token, result = self.dialect.token, self.result
        pos, size = self.tokens_at_once(text), len(text)
        if pos == size or result.cut:
            return
        pieces = self.pieces
        first, model = len(pieces), None
        while pos < size:
            eol = text.find("\n", pos)
            if eol < 0:
                eol = size
            plain = _plain_token(text, pos, eol, token)
            if plain is not None:
                pieces.append(plain[0])
                if plain[1] is not None:
                    model = plain[1]
                pos = eol + 1
                continue
            if pos == eol or text[pos:eol].isspace():  # a blank line (between events)
                pos = eol + 1
                continue
            self.took(first, model)  # the tokens before this line count first
            self.objects += len(pieces) - first
            if result.cut:
                return
            self.line(text[pos:eol].encode("utf-8"))
            if result.cut or result.error:
                return
            first, model, pos = len(pieces), None, eol + 1
        self.took(first, model)
        self.objects += len(pieces) - first

    def tokens_at_once(self, text: str) -> int:
        """Take the plain tokens that open the block (a streaming server's blocks are nearly
        all plain tokens) in one parse: the lines, joined as one JSON array, parsed by one C
        call, read the very values the lines give one by one. Returns where the lines it did
        not take begin (``len(text)``: it took them all), for :meth:`block` to read one by
        one."""
        found = _token_objects(text)
        if found is None:
            return 0
        values, events, lines = found
        try:
            texts, model = self.dialect.tokens(values)
        except (KeyError, IndexError, TypeError, AttributeError):
            return 0
        taken = len(texts)
        if taken:
            pieces = self.pieces
            first = len(pieces)
            pieces.extend(texts)
            self.took(first, model)
            self.objects += len(pieces) - first  # up to a cut, as line() counts them
        if taken == lines:
            return len(text)
        pos = 0
        for _ in range(taken):  # past the lines taken (and an event's blank line)
            pos = text.index("\n", pos) + 1
            if events and text.startswith("\n", pos):
                pos += 1
        return pos

    def took(self, first: int, model: Any) -> None:
        """Count the plain tokens ``pieces[first:]`` as :meth:`line` counts each: the clock,
        the tally, the model, and a cut at the very token where one falls."""
        pieces, result = self.pieces, self.result
        new = len(pieces) - first
        if not new:
            return
        watch = self.watch
        if watch.last_token is None and self.on_first_token is not None:
            self.on_first_token()
        watch.token()
        if model is not None:
            result.model = model
        limit = None if self.cap is None else self.cap + CAP_SLACK
        json_end = self.json_end
        if limit is None or result.tokens + new <= limit:
            if json_end is None:
                result.tokens += new  # no cut can fall among them
                return
            text = pieces[first] if new == 1 else "".join(pieces[first:])
            at = json_end.feed_open(text)
            if at is None:
                result.tokens += new  # no cut can fall among them
                return
            # The object closes in the token that holds text[at]: those before it are read
            # at once, that one and the rest token by token (a cut may fall among them).
            ends = list(accumulate(map(len, pieces[first:])))
            before = bisect_right(ends, at)
            if before:
                json_end.feed(text[:ends[before - 1]])
                result.tokens += before
                first += before
        for index in range(first, len(pieces)):  # one may: token by token, as line() takes them
            result.tokens += 1
            text = pieces[index]
            if (limit is not None and result.tokens > limit) or (
                    json_end is not None and json_end.wants(text)):
                self.check_cut(text)
                if result.cut:
                    del pieces[index + 1:]
                    return

    def line(self, raw: bytes) -> None:
        line = raw.strip()
        if not line:
            return
        if line[0] != 0x7B:  # not "{": an SSE field or comment (Ollama's lines are objects)
            if line.startswith(b":"):  # an SSE comment (a ping)
                return
            if line.startswith(b"data:"):
                line = line[5:].strip()
                if line == b"[DONE]":
                    self.result.done_marker = True
                    return
            elif line.startswith((b"event:", b"id:", b"retry:")):
                return
        try:
            data = _parse_object(line)
            plain = self.dialect.token(data)
            if plain is None:
                chunk = self.dialect.chunk(data)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self.other.append(raw)
            return
        self.objects += 1
        if plain is None:
            self.take(chunk)
            return
        self.pieces.append(plain[0])
        self.took(len(self.pieces) - 1, plain[1])

    def take(self, chunk: Chunk) -> None:
        result = self.result
        if chunk.error is not None:
            result.error = chunk.error
            return
        if chunk.text or chunk.thinking:
            # A whole reply in one piece is not a first token (its time is the whole reply's).
            if (self.watch.last_token is None and self.on_first_token is not None
                    and not chunk.final):
                self.on_first_token()
            self.watch.token()
        if chunk.text:
            self.pieces.append(chunk.text)
            result.tokens += 1
            self.check_cut(chunk.text)
        # The last figure given wins (per token, so spelled out rather than looped by name).
        if chunk.model is not None:
            result.model = chunk.model
        if chunk.prompt_tokens is not None:
            result.prompt_tokens = chunk.prompt_tokens
        if chunk.completion_tokens is not None:
            result.completion_tokens = chunk.completion_tokens
        if chunk.cached_tokens is not None:
            result.cached_tokens = chunk.cached_tokens
        if chunk.final:
            result.final = True
            result.stop_reason = chunk.stop_reason

    def check_cut(self, text: str) -> None:
        """Whether the reply ends at the token ``text`` just taken (the cap, the JSON's end)."""
        result = self.result
        if self.cap is not None and result.tokens > self.cap + CAP_SLACK:
            result.cut, result.stop_reason = f"over the {self.cap}-token cap", "length"
            return
        if self.json_end is not None:
            self.json_end.feed(text)
            result.cut = self.json_end.past_the_object()

    def finish(self) -> Streamed:
        result = self.result
        result.text = "".join(self.pieces)
        if self.objects == 0 and self.other:  # not a stream: a whole body, maybe pretty-printed
            body = b"\n".join(self.other)
            try:
                self.take(self.dialect.chunk(json.loads(body)))
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                result.unreadable = body[:120].decode("utf-8", "replace")
            result.text = "".join(self.pieces)
        return result

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def close_quietly(response: Any) -> None:
    """Close an answer whatever state it is in (a cut stream, a broken one)."""
    try:
        response.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may fail in many ways
        pass
