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
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import requests
import urllib3.exceptions

from taxdata.clients.dialects import Chunk, Dialect
from taxdata.clients.watch import Watch

# Whitespace the client accepts after a JSON object before it calls the reply done.
TRAILING_WHITESPACE = 64
# Tokens past the cap a server may send before the client cuts (some count a few differently).
CAP_SLACK = 16
READ_SIZE = 65536


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
        """Read the next piece of the reply."""
        if self.closed:
            self.after += piece
            return
        if not self.wants(piece):
            return
        for index, char in enumerate(piece):
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif char == "\\":
                    self.escape = True
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
        if not buffer and data.endswith(b"\n") and data.count(b"\n") == 1:
            reader.line(data)  # one whole line (a streaming server's chunk): nothing to split
        else:
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                reader.line(line)
        if reader.result.cut or reader.result.error or after_final > READ_SIZE:
            reader.result.text = reader.text
            return reader.result
    reader.line(buffer)
    reader.result.read_to_end = True
    return reader.finish()


_scan = json.JSONDecoder().scan_once  # the C scanner json.loads ends in, without its layers


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


def _pieces(raw: Any) -> Iterator[bytes]:
    """The body as it arrives. A chunked body (what streaming servers send) is read chunk by
    chunk by urllib3's ``read_chunked``, under one error guard for the whole body (``read1`` per
    token costs a guard, a context manager and four calls more each time); any other body by
    ``read1``, which returns what has come (a plain ``read(n)`` would wait for n bytes)."""
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
        # A plain token (nearly every object): take()'s work for it, spelled out.
        text, model = plain
        watch = self.watch
        if watch.last_token is None and self.on_first_token is not None:
            self.on_first_token()
        watch.token()
        self.pieces.append(text)
        result = self.result
        result.tokens += 1
        if model is not None:
            result.model = model
        if (self.cap is not None and result.tokens > self.cap + CAP_SLACK) or (
                self.json_end is not None and self.json_end.wants(text)):
            self.check_cut()  # only a token that can cut the reply needs the whole check

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
            self.check_cut()
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

    def check_cut(self) -> None:
        result = self.result
        if self.cap is not None and result.tokens > self.cap + CAP_SLACK:
            result.cut, result.stop_reason = f"over the {self.cap}-token cap", "length"
            return
        if self.json_end is not None:
            self.json_end.feed(self.pieces[-1])
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
