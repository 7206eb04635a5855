"""The LLM client: one thread-safe ``chat()`` over the API dialects, with retries and fallbacks.

How each API family (OpenAI-compatible, Ollama, an Ollama-style proxy) shapes requests and
replies is :mod:`taxdata.clients.dialects`. State (model, which structured-output form each
server accepts) lives in :class:`LLMClient`; transport (pool, retry timing) comes from
:mod:`taxdata.clients.http`. A client holds one or more :class:`Endpoint` objects in an
:class:`~taxdata.clients.limiter.EndpointPool`: each request goes to the healthy endpoint with the
most free permits (adaptive concurrency per endpoint, a circuit breaker per endpoint); the client
only classifies each answer for the shared retry policy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import urlsplit

import requests

from taxdata.clients.dialects import DIALECTS, Dialect, FormChoice, Messages, model_names
from taxdata.clients.http import (
    BUSY,
    DONE,
    FAIL,
    NOW,
    RETRY,
    Outcome,
    RetryPolicy,
    is_busy,
    make_session,
    parse_retry_after,
    send,
)
from taxdata.clients.limiter import BUSY as SIGNAL_BUSY
from taxdata.clients.limiter import (
    DOWN,
    FAILED,
    NEUTRAL,
    OK,
    TIMEOUT,
    AllEndpointsGone,
    EndpointPool,
)
from taxdata.config import Settings
from taxdata.errors import PreflightError, ServerError
from taxdata.log import logger, redact, thread_label, truncate

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


# How an attempt's outcome feeds the endpoint's adaptive limit (see taxdata.clients.limiter).
_SIGNALS = {DONE: OK, BUSY: SIGNAL_BUSY, NOW: NEUTRAL}


def _server_message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return truncate(response.text.strip() or response.reason or "", 300)
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or json.dumps(error)
    return truncate(str(error), 300)


def _rejects_form(status: int, message: str) -> bool:
    # Servers refuse an unknown structured-output form with a 4xx, some (llama.cpp) with a 500;
    # we only fall back when the message is about that form, not on any server error.
    if status in (408, 429) or not (400 <= status < 600):
        return False
    text = message.lower()
    return any(word in text for word in ("response_format", "json_schema", "format", "schema"))


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
        endpoints = [Endpoint(url, DIALECTS[settings.llm_api]) for url in settings.llm_urls]
        policy = RetryPolicy.from_settings(settings)
        return cls(endpoints, model=settings.model, api_key=settings.api_key,
                   timeout=settings.timeout, connect_timeout=settings.connect_timeout,
                   retry=policy, pool_size=max(pool_size or settings.max_workers, 10),
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
            raise LLMHTTPError(response.status_code, _server_message(response))
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
            try:
                names = self.list_models(endpoint)
            except requests.RequestException:
                raise PreflightError(
                    f"LLM server not reachable at {endpoint.url} - start it (ollama serve) "
                    "or set TAXDATA_LLM_URL") from None
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
            elif self.model not in names and f"{self.model}:latest" not in names:
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
        worker = thread_label()
        suffix = f" - {label}" if label else ""
        started = time.monotonic()
        temperature = self.temperature if temperature is None else temperature
        turned_away = [False]  # the last attempt was answered busy

        def attempt(number: int) -> Outcome:
            try:
                member = self.pool.acquire(cautious=turned_away[0])
            except AllEndpointsGone:
                return Outcome(FAIL, error=LLMServerGone(self.gone_message()))
            endpoint = member.target
            dialect = endpoint.dialect
            form = self.forms.current(endpoint.url, dialect) if schema is not None else None
            body = dialect.body(self.model, messages, temperature, form, schema, schema_name,
                                self.max_tokens)
            logger.info("[LLM-REQUEST] %s POST %s model=%s%s", worker, endpoint.url, self.model,
                        suffix)
            if logger.isEnabledFor(logging.DEBUG):  # don't serialise payloads nobody will read
                logger.debug("[LLM-PAYLOAD] %s %s", worker, redact(
                    truncate(json.dumps(body, ensure_ascii=False)), (self._api_key,)))
            sent = time.monotonic()
            signal, reason = NEUTRAL, ""
            try:
                response = self.session.post(endpoint.url, json=body,
                                             timeout=(self.connect_timeout, self.timeout))
            except requests.ConnectTimeout:
                signal, reason = DOWN, "connect timeout"
                return Outcome(RETRY, reason=reason, error=LLMConnectionError(
                    f"Connection timeout after {self.connect_timeout:g}s to {endpoint.url}"))
            except requests.ReadTimeout:
                signal, reason = TIMEOUT, "timeout"
                return Outcome(RETRY, reason=f"Request timeout after {self.timeout:g}s",
                               error=LLMTimeout(f"Request timeout after {self.timeout:g}s"))
            except requests.ConnectionError as exc:
                signal, reason = DOWN, type(exc).__name__
                error = LLMConnectionError(f"Connection failed to {endpoint.url}: {reason}")
                return Outcome(RETRY, reason=str(error), error=error)
            except requests.RequestException as exc:  # e.g. a body cut off mid-transfer
                signal, reason = DOWN, type(exc).__name__  # connection level, as a kill looks
                error = LLMConnectionError(f"Request to {endpoint.url} failed: "
                                           f"{type(exc).__name__}")
                return Outcome(RETRY, reason=str(error), error=error)
            else:
                outcome = self._judge(response, endpoint, form, number, started, worker,
                                      time.monotonic() - sent)
                signal = _SIGNALS.get(outcome.kind, FAILED)
                turned_away[0] = outcome.kind == BUSY
                reason = f"HTTP {response.status_code}"
                return outcome
            finally:
                self.pool.release(member, sent, signal, reason)

        return send(attempt, self.retry).value

    def _judge(self, response: requests.Response, endpoint: Endpoint, form: str | None,
               number: int, started: float, worker: str, elapsed: float) -> Outcome:
        """Classify one answer for the retry policy."""
        status = response.status_code
        logger.info("[LLM-RESPONSE] %s HTTP %d in %.2fs", worker, status, elapsed)
        if status == 200:
            try:
                reply = self._reply(response, endpoint.dialect, endpoint, form, number, started)
            except LLMBadResponse as exc:
                return Outcome(RETRY, error=exc, reason=str(exc))
            except LLMTruncated as exc:
                return Outcome(FAIL, error=exc)
            return Outcome(DONE, value=reply)
        message = _server_message(response)
        if form not in (None, "none") and _rejects_form(status, message):
            self._fall_back(endpoint, endpoint.dialect, form, status, message)
            return Outcome(NOW)  # the server said no to the form, not to the request
        error = LLMHTTPError(status, message)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if is_busy(status, message):
            return Outcome(BUSY, error=error, reason=f"HTTP {status}", retry_after=retry_after)
        if status not in self.retry.statuses:
            logger.error("[ERROR] %s %s", worker, error)
            return Outcome(FAIL, error=error)
        return Outcome(RETRY, error=error, reason=f"HTTP {status}", retry_after=retry_after)

    def _reply(self, response: requests.Response, dialect: Dialect, endpoint: Endpoint,
               form: str | None, attempt: int, started: float) -> ChatReply:
        try:
            data = response.json()
            text, stop_reason, model, prompt_tokens, completion_tokens = dialect.reply(data)
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMBadResponse(f"reply is not {dialect.name} API JSON: "
                                 f"{truncate(response.text, 120)!r}") from None
        if stop_reason == "length":
            raise LLMTruncated(f"reply cut off at the token limit (done_reason/finish_reason "
                               f"'length', TAXDATA_MAX_TOKENS={self.max_tokens})")
        if not isinstance(text, str):
            raise LLMBadResponse("reply has no text content")
        return ChatReply(text=text, model=model or self.model,
                         seconds=time.monotonic() - started, attempts=attempt,
                         endpoint=endpoint.url, structured=form,
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def gone_message(self) -> str:
        urls = ", ".join(e.url for e in self.endpoints)
        return f"LLM server{'s' if len(self.endpoints) > 1 else ''} at {urls} stopped answering"

    def endpoint_summary(self) -> list[str]:
        """One line per endpoint: requests, busy answers, failures, final concurrency limit."""
        return self.pool.summary()

    def _fall_back(self, endpoint: Endpoint, dialect: Dialect, form: str, status: int,
                   message: str) -> None:
        new = self.forms.refused(endpoint.url, dialect, form)
        logger.warning("[FALLBACK] %s server rejected structured output %r (HTTP %d: %s); "
                       "using %r from now on", thread_label(), form, status, message, new)


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
