"""The LLM APIs taxdata speaks: one class per API family, each knowing its paths, its
structured-output forms, the request body it takes and the reply it gives.

- ``openai`` (:class:`OpenAIDialect`): OpenAI-compatible servers (llama.cpp, vLLM, LiteLLM),
  ``POST /v1/chat/completions``, models at ``GET /v1/models``
- ``ollama`` (:class:`OllamaDialect`): Ollama itself, ``POST /api/chat``, models at
  ``GET /api/tags``
- ``proxy`` (:class:`ProxyDialect`): an Ollama-style proxy, Ollama's bodies and replies at
  ``POST /chat``, models at ``GET /models``

Every request carries a token cap: ``max_tokens`` in the OpenAI body, ``options.num_predict`` in
the Ollama-style ones; the Ollama-style bodies also carry the run's context size
(``options.num_ctx``). Replies are streamed (``stream: true``: Ollama's NDJSON lines, OpenAI's
server-sent events); :meth:`Dialect.chunk` reads one streamed object, :meth:`Dialect.reply` a
whole reply (a server that ignores ``stream`` still answers in one piece). Servers of one family
differ in which structured-output forms they accept, so each dialect lists its forms strongest
first and :class:`FormChoice` remembers, per server, the first one that server takes (found once,
at preflight: :meth:`~taxdata.clients.llm.LLMClient.probe_form`).
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Sequence
from urllib.parse import urlsplit, urlunsplit

Messages = Sequence[dict[str, str]]
# Every family's chat path, longest first (see Dialect.models_url).
_CHAT_TAILS = ("/v1/chat/completions", "/chat/completions", "/api/chat", "/chat")


class ReplyParts(NamedTuple):
    """What a reply body says, whatever the family's shape."""

    text: Any  # the reply text (a str, unless the server sent something else)
    stop_reason: str | None  # "length": cut off at the token limit
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None = None  # prompt tokens the server's prefix cache supplied


