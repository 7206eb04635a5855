"""Page text for the LLM: the user's Web Content Extractor service, or a built-in fallback.

:class:`ExtractorClient` talks to the Web Content Extractor (``POST /extract``, ``GET
/txt-files``, ``GET /files/<name>``, ``GET /health``). :func:`extract_builtin` does the same job
in-process: Wikipedia article URLs go through
:class:`~taxdata.clients.wikipedia.WikipediaClient` (the API gives clean article HTML), anything
else is fetched and reduced to its main text by trafilatura (an optional dependency:
``pip install 'taxdata[extract]'``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import requests

from taxdata.clients.http import RetryPolicy, make_session, request
from taxdata.clients.wikipedia import WikipediaClient
from taxdata.config import Settings
from taxdata.errors import ServerError
from taxdata.log import logger, thread_label

EXTRACTOR_URL_ENV = "TAXDATA_EXTRACTOR_URL"


class ExtractorError(ServerError):
    """The extractor (service or built-in) could not give us the page's text."""


class ExtractorClient:
    """Client of the Web Content Extractor service. Thread-safe (one pooled session)."""

    def __init__(self, base_url: str = Settings.extractor_url, *,
                 session: requests.Session | None = None, retry: RetryPolicy | None = None,
                 timeout: tuple[float, float] = (10, 120)) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or make_session()
        self.retry = retry or RetryPolicy()
        self.timeout = timeout

    def extract(self, url: str) -> str:
        """The main text of ``url`` as the service extracts it."""
        logger.info("[EXTRACT] %s Extracting %s via Web Content Extractor", thread_label(), url)
        data = self._json(self._call("POST", "/extract", json={"url": url}), "/extract")
        content = data.get("content")
        if not isinstance(content, str):
            raise ExtractorError(f"Web Content Extractor answered no content for {url}")
        return content

    def list_txt_files(self) -> list[str]:
        """Names of the text files the service has saved."""
        data = self._json(self._call("GET", "/txt-files"), "/txt-files")
        files = data.get("txt_files")
        if not isinstance(files, list) or not all(isinstance(name, str) for name in files):
            raise ExtractorError("Web Content Extractor /txt-files answer has no txt_files list")
        return files

    def get_file(self, name: str) -> str:
        """The text of the saved file ``name`` (a bare file name, checked before any request)."""
        check_file_name(name)
        response = self._call("GET", "/files/" + quote(name, safe=""))
        if response.status_code == 404:
            raise ExtractorError(f"Web Content Extractor has no file {name!r}")
        if response.status_code != 200:
            raise ExtractorError(
                f"Web Content Extractor /files/{name} answered HTTP {response.status_code}")
        if "charset" not in response.headers.get("Content-Type", ""):
            response.encoding = "utf-8"  # requests would assume ISO-8859-1 for text/*
        return response.text

    def check(self) -> None:
        """Preflight: raise a one-line :class:`ExtractorError` unless the service answers.

        ``/health`` first; a service without it (404) is asked for ``/txt-files`` instead.
        No retries: this runs before any work, and a down service should say so at once.
        """
        for path in ("/health", "/txt-files"):
            try:
                response = self.session.get(self.base_url + path, timeout=self.timeout)
            except requests.RequestException:
                raise ExtractorError(self._unreachable()) from None
            if response.status_code == 404 and path == "/health":
                continue
            if response.status_code != 200:
                raise ExtractorError(
                    f"Web Content Extractor at {self.base_url} answered HTTP "
                    f"{response.status_code} on {path}")
            return

    # -- plumbing --------------------------------------------------------------------------
    def _unreachable(self) -> str:
        return (f"Web Content Extractor not reachable at {self.base_url} - "
                f"start it or set {EXTRACTOR_URL_ENV}")

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return request(self.session, method, self.base_url + path, policy=self.retry,
                           timeout=self.timeout, what="Extractor", log_giveup=False,
                           **kwargs)
        except requests.RequestException:
            raise ExtractorError(self._unreachable()) from None

    @staticmethod
    def _json(response: requests.Response, path: str) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ExtractorError(
                f"Web Content Extractor {path} answered HTTP {response.status_code}, not JSON")
        if data.get("success") is not True:
            message = data.get("error") or data.get("message") or f"HTTP {response.status_code}"
            raise ExtractorError(f"Web Content Extractor {path}: {message}")
        return data


_UNSAFE_NAME = re.compile(r"[/\\\x00]|\.\.")


def check_file_name(name: str) -> str:
    """``name`` if it is a bare file name (no path, no ``..``, not hidden), else ValueError."""
    if not isinstance(name, str) or not name or name.startswith(".") or _UNSAFE_NAME.search(name):
        raise ValueError(f"unsafe file name {name!r}: a bare name without '/', '\\', '..' "
                         "or a leading '.' is required")
    return name


def wikipedia_title(url: str) -> str | None:
    """The article title if ``url`` is a Wikipedia article link (``/wiki/X`` or ``?title=X``)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not (host == "wikipedia.org" or host.endswith(".wikipedia.org")):
        return None
    if parts.path.startswith("/wiki/"):
        title = unquote(parts.path[len("/wiki/"):])
    elif parts.path in ("/w/index.php", "/index.php"):
        title = (parse_qs(parts.query).get("title") or [""])[0]
    else:
        return None
    title = title.replace("_", " ").strip()
    return title or None


def extract_builtin(url: str, *, session: requests.Session,
                    wikipedia: WikipediaClient | None = None,
                    retry: RetryPolicy | None = None,
                    timeout: tuple[float, float] = (10, 60)) -> str:
    """The main text of ``url`` without the extractor service.

    Wikipedia article URLs are fetched through ``wikipedia`` (the Action API and its cache); with
    no client given, one is made for the URL's own wiki (``https://<host>/w/api.php``). Any other
    URL is fetched with ``session`` and its main text extracted by trafilatura.
    """
    title = wikipedia_title(url)
    if title is not None:
        if wikipedia is None:
            wikipedia = WikipediaClient(f"https://{urlsplit(url).hostname}/w/api.php",
                                        session=session)
        return wikipedia.fetch(title).text
    try:
        import trafilatura  # optional: only the builtin extractor needs it
    except ImportError:
        raise ExtractorError(
            "built-in extraction needs trafilatura: pip install 'taxdata[extract]'") from None
    logger.info("[EXTRACT] %s Extracting %s (built-in)", thread_label(), url)
    try:
        response = request(session, "GET", url, policy=retry or RetryPolicy(), timeout=timeout,
                           what="Page", log_giveup=False)
    except requests.RequestException as exc:
        raise ExtractorError(f"could not fetch {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise ExtractorError(f"could not fetch {url}: HTTP {response.status_code}")
    # Bytes, not .text: trafilatura reads the page's own charset declaration.
    text = trafilatura.extract(response.content, url=url, output_format="markdown",
                               include_tables=True, include_comments=False)
    if not text or not text.strip():
        raise ExtractorError(f"no main text found at {url}")
    return text.strip() + "\n"
