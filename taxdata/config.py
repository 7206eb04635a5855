"""Configuration: one settings object, read once, validated before any request is sent.

Precedence: command-line flag > environment variable > ``.env`` in the working directory (never
overriding the real environment) > the script's in-code default. A bad value is one line naming
the variable (or flag) and what is allowed; scripts turn it into exit code 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from taxdata import __version__
from taxdata.errors import UsageError

# How every HTTP client names itself (Wikipedia asks for contact details: TAXDATA_USER_AGENT).
DEFAULT_USER_AGENT = f"taxdata/{__version__} (+https://github.com/taxdata/taxdata)"
MAX_WORKERS_LIMIT = 256
API_DIALECTS = ("proxy", "ollama", "openai")


class ConfigError(UsageError):
    """A setting has a value we cannot use; the message is one line for the user."""


@dataclass(frozen=True)
class Settings:
    llm_url: str = "http://localhost:5001/chat"
    # proxy | ollama | openai, as the URL says on load; "auto" stays when a URL is a server's
    # address (http://localhost:11434): taxdata.clients.address asks the server which API it is.
    llm_api: str = "proxy"
    model: str = ""  # empty: the first model the server lists
    api_key: str = field(default="", repr=False)
    max_workers: int = 4
    timeout: float = 300.0
    connect_timeout: float = 10.0
    max_retries: int = 4
    data_dir: Path = Path("data")
    log_level: str = "INFO"
    log_file: Path | None = None
    wikipedia_api: str = "https://en.wikipedia.org/w/api.php"
    user_agent: str = DEFAULT_USER_AGENT
    extractor_url: str = "http://localhost:5000"
    countries_file: Path | None = None
    # Request layer (issue 7). How long a request may wait for a busy (503/429) server:
    retry_deadline: float = 300.0
    # Re-asks with the exact errors after an invalid reply (not JSON, schema/sanity errors):
    max_reasks: int = 2
    # Output token cap on every LLM request (max_tokens / options.num_predict):
    max_tokens: int = 4096
    # Adapt each endpoint's concurrency (AIMD, max_workers the ceiling); False: fixed W.
    adaptive: bool = True
    # Seconds a server that stopped answering gets to come back before its work fails:
    breaker_wait: float = 15.0
    # Inputs (taxation files, raw pages, articles) larger than this are SKIPPED, never sent.
    max_input_bytes: int = 1_000_000
    # Streamed replies (issue 15): seconds without a token once a reply streams (``timeout`` is
    # the wait for its first token), the whole request's deadline, the largest answer read.
    idle_timeout: float = 60.0
    request_deadline: float = 1800.0
    max_reply_bytes: int = 16_000_000
    # The context size in tokens: sent to Ollama as num_ctx (0: planned from what the run
    # needs, within the model's); for a server that does not say its own, its size.
    num_ctx: int = 0
    # Update reports (JSON + review page) kept in <data>/reports: the newest N; 0 keeps all.
    keep_reports: int = 100
    # An --import-js file larger than this is refused unread (a calculator file, not a stream).
    max_import_bytes: int = 64_000_000
    # Hours a Wikipedia revision must have stood before the generator uses it (fresh vandalism
    # is mostly reverted within them); 0: the latest revision.
    wikipedia_min_age: float = 24.0
    # Seconds a run stopped by SIGTERM gets to close its requests and save; then it stops now
    # (keeping every reply already validated). Below docker's 10 s before its SIGKILL.
    stop_grace: float = 5.0

    @property
    def llm_urls(self) -> tuple[str, ...]:
        """The chat endpoints: ``llm_url`` may list several, comma-separated."""
        return tuple(url.strip() for url in self.llm_url.split(",") if url.strip())


# -- value parsers: raise ValueError with the "what is allowed" part of the message ------------

def _url(value: str) -> str:
    value = str(value).strip()  # like every other setting: "url " must not become the URL
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:5001/chat")
    return value.rstrip("/") if parts.path not in ("", "/") else value


def _urls(value: str) -> str:
    urls = [part for part in str(value).split(",") if part.strip()]
    if not urls:
        raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:5001/chat "
                         "(several: comma-separated)")
    return ",".join(_url(url) for url in urls)


def _flag(value: str) -> bool:
    word = str(value).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be 1 or 0 (true/false, yes/no, on/off)")


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"must be a whole number from {low} to {high}") from None
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number
    return parse


def _seconds(value: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ValueError("must be a number of seconds greater than 0") from None
    if not 0 < number <= 86400:
        raise ValueError("must be a number of seconds greater than 0 (at most 86400)")
    return number


def _hours(value: str) -> float:
    try:
        number = float(str(value).strip().lower().removesuffix("h"))
    except ValueError:
        raise ValueError("must be a number of hours, 0 or more (0: the latest revision)") from None
    if not 0 <= number <= 8760:
        raise ValueError("must be a number of hours from 0 to 8760 (0: the latest revision)")
    return number


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        word = str(value).strip().lower()
        if word not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return word
    return parse


def _log_level(value: str) -> str:
    return _choice("debug", "info", "warning", "error")(value).upper()


def _text(value: str) -> str:
    return str(value).strip()


def _secret(value: str) -> str:
    # Sent as an HTTP header: a stray newline or space (a bad paste into .env) must fail here,
    # not later as a misleading "server not reachable".
    text = str(value).strip()
    if any(not ("!" <= char <= "~") for char in text):
        raise ValueError("must be printable ASCII without spaces (check for a bad paste)")
    return text


def _path(value: str) -> Path:
    if not str(value).strip():
        raise ValueError("must be a path")
    return Path(str(value).strip()).expanduser()


# field name -> (environment variable, parser)
_SPEC: dict[str, tuple[str, Callable[[str], Any]]] = {
    "llm_url": ("TAXDATA_LLM_URL", _urls),
    "llm_api": ("TAXDATA_LLM_API", _choice("auto", *API_DIALECTS)),
    "model": ("TAXDATA_MODEL", _text),
    "api_key": ("TAXDATA_API_KEY", _secret),
    "max_workers": ("TAXDATA_MAX_WORKERS", _int_range(1, MAX_WORKERS_LIMIT)),
    "timeout": ("TAXDATA_TIMEOUT", _seconds),
    "connect_timeout": ("TAXDATA_CONNECT_TIMEOUT", _seconds),
    "max_retries": ("TAXDATA_MAX_RETRIES", _int_range(0, 20)),
    "data_dir": ("TAXDATA_DATA_DIR", _path),
    "log_level": ("TAXDATA_LOG_LEVEL", _log_level),
    "log_file": ("TAXDATA_LOG_FILE", _path),
    "wikipedia_api": ("TAXDATA_WIKIPEDIA_API", _url),
    "user_agent": ("TAXDATA_USER_AGENT", _text),
    "extractor_url": ("TAXDATA_EXTRACTOR_URL", _url),
    "countries_file": ("TAXDATA_COUNTRIES", _path),
    "retry_deadline": ("TAXDATA_RETRY_DEADLINE", _seconds),
    "max_reasks": ("TAXDATA_MAX_REASKS", _int_range(0, 10)),
    "max_tokens": ("TAXDATA_MAX_TOKENS", _int_range(16, 1_000_000)),
    "adaptive": ("TAXDATA_ADAPTIVE", _flag),
    "breaker_wait": ("TAXDATA_BREAKER_WAIT", _seconds),
    # Input size cap (bytes) of the updater and the generators; see Settings.max_input_bytes.
    "max_input_bytes": ("TAXDATA_MAX_INPUT_BYTES", _int_range(1, 1 << 40)),
    "idle_timeout": ("TAXDATA_IDLE_TIMEOUT", _seconds),
    "request_deadline": ("TAXDATA_REQUEST_DEADLINE", _seconds),
    "max_reply_bytes": ("TAXDATA_MAX_REPLY_BYTES", _int_range(1024, 1 << 34)),
    "num_ctx": ("TAXDATA_NUM_CTX", _int_range(0, 1 << 24)),
    # Reports kept (the newest N runs'; 0 keeps all); see Settings.keep_reports.
    "keep_reports": ("TAXDATA_KEEP_REPORTS", _int_range(0, 1_000_000)),
    "max_import_bytes": ("TAXDATA_MAX_IMPORT_BYTES", _int_range(1, 1 << 40)),
    "wikipedia_min_age": ("TAXDATA_WIKIPEDIA_MIN_AGE", _hours),
    "stop_grace": ("TAXDATA_STOP_GRACE", _seconds),
}

ENV_VARS = {name: env for name, (env, _) in _SPEC.items()}


def infer_dialect(url: str) -> str | None:
    """What the URL path says about the API: a dialect, or None for a server's address.

    A chat URL (``/api/chat``, ``/v1/chat/completions``, ``/chat``) or a model-list URL
    (``/api/tags``, ``/v1/models``, ``/models``) names its API; ``/v1`` is an OpenAI-compatible
    server's address; an empty path is a server's address whose API is found by asking it
    (:mod:`taxdata.clients.address`). Any other path cannot be used: a ConfigError that says what
    can, so a typo (``/api/chatt``) never becomes a request to a made-up URL.
    """
    path = urlsplit(url).path.rstrip("/")
    if not path:
        return None
    for dialect, tail in (("ollama", "/api/chat"), ("ollama", "/api/tags"),
                          ("openai", "/chat/completions"), ("openai", "/v1/models"),
                          ("openai", "/v1"), ("proxy", "/chat"), ("proxy", "/models")):
        if path.endswith(tail):
            return dialect
    raise ConfigError(
        f"TAXDATA_LLM_URL={url!r}: {path!r} is not a path taxdata knows - give the server's "
        "address (http://localhost:11434, http://host:8000/v1; its API is found by asking it) "
        "or its chat URL (ending in /api/chat, /v1/chat/completions or /chat; "
        "TAXDATA_LLM_API=proxy|ollama|openai overrides the API a path implies)")


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
    sources: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from flags, the environment, ``.env`` and in-code ``defaults``.

    ``flags`` maps field names to command-line values (None = not given); their names in error
    messages are ``--field-name``. ``defaults`` are the script's own (e.g. ``max_workers=3``).
    ``sources``, when given, is filled with where each setting came from: ``--llm-url``,
    ``TAXDATA_LLM_URL`` (the environment), ``TAXDATA_LLM_URL in .env``, ``program default`` or
    ``default`` (``taxdata doctor`` prints them).
    """
    environ = os.environ if environ is None else environ
    from_file: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values  # a run without a .env never loads python-dotenv

        from_file = dotenv_values(env_file)
    values: dict[str, Any] = {}
    for name, (env, parse) in _SPEC.items():
        given = (flags or {}).get(name)
        if given is not None:
            source, raw, origin = f"--{name.replace('_', '-')}", given, None
        elif environ.get(env, "").strip():
            source, raw, origin = env, environ[env], f"{env} (environment)"
        elif (from_file.get(env) or "").strip():
            source, raw, origin = f"{env} (in {env_file})", from_file[env], None
        else:
            continue
        try:
            values[name] = parse(raw) if isinstance(raw, str) else parse(str(raw))
        except ValueError as exc:
            shown = "***" if name == "api_key" else str(raw)
            raise ConfigError(f"{source}={shown!r}: {exc}") from None
        if sources is not None:
            sources[name] = origin or source
    merged = {f.name: f.default for f in fields(Settings)}
    merged["llm_api"] = "auto"
    merged.update(defaults or {})
    merged.update(values)
    if sources is not None:
        for name in _SPEC:
            sources.setdefault(name, "program default" if name in (defaults or {}) else "default")
    dialects = {infer_dialect(url) for url in merged["llm_url"].split(",")}  # checks each path
    if merged["llm_api"] == "auto":
        known = dialects - {None}
        if len(known) > 1:
            raise ConfigError("TAXDATA_LLM_URL lists servers of different APIs "
                              f"({', '.join(sorted(known))}): use one API for all")
        if None not in dialects:  # every URL says its API; else they are asked (clients.address)
            merged["llm_api"] = known.pop()
    return Settings(**merged)
