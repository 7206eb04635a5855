"""The API dialects (taxdata/clients/dialects.py): paths, bodies and replies per API family.

The request shapes against a server are in test_llm.py; these pin what each class knows alone.
"""

from __future__ import annotations

import pytest

from taxdata.clients.dialects import (
    DIALECTS,
    Chunk,
    FormChoice,
    OllamaDialect,
    OpenAIDialect,
    ProxyDialect,
)
from taxdata.config import API_DIALECTS

MESSAGES = [{"role": "user", "content": "u"}]
SCHEMA = {"type": "object"}


def test_every_configurable_api_has_its_own_class():
    assert set(DIALECTS) == set(API_DIALECTS)
    assert [type(DIALECTS[name]) for name in ("proxy", "ollama", "openai")] == [
        ProxyDialect, OllamaDialect, OpenAIDialect]
    assert all(dialect.name == name for name, dialect in DIALECTS.items())


@pytest.mark.parametrize("name, chat_url, models_url", [
    ("proxy", "http://h:5001/chat", "http://h:5001/models"),
    ("proxy", "http://h/llm/chat/", "http://h/llm/models"),  # a prefix and a trailing slash
    ("ollama", "http://h:11434/api/chat", "http://h:11434/api/tags"),
    ("openai", "http://h:8080/v1/chat/completions", "http://h:8080/v1/models"),
    ("openai", "https://h/v1", "https://h/v1/models"),  # no chat path: the models path is added
])
def test_models_url_replaces_the_chat_path(name, chat_url, models_url):
    assert DIALECTS[name].models_url(chat_url) == models_url


def test_the_proxy_speaks_ollama_bodies_and_replies():
    proxy, ollama = DIALECTS["proxy"], DIALECTS["ollama"]
    assert proxy.forms == ollama.forms == ("schema", "json", "none")
    for form in ollama.forms:
        assert (proxy.body("m", MESSAGES, 0.1, form, SCHEMA, "r", 64)
                == ollama.body("m", MESSAGES, 0.1, form, SCHEMA, "r", 64))
    data = {"message": {"content": "hi"}, "done_reason": "stop", "model": "m",
            "prompt_eval_count": 3, "eval_count": 1}
    assert proxy.reply(data) == ollama.reply(data) == ("hi", "stop", "m", 3, 1, None)


