"""Where the LLM server is: the address a user has, resolved to an API and its chat URL.

Users type what their server prints: Ollama's ``http://localhost:11434``, llama.cpp's or vLLM's
``http://host:8000/v1``, a proxy's ``http://host:5001``. A URL whose path names its API (a chat
URL such as ``/api/chat``, a model list such as ``/v1/models``; see
:func:`taxdata.config.infer_dialect`) is completed without a request; a bare address is resolved
by asking the server: the first model list that answers, in the order Ollama (``/api/tags``),
OpenAI-compatible (``/v1/models``), an Ollama-style proxy (``/models``), names its API.

The words for a server that does not answer live here too (the preflight uses them): whether it
refused the connection or connected and said nothing within the limit, and the fix for that kind
of server (``ollama serve`` for Ollama, not for an OpenAI-compatible server).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests

from taxdata.config import ConfigError, Settings, infer_dialect
from taxdata.errors import PreflightError
from taxdata.log import logger

# The tails of each API's URLs, and the order a bare address is asked in.
CHAT_TAILS = {"ollama": "/api/chat", "openai": "/v1/chat/completions", "proxy": "/chat"}
MODEL_TAILS = {"ollama": "/api/tags", "openai": "/v1/models", "proxy": "/models"}
ASK_ORDER = ("ollama", "openai", "proxy")
# Paths of a URL that name the API: what comes before them is the server's address.
_NAMED_TAILS = ("/v1/chat/completions", "/chat/completions", "/api/chat", "/api/tags",
                "/v1/models", "/chat", "/models", "/v1")
OLLAMA_PORT = 11434


@dataclass(frozen=True)
class Address:
    """One LLM server: the URL as given, its chat URL and API, and how that was found."""

    given: str
    chat_url: str
    dialect: str  # proxy | ollama | openai
    asked: str | None = None  # the model list that answered (None: the URL said it)

    def describe(self) -> str:
        how = (f"GET {self.asked} answered" if self.asked
               else "the URL says so" if self.given == self.chat_url else "completed from the URL")
        return f"{self.given}: {self.dialect} API, chat at {self.chat_url} ({how})"


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def server_address(url: str) -> str:
    """The server's address: ``url`` without the tail that names an API."""
    path = urlsplit(url).path.rstrip("/")
    for tail in _NAMED_TAILS:
        if path.endswith(tail):
            path = path[: -len(tail)]
            break
    return _with_path(url, path)


def chat_url(url: str, dialect: str) -> str:
    """The chat URL of ``dialect`` at ``url`` (a chat URL stays as it is)."""
    path = urlsplit(url).path.rstrip("/")
    if path.endswith(("/chat/completions", "/chat")):  # a chat URL (of any shape): as given
        return url
    base = urlsplit(server_address(url)).path
    if dialect == "openai" and path.endswith("/v1"):
        return _with_path(url, path + "/chat/completions")
    return _with_path(url, base + CHAT_TAILS[dialect])


def models_url(url: str, dialect: str) -> str:
    """The model list of ``dialect`` at the server ``url`` names."""
    return _with_path(url, urlsplit(server_address(url)).path + MODEL_TAILS[dialect])


def resolve(url: str, api: str, *, session: requests.Session, timeout: float) -> Address:
    """``url`` as a chat URL and API. Asks the server only when neither the URL nor ``api``
    (``auto``, or a dialect) says which API it speaks; ``timeout`` bounds each question."""
    dialect = api if api != "auto" else infer_dialect(url)
    if dialect is not None:
        return Address(url, chat_url(url, dialect), dialect)
    tried: list[str] = []
    for candidate in ASK_ORDER:
        probe = models_url(url, candidate)
        try:
            response = session.get(probe, timeout=(timeout, timeout))
        except requests.RequestException as exc:
            raise PreflightError(no_answer(url, exc, probe, None, timeout)) from None
        if response.status_code in (401, 403):
            raise PreflightError(f"LLM server at {url} answered HTTP {response.status_code} for "
                                 f"{probe} - check TAXDATA_API_KEY")
        if response.status_code == 200 and _is_model_list(response):
            found = Address(url, chat_url(url, candidate), candidate, asked=probe)
            logger.info("[LLM] %s", found.describe())
            return found
        tried.append(f"{probe} HTTP {response.status_code}")
    raise PreflightError(
        f"no LLM API found at {url} (asked {'; '.join(tried)}) - check the port, or give the "
        "full chat URL (ending in /api/chat, /v1/chat/completions or /chat)")


