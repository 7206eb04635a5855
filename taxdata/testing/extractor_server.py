"""Stand-in for the user's Web Content Extractor service, for tests.

Endpoints, as the real service exposes them:

* ``POST /extract`` with ``{"url": ...}`` -> ``{"success": true, "content": "..."}``. A URL with
  no registered page gets **HTTP 200** and ``{"success": false, "error": "..."}``: a failed
  extraction is an answer about the page, not a transport failure, so it must not look like the
  429/5xx statuses clients retry. A body without ``url`` is a 400 with the same shape.
* ``GET /txt-files`` -> ``{"success": true, "txt_files": [...], "count": N}``.
* ``GET /files/<name>`` -> the file's text (``text/plain``), 404 for an unknown name.
* ``GET /health`` -> 200 ``{"status": "ok"}``.

``latency`` delays every answer; ``fail_next`` injects HTTP errors. Recording and peak in-flight
come from :class:`StandInServer`.
"""

from __future__ import annotations

import json
import sys
import threading
from urllib.parse import unquote

from taxdata.testing.samples import sample_articles, sample_text
from taxdata.testing.server import (
    RecordedRequest,
    Reply,
    StandInServer,
    sample_server_parser,
    serve_until_interrupted,
)


class StandInExtractor(StandInServer):
    """Register pages (by URL) and text files, then point an ``ExtractorClient`` at
    :attr:`base_url`."""

    def __init__(self, latency: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.latency = latency
        self._pages: dict[str, str] = {}
        self._files: dict[str, str] = {}
        self._faults: list[Reply] = []
        self._state = threading.Lock()

    def add_page(self, url: str, content: str) -> None:
        """``POST /extract`` for ``url`` answers ``content``."""
        with self._state:
            self._pages[url] = content

    def add_file(self, name: str, text: str) -> None:
        """A file listed by ``/txt-files`` and served by ``/files/<name>``."""
        with self._state:
            self._files[name] = text

    def fail_next(self, n: int, status: int = 503, retry_after: float | str | None = None) -> None:
        """The next ``n`` requests (any endpoint) get HTTP ``status``."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        with self._state:
            self._faults.extend(
                Reply(status, {"success": False, "error": f"stand-in fault {status}"},
                      dict(headers))
                for _ in range(n))

    def handle(self, request: RecordedRequest) -> Reply:
        reply = self._answer(request)
        reply.hang = self.latency
        return reply

    def _answer(self, request: RecordedRequest) -> Reply:
        with self._state:
            if self._faults:
                return self._faults.pop(0)
        route = (request.method, request.path)
        if route == ("GET", "/health"):
            return Reply(200, {"status": "ok"})
        if route == ("POST", "/extract"):
            return self._extract(request)
        if route == ("GET", "/txt-files"):
            with self._state:
                names = sorted(self._files)
            return Reply(200, {"success": True, "txt_files": names, "count": len(names)})
        if request.method == "GET" and request.path.startswith("/files/"):
            name = unquote(request.path[len("/files/"):])
            with self._state:
                text = self._files.get(name)
            if text is None:
                return Reply(404, {"success": False, "error": f"File not found: {name}"})
            return Reply(200, text)  # str body: text/plain; charset=utf-8
        return Reply(404, {"success": False, "error": "Not found"})

    def _extract(self, request: RecordedRequest) -> Reply:
        try:
            url = json.loads(request.body or b"{}").get("url")
        except (ValueError, AttributeError):
            url = None
        if not isinstance(url, str) or not url:
            return Reply(400, {"success": False, "error": "Missing 'url' in request body"})
        with self._state:
            content = self._pages.get(url)
        if content is None:
            return Reply(200, {"success": False, "error": f"Failed to extract content from {url}"})
        return Reply(200, {"success": True, "content": content})


def add_samples(server: StandInExtractor) -> list[str]:
    """Serve the bundled SAMPLE articles: as pages (by article URL) and as
    ``taxation_<slug>.txt``."""
    names = []
    for article in sample_articles():
        text = sample_text(article.html)
        server.add_page(article.url, text)
        server.add_file(f"taxation_{article.slug}.txt", text)
        names.append(f"taxation_{article.slug}.txt")
    return names


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in extractor alone, serving the bundled SAMPLE pages (made-up figures)."""
    parser = sample_server_parser(
        "python -m taxdata.testing.extractor_server",
        "Run the stand-in Web Content Extractor on 127.0.0.1, serving the bundled SAMPLE pages "
        "(fictional countries, made-up figures). Point TAXDATA_EXTRACTOR_URL at the printed URL.",
        5000, "serve no pages or files")
    args = parser.parse_args(argv)
    server = StandInExtractor(latency=args.latency, port=args.port)
    names = [] if args.no_samples else add_samples(server)
    return serve_until_interrupted(
        server, f"stand-in extractor listening on {{base_url}} (SAMPLE files: "
                f"{', '.join(names) or 'none'})\nuse it with: TAXDATA_EXTRACTOR_URL={{base_url}}",
        prog=parser.prog, port=args.port)


if __name__ == "__main__":
    sys.exit(main())
