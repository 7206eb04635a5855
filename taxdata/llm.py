"""The LLM client: one thread-safe ``chat()`` over three HTTP dialects, with retries and fallbacks.

- ``proxy``  — an Ollama-style proxy: ``POST /chat``, models at ``GET /models``
- ``ollama`` — Ollama itself: ``POST /api/chat``, models at ``GET /api/tags``
- ``openai`` — OpenAI-compatible servers (llama.cpp, vLLM, LiteLLM): ``POST /v1/chat/completions``

State (model, which structured-output form each server accepts) lives in :class:`LLMClient`;
transport (pool, retry timing) comes from :mod:`taxdata.http`. The seam for later work: a client
holds a list of :class:`Endpoint` objects and a ``limiter`` (a context manager factory around
each request), so adaptive concurrency and several servers plug in here, not in the scripts.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence
from urllib.parse import urlsplit, urlunsplit

import requests

from .config import Settings
from .http import RetryPolicy, make_session, parse_retry_after
from .log import logger, redact, thread_label, truncate
from .runner import STOP, Interrupted

Messages = Sequence[dict[str, str]]


# -- errors ----------------------------------------------------------------------------------

class LLMError(Exception):
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


class PreflightError(LLMError):
    """The server or model is not usable; the message says how to fix it (exit code 2)."""


# -- dialects --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dialect:
    """How one API family shapes requests and replies."""

    name: str
    models_path: str  # replaces the chat path's tail to list models
    forms: tuple[str, ...]  # structured-output forms, strongest first

    def models_url(self, chat_url: str) -> str:
        parts = urlsplit(chat_url)
        path = parts.path.rstrip("/")
        tails = {"proxy": "/chat", "ollama": "/api/chat", "openai": "/chat/completions"}
        tail = tails[self.name]
        base = path[: -len(tail)] if path.endswith(tail) else path
        return urlunsplit((parts.scheme, parts.netloc, base + self.models_path, "", ""))

    def body(self, model: str, messages: Messages, temperature: float,
             form: str | None, schema: dict | None, schema_name: str) -> dict[str, Any]:
        if self.name == "openai":
            body: dict[str, Any] = {"model": model, "messages": list(messages),
                                    "temperature": temperature}
            if form == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": schema_name, "schema": schema, "strict": True}}
            elif form == "json_object_schema":
                body["response_format"] = {"type": "json_object", "schema": schema}
            elif form == "json_object":
                body["response_format"] = {"type": "json_object"}
            return body
        body = {"model": model, "messages": list(messages), "stream": False,
                "options": {"temperature": temperature}}
        if form == "schema":
            body["format"] = schema
        elif form == "json":
            body["format"] = "json"
        return body

    def reply(self, data: Any) -> tuple[str, str | None, str | None, int | None, int | None]:
        """(text, stop reason, model, prompt tokens, completion tokens) from a reply body."""
        if self.name == "openai":
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            return (choice["message"]["content"], choice.get("finish_reason"), data.get("model"),
                    usage.get("prompt_tokens"), usage.get("completion_tokens"))
        return (data["message"]["content"], data.get("done_reason"), data.get("model"),
                data.get("prompt_eval_count"), data.get("eval_count"))


DIALECTS = {
    "proxy": Dialect("proxy", "/models", ("schema", "json", "none")),
    "ollama": Dialect("ollama", "/api/tags", ("schema", "json", "none")),
    "openai": Dialect("openai", "/models", ("json_schema", "json_object_schema", "json_object",
                                            "none")),
}


def model_names(data: Any) -> list[str]:
    """Model names from any of the list shapes servers use (Ollama tags, OpenAI, plain lists)."""
    if isinstance(data, dict):
        data = data.get("models", data.get("data", []))
    names = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            name = item.get("name") or item.get("model") or item.get("id")
            if name:
                names.append(str(name))
    return names


@dataclass(frozen=True)
class Endpoint:
    url: str
    dialect: Dialect

    @property
    def models_url(self) -> str:
        return self.dialect.models_url(self.url)


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
        limiter: Callable[[], ContextManager[Any]] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
        if not self.endpoints:
            raise ValueError("at least one endpoint is needed")
        self.model = model
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry = retry or RetryPolicy()
        self.temperature = temperature
        self.limiter = limiter or contextlib.nullcontext
        self.session = session or make_session(pool_size)
        self._api_key = api_key
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        self._lock = threading.Lock()
        self._form_index: dict[str, int] = {}  # per server: which structured form works
        self._rotation = itertools.cycle(range(len(self.endpoints)))

    @classmethod
    def from_settings(cls, settings: Settings, pool_size: int | None = None) -> "LLMClient":
        endpoint = Endpoint(settings.llm_url, DIALECTS[settings.llm_api])
        # However work is nested (a worker splitting an article into parts), the server never
        # sees more than max_workers requests from us at once.
        slots = threading.BoundedSemaphore(settings.max_workers)
        return cls(endpoint, model=settings.model, api_key=settings.api_key,
                   timeout=settings.timeout, connect_timeout=settings.connect_timeout,
                   retry=RetryPolicy(attempts=settings.max_retries + 1),
                   pool_size=max(pool_size or settings.max_workers, 10), limiter=lambda: slots)

    @property
    def url(self) -> str:
        return self.endpoints[0].url

    def _endpoint(self) -> Endpoint:
        with self._lock:
            return self.endpoints[next(self._rotation)]

    # -- models and preflight ----------------------------------------------------------------
    def list_models(self, endpoint: Endpoint | None = None) -> list[str]:
        endpoint = endpoint or self.endpoints[0]
        response = self.session.get(endpoint.models_url,
                                    timeout=(self.connect_timeout, min(self.timeout, 30)))
        if response.status_code != 200:
            raise LLMHTTPError(response.status_code, _server_message(response))
        try:
            return model_names(response.json())
        except ValueError:
            raise LLMBadResponse(f"model list at {endpoint.models_url} is not JSON") from None

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
                raise PreflightError(
                    f"model {self.model!r} not found at {endpoint.url} (available: "
                    f"{', '.join(names[:8])}) - set TAXDATA_MODEL or --model")
        return self.model

    # -- chat --------------------------------------------------------------------------------
    def chat(self, messages: Messages, *, schema: dict | None = None, label: str = "",
             schema_name: str = "response", temperature: float | None = None) -> ChatReply:
        """Send ``messages``; return the reply text. ``schema`` asks for structured JSON output.

        Retries connection errors, timeouts and busy statuses (408/429/5xx) with backoff; raises
        :class:`LLMError` subclasses for everything else (the server's message included).
        The reply is NOT validated against ``schema`` here: callers always validate locally.
        """
        if not self.model:
            with self._lock:
                if not self.model:
                    self.preflight()
        endpoint = self._endpoint()
        dialect = endpoint.dialect
        worker = thread_label()
        suffix = f" - {label}" if label else ""
        attempts = self.retry.attempts
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            if STOP.is_set():
                raise Interrupted("stopped by Ctrl-C")
            form = self._form(endpoint, dialect) if schema is not None else None
            body = dialect.body(self.model, messages, self.temperature if temperature is None
                                else temperature, form, schema, schema_name)
            logger.info("[LLM-REQUEST] %s POST %s model=%s%s", worker, endpoint.url, self.model,
                        suffix)
            if logger.isEnabledFor(10):  # DEBUG: don't serialise payloads nobody will read
                logger.debug("[LLM-PAYLOAD] %s %s", worker, redact(
                    truncate(json.dumps(body, ensure_ascii=False)), (self._api_key,)))
            sent = time.monotonic()
            retry_after = None
            try:
                with self.limiter():
                    if STOP.is_set():  # Ctrl-C came while we waited for a free slot
                        raise Interrupted("stopped by Ctrl-C")
                    response = self.session.post(endpoint.url, json=body,
                                                 timeout=(self.connect_timeout, self.timeout))
            except requests.ConnectTimeout:
                error: LLMError = LLMConnectionError(
                    f"Connection timeout after {self.connect_timeout:g}s to {endpoint.url}")
            except requests.ReadTimeout:
                error = LLMTimeout(f"Request timeout after {self.timeout:g}s")
            except requests.ConnectionError as exc:
                error = LLMConnectionError(f"Connection failed to {endpoint.url}: "
                                           f"{type(exc).__name__}")
            except requests.RequestException as exc:  # e.g. a body cut off mid-transfer
                error = LLMConnectionError(f"Request to {endpoint.url} failed: "
                                           f"{type(exc).__name__}")
            else:
                elapsed = time.monotonic() - sent
                logger.info("[LLM-RESPONSE] %s HTTP %d in %.2fs", worker, response.status_code,
                            elapsed)
                if response.status_code == 200:
                    try:
                        return self._reply(response, dialect, endpoint, form, attempt, started)
                    except LLMBadResponse as exc:
                        error = exc
                    except LLMTruncated as exc:
                        exc.attempts = attempt
                        raise
                else:
                    message = _server_message(response)
                    if form not in (None, "none") and _rejects_form(response.status_code,
                                                                    message):
                        self._fall_back(endpoint, dialect, form, response.status_code, message)
                        attempt -= 1  # the server said no to the form, not to the request
                        continue
                    error = LLMHTTPError(response.status_code, message)
                    if response.status_code not in self.retry.statuses:
                        logger.error("[ERROR] %s %s", worker, error)
                        error.attempts = attempt
                        raise error
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if attempt >= attempts:
                logger.error("[ERROR] %s %s (attempt %d/%d, giving up)", worker, error, attempt,
                             attempts)
                error.attempts = attempt
                raise error
            delay = self.retry.delay(attempt, retry_after)
            logger.warning("[RETRY] %s %s, attempt %d/%d in %.1fs", worker, _short(error),
                           attempt + 1, attempts, delay)
            if not self.retry.wait(delay):
                raise Interrupted("stopped by Ctrl-C")

    def _reply(self, response: requests.Response, dialect: Dialect, endpoint: Endpoint,
               form: str | None, attempt: int, started: float) -> ChatReply:
        try:
            data = response.json()
            text, stop_reason, model, prompt_tokens, completion_tokens = dialect.reply(data)
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMBadResponse(f"reply is not {dialect.name} API JSON: "
                                 f"{truncate(response.text, 120)!r}") from None
        if stop_reason == "length":
            raise LLMTruncated("reply cut off at the token limit (done_reason/finish_reason "
                               "'length'); raise the server's context or output limit")
        if not isinstance(text, str):
            raise LLMBadResponse("reply has no text content")
        return ChatReply(text=text, model=model or self.model,
                         seconds=time.monotonic() - started, attempts=attempt,
                         endpoint=endpoint.url, structured=form,
                         prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    # -- structured-output forms --------------------------------------------------------------
    def _form(self, endpoint: Endpoint, dialect: Dialect) -> str:
        with self._lock:
            return dialect.forms[self._form_index.get(endpoint.url, 0)]

    def _fall_back(self, endpoint: Endpoint, dialect: Dialect, form: str, status: int,
                   message: str) -> None:
        with self._lock:
            index = dialect.forms.index(form) + 1
            # Another thread may already have moved further down the list.
            self._form_index[endpoint.url] = max(self._form_index.get(endpoint.url, 0), index)
            new = dialect.forms[self._form_index[endpoint.url]]
        logger.warning("[FALLBACK] %s server rejected structured output %r (HTTP %d: %s); "
                       "using %r from now on", thread_label(), form, status, message, new)


def _short(error: LLMError) -> str:
    if isinstance(error, LLMHTTPError):
        return f"HTTP {error.status}"
    return str(error)
