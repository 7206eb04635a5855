"""The LLM client (taxdata/llm.py, taxdata/http.py) against the stand-in server over real HTTP."""

from __future__ import annotations

import calendar
import logging
import os
import socket
import threading
import time

import pytest

from taxdata import events
from taxdata.cancel import STOP, Interrupted
from taxdata.clients.http import RetryPolicy, parse_retry_after
from taxdata.clients.llm import (
    DIALECTS,
    Endpoint,
    LLMBadResponse,
    LLMClient,
    LLMConnectionError,
    LLMHTTPError,
    LLMTimeout,
    LLMTruncated,
)
from taxdata.errors import PreflightError
from taxdata.events import GaveUp, RequestEnded, RequestStarted, Retry, recording
from taxdata.testing.llm_server import Fault, structured_form
from taxdata.testing.server import SilentServer

SCHEMA = {"type": "object", "properties": {"rate": {"type": "number"}}, "required": ["rate"]}
MESSAGES = [{"role": "system", "content": "s" * 16}, {"role": "user", "content": "u" * 24}]
CHAT_PATH = {"proxy": "/chat", "ollama": "/api/chat", "openai": "/v1/chat/completions"}


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def forms(server, dialect: str) -> list[str]:
    return [structured_form(dialect, body) for body in server.history]


# -- request shapes and reply parsing ------------------------------------------------------------

@pytest.mark.parametrize("dialect", ["proxy", "ollama"])
def test_ollama_style_request_shape_and_reply(llm_server, client_for, dialect):
    client = client_for(llm_server, dialect, temperature=0.2)
    llm_server.enqueue("y" * 20)
    reply = client.chat(MESSAGES, schema=SCHEMA)

    [request] = llm_server.requests_to(CHAT_PATH[dialect])
    assert request.method == "POST"
    body = llm_server.history[-1]
    assert body == {"model": "stand-in:latest", "messages": MESSAGES, "stream": True,
                    "options": {"temperature": 0.2, "num_predict": 4096}, "format": SCHEMA}
    assert reply.text == "y" * 20
    assert reply.model == "stand-in:latest"
    assert (reply.prompt_tokens, reply.completion_tokens) == (10, 5)  # 40 chars / 4, 20 / 4
    assert reply.structured == "schema" and reply.attempts == 1
    assert reply.endpoint == llm_server.url(dialect)


@pytest.mark.parametrize("dialect", ["proxy", "ollama"])
def test_ollama_style_without_schema_has_no_format(llm_server, client_for, dialect):
    client = client_for(llm_server, dialect)
    reply = client.chat(MESSAGES, temperature=0.7)
    body = llm_server.history[-1]
    assert "format" not in body
    assert body["options"] == {"temperature": 0.7, "num_predict": 4096}
    assert reply.text == "OK" and reply.structured is None


def test_openai_request_shape_and_reply(llm_server, client_for):
    client = client_for(llm_server, "openai")
    llm_server.enqueue("y" * 20)
    reply = client.chat(MESSAGES, schema=SCHEMA, schema_name="tax_record")

    [request] = llm_server.requests_to("/v1/chat/completions")
    body = request.json()
    assert body["model"] == "stand-in:latest"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.0
    assert body["stream"] is True and "options" not in body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "tax_record"
    assert fmt["json_schema"]["schema"] == SCHEMA
    assert reply.text == "y" * 20
    assert reply.model == "stand-in:latest"
    assert (reply.prompt_tokens, reply.completion_tokens) == (10, 5)
    assert reply.structured == "json_schema"


def test_openai_without_schema_has_no_response_format(llm_server, client_for):
    client = client_for(llm_server, "openai")
    assert client.chat(MESSAGES).text == "OK"
    assert "response_format" not in llm_server.history[-1]


def test_dict_reply_is_sent_as_json_text(llm_server, client_for):
    client = client_for(llm_server)
    llm_server.enqueue({"rate": 19})
    assert client.chat(MESSAGES, schema=SCHEMA).text == '{"rate": 19}'


# -- structured-output fallback -------------------------------------------------------------------

