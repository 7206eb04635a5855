"""Streamed replies (taxdata/clients/stream.py, watch.py, llm.py) against the stand-in over real
HTTP: the idle timeout fires only without tokens, Ctrl-C and timeouts close the stream (the
stand-in sees the client go), the client cuts a reply that runs past what it can need, answers
are bounded, and a prompt that did not fit the context is never a reply.

The stand-in's delays make the behaviour happen; the assertions count outcomes, never time.
"""

from __future__ import annotations

import json
import socket
import threading
import types

import pytest
import requests
from _programs import eventually
from conftest import fast_retry

from taxdata.cancel import STOP, Interrupted
from taxdata.clients.http import RetryPolicy
from taxdata.clients.llm import (
    DIALECTS,
    Endpoint,
    LLMBadResponse,
    LLMClient,
    LLMContextExceeded,
    LLMHTTPError,
    LLMTimeout,
    LLMTruncated,
)
from taxdata.clients.watch import STOPPED, WATCHDOG, Watch
from taxdata.testing.llm_server import Fault
from taxdata.testing.server import RecordedRequest, Reply, StandInServer

MESSAGES = [{"role": "system", "content": "FIXTURE instructions"},
            {"role": "user", "content": "FIXTURE question"}]
SCHEMA = {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}


@pytest.mark.parametrize("dialect", ["proxy", "ollama", "openai"])
def test_slow_tokens_are_not_a_timeout_but_a_silence_is(make_llm_server, client_for, dialect):
    # 40 tokens 0.03 s apart: the reply takes over a second, four times the idle timeout.
    server = make_llm_server(token_delay=0.03)
    client = client_for(server, dialect, timeout=0.3, idle_timeout=0.3, attempts=1)
    server.enqueue("x" * 160)
    reply = client.chat(MESSAGES)
    assert reply.text == "x" * 160 and server.streams_finished == 1
    # One token, then nothing: the idle timeout fires, and the client hangs up.
    server.enqueue(Fault.stall(30, "y" * 40, after=1))
    with pytest.raises(LLMTimeout, match=r"no token for 0\.3s \(TAXDATA_IDLE_TIMEOUT\)"):
        client.chat(MESSAGES)
    eventually(lambda: [d.phase for d in server.disconnects] == ["streaming"])
    assert server.disconnects[0].tokens_sent == 1


def test_a_reply_that_never_starts_times_out_on_the_first_token(make_llm_server, client_for):
    server = make_llm_server()
    client = client_for(server, timeout=0.3, idle_timeout=30, attempts=1)
    server.enqueue(Fault.hang(30))
    with pytest.raises(LLMTimeout, match=r"Request timeout after 0\.3s: no reply started"):
        client.chat(MESSAGES)
    eventually(lambda: len(server.disconnects) == 1)


def test_ctrl_c_closes_every_stream_in_flight(make_llm_server, client_for):
    server = make_llm_server()
    server.responder = lambda body: Fault.stall(30, "z" * 40, after=1)
    client = client_for(server, pool_size=4, max_in_flight=4)
    outcomes: list[BaseException] = []

    def ask() -> None:
        try:
            client.chat(MESSAGES)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            outcomes.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    eventually(lambda: server.in_flight == 4)
    STOP.set()
    for thread in threads:
        thread.join(10)
    assert len(outcomes) == 4 and all(isinstance(e, Interrupted) for e in outcomes)
    eventually(lambda: len(server.disconnects) == 4)
    assert {d.phase for d in server.disconnects} == {"streaming"}
    assert len(server.history) == 4  # nothing was retried after the stop


