"""What the stand-in LLM is told to do wrong (:class:`Fault`), what it records of clients that
hung up (:class:`Disconnect`), and how to read a request body it got (which structured-output
form; whether it is the client's form probe). Used by :mod:`taxdata.testing.llm_server` and by
the tests that script it.
"""

from __future__ import annotations

from dataclasses import dataclass

from taxdata.clients.llm import PROBE_MESSAGES


@dataclass
class Fault:
    """A scripted misbehaviour for one request."""

    kind: str  # status | hang | garbage | truncated | length | stall | interrupted
    status: int = 500
    message: str = "internal error"
    seconds: float = 0.0
    retry_after: str | None = None
    content: str = ""
    after: int = 0  # stall: tokens sent before the stall

    @classmethod
    def http(cls, status: int, message: str = "internal error",
             retry_after: str | None = None) -> "Fault":
        return cls("status", status=status, message=message, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float) -> "Fault":
        return cls("hang", seconds=seconds)

    @classmethod
    def garbage(cls) -> "Fault":
        return cls("garbage")

    @classmethod
    def truncated(cls) -> "Fault":
        """The server's JSON body cut in half (well-formed HTTP, broken JSON)."""
        return cls("truncated")

    @classmethod
    def length(cls, content: str = '{"partial": ') -> "Fault":
        """A reply stopped at the token limit (``done_reason``/``finish_reason`` = length)."""
        return cls("length", content=content)

    @classmethod
    def stall(cls, seconds: float, content: str = "{}", after: int = 1) -> "Fault":
        """A streamed reply that stops sending tokens for ``seconds`` after ``after`` of them."""
        return cls("stall", seconds=seconds, content=content, after=after)

    @classmethod
    def interrupted(cls, content: str = '{"partial": ') -> "Fault":
        """A stream the server ends without a finish reason (llama-cpp-python's
        ``interrupt_requests``: it preempts a stream when another request waits)."""
        return cls("interrupted", content=content)


@dataclass
class Disconnect:
    """A client that hung up: while its request was ``queued`` or ``streaming``."""

    path: str
    phase: str
    tokens_sent: int


def is_probe(body: dict | None) -> bool:
    """Whether a chat body is the client's preflight probe of the structured-output forms."""
    return isinstance(body, dict) and body.get("messages") == PROBE_MESSAGES


def structured_form(dialect: str, body: dict) -> str:
    """Which structured-output form a request body asks for (the client's names)."""
    if dialect == "openai":
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return "json_schema"
        if fmt.get("type") == "json_object":
            return "json_object_schema" if "schema" in fmt else "json_object"
        return "none"
    fmt = body.get("format")
    if isinstance(fmt, dict):
        return "schema"
    return "json" if fmt == "json" else "none"
