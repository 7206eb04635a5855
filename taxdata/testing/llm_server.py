"""A stand-in LLM server speaking the proxy, Ollama and OpenAI shapes over real HTTP.

For tests, the benchmark and for trying the scripts without a model::

    python -m taxdata.testing.llm_server --port 5001 --latency 0.5

Started by hand it answers with the rule-based responder (``--responder fixed``: OK / {}).

Replies are scripted like a fake model: ``enqueue()`` strings (the reply text), dicts (sent as
JSON text) or :class:`Fault` objects; or set ``responder`` to compute a reply per request. Every
chat request is kept in ``history``; ``peak_in_flight`` tells how many were served at once.

Like a real local server:

- a request with ``"stream": true`` is answered token by token (Ollama's NDJSON lines, OpenAI's
  server-sent events), ``token_delay`` seconds apart, after ``latency`` (the prompt's
  processing); a client that hangs up stops the generation and is recorded in ``disconnects``;
- ``capacity=1`` with ``overflow="queue"`` queues like a one-slot llama.cpp or an Ollama with
  ``OLLAMA_NUM_PARALLEL=1`` (a queued request whose client hung up is dropped, recorded too);
- ``context``: on the Ollama shapes, the ``num_ctx`` used when a request sends none; a prompt
  over the request's ``num_ctx`` loses its start, like Ollama's, and ``prompt_eval_count`` says
  how much was read (``truncations`` counts them); on the OpenAI shape, the server's context: a
  longer prompt is refused with llama.cpp's "exceeds the available context size" (HTTP 400);
- ``props=True``: llama.cpp's own ``/props`` and ``/slots`` (slots and context size);
  ``/api/show`` answers like Ollama's, with ``model_context`` as the model's context length;
- a prefix cache: the usage figures say how many prompt tokens the previous prompt shared.

Misbehaving like a loaded or flaky server (all knobs may change while it runs):

- ``capacity`` slots; requests beyond them wait (``overflow="queue"``), or are answered ``503``
  with Ollama's queue-full message or ``429``, with ``Retry-After: <retry_after>`` (None: no
  header);
- ``garbage_rate`` / ``error_rate``: that share of unscripted replies is an HTTP 200 body that is
  not API JSON, or an HTTP 500 (``seed`` makes the draw repeatable);
- ``stop()`` then ``start()``: the server is gone (open connections cut) and comes back on the
  same port.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import random
import sys
import threading
import time
from typing import Any, Callable

from taxdata.testing.llm_faults import Disconnect, Fault, is_probe, structured_form
from taxdata.testing.llm_shapes import (
    LLAMA_CPP_CONTEXT_ERROR,
    Usage,
    common_prefix,
    prompt_text,
    stream_chunks,
    tokens,
    truncate_prompt,
    whole_body,
)
from taxdata.testing.responder import rule_based_reply
from taxdata.testing.server import RecordedRequest, Reply, StandInServer, StreamCut, start_by_hand

CHAT_PATHS = {"/chat": "proxy", "/api/chat": "ollama", "/v1/chat/completions": "openai"}
MODEL_PATHS = {"/models": "proxy", "/api/tags": "ollama", "/v1/models": "openai"}
OLLAMA_BUSY = "server busy, please try again.  maximum pending requests exceeded"
__all__ = ["Disconnect", "Fault", "StandInLLM", "is_probe", "main", "structured_form"]


class StandInLLM(StandInServer):
    """See the module docstring. All knobs may be changed while the server runs."""

    def __init__(self, *, latency: float = 0.0, capacity: int | None = None,
                 overflow: str = "queue", retry_after: float | None = 1.0,
                 models: tuple[str, ...] = ("stand-in:latest",), api_key: str | None = None,
                 reject_forms: tuple[str, ...] = (), reject_status: int = 400,
                 garbage_rate: float = 0.0, error_rate: float = 0.0, seed: int | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 responder: Callable[[dict], Any] | None = None, token_delay: float = 0.0,
                 context: int | None = None, model_context: int = 32768,
                 props: bool = False, streams: bool = True, chars_per_token: int = 4,
                 reported_model: str | None = None,
                 dialects: tuple[str, ...] = ("proxy", "ollama", "openai")) -> None:
        super().__init__(host, port)
        # The APIs it speaks; the others' paths are 404, as on a real server of one API.
        self.dialects = set(dialects)
        if overflow not in ("queue", "503", "429"):
            raise ValueError("overflow must be queue, 503 or 429")
        self.latency = latency
        self.capacity = capacity
        self.overflow = overflow
        self.retry_after = retry_after
        self.models = list(models)
        self.api_key = api_key
        self.reject_forms = set(reject_forms)
        self.reject_status = reject_status
        self.garbage_rate = garbage_rate
        self.error_rate = error_rate
        self._rng = random.Random(seed)
        # Computes a reply when none is enqueued; returning None falls back to the default.
        self.responder: Callable[[dict], Any] | None = responder
        self.token_delay = token_delay
        self.context = context
        self.model_context = model_context
        self.props = props
        self.streams = streams  # False: answer in one piece even when asked to stream
        self.chars_per_token = chars_per_token  # its tokenizer (for the context and the usage)
        self.reported_model = reported_model  # the model name its replies give (an alias)
        self.history: list[dict] = []  # chat request bodies, in arrival order
        self.disconnects: list[Disconnect] = []  # clients that hung up before the end
        self.truncations = 0  # prompts that lost their start (over num_ctx)
        self.streams_finished = 0  # streamed replies sent to their end
        self._replies: collections.deque[Any] = collections.deque()
        self._slots = threading.BoundedSemaphore(capacity) if capacity else None
        self._last_prompt = ""  # the prefix cache: what the previous prompt was

    def url(self, dialect: str = "proxy") -> str:
        path = {v: k for k, v in CHAT_PATHS.items()}[dialect]
        return self.base_url + path

    def enqueue(self, *replies: Any) -> None:
        """Script the next replies (consumed in order, one per chat request; the client's
        structured-output probe takes none)."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def chats(self) -> list[dict]:
        with self._lock:
            return list(self.history)

    # -- serving -----------------------------------------------------------------------------
    def handle(self, request: RecordedRequest) -> Reply:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return Reply(401, {"error": "invalid api key"})
        if request.method == "GET":
            return self._get(request.path)
        if request.path == "/api/show":
            return Reply(200, {"model_info": {"general.architecture": "standin",
                                              "standin.context_length": self.model_context},
                               "parameters": ""})
        dialect = CHAT_PATHS.get(request.path)
        if dialect not in self.dialects:
            return Reply(404, {"error": f"no route {request.path}"})
        try:
            body = request.json()
        except ValueError:
            return Reply(400, {"error": "request body is not JSON"})
        with self._lock:
            self.history.append(body)
        form = structured_form(dialect, body)
        if form in self.reject_forms:
            what = "response_format" if dialect == "openai" else "format"
            return Reply(self.reject_status,
                         {"error": {"message": f"{what} {form!r} is not supported"}}
                         if dialect == "openai" else {"error": f"invalid {what}: {form}"})
        return self._in_a_slot(dialect, body, request)

    def _in_a_slot(self, dialect: str, body: dict, request: RecordedRequest) -> Reply:
        """Answer once a slot is free: wait for it (queue), or refuse (503/429)."""
        if self._slots is None:
            return self._answer(dialect, body, request, lambda: None)
        if self.overflow == "queue":
            if not self._wait_for_slot(request):
                return Reply(499, {"error": "client closed request"})
        elif not self._slots.acquire(blocking=False):
            headers = {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}
            if self.overflow == "503":
                return Reply(503, {"error": OLLAMA_BUSY}, headers=headers)
            return Reply(429, {"error": "too many requests"}, headers=headers)
        released = threading.Event()

        def release() -> None:  # once: by the stream's end, or here for a whole reply
            if not released.is_set():
                released.set()
                self._slots.release()

        try:
            reply = self._answer(dialect, body, request, release)
        except BaseException:
            release()
            raise
        if reply.stream is None:
            release()
        return reply

    def _get(self, path: str) -> Reply:
        if path == "/health":
            return Reply(200, {"status": "ok"})
        if MODEL_PATHS.get(path) in self.dialects:
            return Reply(200, self._model_list(MODEL_PATHS[path]))
        if self.props and path in ("/props", "/slots"):
            return Reply(200, self._props() if path == "/props" else self._slot_list())
        return Reply(404, {"error": f"no route {path}"})

    def _wait_for_slot(self, request: RecordedRequest) -> bool:
        """Queue for a slot; a client that hangs up meanwhile is dropped (False)."""
        while not self._slots.acquire(timeout=0.02):
            if request.client_gone() or self._stop.is_set():
                with self._lock:
                    self.disconnects.append(Disconnect(request.path, "queued", 0))
                return False
        return True

    def _answer(self, dialect: str, body: dict, request: RecordedRequest,
                release: Callable[[], None]) -> Reply:
        refused = self._context_check(dialect, body)
        if isinstance(refused, Reply):
            return refused
        body, usage = refused
        if self.latency:
            self._stop.wait(self.latency)
        with self._lock:
            # Scripted replies are for the real requests: the client's preflight probe of the
            # structured-output forms never takes one (a responder may still answer it).
            queued = self._replies and not is_probe(body)
            scripted = self._replies.popleft() if queued else None
            draw = self._rng.random() if scripted is None else 1.0
        if draw < self.garbage_rate:
            scripted = Fault.garbage()
        elif draw < self.garbage_rate + self.error_rate:
            scripted = Fault.http(500, "stand-in fault (error_rate)")
        elif scripted is None and self.responder:
            scripted = self.responder(body)
        if scripted is None:
            scripted = self._default(body)
        if isinstance(scripted, Fault):
            if body.get("stream") is True and self.streams and scripted.kind in (
                    "stall", "interrupted", "length", "truncated", "hang"):
                return self._stream(dialect, body, request, usage, release, scripted)
            return self._fault(dialect, body, scripted, usage)
        text = scripted if isinstance(scripted, str) else json.dumps(scripted)
        if body.get("stream") is True and self.streams:
            return self._stream(dialect, body, request, usage, release, text=text)
        return Reply(200, self._chat_body(dialect, body, text, "stop", usage))

    def _context_check(self, dialect: str, body: dict) -> Reply | tuple[dict, Usage]:
        """What the model reads of the prompt (Ollama drops the start of a long one; llama.cpp
        refuses it) and the usage figures so far, with the prefix cache's share."""
        text, per_token = prompt_text(body), self.chars_per_token
        if dialect == "openai":
            count = len(text) // per_token
            if self.context is not None and count >= self.context:
                return Reply(400, {"error": {"code": 400, "message": LLAMA_CPP_CONTEXT_ERROR,
                                             "type": "exceed_context_size_error",
                                             "n_prompt_tokens": count, "n_ctx": self.context}})
        else:
            num_ctx = (body.get("options") or {}).get("num_ctx") or self.context
            if num_ctx:
                seen, count = truncate_prompt(body, int(num_ctx), per_token)
                if seen is not body:
                    with self._lock:
                        self.truncations += 1
                    body, text = seen, prompt_text(seen)
            else:
                count = len(text) // per_token
        with self._lock:
            cached = min(common_prefix(self._last_prompt, text) // per_token, count)
            self._last_prompt = text
        return body, Usage(count, 0, cached)

    def _stream(self, dialect: str, body: dict, request: RecordedRequest, usage: Usage,
                release: Callable[[], None], fault: Fault | None = None, text: str = "") -> Reply:
        """The reply token by token; a client that hangs up ends it (and is recorded)."""
        kind = fault.kind if fault is not None else "text"
        content = fault.content if fault is not None and kind != "hang" else text or "{}"
        pieces = tokens(content)
        usage.completion = len(pieces)
        stop = {"length": "length", "interrupted": None}.get(kind, "stop")
        model = self.reported_model or body.get("model") or self.models[0]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = stream_chunks(dialect, model, pieces, stop, usage, include_usage=include_usage)
        sent = [0]

        def wait(seconds: float) -> None:  # generating: a client that hangs up stops it
            end = time.monotonic() + seconds
            while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
                if request.client_gone():
                    raise ConnectionResetError("client hung up")
                self._stop.wait(min(left, 0.01))

        def paced() -> Any:
            try:
                if kind == "hang":
                    wait(fault.seconds)
                for number, chunk in enumerate(chunks):
                    if kind == "stall" and number == fault.after:
                        wait(fault.seconds)
                    elif number and self.token_delay:
                        wait(self.token_delay)
                    if kind == "truncated" and number == len(pieces) // 2:
                        raise StreamCut("stand-in cut the stream")
                    sent[0] = number
                    yield chunk
                with self._lock:
                    self.streams_finished += 1
            finally:
                release()

        def gone(chunks_sent: int) -> None:
            with self._lock:
                self.disconnects.append(Disconnect(request.path, "streaming", chunks_sent))

        ctype = "text/event-stream" if dialect == "openai" else "application/x-ndjson"
        return Reply(200, stream=paced(), headers={"Content-Type": ctype}, on_disconnect=gone)

    @staticmethod
    def _default(body: dict) -> str:
        asks_json = structured_form("openai" if "response_format" in body else "proxy",
                                    body) != "none"
        return "{}" if asks_json else "OK"

    def _fault(self, dialect: str, body: dict, fault: Fault, usage: Usage) -> Reply:
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return Reply(fault.status, {"error": fault.message}, headers=headers)
        if fault.kind == "hang":
            return Reply(200, self._chat_body(dialect, body, "{}", "stop", usage),
                         hang=fault.seconds)
        if fault.kind == "garbage":
            return Reply(200, "<html><body>502 Bad Gateway</body></html>",
                         headers={"Content-Type": "text/html"})
        if fault.kind == "truncated":
            whole = json.dumps(self._chat_body(dialect, body, '{"a": 1}', "stop", usage))
            return Reply(200, whole[: len(whole) // 2].encode(),
                         headers={"Content-Type": "application/json"})
        if fault.kind in ("length", "interrupted", "stall"):
            stop = "length" if fault.kind == "length" else "stop"
            return Reply(200, self._chat_body(dialect, body, fault.content, stop, usage))
        raise ValueError(f"unknown fault {fault.kind!r}")

    def _chat_body(self, dialect: str, body: dict, text: str, stop: str, usage: Usage) -> dict:
        usage.completion = len(tokens(text)) or 1
        return whole_body(dialect, self.reported_model or body.get("model") or self.models[0],
                          text, stop, usage)

    def _props(self) -> dict:
        return {"default_generation_settings": {"n_ctx": self.context or 4096},
                "total_slots": self.capacity or 1, "model_path": f"/models/{self.models[0]}"}

    def _slot_list(self) -> list[dict]:
        return [{"id": i, "n_ctx": self.context or 4096, "is_processing": False}
                for i in range(self.capacity or 1)]

    def _model_list(self, dialect: str) -> dict:
        if dialect == "openai":
            return {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        return {"models": [{"name": m, "model": m} for m in self.models]}


def main(argv: list[str] | None = None) -> int:
    prog = "python -m taxdata.testing.llm_server"
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the stand-in LLM server on 127.0.0.1 (no model): it speaks "
        "the proxy, Ollama and OpenAI APIs on one port and, by default, answers with the "
        "rule-based responder, which reads the figures out of the source text in each prompt.")
    parser.add_argument("--port", type=int, default=5001,
                        help="0 picks a free port (default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds per reply, before the first token when streaming "
                             "(default %(default)s)")
    parser.add_argument("--token-delay", type=float, default=0.0, metavar="S",
                        help="seconds between streamed tokens (default %(default)s)")
    parser.add_argument("--context", type=int, default=None, metavar="TOKENS",
                        help="context size: Ollama shapes drop the start of a longer prompt, "
                             "the OpenAI shape refuses it (default: no limit)")
    parser.add_argument("--props", action="store_true",
                        help="serve llama.cpp's /props and /slots")
    parser.add_argument("--capacity", type=int, default=None,
                        help="parallel slots (default: no limit)")
    parser.add_argument("--overflow", choices=("queue", "503", "429"), default="queue",
                        help="requests beyond --capacity: wait, or 503 (Ollama's queue-full "
                             "message) or 429 (default %(default)s)")
    parser.add_argument("--retry-after", type=float, default=None, metavar="S",
                        help="Retry-After header on 503/429 overflow answers (default: none)")
    parser.add_argument("--garbage-rate", type=float, default=0.0, metavar="P",
                        help="share of replies that are HTTP 200 but not API JSON, e.g. 0.3 "
                             "(default %(default)s)")
    parser.add_argument("--error-rate", type=float, default=0.0, metavar="P",
                        help="share of replies that are HTTP 500 (default %(default)s)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for the fault draws (default: a new one each start)")
    parser.add_argument("--down-after", type=float, default=None, metavar="S",
                        help="stop answering S seconds after start, connections cut (default: "
                             "never)")
    parser.add_argument("--down-for", type=float, default=None, metavar="S",
                        help="with --down-after: come back after S seconds (default: never)")
    parser.add_argument("--model", action="append", dest="models",
                        help="model name to list, repeatable (default: stand-in:latest)")
    parser.add_argument("--responder", choices=("fixed", "rules"), default="rules",
                        help="rules: read the prompt and answer with the figures its source "
                             "text states (taxdata/testing/responder.py); fixed: answer OK / {} "
                             "to everything (default %(default)s)")
    args = parser.parse_args(argv)
    responder = rule_based_reply if args.responder == "rules" else None
    server = StandInLLM(latency=args.latency, capacity=args.capacity, overflow=args.overflow,
                        retry_after=args.retry_after, garbage_rate=args.garbage_rate,
                        error_rate=args.error_rate, seed=args.seed,
                        models=tuple(args.models or ("stand-in:latest",)), port=args.port,
                        responder=responder, token_delay=args.token_delay, context=args.context,
                        props=args.props)
    if not start_by_hand(server, prog, args.port):
        return 2
    print(f"stand-in LLM listening on {server.base_url} ({args.responder} responder)\n"
          f"use it with: TAXDATA_LLM_URL={server.base_url}", flush=True)
    forever = threading.Event()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            if args.down_after is not None:
                forever.wait(args.down_after)
                server.stop()
                print("stand-in LLM stopped answering", flush=True)
                if args.down_for is not None:
                    forever.wait(args.down_for)
                    server.start()
                    print(f"stand-in LLM back on {server.base_url}", flush=True)
            forever.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