def resolve_all(settings: Settings, session: requests.Session) -> list[Address]:
    """Every server of TAXDATA_LLM_URL resolved (one API for all, as the settings require)."""
    addresses = [resolve(url, settings.llm_api, session=session,
                         timeout=settings.connect_timeout) for url in settings.llm_urls]
    dialects = sorted({a.dialect for a in addresses})
    if len(dialects) > 1:
        raise ConfigError(f"TAXDATA_LLM_URL lists servers of different APIs ({', '.join(dialects)}"
                          "): use one API for all")
    return addresses


def _is_model_list(response: requests.Response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return False
    if isinstance(data, dict):
        data = data.get("models", data.get("data"))
    return isinstance(data, list)


# -- what to say when a server does not answer -------------------------------------------------

def start_hint(url: str, dialect: str | None) -> str:
    """How to get a server of ``dialect`` answering at ``url`` (None: not known yet)."""
    port = urlsplit(url).port
    if dialect == "ollama" or (dialect is None and port == OLLAMA_PORT):
        return (f"start Ollama (`ollama serve`, it listens on port {OLLAMA_PORT}) or set "
                "TAXDATA_LLM_URL to where it listens")
    if dialect == "openai":
        return ("start your OpenAI-compatible server (llama.cpp's llama-server, vLLM, LiteLLM, "
                "...) or set TAXDATA_LLM_URL to where it listens (e.g. http://host:8000/v1)")
    if dialect == "proxy":
        return ("start your Ollama proxy there, or use Ollama itself: "
                f"TAXDATA_LLM_URL=http://localhost:{OLLAMA_PORT}")
    return (f"start your LLM server (Ollama: `ollama serve`, then TAXDATA_LLM_URL=http://localhost:"
            f"{OLLAMA_PORT}; llama.cpp or vLLM: http://host:8000/v1) or set TAXDATA_LLM_URL to "
            "where it listens")


def _said(exc: BaseException) -> str:
    """The text of ``exc`` and its causes (urllib3 wraps the socket error twice)."""
    texts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " ".join(texts)


def no_answer(url: str, exc: requests.RequestException, probe: str, dialect: str | None,
              limit: float) -> str:
    """One line: what the server at ``url`` did instead of answering ``GET probe``, and the fix.

    Refused (nothing listens), not accepted within the connect limit, or accepted and silent
    within ``limit`` seconds are different problems with different fixes.
    """
    where = urlsplit(url).netloc
    if isinstance(exc, requests.ConnectTimeout):
        return (f"LLM server at {url} did not accept a connection within {limit:g}s "
                "(TAXDATA_CONNECT_TIMEOUT) - check the host name and the network (a firewall "
                f"may drop the connection); {start_hint(url, dialect)}")
    if isinstance(exc, requests.ReadTimeout):
        return (f"LLM server at {url} accepted the connection but did not answer GET {probe} "
                f"within {limit:g}s (TAXDATA_CONNECT_TIMEOUT) - is the right server listening "
                f"on {where}? A server that hangs needs a restart")
    text = _said(exc)
    if any(word in text for word in ("NameResolution", "Name or service not known",
                                     "nodename nor servname", "getaddrinfo failed",
                                     "Temporary failure in name resolution")):
        return (f"LLM server at {url} not reachable: the host name "
                f"{urlsplit(url).hostname!r} does not resolve - check TAXDATA_LLM_URL")
    if "refused" in text.lower() or "ConnectionRefused" in text:
        return (f"LLM server at {url} refused the connection (nothing listens on {where}) - "
                f"{start_hint(url, dialect)}")
    return f"LLM server at {url} not reachable ({type(exc).__name__}) - {start_hint(url, dialect)}"
