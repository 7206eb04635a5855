"""The LLM client: one thread-safe ``chat()`` over the API dialects, with retries and fallbacks.

How each API family (OpenAI-compatible, Ollama, an Ollama-style proxy) shapes requests and
replies is :mod:`taxdata.clients.dialects`. State (model, which structured-output form each
server accepts, what each server said about itself) lives in :class:`LLMClient`; transport
(pool, retry timing, bounded answers) comes from :mod:`taxdata.clients.http`. A client holds one
or more :class:`Endpoint` objects in an :class:`~taxdata.clients.limiter.EndpointPool`: each
request goes to the endpoint with the least expected work (limiter), within each endpoint's
learned concurrency; the client only classifies each answer for the shared retry policy.

Replies are streamed (:mod:`taxdata.clients.stream`) under a :class:`~taxdata.clients.watch.Watch`:
the first token may take ``timeout`` seconds (queueing and prompt processing), then no more than
``idle_timeout`` may pass without one, and the whole request has a ``deadline``. A timeout,
Ctrl-C or SIGTERM closes the connection, so the server stops generating instead of finishing a
reply nobody reads.

At preflight (:mod:`taxdata.clients.preflight`) each endpoint is checked once: the model, what
the server says of its context and slots (:meth:`LLMClient.context_size`), the run's
``num_ctx`` (:meth:`LLMClient.plan_context`) and the structured-output form it takes
(:meth:`LLMClient.probe_form`, one tiny request), so no worker learns it from a failed real
request.

Each HTTP attempt is told as events (:mod:`taxdata.events`): ``RequestStarted`` and
``RequestEnded`` with a request id, which the retries, a give-up and the reply
(``ChatReply.request_id``) carry, so a caller that rejects a reply can say which request it was.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import requests

from taxdata import events
from taxdata.cancel import Interrupted, stopped
from taxdata.clients import http, limiter
from taxdata.clients.address import resolve_all
from taxdata.clients.answers import (
    LLMBadResponse,
    LLMConnectionError,
    LLMContextExceeded,
    LLMError,
    LLMHTTPError,
    LLMServerGone,
    LLMTimeout,
    LLMTruncated,
    judge_error,
    judge_no_answer,
    judge_stream,
)
from taxdata.clients.dialects import (
    DIALECTS,
    Endpoint,
    FormChoice,
    Messages,
    ReplyParts,
    model_listed,
)
from taxdata.clients.http import Outcome, RetryPolicy, make_session, read_capped, send
from taxdata.clients.limiter import AllEndpointsGone, EndpointPool
from taxdata.clients.preflight import PROBE_MESSAGES, PROBE_SCHEMA, ServerPreflight, body_schema
from taxdata.clients.serverinfo import ServerInfo
from taxdata.clients.stream import ReplyTooLarge, StreamBroken, close_quietly, read_reply
from taxdata.clients.watch import IDLE, STOPPED, TOTAL, WATCHDOG, Watch
from taxdata.config import Settings
from taxdata.events import GaveUp, RequestEnded, RequestStarted, emit
from taxdata.log import logger, redact, thread_label, truncate

# The client's face: callers import the errors (taxdata.clients.answers) and DIALECTS from here.
__all__ = ["DIALECTS", "PROBE_MESSAGES", "PROBE_SCHEMA", "ChatReply", "Endpoint",
           "LLMBadResponse", "LLMClient", "LLMConnectionError", "LLMContextExceeded", "LLMError",
           "LLMHTTPError", "LLMServerGone", "LLMTimeout", "LLMTruncated", "gone_note",
           "model_listed", "report_endpoints", "server_gone"]

# -- endpoints, replies ---------------------------------------------------------------------

@dataclass
class ChatReply:
    text: str
    model: str
    seconds: float
    attempts: int
    endpoint: str  # the chat URL that answered
    structured: str | None = None  # the structured-output form the server accepted
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    request_id: int | None = None  # the request that brought it (its events carry the id)
    cached_tokens: int | None = None  # prompt tokens the server's prefix cache supplied
    server_model: str | None = None  # the model name the server reported (may be an alias)


@dataclass
class _Chat:
    """One ``chat()`` call, across its attempts."""

    messages: Messages
    schema: dict | None
    schema_name: str
    label: str
    temperature: float
    worker: str
    started: float
    max_tokens: int | None
    schema_text: str | None  # the schema for the prompt, when the form cannot carry it
    turned_away: bool = False  # the last attempt was answered busy


@dataclass(frozen=True)
class _Attempt:
    """One HTTP attempt of a chat: its number, where it went, in which form, its request id."""

    chat: _Chat
    number: int
    endpoint: Endpoint
    form: str | None
    request_id: int


@dataclass
class _Exchange:
    """What one attempt's HTTP exchange came to, for the events and the limiter."""

    outcome: Outcome
    answer: str
    status: int | None = None
    signal: str = limiter.NEUTRAL
    reason: str = ""
    parts: ReplyParts | None = None
    first_token: float | None = None