@pytest.mark.parametrize("status", [400, 500])
def test_openai_falls_back_from_json_schema_and_remembers(make_llm_server, client_for, taxdata_log,
                                                          status):
    server = make_llm_server(reject_forms=("json_schema",), reject_status=status)
    client = client_for(server, "openai")

    first = client.chat(MESSAGES, schema=SCHEMA)
    assert first.structured == "json_object_schema"
    assert first.attempts == 1  # a rejected form is not a failed attempt
    assert forms(server, "openai") == ["json_schema", "json_object_schema"]
    assert server.history[-1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert any("[FALLBACK]" in line for line in taxdata_log.lines)

    second = client.chat(MESSAGES, schema=SCHEMA)
    assert second.structured == "json_object_schema"
    assert forms(server, "openai") == ["json_schema", "json_object_schema", "json_object_schema"]


@pytest.mark.parametrize("dialect", ["proxy", "ollama"])
def test_ollama_style_falls_back_from_schema_to_json(make_llm_server, client_for, dialect):
    server = make_llm_server(reject_forms=("schema",))
    client = client_for(server, dialect)
    assert client.chat(MESSAGES, schema=SCHEMA).structured == "json"
    client.chat(MESSAGES, schema=SCHEMA)
    assert forms(server, dialect) == ["schema", "json", "json"]
    assert server.history[-1]["format"] == "json"


def test_falls_back_through_every_form_to_none(make_llm_server, client_for):
    server = make_llm_server(reject_forms=("json_schema", "json_object_schema", "json_object"))
    client = client_for(server, "openai")
    assert client.chat(MESSAGES, schema=SCHEMA).structured == "none"
    assert forms(server, "openai") == ["json_schema", "json_object_schema", "json_object", "none"]


def test_500_not_about_format_is_retried_not_a_fallback(llm_server, client_for):
    client = client_for(llm_server, "openai")
    llm_server.enqueue(Fault.http(500, "CUDA out of memory"), "{}")
    reply = client.chat(MESSAGES, schema=SCHEMA)
    assert forms(llm_server, "openai") == ["json_schema", "json_schema"]
    assert reply.structured == "json_schema" and reply.attempts == 2


# -- retries ---------------------------------------------------------------------------------------

def test_503_twice_then_success_is_three_requests(llm_server, client_for):
    client = client_for(llm_server)
    llm_server.enqueue(Fault.http(503, "busy"), Fault.http(503, "busy"), "done")
    reply = client.chat(MESSAGES)
    assert reply.text == "done"
    assert reply.attempts == 3
    assert len(llm_server.history) == 3


def test_429_retry_after_is_a_lower_bound_plus_jitter(llm_server, client_for):
    waits: list[float] = []
    client = client_for(llm_server, sleep=waits.append)
    llm_server.enqueue(Fault.http(429, "slow down", retry_after="2"), "done")
    assert client.chat(MESSAGES).text == "done"
    assert len(waits) == 1 and 2.0 <= waits[0] <= 2.0 + 0.05  # jitter within the cap
    assert len(llm_server.history) == 2


def test_retry_after_is_honoured_in_real_time(llm_server, client_for):
    client = client_for(llm_server)
    llm_server.enqueue(Fault.http(503, "busy", retry_after="0.3"), "done")
    client.chat(MESSAGES)
    first, second = llm_server.requests_to("/chat")
    assert second.started - first.started >= 0.3


def test_retry_after_is_capped(llm_server, client_for):
    waits: list[float] = []
    policy = RetryPolicy(attempts=2, base=0.01, cap=0.05, max_retry_after=5, sleep=waits.append)
    client = client_for(llm_server, retry=policy)
    llm_server.enqueue(Fault.http(429, "slow down", retry_after="3600"), "done")
    client.chat(MESSAGES)
    assert len(waits) == 1 and 5 <= waits[0] <= 5 + 0.05


def test_backoff_without_retry_after_stays_within_cap(llm_server, client_for):
    waits: list[float] = []
    client = client_for(llm_server, sleep=waits.append)
    llm_server.enqueue(*[Fault.http(502, "bad gateway")] * 4, "done")
    client.chat(MESSAGES)
    assert len(waits) == 4
    assert all(0.01 <= w <= 0.05 for w in waits)  # never under the floor, never over the cap


def test_parse_retry_after_seconds():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize("header", [
    "Sun, 06 Nov 1994 08:49:37 GMT",   # IMF-fixdate
    "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
    "Sun Nov  6 08:49:37 1994",        # obsolete asctime: no zone written, GMT by definition
])
@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_parse_retry_after_http_date_is_gmt(header, tz):
    saved = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        when = calendar.timegm((1994, 11, 6, 8, 49, 37))
        assert parse_retry_after(header, now=when - 30) == pytest.approx(30.0)
        assert parse_retry_after(header, now=when + 30) == 0.0  # in the past: no wait
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_400_is_not_retried_and_carries_the_server_message(llm_server, client_for, taxdata_log):
    client = client_for(llm_server)
    llm_server.enqueue(Fault.http(400, "messages must not be empty"))
    with pytest.raises(LLMHTTPError) as info:
        client.chat(MESSAGES)
    assert info.value.status == 400
    assert info.value.server_message == "messages must not be empty"
    assert "messages must not be empty" in str(info.value)
    assert len(llm_server.history) == 1
    assert not any("[RETRY]" in line for line in taxdata_log.lines)


def test_attempts_exhausted_raises_the_last_error(llm_server, client_for):
    waits: list[float] = []
    client = client_for(llm_server, attempts=3, sleep=waits.append)
    # A busy answer (503) is not a failed attempt: three real failures after it end the call.
    llm_server.enqueue(Fault.http(503, "busy"), Fault.http(500, "broken 1"),
                       Fault.http(502, "broken 2"), Fault.http(504, "broken 3"), "never sent")
    with pytest.raises(LLMHTTPError) as info:
        client.chat(MESSAGES)
    assert info.value.status == 504 and "broken 3" in str(info.value)
    assert info.value.attempts == 4
    assert len(llm_server.history) == 4
    assert len(waits) == 3


@pytest.mark.parametrize("fault", [Fault.garbage(), Fault.truncated()], ids=["garbage", "truncated"])
@pytest.mark.parametrize("dialect", ["proxy", "openai"])
def test_bad_body_is_retried(llm_server, client_for, fault, dialect):
    client = client_for(llm_server, dialect)
    llm_server.enqueue(fault, "fine")
    reply = client.chat(MESSAGES)
    assert reply.text == "fine" and reply.attempts == 2
    assert len(llm_server.history) == 2


def test_events_of_one_chat_name_each_request_by_its_id(llm_server, client_for):
    client = client_for(llm_server, attempts=3, sleep=lambda _: None)
    llm_server.enqueue(Fault.http(503, "busy"), Fault.garbage(), "fine")
    with recording() as recorder:
        reply = client.chat(MESSAGES, label="Extracting x")
    started = [e for e in recorder.events if isinstance(e, RequestStarted)]
    ended = [e for e in recorder.events if isinstance(e, RequestEnded)]
    retries = [e for e in recorder.events if isinstance(e, Retry)]
    ids = [e.request_id for e in started]
    assert len(set(ids)) == 3 and [e.label for e in started] == ["Extracting x"] * 3
    assert [(e.request_id, e.status, e.answer) for e in ended] == [
        (ids[0], 503, events.BUSY), (ids[1], 200, events.BAD_REPLY), (ids[2], 200, events.REPLY)]
    assert [(r.request_id, r.attempt, r.attempts) for r in retries] == [(ids[0], 2, None),
                                                                        (ids[1], 2, 3)]
    assert reply.request_id == ids[2]


def test_a_refused_request_gives_up_under_its_id(llm_server, client_for):
    client = client_for(llm_server)
    llm_server.enqueue(Fault.http(400, "prompt refused"))
    with recording() as recorder, pytest.raises(LLMHTTPError):
        client.chat(MESSAGES)
    [started] = [e for e in recorder.events if isinstance(e, RequestStarted)]
    [ended] = [e for e in recorder.events if isinstance(e, RequestEnded)]
    [gave_up] = [e for e in recorder.events if isinstance(e, GaveUp)]
    assert ended.request_id == gave_up.request_id == started.request_id
    assert ended.answer == events.REFUSED and gave_up.error == "HTTP 400: prompt refused"


def test_bad_body_every_time_is_bad_response(llm_server, client_for):
    client = client_for(llm_server, attempts=2)
    llm_server.enqueue(Fault.garbage(), Fault.garbage())
    with pytest.raises(LLMBadResponse):
        client.chat(MESSAGES)
    assert len(llm_server.history) == 2


@pytest.mark.parametrize("dialect", ["proxy", "ollama", "openai"])
def test_length_stop_is_truncated_and_not_retried(llm_server, client_for, dialect):
    client = client_for(llm_server, dialect)
    llm_server.enqueue(Fault.length(), "never sent")
    with pytest.raises(LLMTruncated):
        client.chat(MESSAGES, schema=SCHEMA)
    assert len(llm_server.history) == 1


def test_read_timeout(llm_server, client_for):
    client = client_for(llm_server, timeout=0.3, attempts=1)
    llm_server.enqueue(Fault.hang(5))
    with pytest.raises(LLMTimeout) as info:
        client.chat(MESSAGES)
    assert "Request timeout after 0.3s" in str(info.value)
    assert len(llm_server.history) == 1


def test_read_timeout_is_retried(llm_server, client_for):
    client = client_for(llm_server, timeout=0.3, attempts=2)
    llm_server.enqueue(Fault.hang(5), "late but fine")
    assert client.chat(MESSAGES).text == "late but fine"
    assert len(llm_server.history) == 2


def test_connection_refused():
    waits: list[float] = []
    client = LLMClient(Endpoint(f"http://127.0.0.1:{free_port()}/chat", DIALECTS["proxy"]),
                       model="m", retry=RetryPolicy(attempts=3, sleep=waits.append))
    with pytest.raises(LLMConnectionError) as info:
        client.chat(MESSAGES)
    assert "Connection failed" in str(info.value)
    assert len(waits) == 2  # retried: 3 attempts


def test_stop_flag_stops_before_sending(llm_server, client_for):
    client = client_for(llm_server)
    STOP.set()
    with pytest.raises(Interrupted):
        client.chat(MESSAGES)
    assert llm_server.history == []


def test_stop_during_backoff_gives_up(llm_server, client_for):
    client = client_for(llm_server, sleep=lambda seconds: STOP.set())
    llm_server.enqueue(Fault.http(503, "busy"), "never sent")
    with pytest.raises(Interrupted):
        client.chat(MESSAGES)
    assert len(llm_server.history) == 1


# -- preflight --------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect,path,fix", [
    ("proxy", "/chat", "start your Ollama proxy there, or use Ollama itself: "
                       "TAXDATA_LLM_URL=http://localhost:11434"),
    ("ollama", "/api/chat", "start Ollama (`ollama serve`, it listens on port 11434)"),
    ("openai", "/v1/chat/completions", "start your OpenAI-compatible server"),
])
def test_preflight_server_down_names_the_fix_for_its_kind_of_server(dialect, path, fix):
    port = free_port()
    url = f"http://127.0.0.1:{port}{path}"
    client = LLMClient(Endpoint(url, DIALECTS[dialect]), connect_timeout=2)
    with pytest.raises(PreflightError) as info:
        client.preflight()
    message = str(info.value)
    assert message.startswith(f"LLM server at {url} refused the connection (nothing listens on "
                              f"127.0.0.1:{port}) - ")
    assert fix in message and "\n" not in message
    assert ("ollama serve" in message) == (dialect == "ollama")


