"""What an LLM server's answer comes to: the errors a chat ends in, and the reading of each answer.

:class:`~taxdata.clients.llm.LLMClient` sends; these functions only read, one per kind of answer:
:func:`judge_stream` an HTTP 200 (streamed or whole), :func:`judge_error` any other status,
:func:`judge_no_answer` a request that got no HTTP answer. Each gives the retry policy's
:class:`~taxdata.clients.http.Outcome` and what the answer was, as the request's
:class:`~taxdata.events.RequestEnded` event names it (``events.REPLY``, ``events.BUSY``, ...).

A prompt that did not fit the server's context is never a reply: the server said so (llama.cpp's
"exceeds the available context size", "maximum context length is N tokens"), or its usage figures
show it (the prompt filled ``num_ctx``: Ollama dropped its start). Either is
:class:`LLMContextExceeded`, which the caller answers by splitting the source smaller.
"""

from __future__ import annotations

import json

import requests

from taxdata import events
from taxdata.clients import http, limiter
from taxdata.clients.context import overflowed
from taxdata.clients.dialects import Dialect, ReplyParts
from taxdata.clients.http import Outcome, is_busy
from taxdata.clients.serverinfo import context_from_error, is_context_error
from taxdata.clients.stream import Streamed
from taxdata.errors import ServerError
from taxdata.log import truncate

# -- errors ----------------------------------------------------------------------------------

class LLMError(ServerError):
    """Any failure to get a usable reply from the LLM server."""

    attempts: int = 0  # HTTP attempts made before giving up (set by LLMClient.chat)


class LLMConnectionError(LLMError):
    """The server could not be reached, or the connection broke mid-reply."""


class LLMTimeout(LLMError):
    """No reply within the read timeout."""


class LLMBadResponse(LLMError):
    """The server answered 200 with something that is not its API's JSON."""


class LLMTruncated(LLMError):
    """The reply was cut off at the token limit: half an answer is not an answer. ``text``: the
    part that came (a re-ask shows it back, so the conversation goes on from it)."""

    def __init__(self, message: str, text: str = "") -> None:
        super().__init__(message)
        self.text = text


class LLMContextExceeded(LLMError):
    """The prompt did not fit the server's context (it said so, or its figures show it): no reply
    from it may be used. ``limit``: the context size in tokens, where known."""

    def __init__(self, message: str, limit: int | None = None, endpoint: str = "") -> None:
        super().__init__(message)
        self.limit, self.endpoint = limit, endpoint


