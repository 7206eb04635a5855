"""A stand-in LLM server speaking the proxy, Ollama and OpenAI shapes over real HTTP.

For tests, the benchmark and for trying the scripts without a model::

    python -m taxdata.testing.llm_server --port 5001 --latency 0.5

Started by hand it answers with the rule-based responder (``--responder fixed``: OK / {}).

Replies are scripted like a fake model: ``enqueue()`` strings (the reply text), dicts (sent as
JSON text) or :class:`Fault` objects; or set ``responder`` to compute a reply per request. Every
chat request is kept in ``history``; ``peak_in_flight`` tells how many were served at once.

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
from dataclasses import dataclass
from typing import Any, Callable

from taxdata.testing.responder import rule_based_reply
from taxdata.testing.server import RecordedRequest, Reply, StandInServer, start_by_hand

CHAT_PATHS = {"/chat": "proxy", "/api/chat": "ollama", "/v1/chat/completions": "openai"}
MODEL_PATHS = {"/models": "proxy", "/api/tags": "ollama", "/v1/models": "openai"}
OLLAMA_BUSY = "server busy, please try again.  maximum pending requests exceeded"


@dataclass
class Fault:
    """A scripted misbehaviour for one request."""

    kind: str  # status | hang | garbage | truncated | length
    status: int = 500
    message: str = "internal error"
    seconds: float = 0.0
    retry_after: str | None = None
    content: str = ""

    @classmethod
    def http(cls, status: int, message: str = "internal error",
             retry_after: str | None = None) -> "Fault":
        return cls("status", status=status, message=message, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float) -> "Fault":
        return cls("hang", seconds=seconds)

    @classmethod
    def garbage(cls) -> "Fault":
        return cls("garbage")

    @classmethod
    def truncated(cls) -> "Fault":
        """The server's JSON body cut in half (well-formed HTTP, broken JSON)."""
        return cls("truncated")

    @classmethod
    def length(cls, content: str = '{"partial": ') -> "Fault":
        """A reply stopped at the token limit (``done_reason``/``finish_reason`` = length)."""
        return cls("length", content=content)


def structured_form(dialect: str, body: dict) -> str:
    """Which structured-output form a request body asks for (the client's names)."""
    if dialect == "openai":
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return "json_schema"
        if fmt.get("type") == "json_object":
            return "json_object_schema" if "schema" in fmt else "json_object"
        return "none"
    fmt = body.get("format")
    if isinstance(fmt, dict):
        return "schema"
    return "json" if fmt == "json" else "none"


class StandInLLM(StandInServer):
    """See the module docstring. All knobs may be changed while the server runs."""

    def __init__(self, *, latency: float = 0.0, capacity: int | None = None,
                 overflow: str = "queue", retry_after: float | None = 1.0,
                 models: tuple[str, ...] = ("stand-in:latest",), api_key: str | None = None,
                 reject_forms: tuple[str, ...] = (), reject_status: int = 400,
                 garbage_rate: float = 0.0, error_rate: float = 0.0, seed: int | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 responder: Callable[[dict], Any] | None = None,
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
        self.history: list[dict] = []  # chat request bodies, in arrival order
        self._replies: collections.deque[Any] = collections.deque()
        self._slots = threading.BoundedSemaphore(capacity) if capacity else None

    def url(self, dialect: str = "proxy") -> str:
        path = {v: k for k, v in CHAT_PATHS.items()}[dialect]
        return self.base_url + path

    def enqueue(self, *replies: Any) -> None:
        """Script the next replies (consumed in order, one per chat request)."""
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
            if request.path == "/health":
                return Reply(200, {"status": "ok"})
            if MODEL_PATHS.get(request.path) in self.dialects:
                return Reply(200, self._model_list(MODEL_PATHS[request.path]))
            return Reply(404, {"error": f"no route {request.path}"})
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
        if self._slots is None:
            return self._answer(dialect, body)
        if self.overflow == "queue":
            self._slots.acquire()
        elif not self._slots.acquire(blocking=False):
            headers = {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}
            if self.overflow == "503":
                return Reply(503, {"error": OLLAMA_BUSY}, headers=headers)
            return Reply(429, {"error": "too many requests"}, headers=headers)
        try:
            return self._answer(dialect, body)
        finally:
            self._slots.release()

    def _answer(self, dialect: str, body: dict) -> Reply:
        if self.latency:
            self._stop.wait(self.latency)
        with self._lock:
            scripted = self._replies.popleft() if self._replies else None
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
            return self._fault(dialect, body, scripted)
        text = scripted if isinstance(scripted, str) else json.dumps(scripted)
        return Reply(200, self._chat_body(dialect, body, text, "stop"))

    @staticmethod
    def _default(body: dict) -> str:
        asks_json = structured_form("openai" if "response_format" in body else "proxy",
                                    body) != "none"
        return "{}" if asks_json else "OK"

    def _fault(self, dialect: str, body: dict, fault: Fault) -> Reply:
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return Reply(fault.status, {"error": fault.message}, headers=headers)
        if fault.kind == "hang":
            return Reply(200, self._chat_body(dialect, body, "{}", "stop"), hang=fault.seconds)
        if fault.kind == "garbage":
            return Reply(200, "<html><body>502 Bad Gateway</body></html>",
                         headers={"Content-Type": "text/html"})
        if fault.kind == "truncated":
            whole = json.dumps(self._chat_body(dialect, body, '{"a": 1}', "stop"))
            return Reply(200, whole[: len(whole) // 2].encode(),
                         headers={"Content-Type": "application/json"})
        if fault.kind == "length":
            return Reply(200, self._chat_body(dialect, body, fault.content, "length"))
        raise ValueError(f"unknown fault {fault.kind!r}")

    def _chat_body(self, dialect: str, body: dict, text: str, stop: str) -> dict:
        model = body.get("model") or self.models[0]
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in body.get("messages", [])) // 4
        completion_tokens = max(1, len(text) // 4)
        if dialect == "openai":
            return {"id": "chatcmpl-standin", "object": "chat.completion",
                    "created": int(time.time()), "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": stop}],
                    "usage": {"prompt_tokens": prompt_tokens,
                              "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}}
        return {"model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "message": {"role": "assistant", "content": text}, "done": True,
                "done_reason": stop, "prompt_eval_count": prompt_tokens,
                "eval_count": completion_tokens}

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
                        help="seconds per reply (default %(default)s)")
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
                        responder=responder)
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
