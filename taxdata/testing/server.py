"""Shared plumbing for the stand-in HTTP servers: a real ThreadingHTTPServer on loopback.

Each stand-in (LLM, MediaWiki, extractor) subclasses :class:`StandInServer`, implements
``handle(request) -> Reply`` and gets recording, in-flight counting and start/stop for free.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import select
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    """One request as the stand-in saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    started: float
    finished: float = 0.0
    status: int = 0
    # The connection it came on, so a handler can tell whether the client is still there.
    connection: socket.socket | None = field(default=None, repr=False, compare=False)

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def client_gone(self) -> bool:
        """Whether the client closed its end (EOF readable), as a server notices a hang-up."""
        if self.connection is None:
            return False
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class StreamCut(Exception):
    """Raised by a streamed body to cut the connection mid-stream (a server that broke off)."""


@dataclass
class Reply:
    """What a stand-in sends back. ``hang`` seconds are slept before anything is written."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0
    # Close the connection after writing only this many body bytes (a cut-off response).
    cut_at: int | None = None
    # A streamed body: chunks written as they come (chunked transfer encoding). Before each one
    # the client is checked: when it has hung up, ``on_disconnect(chunks_sent)`` is called and
    # the stream stops, as a real server stops generating.
    stream: Iterable[bytes] | None = None
    on_disconnect: Callable[[int], None] | None = None

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        return self.body, "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    # http.server leaves Nagle on; with keep-alive that stalls ~40 ms per response on delayed ACKs.
    disable_nagle_algorithm = True
    server: "_HTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silenced: the stand-ins record requests; stderr noise would garble test output."""

    def setup(self) -> None:
        super().setup()
        self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        self.server.owner._connections.discard(self.connection)
        super().finish()

    def _serve(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        req = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k: v for k, v in self.headers.items()},
            body=body,
            started=time.monotonic(),
            connection=self.connection,
        )
        owner._enter(req)
        try:
            reply = owner.handle(req)
            if reply.hang:
                owner._stop.wait(reply.hang)
            if reply.stream is not None:
                self._write_stream(req, reply)
                return
            payload, ctype = reply.encoded()
            self.send_response(reply.status)
            headers = {"Content-Type": ctype, **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            if reply.cut_at is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(payload if reply.cut_at is None else payload[: reply.cut_at])
            req.status = reply.status
        finally:
            owner._leave(req)

    do_GET = do_POST = _serve

    def _write_stream(self, req: RecordedRequest, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in {"Content-Type": "application/x-ndjson", **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        req.status = reply.status
        sent = 0
        chunks = iter(reply.stream)
        try:
            for chunk in chunks:
                if req.client_gone():
                    raise ConnectionResetError("client hung up")
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                sent += 1
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except StreamCut:  # the stand-in breaks its own stream: no last chunk, connection cut
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except (ConnectionError, OSError):
            self.close_connection = True
            if reply.on_disconnect is not None:
                reply.on_disconnect(sent)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a generator's cleanup (a slot released) runs now, not at collection


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 64+ clients connect at once in the tests
    allow_reuse_address = True
    owner: "StandInServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up (Fault.hang) is expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class StandInServer(ABC):
    """Base class: start on 127.0.0.1:<free port>, record every request, track peak in-flight."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._connections: set[socket.socket] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "StandInServer":
        """Listen; after a :meth:`stop`, on the same port again (a server that comes back)."""
        self._stop.clear()
        self._httpd = _HTTPServer((self._host, self._port), _Handler)
        self._port = self._httpd.server_address[1]
        self._httpd.owner = self
        # stop() waits for the serve loop to see the shutdown flag, up to one poll interval: a
        # short one keeps the hundreds of stops in a test run cheap (an idle loop costs little).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop like a killed server: no new connections, and open ones (keep-alive, in flight)
        are cut, so clients see connection errors rather than late answers."""
        self._cut_connections()  # before waking the hanging handlers: they must not answer
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self._cut_connections()

    def _cut_connections(self) -> None:
        for connection in list(self._connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> "StandInServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (or listened on, and will again after a restart)."""
        if self._httpd is None:
            assert self._port, "server not started"
            return self._port
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- recording -------------------------------------------------------------------------
    def _enter(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _leave(self, req: RecordedRequest) -> None:
        with self._lock:
            self.in_flight -= 1
            req.finished = time.monotonic()

    def reset_stats(self) -> None:
        with self._lock:
            self.requests.clear()
            self.peak_in_flight = self.in_flight

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    @abstractmethod
    def handle(self, request: RecordedRequest) -> Reply:
        """Answer one request (called on the server's handler thread)."""


def sample_server_parser(prog: str, description: str, port: int,
                         no_samples_help: str) -> argparse.ArgumentParser:
    """The flags every SAMPLE-serving stand-in's ``main()`` shares: port, latency, no samples."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=port, help="0 picks a free port "
                        "(default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds each answer waits (default %(default)s)")
    parser.add_argument("--no-samples", action="store_true", help=no_samples_help)
    return parser


def start_by_hand(server: StandInServer, prog: str, port: int) -> bool:
    """Start a stand-in run by hand; a port that is taken is one line on stderr, not a
    traceback (False: it did not start)."""
    try:
        server.start()
    except OSError as exc:
        taken = exc.errno == errno.EADDRINUSE
        print(f"{prog}: error: port {port} is " + (
            "in use (another server there?) - stop it, or pick another with --port N (0: any "
            "free port)" if taken else f"not usable: {exc.strerror or exc}"), file=sys.stderr)
        return False
    return True


def serve_until_interrupted(server: StandInServer, banner: str, *, prog: str = "stand-in",
                            port: int = 0) -> int:
    """Run a stand-in in the foreground (its ``main()``): print ``banner``, stop on Ctrl-C.
    Exit code 2 when it cannot listen on ``port``."""
    if not start_by_hand(server, prog, port):
        return 2
    print(banner.format(base_url=server.base_url), flush=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()
    return 0


class SilentServer:
    """A server that accepts connections and never answers (a hung process on the port).

    ``with SilentServer() as silent: ... silent.base_url``: every connection is accepted and
    held open, nothing is ever read or written, until the block ends.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._socket = socket.create_server((host, 0), backlog=64)
        self.port = self._socket.getsockname()[1]
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.accepted = 0

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed under us: the block ended
                return
            self._held.append(connection)
            self.accepted += 1

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "SilentServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        for connection in self._held:
            with contextlib.suppress(OSError):
                connection.close()
        self._thread.join(5)