class Chunk(NamedTuple):
    """One streamed object: a piece of the reply and, on the last one, how it ended.

    ``final``: the server says the reply is complete (Ollama ``done``, an OpenAI finish
    reason). Usage figures may come on a later object (OpenAI's ``include_usage``).
    """

    text: str = ""
    thinking: bool = False  # a reasoning token (not part of the reply, but a sign of life)
    final: bool = False
    stop_reason: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    error: str | None = None  # the server reported an error inside the stream


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Dialect(abc.ABC):
    """How one API family shapes requests and replies; a subclass per family."""

    name: ClassVar[str]  # as TAXDATA_LLM_API names it
    chat_path: ClassVar[str]  # the tail of the family's chat URL
    models_path: ClassVar[str]  # replaces the chat path's tail to list models
    forms: ClassVar[tuple[str, ...]]  # structured-output forms, strongest first

    def models_url(self, chat_url: str) -> str:
        """The model list's URL beside ``chat_url`` (any prefix before the chat path kept).

        A chat URL of another family's shape (an explicit TAXDATA_LLM_API wins over the path)
        loses that family's tail, so the list is never asked for under a chat path.
        """
        parts = urlsplit(chat_url)
        path = parts.path.rstrip("/")
        for tail in (self.chat_path, *_CHAT_TAILS):
            if path.endswith(tail):
                path = path[: -len(tail)]
                break
        return urlunsplit((parts.scheme, parts.netloc, path + self.models_path, "", ""))

    @abc.abstractmethod
    def body(self, model: str, messages: Messages, temperature: float,
             form: str | None, schema: dict | None, schema_name: str,
             max_tokens: int | None = None, *, stream: bool = False,
             num_ctx: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The chat request's JSON body; ``form`` (one of :attr:`forms`) asks for ``schema``;
        ``extra``: fields one server takes beyond its family's (llama.cpp's ``cache_prompt``)."""

    def carries_schema(self, form: str | None) -> bool:
        """Whether ``form`` sends the schema itself to the server (else the prompt must)."""
        return form in ("json_schema", "json_object_schema", "schema")

    @abc.abstractmethod
    def reply(self, data: Any) -> ReplyParts:
        """The parts of a chat reply body; KeyError, IndexError or TypeError if it has another
        shape."""

    @abc.abstractmethod
    def chunk(self, data: Any) -> Chunk:
        """One streamed object; KeyError, IndexError or TypeError if it has another shape."""

    def token(self, data: Any) -> tuple[str, Any] | None:
        """``(text, model)`` when ``data`` is a plain token (a piece of the reply and its model,
        nothing more), else None: the reader then takes the whole object with :meth:`chunk`.
        Whatever it returns, :meth:`chunk` would say the same (``Chunk(text, model=model)``)."""
        texts, model = self.tokens([data])
        return (texts[0], model) if texts else None

    def tokens(self, values: list[Any]) -> tuple[list[str], Any]:
        """The plain tokens that open ``values`` (up to the first value that is not one, see
        :meth:`token`): their texts and the last model they name (None if none does). The hot
        path of a stream, hundreds of objects a reply: one call for a block of them."""
        texts: list[str] = []
        model = None
        plain_text = self.plain_text
        for data in values:
            text = plain_text(data) if type(data) is dict else None
            if text is None:
                break
            texts.append(text)
            named = data.get("model")
            if named is not None:
                model = named
        return texts, model

    @abc.abstractmethod
    def plain_text(self, data: dict[str, Any]) -> str | None:
        """The text of object ``data`` when it is a plain token (see :meth:`token`), else
        None."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class OpenAIDialect(Dialect):
    """OpenAI-compatible servers: ``response_format`` for structured output, ``choices``."""

    name = "openai"
    chat_path = "/chat/completions"
    models_path = "/models"
    # json_object_schema: llama.cpp's json_object with a schema beside it
    forms = ("json_schema", "json_object_schema", "json_object", "none")

    def body(self, model: str, messages: Messages, temperature: float,
             form: str | None, schema: dict | None, schema_name: str,
             max_tokens: int | None = None, *, stream: bool = False,
             num_ctx: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        # num_ctx: an OpenAI-compatible server's context is fixed when it starts; not sent.
        body: dict[str, Any] = {"model": model, "messages": list(messages),
                                "temperature": temperature}
        if max_tokens:
            body["max_tokens"] = max_tokens
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}  # the usage figures at the end
        body.update(extra or {})
        if form == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name, "schema": schema, "strict": True}}
        elif form == "json_object_schema":
            body["response_format"] = {"type": "json_object", "schema": schema}
        elif form == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def reply(self, data: Any) -> ReplyParts:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        return ReplyParts(choice["message"]["content"], choice.get("finish_reason"),
                          data.get("model"), usage.get("prompt_tokens"),
                          usage.get("completion_tokens"), _openai_cached(data))

    def chunk(self, data: Any) -> Chunk:
        if "error" in data:
            error = data["error"]
            return Chunk(error=str(error.get("message") if isinstance(error, dict) else error))
        usage = data.get("usage") or {}
        choices = data["choices"]
        text, thinking, stop = "", False, None
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") or ""
            thinking = bool(delta.get("reasoning_content") or delta.get("reasoning"))
            stop = choice.get("finish_reason")
        return Chunk(text if isinstance(text, str) else str(text), thinking, stop is not None,
                     stop, data.get("model"), _int(usage.get("prompt_tokens")),
                     _int(usage.get("completion_tokens")), _openai_cached(data))

    def plain_text(self, data: dict[str, Any]) -> str | None:
        choices = data.get("choices")
        if (type(choices) is not list or len(choices) != 1 or "error" in data or "usage" in data
                or "timings" in data):
            return None  # usage figures, an error, or not one choice: the whole object
        choice = choices[0]
        delta = choice.get("delta") if type(choice) is dict else None
        if (type(delta) is not dict or choice.get("finish_reason") is not None
                or delta.get("reasoning_content") or delta.get("reasoning")):
            return None
        text = delta.get("content")
        return text if type(text) is str and text else None


def _openai_cached(data: dict[str, Any]) -> int | None:
    """The prefix cache's share: OpenAI's ``prompt_tokens_details.cached_tokens``, or
    llama.cpp's own ``timings.cache_n``."""
    details = (data.get("usage") or {}).get("prompt_tokens_details") or {}
    cached = _int(details.get("cached_tokens"))
    if cached is None:
        cached = _int((data.get("timings") or {}).get("cache_n"))
    return cached