class LLMHTTPError(LLMError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.server_message = message


class LLMServerGone(LLMConnectionError):
    """Every LLM server stopped answering (its circuit breaker gave up): no task can run."""

    reported_once = True  # the run says so in one line (gone_note), not once per task


# -- reading answers -------------------------------------------------------------------------

def judge_stream(result: Streamed, dialect: Dialect, cap: int | None,
                 window: int | None) -> tuple[Outcome, str]:
    """An HTTP 200, read to its end: done (``value``: the reply's
    :class:`~taxdata.clients.dialects.ReplyParts`); retried soon if the body is not the
    dialect's; failed if cut at the token limit, or if its figures show the prompt did not fit
    ``window`` tokens (the context the request had)."""
    if result.error is not None:
        if is_context_error(result.error):
            return _context_exceeded(result.error, context_from_error(result.error))
        if is_busy(503, result.error):
            return Outcome(http.BUSY, error=LLMHTTPError(503, result.error),
                           reason="busy (in the stream)"), events.BUSY
        return _bad_reply(LLMBadResponse("server error in the reply: "
                                         + truncate(result.error, 200)))
    if result.unreadable is not None:
        return _bad_reply(LLMBadResponse(f"reply is not {dialect.name} API JSON: "
                                         f"{result.unreadable!r}"))
    if overflowed(result.prompt_tokens, result.completion_tokens, window):
        return _context_exceeded(
            f"the prompt did not fit the context: the server read {result.prompt_tokens} prompt "
            f"tokens (+{result.completion_tokens or 0} of reply) in a context of {window}; the "
            "start of the prompt (the instructions) was dropped", window)
    if result.stop_reason == "length":
        why = f"the client cut it {result.cut}" if result.cut else \
            "done_reason/finish_reason 'length'"
        return Outcome(http.FAIL, error=LLMTruncated(
            f"reply cut off at the token limit ({why}, cap {cap} tokens)",
            result.text)), events.TRUNCATED
    if not (result.final or result.cut):
        if result.done_marker:  # "[DONE]" without a finish reason: the server preempted it
            return Outcome(http.BUSY, error=LLMConnectionError(
                "the server ended the reply early (preempted by another request)"),
                reason="reply preempted by the server"), events.PREEMPTED
        return _bad_reply(LLMConnectionError("the reply stream ended before the reply was "
                                             f"complete ({result.tokens} tokens)"))
    return Outcome(http.DONE, value=ReplyParts(result.text, result.stop_reason, result.model,
                                               result.prompt_tokens, result.completion_tokens,
                                               result.cached_tokens)), events.REPLY


def _context_exceeded(message: str, limit: int | None) -> tuple[Outcome, str]:
    return Outcome(http.FAIL, error=LLMContextExceeded(message, limit)), events.CONTEXT_EXCEEDED


def _bad_reply(error: LLMError) -> tuple[Outcome, str]:
    # The server is there and answered: another attempt goes soon, not after the busy floor.
    return Outcome(http.RETRY, error=error, reason=str(error), soon=True), events.BAD_REPLY


def judge_error(response: requests.Response, form: str | None,
                retry_statuses: frozenset[int]) -> tuple[Outcome, str]:
    """Any other status: a refused structured-output form (try the next one at once), busy
    (retry until the deadline), worth another attempt, or refused for good."""
    status, message = response.status_code, server_message(response)
    if 300 <= status < 400:
        where = response.headers.get("Location", "?")
        return Outcome(http.FAIL, error=LLMHTTPError(status, (
            f"redirect to {where} not followed (a prompt is never sent again elsewhere) - "
            "set TAXDATA_LLM_URL to the address the server names"))), events.REFUSED
    if status in (400, 413, 500) and is_context_error(message):
        try:
            data = response.json()
        except ValueError:
            data = None
        return _context_exceeded(f"the prompt does not fit the server's context: {message}",
                                 context_from_error(message, data))
    error = LLMHTTPError(status, message)
    if form not in (None, "none") and rejects_form(status, message):
        # The server said no to the form, not to the request (``error`` says what it said).
        return Outcome(http.NOW, error=error), events.FORM_REFUSED
    retry_after = http.parse_retry_after(response.headers.get("Retry-After"))
    if is_busy(status, message):
        return (Outcome(http.BUSY, error=error, reason=f"HTTP {status}", retry_after=retry_after),
                events.BUSY)
    if status not in retry_statuses:
        return Outcome(http.FAIL, error=error), events.REFUSED
    return (Outcome(http.RETRY, error=error, reason=f"HTTP {status}", retry_after=retry_after),
            events.SERVER_ERROR)


def judge_no_answer(exc: requests.RequestException, url: str, connect_timeout: float,
                    timeout: float) -> tuple[Outcome, str, str]:
    """No HTTP answer: always retried. Also gives the endpoint's limiter signal and its reason
    (a timeout cuts the limit; a connection failure counts towards the breaker)."""
    error: LLMError
    if isinstance(exc, requests.ConnectTimeout):
        error = LLMConnectionError(f"Connection timeout after {connect_timeout:g}s to {url}")
        said, signal, reason = "connect timeout", limiter.DOWN, "connect timeout"
    elif isinstance(exc, requests.ReadTimeout):
        error = LLMTimeout(f"Request timeout after {timeout:g}s")
        said, signal, reason = str(error), limiter.TIMEOUT, "timeout"
    else:  # connection level, as a killed server looks (a body cut off mid-transfer too)
        name = type(exc).__name__
        error = LLMConnectionError(f"Connection failed to {url}: {name}"
                                   if isinstance(exc, requests.ConnectionError)
                                   else f"Request to {url} failed: {name}")
        said, signal, reason = str(error), limiter.DOWN, name
        if http.dropped(exc):  # reset before any answer: retried soon, and the breaker counts it
            return Outcome(http.RETRY, reason=said, error=error, soon=True), signal, reason
    return Outcome(http.RETRY, reason=said, error=error), signal, reason


def rejects_form(status: int, message: str) -> bool:
    """Whether an error answer refuses the structured-output form (rather than the request)."""
    # Servers refuse an unknown structured-output form with a 4xx, some (llama.cpp) with a 500;
    # we only fall back when the message is about that form, not on any server error.
    if status in (408, 429) or not (400 <= status < 600):
        return False
    text = message.lower()
    return any(word in text for word in ("response_format", "json_schema", "format", "schema"))


def server_message(response: requests.Response) -> str:
    """What an error answer says, from any API family's error shape (or its text), shortened."""
    try:
        data = response.json()
    except ValueError:
        return truncate(response.text.strip() or response.reason or "", 300)
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or json.dumps(error)
    return truncate(str(error), 300)
