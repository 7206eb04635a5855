"""What the stand-in LLM sends, in each API family's shape: whole replies, streamed chunks, the
usage figures, and its simple tokenizer (4 characters a token) with Ollama-style truncation.

Kept apart from :mod:`taxdata.testing.llm_server` (which decides *what* to answer and when) so
the shapes read in one place, the way the client's dialects read them.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator

CHARS_PER_TOKEN = 4  # the stand-in's tokenizer: every 4 characters of content are one token
# What llama.cpp's server answers when a prompt does not fit its context (HTTP 400).
LLAMA_CPP_CONTEXT_ERROR = "the request exceeds the available context size, try increasing it"


def tokens(text: str) -> list[str]:
    """The stand-in's tokens of ``text``: 4-character pieces (the reply is streamed in these)."""
    return re.findall(r".{1,%d}" % CHARS_PER_TOKEN, text, re.S)


def prompt_text(body: dict) -> str:
    """Everything the model would read: the messages' contents, in order."""
    return "".join(str(m.get("content", "")) for m in body.get("messages") or []
                   if isinstance(m, dict))


def prompt_tokens(body: dict, chars_per_token: int = CHARS_PER_TOKEN) -> int:
    return len(prompt_text(body)) // chars_per_token


def truncate_prompt(body: dict, num_ctx: int,
                    chars_per_token: int = CHARS_PER_TOKEN) -> tuple[dict, int]:
    """Like Ollama: a prompt over ``num_ctx`` tokens loses its *start* (the system prompt and the
    instructions go first). Returns the body the model sees and the tokens it evaluated."""
    count = prompt_tokens(body, chars_per_token)
    if count <= num_ctx:
        return body, count
    drop = (count - num_ctx) * chars_per_token
    messages = []
    for message in body.get("messages") or []:
        content = str(message.get("content", ""))
        cut = min(drop, len(content))
        drop -= cut
        if cut < len(content):
            messages.append({**message, "content": content[cut:]})
    return {**body, "messages": messages}, num_ctx


def common_prefix(a: str, b: str) -> int:
    """Characters the two prompts share from the start (what a prefix cache can reuse)."""
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Usage:
    """A reply's token figures: prompt (with ``cached`` of them from the prefix cache), reply."""

    prompt: int
    completion: int
    cached: int = 0


def whole_body(dialect: str, model: str, text: str, stop: str, usage: Usage) -> dict[str, Any]:
    """A non-streamed chat reply."""
    if dialect == "openai":
        return {"id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": stop}],
                "usage": _openai_usage(usage)}
    return {"model": model, "created_at": _now(), "message": {"role": "assistant",
                                                              "content": text},
            "done": True, "done_reason": stop, **_ollama_counts(usage)}


def stream_chunks(dialect: str, model: str, pieces: list[str], stop: str | None, usage: Usage,
                  *, include_usage: bool = True) -> Iterator[bytes]:
    """A streamed chat reply, one chunk per token; ``stop`` None: the stream ends without a
    finish reason (a server that preempted it), as llama-cpp-python's interrupted streams do."""
    if dialect == "openai":
        for piece in pieces:
            yield _sse({"id": "chatcmpl-standin", "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": model,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece},
                                     "finish_reason": None}]})
        if stop is not None:
            yield _sse({"id": "chatcmpl-standin", "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": model,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": stop}],
                        # llama.cpp's own figures, with the prefix-cache share (cache_n)
                        "timings": {"prompt_n": usage.prompt - usage.cached,
                                    "cache_n": usage.cached, "predicted_n": usage.completion}})
            if include_usage:
                yield _sse({"id": "chatcmpl-standin", "object": "chat.completion.chunk",
                            "created": int(time.time()), "model": model, "choices": [],
                            "usage": _openai_usage(usage)})
        yield b"data: [DONE]\n\n"
        return
    for piece in pieces:
        yield _line({"model": model, "created_at": _now(),
                     "message": {"role": "assistant", "content": piece}, "done": False})
    if stop is not None:
        yield _line({"model": model, "created_at": _now(),
                     "message": {"role": "assistant", "content": ""}, "done": True,
                     "done_reason": stop, **_ollama_counts(usage)})


def _openai_usage(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.prompt, "completion_tokens": usage.completion,
            "total_tokens": usage.prompt + usage.completion,
            "prompt_tokens_details": {"cached_tokens": usage.cached}}


def _ollama_counts(usage: Usage) -> dict[str, Any]:
    return {"prompt_eval_count": usage.prompt, "eval_count": usage.completion,
            "prompt_eval_cached_count": usage.cached}


def _sse(data: dict) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _line(data: dict) -> bytes:
    return json.dumps(data).encode() + b"\n"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
