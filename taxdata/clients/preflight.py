"""The client's preflight, once per endpoint before any work: the model, what the server says of
itself (its context and slots: :mod:`taxdata.clients.serverinfo`), the run's ``num_ctx``
(:mod:`taxdata.clients.context`) and the structured-output form it takes, found by one tiny
request (:meth:`ServerPreflight.probe_form`), so no worker learns it from a failed real request.

:class:`ServerPreflight` is a part of :class:`~taxdata.clients.llm.LLMClient` (its methods use
the client's session, endpoints, pool and settings); ``taxdata doctor`` calls the same methods.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests

from taxdata.clients import serverinfo
from taxdata.clients.address import no_answer
from taxdata.clients.answers import (
    LLMBadResponse,
    LLMHTTPError,
    rejects_form,
    server_message,
)
from taxdata.clients.context import ContextNeed, num_ctx_for, source_chars
from taxdata.clients.dialects import Endpoint, FormChoice, model_listed, model_names
from taxdata.clients.http import read_capped
from taxdata.clients.limiter import EndpointPool
from taxdata.clients.serverinfo import ServerInfo
from taxdata.clients.stream import StreamBroken, close_quietly, read_reply
from taxdata.clients.watch import WATCHDOG, Watch
from taxdata.errors import PreflightError
from taxdata.log import logger, thread_label

# The preflight's probe of the structured-output forms: the constructs the real schemas use
# (nullable fields, an enum, an array of objects), in a few tokens.
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["ok", "items"],
    "properties": {
        "ok": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
        "items": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["kind"],
            "properties": {"kind": {"type": "string", "enum": ["a", "b"]}}}}}}
PROBE_MESSAGES = [{"role": "user", "content": 'Reply with {"ok": true, "items": []}.'}]


def body_schema(schema: Any, names: bool = False) -> Any:
    """The schema as servers need it for a grammar: without descriptions (they steer nothing
    there and would be sent on every request). ``names``: ``schema`` maps property names."""
    if isinstance(schema, dict):
        return {k: body_schema(v, k == "properties" and not names)
                for k, v in schema.items() if names or k != "description"}
    if isinstance(schema, list):
        return [body_schema(v) for v in schema]
    return schema


class ServerPreflight:
    """The checks and discoveries of :class:`~taxdata.clients.llm.LLMClient` (see the module
    docstring); mixed into it, never used alone."""

    session: requests.Session
    endpoints: list[Endpoint]
    model: str
    timeout: float
    idle_timeout: float
    deadline: float
    connect_timeout: float
    max_reply_bytes: int
    num_ctx: int | None
    num_ctx_setting: int | None
    forms: FormChoice
    info: dict[str, ServerInfo]
    probed: set[str]
    pool: EndpointPool
    _lock: threading.Lock
    _models_data: dict[str, Any]

    def list_models(self, endpoint: Endpoint | None = None,
                    timeout: float | None = None) -> list[str]:
        endpoint = endpoint or self.endpoints[0]
        connect = self.connect_timeout if timeout is None else min(timeout, self.connect_timeout)
        response = self.session.get(endpoint.models_url,
                                    timeout=(connect, min(self.timeout, timeout or 30)))
        if response.status_code != 200:
            raise LLMHTTPError(response.status_code, server_message(response))
        try:
            data = response.json()
        except ValueError:
            raise LLMBadResponse(f"model list at {endpoint.models_url} is not JSON") from None
        self._models_data[endpoint.url] = data
        return model_names(data)

    def _probe(self, endpoint: Endpoint) -> bool:
        """The circuit breaker's health check: the server takes connections again. (A model list
        that is slow to answer still counts: a one-slot server answers it only between
        generations.)"""
        try:
            self.list_models(endpoint, timeout=5.0)
        except requests.ReadTimeout:
            pass  # connected, and busy: it is there
        return True

    def preflight(self, schema: dict | None = None, need: ContextNeed | None = None) -> str:
        """Check that each server answers and has the model; pick one if none was set. Then, per
        server: what it says of its context and slots; with ``need``, the run's ``num_ctx``
        (:meth:`plan_context`); with ``schema``, the structured-output form it takes
        (:meth:`probe_form`).

        Returns the model name. Raises :class:`PreflightError` with a one-line fix.
        """
        for endpoint in self.endpoints:
            self._check_model(endpoint)
        for endpoint in self.endpoints:
            self.context_size(endpoint)
        if need is not None:
            self.plan_context(need)
        if schema is not None:
            for endpoint in self.endpoints:
                self.probe_form(endpoint, schema)
        return self.model

    def _check_model(self, endpoint: Endpoint) -> None:
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

    def context_size(self, endpoint: Endpoint | None = None) -> int | None:
        """The context (tokens) the server says a request may use; None when it does not say.

        Asked once per endpoint (see :mod:`taxdata.clients.serverinfo`); llama.cpp's slot count
        becomes that endpoint's concurrency ceiling. A size learned later from an overflow
        answer replaces it (:meth:`learn_context`).
        """
        endpoint = endpoint or self.endpoints[0]
        with self._lock:
            known = self.info.get(endpoint.url)
        if known is None:
            known = serverinfo.discover(self.session, endpoint.dialect, endpoint.url, self.model,
                                        self._models_data.get(endpoint.url),
                                        (self.connect_timeout, min(self.timeout, 30)))
            with self._lock:
                known = self.info.setdefault(endpoint.url, known)
            if known.slots:
                self.pool.set_slots(endpoint, known.slots)
            if known.context or known.slots:
                logger.debug("[LLM] %s: context %s tokens%s%s", endpoint.name,
                            known.context or "not stated",
                            f" ({known.origin})" if known.origin else "",
                            f", {known.slots} slot{'s' if known.slots != 1 else ''}"
                            if known.slots else "")
        return known.context

    def learn_context(self, url: str, limit: int) -> None:
        """The server said (in an overflow answer) that its context is ``limit`` tokens."""
        with self._lock:
            info = self.info.setdefault(url, ServerInfo())
            if info.context != limit:
                info.context, info.origin = limit, "its answer to a prompt that did not fit"
                logger.warning("[LLM] %s: context is %d tokens (from its answer)",
                               urlsplit(url).netloc or url, limit)

    def window(self, endpoint: Endpoint) -> int | None:
        """The tokens a request to ``endpoint`` may use: the ``num_ctx`` we send an Ollama-style
        server; for an OpenAI-style one, what it said (or ``TAXDATA_NUM_CTX``)."""
        if endpoint.dialect.name != "openai":
            return self.num_ctx
        info = self.info.get(endpoint.url)
        return (info.context if info else None) or self.num_ctx_setting

    def plan_context(self, need: ContextNeed) -> int:
        """Fix the run's ``num_ctx`` (once: a changing value reloads an Ollama model) and return
        the largest source part, in characters, that fits every endpoint beside ``need``'s
        instructions and reply cap. PreflightError when a server's context cannot fit any."""
        ollama_style = [e for e in self.endpoints if e.dialect.name != "openai"]
        with self._lock:
            if ollama_style and self.num_ctx is None:
                limits = [i.context for e in ollama_style
                          if (i := self.info.get(e.url)) and i.context]
                self.num_ctx = self.num_ctx_setting or num_ctx_for(need, min(limits, default=None))
                logger.debug("[LLM] num_ctx %d for this run (%s)", self.num_ctx,
                            "TAXDATA_NUM_CTX" if self.num_ctx_setting else
                            f"instructions {need.instructions} + source + reply {need.reply} "
                            "tokens")
        return min(source_chars(self.window(e), need, e.url) for e in self.endpoints)

    def probe_form(self, endpoint: Endpoint | None = None, schema: dict | None = None) -> str:
        """Find, with one tiny request per form tried, the strongest structured-output form the
        server takes, and keep it for every later request. ``schema``: the one the run will
        send (a server may compile one schema and not another); default: a small one that uses
        the same constructs."""
        endpoint = endpoint or self.endpoints[0]
        dialect = endpoint.dialect
        schema = schema if schema is not None else PROBE_SCHEMA
        form = self.forms.current(endpoint.url, dialect)
        while form != "none":
            body = dialect.body(self.model, PROBE_MESSAGES, 0.0, form, body_schema(schema),
                                "probe", 8, stream=True, num_ctx=self.num_ctx,
                                extra=self._extra(endpoint))
            status, message = self._probe_request(endpoint, body)
            if status == 200 or status is None:
                break
            if not rejects_form(status, message):
                break  # refused for another reason: the real requests will say what
            self._fall_back(endpoint, form, LLMHTTPError(status, message))
            form = self.forms.current(endpoint.url, dialect)
        self.probed.add(endpoint.url)
        return form

    def _probe_request(self, endpoint: Endpoint, body: dict) -> tuple[int | None, str]:
        """One tiny request: its status and error message (None: no answer). Its few tokens
        are read to the end (the reply itself is not needed)."""
        watch = Watch(first=self.timeout, idle=self.idle_timeout, total=self.deadline)
        with WATCHDOG.watching(watch):
            try:
                response = self.session.post(endpoint.url, json=body, stream=True,
                                             timeout=(self.connect_timeout, self.timeout),
                                             allow_redirects=False)
            except requests.RequestException:
                return None, ""
            try:
                if response.status_code != 200:
                    read_capped(response, self.max_reply_bytes)
                    return response.status_code, server_message(response)
                read_reply(response, endpoint.dialect, watch, max_bytes=self.max_reply_bytes,
                           cap=8, expect_json=True)
                return 200, ""
            except (requests.RequestException, StreamBroken):
                return (200 if response.status_code == 200 else None), ""
            finally:
                close_quietly(response)

    def _extra(self, endpoint: Endpoint) -> dict[str, Any] | None:
        info = self.info.get(endpoint.url)
        # llama.cpp: keep the prompt's KV cache for the next request (the shared prefix).
        return {"cache_prompt": True} if info is not None and info.llama_cpp else None

    def _fall_back(self, endpoint: Endpoint, form: str, error: LLMHTTPError) -> None:
        new = self.forms.refused(endpoint.url, endpoint.dialect, form)
        logger.warning("[FALLBACK] %s server rejected structured output %r (HTTP %d: %s); "
                       "using %r from now on", thread_label(), form, error.status,
                       error.server_message, new)
