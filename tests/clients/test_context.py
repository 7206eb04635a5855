"""Context planning (taxdata/clients/context.py) and what servers say of their context
(taxdata/clients/serverinfo.py): the arithmetic and the phrasings, without a server."""

from __future__ import annotations

import pytest

from taxdata.clients.context import (
    ContextNeed,
    num_ctx_for,
    overflowed,
    source_chars,
    tokens_of,
)
from taxdata.clients.serverinfo import context_from_error, is_context_error, root_url
from taxdata.errors import PreflightError

NEED = ContextNeed(instructions=400, reply=1536, source_chars=24000, reask=1800)


def test_num_ctx_holds_instructions_source_reply_and_a_reask_rounded_up():
    planned = num_ctx_for(NEED, None)
    assert planned % 1024 == 0 and planned >= NEED.tokens
    assert NEED.tokens == 400 + 1536 + 1800 + 64 + tokens_of(24000)
    assert num_ctx_for(NEED, 8192) == 8192  # never above what the model takes


def test_the_source_part_is_what_fits_beside_the_instructions_and_the_reply():
    assert source_chars(None, NEED, "x") == 24000  # unknown: as asked
    roomy = source_chars(32768, NEED, "x")
    assert roomy == 24000  # fits whole
    tight = source_chars(8192, NEED, "x")  # re-ask room still fits: planned in
    assert tight == int((8192 - 400 - 1536 - 64 - 1800) * 3)
    small = source_chars(4096, NEED, "x")  # no room for a re-ask too: the part comes first
    assert small == int((4096 - 400 - 1536 - 64) * 3)
    with pytest.raises(PreflightError, match="context of 2000 tokens at x cannot hold"):
        source_chars(2000, NEED, "x")


@pytest.mark.parametrize("prompt,completion,window,cut", [
    (4096, 1, 4096, True),      # the prompt filled the context: its start was dropped
    (3000, 1200, 4096, True),   # prompt and reply ran past it: shifted mid-reply
    (3000, 1000, 4096, False),
    (3000, None, None, False),  # no window known: nothing to compare
    (None, 10, 4096, False),    # no usage figures
])
def test_overflow_is_read_from_the_usage_figures(prompt, completion, window, cut):
    assert overflowed(prompt, completion, window) is cut


@pytest.mark.parametrize("message,data,limit", [
    ("the request exceeds the available context size, try increasing it",
     {"error": {"n_ctx": 4096, "n_prompt_tokens": 5000}}, 4096),  # llama.cpp
    ("This model's maximum context length is 2048 tokens. However, you requested 2148 tokens",
     None, 2048),  # llama-cpp-python, vLLM
    ("Trying to keep the first 3000 tokens when context the overflows. However, the model is "
     "loaded with context length of only 2048 tokens", None, 2048),  # LM Studio
])
def test_overflow_answers_name_the_context(message, data, limit):
    assert is_context_error(message)
    assert context_from_error(message, data) == limit


def test_other_errors_are_not_overflows():
    assert not is_context_error("response_format 'json_schema' is not supported")
    assert not is_context_error("CUDA out of memory")


@pytest.mark.parametrize("url,root", [
    ("http://h:8080/v1/chat/completions", "http://h:8080"),
    ("http://h/llm/v1/chat/completions/", "http://h/llm"),
    ("http://h:8000/chat/completions", "http://h:8000"),
])
def test_props_live_at_the_servers_root(url, root):
    assert root_url(url) == root