def test_preflight_server_that_never_answers_says_it_connected():
    with SilentServer() as silent:
        url = silent.base_url + "/api/chat"
        client = LLMClient(Endpoint(url, DIALECTS["ollama"]), connect_timeout=0.3)
        with pytest.raises(PreflightError) as info:
            client.preflight()
    assert str(info.value).startswith(
        f"LLM server at {url} accepted the connection but did not answer GET "
        f"{silent.base_url}/api/tags within 0.3s (TAXDATA_CONNECT_TIMEOUT)")
    assert silent.accepted == 1


def test_preflight_unknown_model_names_it_and_the_available_ones(make_llm_server, client_for):
    server = make_llm_server(models=("llama3:8b", "qwen2:7b"))
    client = client_for(server, model="gpt-9")
    with pytest.raises(PreflightError) as info:
        client.preflight()
    message = str(info.value)
    assert "'gpt-9'" in message and "llama3:8b" in message and "qwen2:7b" in message
    assert "\n" not in message


@pytest.mark.parametrize("dialect,models_path", [("proxy", "/models"), ("ollama", "/api/tags"),
                                                 ("openai", "/v1/models")])
def test_empty_model_picks_the_first_listed(make_llm_server, client_for, dialect, models_path):
    server = make_llm_server(models=("llama3:8b", "qwen2:7b"))
    client = client_for(server, dialect, model="")
    assert client.preflight() == "llama3:8b"
    assert client.model == "llama3:8b"
    assert len(server.requests_to(models_path)) == 1


