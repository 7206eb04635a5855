"""What an LLM server's answer comes to: the errors a chat ends in, and the reading of each answer.

:class:`~taxdata.clients.llm.LLMClient` sends; these functions only read, one per kind of answer:
:func:`judge_reply` an HTTP 200, :func:`judge_error` any other status, :func:`judge_no_answer` a
request that got no HTTP answer. Each gives the retry policy's
:class:`~taxdata.clients.http.Outcome` and what the answer was, as the request's
:class:`~taxdata.events.RequestEnded` event names it (``events.REPLY``, ``events.BUSY``, ...).
"""

from __future__ import annotations

import json

import requests

from taxdata import events
from taxdata.clients import http, limiter
from taxdata.clients.dialects import Dialect
from taxdata.clients.http import Outcome, is_busy
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
    """The reply was cut off at the token limit: half an answer is not an answer."""


class LLMHTTPError(LLMError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.server_message = message


class LLMServerGone(LLMConnectionError):
    """Every LLM server stopped answering (its circuit breaker gave up): no task can run."""

    reported_once = True  # the run says so in one line (gone_note), not once per task


# -- reading answers -------------------------------------------------------------------------

def judge_reply(response: requests.Response, dialect: Dialect,
                max_tokens: int | None) -> tuple[Outcome, str]:
    """An HTTP 200: done (``value``: the body's :class:`~taxdata.clients.dialects.ReplyParts`),
    retried if the body is not the dialect's JSON, failed if the reply was cut off."""
    try:
        parts = dialect.reply(response.json())
    except (ValueError, KeyError, IndexError, TypeError):
        return _bad_reply(LLMBadResponse(f"reply is not {dialect.name} API JSON: "
                                         f"{truncate(response.text, 120)!r}"))
    if parts.stop_reason == "length":
        return Outcome(http.FAIL, error=LLMTruncated(
            f"reply cut off at the token limit (done_reason/finish_reason 'length', "
            f"TAXDATA_MAX_TOKENS={max_tokens})")), events.TRUNCATED
    if not isinstance(parts.text, str):
        return _bad_reply(LLMBadResponse("reply has no text content"))
    return Outcome(http.DONE, value=parts), events.REPLY


def _bad_reply(error: LLMBadResponse) -> tuple[Outcome, str]:
    return Outcome(http.RETRY, error=error, reason=str(error)), events.BAD_REPLY


def judge_error(response: requests.Response, form: str | None,
                retry_statuses: frozenset[int]) -> tuple[Outcome, str]:
    """Any other status: a refused structured-output form (try the next one at once), busy
    (retry until the deadline), worth another attempt, or refused for good."""
    status, message = response.status_code, server_message(response)
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