def test_a_stop_that_lands_before_the_socket_exists_still_cuts_the_request():
    # The stop comes as a request is sent: its connection has no socket yet. The watchdog must
    # cut the socket once there is one (it used to mark the watch expired and never look again,
    # leaving that request to run for as long as the server kept it: a run that never ended).
    here, there = socket.socketpair()
    connection = types.SimpleNamespace(sock=None)  # what the watch sees of urllib3's connection
    watch = Watch()
    watch.connection = connection
    try:
        with WATCHDOG.watching(watch):
            STOP.set()
            eventually(lambda: watch.expired == STOPPED)
            connection.sock = here  # connected now
            there.settimeout(10)
            assert there.recv(1) == b""  # shut down: the peer (the server) sees us go
    finally:
        here.close()
        there.close()


@pytest.mark.parametrize("dialect", ["ollama", "openai"])
def test_whitespace_after_the_json_object_is_cut_and_the_reply_kept(make_llm_server, client_for,
                                                                     dialect):
    server = make_llm_server(token_delay=0.001)
    client = client_for(server, dialect)
    server.enqueue('{"a": 1}' + " " * 4000)  # a grammar-bound model that cannot stop
    reply = client.chat(MESSAGES, schema=SCHEMA)
    assert json.loads(reply.text) == {"a": 1}
    eventually(lambda: len(server.disconnects) == 1)
    assert server.disconnects[0].tokens_sent < 100  # of the 1002 it would have sent


def test_a_server_that_ignores_the_cap_is_cut_by_the_client(make_llm_server, client_for):
    server = make_llm_server(token_delay=0.001)
    client = client_for(server, attempts=1)
    server.enqueue("w" * 4000)  # 1000 tokens, against a cap of 20
    with pytest.raises(LLMTruncated, match="the client cut it over the 20-token cap") as info:
        client.chat(MESSAGES, max_tokens=20)
    assert info.value.text.startswith("wwww")
    eventually(lambda: len(server.disconnects) == 1)


def test_a_server_that_does_not_stream_still_answers(make_llm_server, client_for):
    server = make_llm_server(streams=False)
    for dialect in ("proxy", "openai"):
        server.enqueue("in one piece")
        assert client_for(server, dialect).chat(MESSAGES).text == "in one piece"


def test_a_stream_cut_mid_reply_is_retried_soon(make_llm_server, client_for):
    waits: list[float] = []
    server = make_llm_server()
    policy = RetryPolicy(sleep=waits.append)  # the default floor of 0.5 s for busy answers
    client = client_for(server, retry=policy)
    server.enqueue(Fault.truncated(), "whole")
    assert client.chat(MESSAGES).text == "whole"
    assert len(server.history) == 2 and len(waits) == 1
    assert waits[0] <= policy.soon_base < policy.floor  # soon: the server is there, not busy


def test_a_preempted_stream_is_busy_and_asked_again(make_llm_server, client_for):
    server = make_llm_server()
    client = client_for(server, "openai", sleep=lambda _: None)
    server.enqueue(Fault.interrupted('{"a": '), '{"a": 2}')
    assert client.chat(MESSAGES, schema=SCHEMA).text == '{"a": 2}'
    assert client.pool.members[0].busy == 1


def test_replies_larger_than_the_cap_are_not_read(make_llm_server, client_for):
    server = make_llm_server()
    client = client_for(server, attempts=1, max_reply_bytes=4096)
    server.enqueue("v" * 20000)
    with pytest.raises(LLMBadResponse, match="larger than 4,096 bytes"):
        client.chat(MESSAGES)


class _Redirecting(StandInServer):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def handle(self, request: RecordedRequest) -> Reply:
        return Reply(307, {"error": "moved"}, headers={"Location": self.target})


def test_a_redirect_is_never_followed_with_the_prompt(make_llm_server):
    elsewhere = make_llm_server()
    with _Redirecting(elsewhere.url()) as redirecting:
        client = LLMClient(Endpoint(redirecting.base_url + "/chat", DIALECTS["proxy"]),
                           model="m", retry=fast_retry())
        with pytest.raises(LLMHTTPError, match="redirect to .* not followed"):
            client.chat(MESSAGES)
        assert len(redirecting.requests) == 1
    assert elsewhere.history == []  # the prompt went nowhere else