class OllamaDialect(Dialect):
    """Ollama: ``format`` for structured output, sampling and the context size under
    ``options``."""

    name = "ollama"
    chat_path = "/api/chat"
    models_path = "/api/tags"
    forms = ("schema", "json", "none")

    def body(self, model: str, messages: Messages, temperature: float,
             form: str | None, schema: dict | None, schema_name: str,
             max_tokens: int | None = None, *, stream: bool = False,
             num_ctx: int | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        options: dict[str, Any] = {"temperature": temperature}
        if max_tokens:
            options["num_predict"] = max_tokens  # Ollama's output token cap
        if num_ctx:
            # The context Ollama reads the prompt in: without it, its small default silently
            # drops the start of a longer prompt (the instructions). One value per run: a
            # changing one reloads the model.
            options["num_ctx"] = num_ctx
        body = {"model": model, "messages": list(messages), "stream": stream,
                "options": options, **(extra or {})}
        if form == "schema":
            body["format"] = schema
        elif form == "json":
            body["format"] = "json"
        return body

    def reply(self, data: Any) -> ReplyParts:
        return ReplyParts(data["message"]["content"], data.get("done_reason"), data.get("model"),
                          data.get("prompt_eval_count"), data.get("eval_count"),
                          _int(data.get("prompt_eval_cached_count")))

    def chunk(self, data: Any) -> Chunk:
        if "error" in data:
            return Chunk(error=str(data["error"]))
        message = data.get("message") or {}
        text = message.get("content") or ""
        final = bool(data.get("done"))
        return Chunk(text if isinstance(text, str) else str(text), bool(message.get("thinking")),
                     final, data.get("done_reason") if final else None, data.get("model"),
                     _int(data.get("prompt_eval_count")), _int(data.get("eval_count")),
                     _int(data.get("prompt_eval_cached_count")))

    def plain_text(self, data: dict[str, Any]) -> str | None:
        # Ollama's objects say "done": false until the last one; the counts come on that one.
        if (data.get("done") is not False or "error" in data or "eval_count" in data
                or "prompt_eval_count" in data or "prompt_eval_cached_count" in data):
            return None
        message = data.get("message")
        if type(message) is not dict or message.get("thinking"):
            return None
        text = message.get("content")
        return text if type(text) is str and text else None

    def show_url(self, chat_url: str) -> str:
        """Ollama's ``/api/show`` (the model's details, its context length) beside the chat
        (a proxy may pass it through to Ollama; one that does not just says 404)."""
        return self.models_url(chat_url)[: -len(self.models_path)] + "/api/show"


class ProxyDialect(OllamaDialect):
    """An Ollama-style proxy: Ollama's bodies and replies under shorter paths."""

    name = "proxy"
    chat_path = "/chat"
    models_path = "/models"


DIALECTS: dict[str, Dialect] = {d.name: d for d in (ProxyDialect(), OllamaDialect(),
                                                    OpenAIDialect())}


@dataclass(frozen=True)
class Endpoint:
    """One chat URL and the API family it speaks."""

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


class FormChoice:
    """Which structured-output form each server takes (thread-safe): a dialect's strongest at
    first, the next one down its list each time the server refuses one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._index: dict[str, int] = {}  # per chat URL: into its dialect's forms

    def current(self, url: str, dialect: Dialect) -> str:
        with self._lock:
            return dialect.forms[self._index.get(url, 0)]

    def refused(self, url: str, dialect: Dialect, form: str) -> str:
        """The server at ``url`` refused ``form``: the form to use there from now on."""
        with self._lock:
            index = dialect.forms.index(form) + 1
            # Another thread may already have moved further down the list.
            self._index[url] = max(self._index.get(url, 0), index)
            return dialect.forms[self._index[url]]


def model_listed(model: str, names: Sequence[str]) -> bool:
    """``model`` is among a server's ``names`` (``gemma3`` is Ollama's ``gemma3:latest``)."""
    return model in names or f"{model}:latest" in names


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
