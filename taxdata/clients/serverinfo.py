"""What an LLM server says about itself: its context size and its parallel slots.

Asked once per endpoint at preflight (:meth:`~taxdata.clients.llm.LLMClient.context_size`), each
family where it says it:

- Ollama: ``POST /api/show`` for the model: ``model_info["<arch>.context_length"]`` (the most the
  model takes; what the client sends as ``num_ctx`` is planned below it);
- llama.cpp's own server: ``GET /props`` (``default_generation_settings.n_ctx`` per slot,
  ``total_slots``), else ``GET /slots`` (one entry per slot, each with its ``n_ctx``); a server
  that has them is llama.cpp, which also takes ``cache_prompt``;
- other OpenAI-compatible servers: the model list's entry (vLLM's ``max_model_len``, LM Studio's
  ``max_context_length``, ``context_length``).

llama-cpp-python's server has none of these: its context is then ``TAXDATA_NUM_CTX``, or learned
from its first "maximum context length is N tokens" answer (:func:`context_from_error`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from taxdata.clients.dialects import OpenAIDialect

# The phrasings servers use when a prompt does not fit: llama.cpp ("the request exceeds the
# available context size"), OpenAI-style servers such as llama-cpp-python and vLLM ("maximum
# context length is N tokens"), LM Studio ("context length of only N tokens").
_CONTEXT_ERRORS = ("exceeds the available context size", "maximum context length",
                   "context length of only", "context_length_exceeded", "exceed_context_size")
_CONTEXT_NUMBER = re.compile(
    r"(?:maximum context length is|context length of only|n_ctx\W+)\s*(\d+)", re.I)


@dataclass
class ServerInfo:
    """What one endpoint said about itself (None: it did not say)."""

    context: int | None = None  # tokens a request may use (prompt + reply)
    origin: str = ""  # where ``context`` came from, for the log line and the docs
    slots: int | None = None  # requests it serves at once
    llama_cpp: bool = False  # llama.cpp's own server (takes cache_prompt)


def is_context_error(message: str) -> bool:
    """Whether an error message says the prompt did not fit the server's context."""
    text = message.lower()
    return any(words in text for words in _CONTEXT_ERRORS)


def context_from_error(message: str, data: Any = None) -> int | None:
    """The context size an overflow answer names (llama.cpp's ``n_ctx`` field, or the text)."""
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and isinstance(error.get("n_ctx"), int):
            return error["n_ctx"]
    match = _CONTEXT_NUMBER.search(message)
    return int(match.group(1)) if match else None


def root_url(chat_url: str) -> str:
    """The server's root for an OpenAI-style chat URL (``/props`` lives there)."""
    parts = urlsplit(chat_url)
    path = parts.path.rstrip("/")
    for tail in ("/v1/chat/completions", "/chat/completions"):
        if path.endswith(tail):
            path = path[: -len(tail)]
            break
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _json(session: requests.Session, method: str, url: str, timeout: tuple[float, float],
          **kwargs: Any) -> Any:
    """The JSON of a 200 answer, else None (a server without that route says 404)."""
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def ollama_info(session: requests.Session, show_url: str, model: str,
                timeout: tuple[float, float]) -> ServerInfo:
    data = _json(session, "POST", show_url, timeout, json={"model": model})
    if not isinstance(data, dict):
        return ServerInfo()
    info = data.get("model_info") or {}
    lengths = [_positive(v) for k, v in info.items() if str(k).endswith(".context_length")]
    lengths = [n for n in lengths if n]
    if lengths:
        return ServerInfo(context=max(lengths), origin=f"{show_url} (model context length)")
    return ServerInfo()


def openai_info(session: requests.Session, chat_url: str, model: str,
                models_data: Any, timeout: tuple[float, float]) -> ServerInfo:
    root = root_url(chat_url)
    props = _json(session, "GET", root + "/props", timeout)
    if isinstance(props, dict):
        settings = props.get("default_generation_settings") or {}
        n_ctx = _positive(settings.get("n_ctx")) or _positive(props.get("n_ctx"))
        return ServerInfo(context=n_ctx, origin=f"{root}/props" if n_ctx else "",
                          slots=_positive(props.get("total_slots")), llama_cpp=True)
    slots = _json(session, "GET", root + "/slots", timeout)
    if isinstance(slots, list) and slots:
        n_ctx = _positive(slots[0].get("n_ctx")) if isinstance(slots[0], dict) else None
        return ServerInfo(context=n_ctx, origin=f"{root}/slots" if n_ctx else "",
                          slots=len(slots), llama_cpp=True)
    entry = _model_entry(models_data, model)
    for key in ("max_model_len", "max_context_length", "context_length", "context_window"):
        value = _positive(entry.get(key))
        if value:
            return ServerInfo(context=value, origin=f"the model list's {key}")
    return ServerInfo()


def _model_entry(data: Any, model: str) -> dict[str, Any]:
    items = data.get("data", data.get("models", [])) if isinstance(data, dict) else data
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and model in (item.get("id"), item.get("name")):
            return item
    return {}


def discover(session: requests.Session, dialect: Any, chat_url: str, model: str,
             models_data: Any, timeout: tuple[float, float]) -> ServerInfo:
    """Ask the endpoint what it is (see the module docstring); ServerInfo() when it says nothing."""
    if isinstance(dialect, OpenAIDialect):
        return openai_info(session, chat_url, model, models_data, timeout)
    return ollama_info(session, dialect.show_url(chat_url), model, timeout)
