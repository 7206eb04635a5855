"""The LLM client: one thread-safe ``chat()`` over the API dialects, with retries and fallbacks.

How each API family (OpenAI-compatible, Ollama, an Ollama-style proxy) shapes requests and
replies is :mod:`taxdata.clients.dialects`. State (model, which structured-output form each
server accepts) lives in :class:`LLMClient`; transport (pool, retry timing) comes from
:mod:`taxdata.clients.http`. A client holds one or more :class:`Endpoint` objects in an
:class:`~taxdata.clients.limiter.EndpointPool`: each request goes to the healthy endpoint with the
most free permits (adaptive concurrency per endpoint, a circuit breaker per endpoint); the client
only classifies each answer for the shared retry policy.

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
from typing import Iterable, Sequence
from urllib.parse import urlsplit

import requests

from taxdata import events
from taxdata.clients import http, limiter
from taxdata.clients.address import no_answer, resolve_all
from taxdata.clients.answers import (
    LLMBadResponse,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMServerGone,
    LLMTimeout,
    LLMTruncated,
    judge_error,
    judge_no_answer,
    judge_reply,
    server_message,
)
from taxdata.clients.dialects import (
    DIALECTS,
    Dialect,
    FormChoice,
    Messages,
    ReplyParts,
    model_names,
)
from taxdata.clients.http import Outcome, RetryPolicy, make_session, send
from taxdata.clients.limiter import AllEndpointsGone, EndpointPool
from taxdata.config import Settings
from taxdata.errors import PreflightError
from taxdata.events import GaveUp, RequestEnded, RequestStarted, emit
from taxdata.log import logger, redact, thread_label, truncate

# The client's face: callers import the errors (taxdata.clients.answers) and DIALECTS from here.
__all__ = ["DIALECTS", "ChatReply", "Endpoint", "LLMBadResponse", "LLMClient",
           "LLMConnectionError", "LLMError", "LLMHTTPError", "LLMServerGone", "LLMTimeout",
           "LLMTruncated", "gone_note", "model_listed", "report_endpoints", "server_gone"]


# -- endpoints, replies ---------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    url: str
    dialect: Dialect

    @property
    def models_url(self) -> str:
        return self.dialect.models_url(self.url)

    @property
    def name(self) -> str:
        """``host:port``, as the [ADAPT] and [BREAKER] lines name the endpoint."""
        parts = urlsplit(self.url)
        return parts.netloc or self.url


@dataclass
class ChatReply:
    text: str
    model: str
    seconds: float
    attempts: int
    endpoint: str
    structured: str | None = None  # the structured-output form the server accepted
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    request_id: int | None = None  # the request that brought it (its events carry the id)


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
    turned_away: bool = False  # the last attempt was answered busy


@dataclass(frozen=True)
class _Attempt:
    """One HTTP attempt of a chat: its number, where it went, in which form, its request id."""

    chat: _Chat
    number: int
    endpoint: Endpoint
    form: str | None
    request_id: int


# How an attempt's outcome feeds the endpoint's adaptive limit (see taxdata.clients.limiter).
_SIGNALS = {http.DONE: limiter.OK, http.BUSY: limiter.BUSY, http.NOW: limiter.NEUTRAL}
# Characters of a reply a -v log line shows (the run report keeps as many per ask).
REPLY_LOG_LIMIT = 4096
# One numbering for the process, so ids are unique in any recording (next() on it is atomic).
_request_ids = itertools.count(1)


class LLMClient:
    """Send chat requests; safe to share between any number of threads."""

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
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.model = model
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry = retry or RetryPolicy()
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.session = session or make_session(pool_size)
        self._api_key = api_key
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self._lock = threading.Lock()
        self.forms = FormChoice()  # per server: which structured-output form it takes
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
                   max_tokens=settings.max_tokens, breaker_wait=settings.breaker_wait)

    @property
    def url(self) -> str:
        return self.endpoints[0].url

    # -- models and preflight ----------------------------------------------------------------
    def list_models(self, endpoint: Endpoint | None = None,
                    timeout: float | None = None) -> list[str]:
        endpoint = endpoint or self.endpoints[0]
        connect = self.connect_timeout if timeout is None else min(timeout, self.connect_timeout)
        response = self.session.get(endpoint.models_url,
                                    timeout=(connect, min(self.timeout, timeout or 30)))
        if response.status_code != 200:
            raise LLMHTTPError(response.status_code, server_message(response))
        try:
            return model_names(response.json())
        except ValueError:
            raise LLMBadResponse(f"model list at {endpoint.models_url} is not JSON") from None

    def _probe(self, endpoint: Endpoint) -> bool:
        """The circuit breaker's health check: the model list answers (quickly)."""
        self.list_models(endpoint, timeout=5.0)
        return True

    def preflight(self) -> str:
        """Check that each server answers and has the model; pick one if none was set.

        Returns the model name. Raises :class:`PreflightError` with a one-line fix.
        """
        for endpoint in self.endpoints:
            try:  # a model list is small: it comes within the connect limit, or never
                names = self.list_models(endpoint, timeout=self.connect_timeout)
            except requests.RequestException as exc:
                raise PreflightError(no_answer(endpoint.url, exc, endpoint.models_url,
                                               endpoint.dialect.name,
                                               min(self.connect_timeout, self.timeout))) from None
            except LLMHTTPError as exc:
                hint = ("check TAXDATA_API_KEY" if exc.status in (401, 403)
                        else "check TAXDATA_LLM_URL and TAXDATA_LLM_API")
                raise PreflightError(f"LLM server at {endpoint.url} answered HTTP {exc.status} "
                                     f"for {endpoint.models_url} - {hint}") from None
            except LLMBadResponse as exc:
                raise PreflightError(f"{exc} - check TAXDATA_LLM_API") from None
            if not names:
                raise PreflightError(f"LLM server at {endpoint.url} lists no models - "
                                     "pull one first (e.g. ollama pull <model>)")
            if not self.model:
                self.model = names[0]
                logger.info("[LLM] No model set; using %s, the first the server lists", self.model)
            elif not model_listed(self.model, names):
                others = ("" if len(self.endpoints) == 1
                          else " (every server in TAXDATA_LLM_URL needs it)")
                raise PreflightError(
                    f"model {self.model!r} not found at {endpoint.url} (available: "
                    f"{', '.join(names[:8])}) - set TAXDATA_MODEL or --model{others}")
        return self.model

    # -- chat --------------------------------------------------------------------------------
    def chat(self, messages: Messages, *, schema: dict | None = None, label: str = "",
             schema_name: str = "response", temperature: float | None = None) -> ChatReply:
        """Send ``messages``; return the reply text. ``schema`` asks for structured JSON output.

        Busy answers (503/429, queue full) are retried until the policy's deadline; connection
        errors, timeouts, 5xx and unusable bodies up to its attempt count; everything else
        raises an :class:`LLMError` subclass (the server's message included). The reply is NOT
        validated against ``schema`` here: callers always validate locally.
        """
        if not self.model:
            with self._lock:
                if not self.model:
                    self.preflight()
        chat = _Chat(messages, schema, schema_name, label,
                     self.temperature if temperature is None else temperature,
                     thread_label(), time.monotonic())
        reply = send(lambda number: self._attempt(chat, number), self.retry).value
        if logger.isEnabledFor(logging.DEBUG):  # -v: what the model said, as it said it
            logger.debug("[LLM-REPLY] %s %s (%d chars): %s", chat.worker, label or "reply",
                         len(reply.text), truncate(reply.text, REPLY_LOG_LIMIT))
        return reply

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
        body = endpoint.dialect.body(self.model, chat.messages, chat.temperature, form,
                                     chat.schema, chat.schema_name, self.max_tokens)
        emit(RequestStarted(chat.worker, endpoint.url, self.model, chat.label,
                            attempt.request_id))
        if logger.isEnabledFor(logging.DEBUG):  # don't serialise payloads nobody will read
            logger.debug("[LLM-PAYLOAD] %s %s", chat.worker, redact(
                truncate(json.dumps(body, ensure_ascii=False)), (self._api_key,)))
        sent = time.monotonic()
        signal, reason = limiter.NEUTRAL, ""
        try:
            response = self.session.post(endpoint.url, json=body,
                                         timeout=(self.connect_timeout, self.timeout))
        except requests.RequestException as exc:
            outcome, signal, reason = judge_no_answer(exc, endpoint.url, self.connect_timeout,
                                                      self.timeout)
            emit(RequestEnded(chat.worker, attempt.request_id, None, time.monotonic() - sent,
                              events.NO_ANSWER, outcome.reason))
        else:
            outcome = self._judge(response, attempt, time.monotonic() - sent)
            signal = _SIGNALS.get(outcome.kind, limiter.FAILED)
            chat.turned_away = outcome.kind == http.BUSY
            reason = f"HTTP {response.status_code}"
        finally:
            self.pool.release(member, sent, signal, reason)
        outcome.request_id = attempt.request_id
        return outcome

    def _judge(self, response: requests.Response, attempt: _Attempt, elapsed: float) -> Outcome:
        """Read one answer for the retry policy; tell it, and fall back if it says so."""
        status = response.status_code
        if status == 200:
            outcome, answer = judge_reply(response, attempt.endpoint.dialect, self.max_tokens)
            if outcome.kind == http.DONE:
                outcome.value = self._chat_reply(outcome.value, attempt)
        else:
            outcome, answer = judge_error(response, attempt.form, self.retry.statuses)
        worker = attempt.chat.worker
        emit(RequestEnded(worker, attempt.request_id, status, elapsed, answer))
        if answer == events.FORM_REFUSED:
            self._fall_back(attempt.endpoint, str(attempt.form), outcome.error)
        elif answer == events.REFUSED:
            emit(GaveUp(worker, "", str(outcome.error), request_id=attempt.request_id))
        return outcome

    def _chat_reply(self, parts: ReplyParts, attempt: _Attempt) -> ChatReply:
        return ChatReply(text=parts.text, model=parts.model or self.model,
                         seconds=time.monotonic() - attempt.chat.started, attempts=attempt.number,
                         endpoint=attempt.endpoint.url, structured=attempt.form,
                         prompt_tokens=parts.prompt_tokens,
                         completion_tokens=parts.completion_tokens,
                         request_id=attempt.request_id)

    def gone_message(self) -> str:
        urls = ", ".join(e.url for e in self.endpoints)
        return f"LLM server{'s' if len(self.endpoints) > 1 else ''} at {urls} stopped answering"

    def endpoint_summary(self) -> list[str]:
        """One line per endpoint: requests, busy answers, failures, final concurrency limit."""
        return self.pool.summary()

    def _fall_back(self, endpoint: Endpoint, form: str, error: LLMHTTPError) -> None:
        new = self.forms.refused(endpoint.url, endpoint.dialect, form)
        logger.warning("[FALLBACK] %s server rejected structured output %r (HTTP %d: %s); "
                       "using %r from now on", thread_label(), form, error.status,
                       error.server_message, new)


def model_listed(model: str, names: Sequence[str]) -> bool:
    """``model`` is among a server's ``names`` (``gemma3`` is Ollama's ``gemma3:latest``)."""
    return model in names or f"{model}:latest" in names


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