def test_openai_body_per_form_and_reply():
    openai = DIALECTS["openai"]
    formats = [openai.body("m", MESSAGES, 0.0, form, SCHEMA, "tax", 64).get("response_format")
               for form in openai.forms]
    assert formats == [
        {"type": "json_schema", "json_schema": {"name": "tax", "schema": SCHEMA, "strict": True}},
        {"type": "json_object", "schema": SCHEMA}, {"type": "json_object"}, None]
    assert openai.body("m", MESSAGES, 0.0, None, None, "r", None) == {
        "model": "m", "messages": MESSAGES, "temperature": 0.0}
    data = {"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
            "model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    assert openai.reply(data) == ("hi", "length", "m", 3, 1, None)
    with pytest.raises(KeyError):
        openai.reply({"message": {"content": "an Ollama reply"}})


def test_form_choice_moves_down_per_server_and_never_back():
    forms, openai = FormChoice(), DIALECTS["openai"]
    assert forms.current("http://a/v1/chat/completions", openai) == "json_schema"
    assert forms.refused("http://a/v1/chat/completions", openai, "json_schema") == \
        "json_object_schema"
    # a late refusal of the first form (another thread) does not move it back up
    assert forms.refused("http://a/v1/chat/completions", openai, "json_schema") == \
        "json_object_schema"
    assert forms.current("http://b/v1/chat/completions", openai) == "json_schema"


def test_streamed_bodies_ask_for_a_stream_and_the_ollama_ones_carry_num_ctx():
    ollama, openai = DIALECTS["ollama"], DIALECTS["openai"]
    body = ollama.body("m", MESSAGES, 0.0, "schema", SCHEMA, "r", 64, stream=True, num_ctx=8192)
    assert body["stream"] is True
    assert body["options"] == {"temperature": 0.0, "num_predict": 64, "num_ctx": 8192}
    body = openai.body("m", MESSAGES, 0.0, None, None, "r", 64, stream=True, num_ctx=8192,
                       extra={"cache_prompt": True})
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["cache_prompt"] is True and "num_ctx" not in str(body)  # fixed at server start


def test_chunks_of_each_family():
    ollama, openai = DIALECTS["ollama"], DIALECTS["openai"]
    assert ollama.chunk({"message": {"content": "to"}, "done": False}).text == "to"
    last = ollama.chunk({"message": {"content": ""}, "done": True, "done_reason": "stop",
                         "prompt_eval_count": 9, "eval_count": 4, "prompt_eval_cached_count": 5})
    assert (last.final, last.stop_reason, last.prompt_tokens, last.completion_tokens,
            last.cached_tokens) == (True, "stop", 9, 4, 5)
    assert ollama.chunk({"error": "model gone"}).error == "model gone"
    piece = openai.chunk({"choices": [{"delta": {"content": "ke"}, "finish_reason": None}]})
    assert (piece.text, piece.final) == ("ke", False)
    end = openai.chunk({"choices": [{"delta": {}, "finish_reason": "length"}],
                        "timings": {"cache_n": 7}})
    assert (end.final, end.stop_reason, end.cached_tokens) == (True, "length", 7)
    usage = openai.chunk({"choices": [], "usage": {
        "prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 3}}})
    assert (usage.final, usage.prompt_tokens, usage.cached_tokens) == (False, 9, 3)
    thinking = openai.chunk({"choices": [{"delta": {"reasoning_content": "hm"}}]})
    assert thinking.thinking and thinking.text == ""


_OBJECTS = {
    "ollama": [
        {"model": "m", "message": {"role": "assistant", "content": "to"}, "done": False},
        {"message": {"content": "to"}, "done": False},
        {"message": {"content": ""}, "done": False},
        {"message": {"content": "x", "thinking": "hm"}, "done": False},
        {"message": {"content": "x"}},  # no "done": not known to be mid-stream
        {"message": {"content": "x"}, "done": False, "eval_count": 3},
        {"message": {"content": 5}, "done": False},
        {"message": "x", "done": False},
        {"message": {"content": "x"}, "done": True, "done_reason": "stop"},
        {"error": "gone", "done": False},
    ],
    "openai": [
        {"model": "m", "choices": [{"delta": {"content": "ke"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "ke"}}]},
        {"choices": [{"delta": {"content": ""}}]},
        {"choices": [{"delta": {"content": "ke"}, "finish_reason": "stop"}]},
        {"choices": [{"delta": {"content": "ke", "reasoning_content": "hm"}}]},
        {"choices": [{"delta": {"content": "ke"}}], "usage": {"prompt_tokens": 3}},
        {"choices": [{"delta": {"content": "ke"}}], "timings": {"cache_n": 7}},
        {"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]},
        {"choices": [{"message": {"content": "ke"}}]},
        {"choices": []},
        {"error": {"message": "x"}, "choices": [{"delta": {"content": "ke"}}]},
    ],
}


@pytest.mark.parametrize("family", ["ollama", "proxy", "openai"])
def test_a_plain_token_reads_as_chunk_would_read_it(family):
    dialect = DIALECTS[family]
    taken = 0
    for data in _OBJECTS["openai" if family == "openai" else "ollama"]:
        plain = dialect.token(data)
        if plain is None:
            continue  # the reader takes it whole, through chunk()
        taken += 1
        text, model = plain
        assert dialect.chunk(data) == Chunk(text, model=model), data
    assert taken == 2  # the short path is taken for the plain tokens, and only for them


@pytest.mark.parametrize("form,carried", [("json_schema", True), ("json_object_schema", True),
                                          ("json_object", False), ("none", False),
                                          ("schema", True), ("json", False), (None, False)])
def test_which_forms_carry_the_schema_to_the_server(form, carried):
    assert DIALECTS["openai"].carries_schema(form) is carried