# How an attempt's outcome feeds the endpoint's adaptive limit (see taxdata.clients.limiter).
_SIGNALS = {http.DONE: limiter.OK, http.BUSY: limiter.BUSY, http.NOW: limiter.NEUTRAL}
# Characters of a reply a -v log line shows (the run report keeps as many per ask).
REPLY_LOG_LIMIT = 4096
# One numbering for the process, so ids are unique in any recording (next() on it is atomic).
_request_ids = itertools.count(1)


class LLMClient(ServerPreflight):
    """Send chat requests; safe to share between any number of threads. (Its preflight and
    server discovery are :class:`~taxdata.clients.preflight.ServerPreflight`'s.)"""

    def __init__(
        self,
        endpoints: Endpoint | Sequence[Endpoint],
        *,
        model: str = "",
        api_key: str = "",
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        pool_size: int = 10,
        temperature: float = 0.0,
        session: requests.Session | None = None,
        max_in_flight: int | None = None,
        adaptive: bool = True,
        max_tokens: int | None = 4096,
        breaker_threshold: int = 3,
        breaker_wait: float = 15.0,
        idle_timeout: float = 60.0,
        deadline: float = http.REQUEST_DEADLINE,
        max_reply_bytes: int = http.MAX_REPLY_BYTES,
        num_ctx: int | None = None,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.model = model
        self.timeout = timeout  # until the reply starts: queueing and prompt processing
        self.idle_timeout = idle_timeout  # between tokens
        self.deadline = deadline  # the whole request
        self.connect_timeout = connect_timeout
        self.retry = retry or RetryPolicy()
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_reply_bytes = max_reply_bytes
        self.num_ctx_setting = num_ctx  # TAXDATA_NUM_CTX: the user's context size
        self.num_ctx: int | None = None  # sent to Ollama-style servers: one value per run
        self.session = session or make_session(pool_size)
        if isinstance(self.session, http.BoundedSession):
            self.session.max_bytes, self.session.deadline = max_reply_bytes, deadline
        self._api_key = api_key
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self._lock = threading.Lock()
        self._preflight_lock = threading.Lock()
        self.forms = FormChoice()  # per server: which structured-output form it takes
        self.info: dict[str, ServerInfo] = {}  # per chat URL: what the server said of itself
        self.probed: set[str] = set()  # chat URLs whose form the preflight found
        self._models_data: dict[str, Any] = {}  # per chat URL: its model list, as sent
        # However work is nested (a worker splitting an article into parts), no endpoint sees
        # more than max_in_flight requests from us at once (the user's max_workers).
        self.pool = EndpointPool([(e, e.name) for e in self.endpoints],
                                 max_in_flight or pool_size, probe=self._probe,
                                 adaptive=adaptive, breaker_threshold=breaker_threshold,
                                 breaker_wait=breaker_wait)

    @classmethod
    def from_settings(cls, settings: Settings, pool_size: int | None = None) -> "LLMClient":
        """The client the settings describe; a server's bare address (``http://localhost:11434``)
        is resolved to its API and chat URL first, by asking it (taxdata.clients.address)."""
        pool_size = max(pool_size or settings.max_workers, 10)
        session = make_session(pool_size)
        if settings.api_key:  # the resolving questions need it too
            session.headers["Authorization"] = f"Bearer {settings.api_key}"
        endpoints = [Endpoint(a.chat_url, DIALECTS[a.dialect])
                     for a in resolve_all(settings, session)]
        policy = RetryPolicy.from_settings(settings)
        return cls(endpoints, model=settings.model, api_key=settings.api_key,
                   timeout=settings.timeout, connect_timeout=settings.connect_timeout,
                   retry=policy, pool_size=pool_size, session=session,
                   max_in_flight=settings.max_workers, adaptive=settings.adaptive,
                   max_tokens=settings.max_tokens, breaker_wait=settings.breaker_wait,
                   idle_timeout=settings.idle_timeout, deadline=settings.request_deadline,
                   max_reply_bytes=settings.max_reply_bytes, num_ctx=settings.num_ctx or None)

    @property
    def url(self) -> str:
        return self.endpoints[0].url

    # -- chat --------------------------------------------------------------------------------
    def chat(self, messages: Messages, *, schema: dict | None = None, label: str = "",
             schema_name: str = "response", temperature: float | None = None,
             max_tokens: int | None = None, schema_text: str | None = None) -> ChatReply:
        """Send ``messages``; return the reply text. ``schema`` asks for structured JSON output.

        ``max_tokens``: this request's reply cap (default the client's, ``TAXDATA_MAX_TOKENS``,
        which also bounds it). ``schema_text``: how the prompt states the schema when the
        server's form cannot carry it (default: the schema as compact JSON); appended to the
        system message, so the shared prefix stays the same for every request.

        Busy answers (503/429, queue full) are retried until the policy's deadline; connection
        errors, timeouts, 5xx and unusable bodies up to its attempt count; everything else
        raises an :class:`LLMError` subclass (the server's message included). The reply is NOT
        validated against ``schema`` here: callers always validate locally.
        """
        if not self.model:
            with self._preflight_lock:
                if not self.model:
                    self.preflight()
        cap = self.max_tokens if max_tokens is None else min(max_tokens, self.max_tokens or
                                                             max_tokens)
        chat = _Chat(messages, schema, schema_name, label,
                     self.temperature if temperature is None else temperature,
                     thread_label(), time.monotonic(), cap,
                     schema_text if schema_text is not None or schema is None
                     else self._grammar(schema)[1])
        reply = send(lambda number: self._attempt(chat, number), self.retry).value
        if logger.isEnabledFor(logging.DEBUG):  # -v: what the model said, as it said it
            logger.debug("[LLM-REPLY] %s %s (%d chars): %s", chat.worker, label or "reply",
                         len(reply.text), truncate(reply.text, REPLY_LOG_LIMIT))
        return reply

    def _grammar(self, schema: dict) -> tuple[Any, str]:
        """``schema`` as servers take it (:func:`body_schema`) and as compact JSON, worked out
        once per schema (every request of a run sends the same one), not per request."""
        cache = self.__dict__.setdefault("_grammars", {})
        found = cache.get(id(schema))
        if found is None or found[0] is not schema:  # id() reused by a new object: redo it
            grammar = body_schema(schema)
            found = cache[id(schema)] = (schema, grammar,
                                         json.dumps(grammar, separators=(",", ":")))
        return found[1], found[2]

    def _attempt(self, chat: _Chat, number: int) -> Outcome:
        """Attempt ``number`` of ``chat`` on the best endpoint; its pool hears how it went."""
        try:
            member = self.pool.acquire(cautious=chat.turned_away)
        except AllEndpointsGone:
            return Outcome(http.FAIL, error=LLMServerGone(self.gone_message()))
        endpoint = member.target
        form = (self.forms.current(endpoint.url, endpoint.dialect)
                if chat.schema is not None else None)
        attempt = _Attempt(chat, number, endpoint, form, next(_request_ids))
        messages = _with_schema(chat, endpoint.dialect.carries_schema(form))
        body = endpoint.dialect.body(
            self.model, messages, chat.temperature, form,
            self._grammar(chat.schema)[0] if chat.schema is not None else None,
            chat.schema_name, chat.max_tokens, stream=True, num_ctx=self.num_ctx,
            extra=self._extra(endpoint))
        emit(RequestStarted(chat.worker, endpoint.url, self.model, chat.label,
                            attempt.request_id))
        if logger.isEnabledFor(logging.DEBUG):  # don't serialise payloads nobody will read
            logger.debug("[LLM-PAYLOAD] %s %s", chat.worker, redact(
                truncate(json.dumps(body, ensure_ascii=False)), (self._api_key,)))
        sent = time.monotonic()
        ticket = self.pool.sent(member, sum(len(str(m.get("content", ""))) for m in messages))
        exchange = _Exchange(Outcome(http.FAIL, error=Interrupted("stopped")), events.NO_ANSWER)
        try:
            exchange = self._exchange(attempt, body, member, ticket)
        finally:
            self.pool.release(member, sent, exchange.signal, exchange.reason, ticket)
        parts = exchange.parts
        emit(RequestEnded(chat.worker, attempt.request_id, exchange.status,
                          time.monotonic() - sent, exchange.answer,
                          "" if exchange.status is not None else exchange.outcome.reason,
                          parts.prompt_tokens if parts else None,
                          parts.cached_tokens if parts else None,
                          parts.completion_tokens if parts else None,
                          exchange.first_token, endpoint.url))
        outcome = exchange.outcome
        if exchange.answer == events.FORM_REFUSED:
            self._fall_back(endpoint, str(form), outcome.error)
        elif exchange.answer == events.REFUSED:
            emit(GaveUp(chat.worker, "", str(outcome.error), request_id=attempt.request_id))
        elif isinstance(outcome.error, LLMContextExceeded):
            outcome.error.endpoint = endpoint.url
            if outcome.error.limit:
                self.learn_context(endpoint.url, outcome.error.limit)
        if outcome.kind == http.DONE:
            outcome.value = self._chat_reply(outcome.value, attempt)
        outcome.request_id = attempt.request_id
        return outcome

    def _exchange(self, attempt: _Attempt, body: dict, member: limiter.Member,
                  ticket: limiter.Ticket) -> _Exchange:
        """Send one request and read its answer, under a watch (deadlines, Ctrl-C)."""
        chat, endpoint = attempt.chat, attempt.endpoint
        watch = Watch(first=self.timeout, idle=self.idle_timeout, total=self.deadline)
        first: list[float] = []
        result = None

        def first_token() -> None:
            first.append(time.monotonic() - ticket.sent_at)
            self.pool.first_token(member, ticket)

        with WATCHDOG.watching(watch):
            timeout = (self.connect_timeout, self._socket_wait())
            try:
                if isinstance(self.session, http.BoundedSession):  # prepared once per URL
                    response = self.session.post_json(endpoint.url, body, timeout=timeout)
                else:
                    response = self.session.post(endpoint.url, json=body, stream=True,
                                                 timeout=timeout, allow_redirects=False)
            except requests.RequestException as exc:
                return self._no_answer(exc, watch, endpoint)
            status = response.status_code
            try:
                if status != 200:
                    read_capped(response, self.max_reply_bytes)
                    outcome, answer = judge_error(response, attempt.form, self.retry.statuses)
                    chat.turned_away = outcome.kind == http.BUSY
                    return _Exchange(outcome, answer, status,
                                     _SIGNALS.get(outcome.kind, limiter.FAILED), f"HTTP {status}")
                result = read_reply(response, endpoint.dialect, watch,
                                    max_bytes=self.max_reply_bytes, cap=chat.max_tokens,
                                    expect_json=chat.schema is not None,
                                    on_first_token=first_token)
            except (StreamBroken, ReplyTooLarge, requests.RequestException) as exc:
                return self._broken(exc, watch, status)
            finally:
                if watch.expired is None and not (result is not None and result.read_to_end):
                    watch.cut("read")  # the client stopped reading: the server stops now
                close_quietly(response)
        if watch.expired not in (None, "read"):  # the watchdog ended it (a cut reads as an EOF)
            return self._expired(watch, status)
        outcome, answer = judge_stream(result, endpoint.dialect, chat.max_tokens,
                                       self.window(endpoint))
        chat.turned_away = outcome.kind == http.BUSY
        signal = {events.PREEMPTED: limiter.PREEMPTED}.get(
            answer, _SIGNALS.get(outcome.kind, limiter.FAILED))
        parts = ReplyParts(result.text, result.stop_reason, result.model, result.prompt_tokens,
                           result.completion_tokens, result.cached_tokens)
        return _Exchange(outcome, answer, status, signal, f"HTTP {status}",
                         parts, first[0] if first else None)

    def _socket_wait(self) -> float:
        # One recv's limit, a backstop only: the watch enforces the real limits on our clock.
        return max(self.timeout, self.idle_timeout) + 5.0

    def _no_answer(self, exc: requests.RequestException, watch: Watch,
                   endpoint: Endpoint) -> _Exchange:
        if watch.expired is not None:
            return self._expired(watch, None)
        outcome, signal, reason = judge_no_answer(exc, endpoint.url, self.connect_timeout,
                                                  self.timeout)
        return _Exchange(outcome, events.NO_ANSWER, None, signal, reason)

    def _broken(self, exc: Exception, watch: Watch, status: int) -> _Exchange:
        """The answer broke off: our own watch ended it, it was too large, or the connection
        went (retried soon: the server was there)."""
        if watch.expired is not None:
            return self._expired(watch, status)
        if isinstance(exc, ReplyTooLarge):
            return _Exchange(Outcome(http.FAIL, error=LLMBadResponse(str(exc))), events.BAD_REPLY,
                             status, limiter.FAILED, "too large")
        error = LLMConnectionError(f"the connection broke off mid-reply ({exc})")
        # Retried soon. The server had answered, so the breaker hears nothing of it: if the
        # server is gone, the next attempt's refused connection tells it so.
        return _Exchange(Outcome(http.RETRY, error=error, reason=str(error), soon=True),
                         events.NO_ANSWER, None, limiter.BROKE, "broke off")

    def _expired(self, watch: Watch, status: int | None) -> _Exchange:
        """The watchdog closed the request: Ctrl-C, or one of its limits passed."""
        reason = str(watch.expired)
        if reason == STOPPED:
            return _Exchange(Outcome(http.FAIL, error=Interrupted(stopped()),
                                     reason="stopped"), events.CUT, None, limiter.NEUTRAL,
                             "stopped")
        seconds = watch.limit(reason)
        if reason == TOTAL:
            said = f"Request timeout: the {seconds:g}s deadline passed (TAXDATA_REQUEST_DEADLINE)"
        elif reason == IDLE:
            said = f"Request timeout: no token for {seconds:g}s (TAXDATA_IDLE_TIMEOUT)"
        else:
            said = f"Request timeout after {seconds:g}s: no reply started (TAXDATA_TIMEOUT)"
        return _Exchange(Outcome(http.RETRY, error=LLMTimeout(said), reason=said),
                         events.CUT, None, limiter.TIMEOUT, "timeout")

    def _chat_reply(self, parts: ReplyParts, attempt: _Attempt) -> ChatReply:
        return ChatReply(text=parts.text, model=self.model,
                         seconds=time.monotonic() - attempt.chat.started, attempts=attempt.number,
                         endpoint=attempt.endpoint.url, structured=attempt.form,
                         prompt_tokens=parts.prompt_tokens,
                         completion_tokens=parts.completion_tokens,
                         request_id=attempt.request_id, cached_tokens=parts.cached_tokens,
                         server_model=parts.model)

    def gone_message(self) -> str:
        urls = ", ".join(e.url for e in self.endpoints)
        return f"LLM server{'s' if len(self.endpoints) > 1 else ''} at {urls} stopped answering"

    def endpoint_summary(self) -> list[str]:
        """One line per endpoint: requests, busy answers, failures, final concurrency limit."""
        return self.pool.summary()



def _with_schema(chat: _Chat, carried: bool) -> list[dict[str, str]]:
    """The messages, with the schema stated at the end of the system message when the form
    does not carry it to the server (and not otherwise: the schema goes once per body)."""
    messages = [dict(m) for m in chat.messages]
    if chat.schema is None or carried or not chat.schema_text:
        return messages
    note = "JSON schema of the reply:\n" + chat.schema_text
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = messages[0]["content"].rstrip("\n") + "\n\n" + note + "\n"
    else:
        messages.insert(0, {"role": "system", "content": note})
    return messages


def server_gone(error: BaseException | None) -> LLMServerGone | None:
    """The :class:`LLMServerGone` behind ``error`` (through causes and contexts), if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, LLMServerGone):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def report_endpoints(client: LLMClient, errors: Iterable[BaseException | None]) -> None:
    """After a run: each endpoint's figures (stdout), and the one line saying the server went
    away, if it did (log)."""
    for line in client.endpoint_summary():
        print(f"  LLM {line}")
    note = gone_note(client, errors)
    if note:
        logger.error("[ERROR] %s", note)


def gone_note(client: LLMClient, errors: Iterable[BaseException | None],
              noun: str = "countries") -> str | None:
    """After a run: the one line saying the server went away and how much work it left undone."""
    left = sum(server_gone(error) is not None for error in errors)
    if not left:
        return None
    return f"{client.gone_message()}; {left} {noun} not processed; re-run to continue"