def test_openai_context_overflow_is_never_a_reply_and_teaches_the_size(make_llm_server,
                                                                       client_for):
    server = make_llm_server(context=50)  # llama.cpp's answer to a longer prompt
    client = client_for(server, "openai")
    with pytest.raises(LLMContextExceeded) as info:
        client.chat([{"role": "user", "content": "FIXTURE " * 100}])
    assert info.value.limit == 50 and len(server.history) == 1  # not retried
    assert client.info[server.url("openai")].context == 50


def test_ollama_truncation_is_seen_in_prompt_eval_count(make_llm_server, client_for):
    server = make_llm_server()
    client = client_for(server, "ollama")
    client.num_ctx = 64  # as planned for the run; this prompt is 200 stand-in tokens
    server.responder = lambda body: "an answer to what was left of the prompt"
    with pytest.raises(LLMContextExceeded, match="read 64 prompt tokens .* context of 64"):
        client.chat([{"role": "user", "content": "FIXTURE " * 100}])
    assert server.truncations == 1
    assert server.history[0]["options"]["num_ctx"] == 64


def test_prefix_cache_and_reported_model_come_back_with_the_reply(make_llm_server, client_for):
    server = make_llm_server(reported_model="gguf/alias-q4.gguf")
    for dialect in ("ollama", "openai"):
        client = client_for(server, dialect)
        client.chat(MESSAGES)
        reply = client.chat(MESSAGES)  # the same prompt: all of it in the prefix cache
        assert reply.cached_tokens == reply.prompt_tokens > 0
        assert reply.server_model == "gguf/alias-q4.gguf" and reply.model == server.models[0]
        assert reply.endpoint == server.url(dialect)


class _Dripping:
    """A raw TCP server that answers every connection one byte every 0.05 s, forever: its
    headers (``headers=True``) or, after whole headers, a chunked body."""

    def __init__(self, headers: bool) -> None:
        import socket

        self.headers, self.stop = headers, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        try:
            conn.recv(65536)
            if not self.headers:
                conn.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            while not self.stop.wait(0.05):
                conn.sendall(head[:1] if self.headers else b"1\r\n \r\n")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("headers", [True, False], ids=["dripped headers", "dripped body"])
def test_the_request_deadline_ends_a_drip_feeding_server(headers):
    server = _Dripping(headers)
    try:
        client = LLMClient(Endpoint(f"http://127.0.0.1:{server.port}/chat", DIALECTS["proxy"]),
                           model="m", retry=fast_retry(attempts=1), deadline=0.5,
                           timeout=30, idle_timeout=30)
        with pytest.raises(LLMTimeout, match="deadline"):
            client.chat(MESSAGES)
        # Every other client (Wikipedia, the extractor) shares the bounded session.
        with pytest.raises(requests.Timeout, match="TAXDATA_REQUEST_DEADLINE"):
            client.session.get(f"http://127.0.0.1:{server.port}/w/api.php", timeout=(5, 30))
    finally:
        server.close()
    assert server.connections == 2


@pytest.mark.parametrize("pieces, closed, after", [
    (['{"a": ', '"x', '"}', " "], True, " "),
    (['{"a": "x\\', 'n', '"}'], True, ""),  # an escape split across tokens: "\n", then "
    (['{"a": "x\\', '"', 'more', '"}', "tail"], True, "tail"),  # an escaped quote
    (['{"a": "}', ' still inside', '"'], False, ""),  # a brace in a string closes nothing
    (["Sure: ", "{", '"b": {"c": 1}', "}", "`", "``"], True, "```"),
])
def test_json_end_follows_the_object_across_tokens(pieces, closed, after):
    from taxdata.clients.stream import JsonEnd

    end = JsonEnd()
    for piece in pieces:
        end.feed(piece)
    assert (end.closed, end.after) == (closed, after)