def test_chat_without_model_preflights_once(make_llm_server, client_for):
    server = make_llm_server(models=("llama3:8b", "qwen2:7b"))
    client = client_for(server, model="")
    client.chat(MESSAGES)
    client.chat(MESSAGES)
    assert [body["model"] for body in server.history] == ["llama3:8b", "llama3:8b"]
    assert len(server.requests_to("/models")) == 1


def test_model_without_tag_matches_latest(make_llm_server, client_for):
    server = make_llm_server(models=("llama3:8b", "gemma3:latest"))
    assert client_for(server, model="gemma3").preflight() == "gemma3"
    with pytest.raises(PreflightError):
        client_for(server, model="gemma").preflight()
    with pytest.raises(PreflightError):
        client_for(server, model="llama3").preflight()  # only llama3:8b, no :latest


def test_preflight_bad_key_says_so(make_llm_server, client_for):
    server = make_llm_server(api_key="right-key")
    with pytest.raises(PreflightError) as info:
        client_for(server, api_key="wrong-key").preflight()
    assert "HTTP 401" in str(info.value) and "TAXDATA_API_KEY" in str(info.value)


def test_api_key_sent_as_bearer_and_never_logged(make_llm_server, client_for, taxdata_log):
    key = "sk-test-0123456789abcdef"
    server = make_llm_server(api_key=key)
    client = client_for(server, api_key=key, model="")
    client.chat([{"role": "user", "content": f"my key is {key}"}], schema=SCHEMA)
    assert {r.headers.get("Authorization") for r in server.requests} == {f"Bearer {key}"}
    assert any("[LLM-PAYLOAD]" in line for line in taxdata_log.lines)  # DEBUG payloads were on
    assert key not in taxdata_log.text()


# -- many threads, one client -------------------------------------------------------------------

class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_64_threads_share_one_client(make_llm_server, client_for):
    server = make_llm_server(latency=0.05)
    client = client_for(server)
    warnings = _Collect()
    urllib3_log = logging.getLogger("urllib3")
    urllib3_log.addHandler(warnings)
    start = threading.Barrier(64)
    texts: list[str] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        start.wait()
        try:
            server_text = client.chat([{"role": "user", "content": f"q{i}"}]).text
            texts.append(server_text)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(64)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        urllib3_log.removeHandler(warnings)
    assert errors == []
    assert texts == ["OK"] * 64
    assert len(server.history) == 64
    assert sorted(b["messages"][0]["content"] for b in server.history) == sorted(
        f"q{i}" for i in range(64))
    assert not [m for m in warnings.messages if "Connection pool is full" in m]
    # The pool (10 connections by default) is the client's ceiling: extra threads wait for a
    # connection instead of opening throwaway ones. Size it (pool_size=) to the worker count.
    assert server.peak_in_flight <= 10
