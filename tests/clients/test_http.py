"""The request layer: one retry policy, adaptive concurrency, circuit breakers, several endpoints.

Real stand-in servers on loopback; waits are recorded through an injected ``sleep`` or checked as
lower bounds on the server's own receive times (never wall-clock upper bounds).
"""

from __future__ import annotations

import logging
import random
import re
import socket
import threading

import pytest

from taxdata.clients.http import BUSY, DONE, RETRY, Outcome, RetryPolicy, send
from taxdata.clients.limiter import BUSY as SIGNAL_BUSY
from taxdata.clients.limiter import OK, EndpointPool
from taxdata.clients.llm import (
    DIALECTS,
    Endpoint,
    LLMClient,
    LLMHTTPError,
    LLMServerGone,
    gone_note,
    server_gone,
)
from taxdata.config import ConfigError, Settings, load_settings
from taxdata.errors import PreflightError
from taxdata.generate.common import FileOutcome, run_per_country
from taxdata.runner import run_tasks
from taxdata.testing.llm_server import OLLAMA_BUSY, Fault, StandInLLM

MESSAGES = [{"role": "user", "content": "Reply OK."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fast(attempts: int = 5, **kw) -> RetryPolicy:
    """Millisecond waits (floor 10 ms): real time, but short."""
    return RetryPolicy(attempts=attempts, base=0.01, cap=0.05, floor=0.01, **kw)


def client_of(*servers: StandInLLM, dialect: str = "proxy", **kw) -> LLMClient:
    kw.setdefault("retry", fast())
    kw.setdefault("model", "stand-in:latest")
    return LLMClient([Endpoint(s.url(dialect), DIALECTS[dialect]) for s in servers], **kw)


class Seen(logging.Handler):
    """Sets an event when a log line containing ``text`` is emitted."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def seen():
    handlers = []

    def watch(text: str) -> threading.Event:
        handler = Seen(text)
        logging.getLogger("taxdata").addHandler(handler)
        handlers.append(handler)
        return handler.event

    yield watch
    for handler in handlers:
        logging.getLogger("taxdata").removeHandler(handler)


# -- the policy ------------------------------------------------------------------------------

def test_every_delay_is_at_least_the_floor_and_retry_after_only_a_lower_bound():
    policy = RetryPolicy(base=1.0, cap=30.0, floor=0.5, rng=random.Random(1))
    for attempt in range(1, 12):
        plain = policy.delay(attempt)
        assert 0.5 <= plain <= 30.0
        zero = policy.delay(attempt, retry_after=0.0)
        assert zero >= 0.5  # "Retry-After: 0" still waits the floor
        told = policy.delay(attempt, retry_after=3.0)
        assert 3.0 <= told <= 3.0 + 30.0
    # Full jitter: the waits of workers turned away together differ.
    assert len({round(policy.delay(1, 0.0), 6) for _ in range(20)}) > 1


def test_busy_is_bounded_by_the_deadline_and_failures_by_the_attempts():
    calls = []
    clock = iter(range(0, 10_000, 10)).__next__

    def always_busy(number: int) -> Outcome:
        calls.append(number)
        return Outcome(BUSY, error=RuntimeError("busy"), reason="HTTP 503")

    with pytest.raises(RuntimeError) as info:
        send(always_busy, RetryPolicy(attempts=2, deadline=100, sleep=lambda s: None,
                                      clock=clock))
    assert len(calls) == 10 and info.value.attempts == 10  # 2 attempts would have been the limit

    calls.clear()

    def always_broken(number: int) -> Outcome:
        calls.append(number)
        return Outcome(RETRY, error=RuntimeError("500"), reason="HTTP 500")

    with pytest.raises(RuntimeError):
        send(always_broken, RetryPolicy(attempts=3, deadline=1e9, sleep=lambda s: None))
    assert calls == [1, 2, 3]


def test_retry_lines_name_the_reason_and_the_delay(taxdata_log):
    waits: list[float] = []
    outcomes = iter([Outcome(BUSY, reason="HTTP 503", error=RuntimeError()),
                     Outcome(RETRY, reason="HTTP 500", error=RuntimeError()),
                     Outcome(DONE, value="ok")])
    sent = send(lambda n: next(outcomes), RetryPolicy(attempts=5, sleep=waits.append))
    assert sent.value == "ok" and sent.attempts == 3
    lines = [line for line in taxdata_log.lines if line.startswith("[RETRY]")]
    assert lines == [f"[RETRY] Main HTTP 503, attempt 2 in {waits[0]:.1f}s",
                     f"[RETRY] Main HTTP 500, attempt 2/5 in {waits[1]:.1f}s"]


# -- busy servers ------------------------------------------------------------------------------

def test_no_request_before_the_floor_even_with_retry_after_zero(make_llm_server):
    server = make_llm_server()
    server.enqueue(Fault.http(503, "busy", retry_after="0"), Fault.http(429, "slow", "0"), "done")
    client = client_of(server, retry=RetryPolicy(floor=0.2, base=0.01, cap=0.05))
    assert client.chat(MESSAGES).text == "done"
    first, second, third = server.requests_to("/chat")
    assert second.started - first.finished >= 0.2  # lower bounds: safe under any load
    assert third.started - second.finished >= 0.2


@pytest.mark.parametrize("status", [503, 500])
def test_ollama_queue_full_answer_is_busy_not_a_failure(llm_server, status):
    waits: list[float] = []
    llm_server.enqueue(*[Fault.http(status, OLLAMA_BUSY)] * 4, "done")
    client = client_of(llm_server, retry=fast(attempts=1, sleep=waits.append))
    assert client.chat(MESSAGES).text == "done"  # one attempt allowed, four busy answers waited
    assert len(waits) == 4


def test_busy_past_the_deadline_gives_up_with_one_error_line(llm_server, taxdata_log):
    llm_server.enqueue(*[Fault.http(503, "busy")] * 3)
    clock = iter(range(0, 1000, 10)).__next__
    client = client_of(llm_server, retry=RetryPolicy(deadline=25, sleep=lambda s: None,
                                                     clock=clock))
    with pytest.raises(LLMHTTPError) as info:
        client.chat(MESSAGES)
    assert info.value.status == 503 and info.value.attempts == 3
    errors = [line for line in taxdata_log.lines if line.startswith("[ERROR]")]
    assert len(errors) == 1 and "still busy after 25s" in errors[0]


def test_one_slot_503_retry_after_zero_loses_no_task(make_llm_server, taxdata_log):
    server = make_llm_server(latency=0.05, capacity=1, overflow="503", retry_after=0)
    client = client_of(server, max_in_flight=4, retry=fast(attempts=2))
    summary = run_tasks([f"t{i}" for i in range(16)], lambda t: client.chat(MESSAGES),
                        max_workers=4, progress=False)
    assert summary.failed == [] and len(summary.succeeded) == 16
    busy = [r for r in server.requests_to("/chat") if r.status == 503]
    assert busy, "the stand-in never said busy: the test proves nothing"
    assert len(server.requests_to("/chat")) == 16 + len(busy)
    [member] = client.pool.members
    assert member.busy == len(busy) and member.requests == 16 + len(busy)
    assert member.permits < 4  # cut from the ceiling
    assert re.search(r"^\[ADAPT\] 127\.0\.0\.1:\d+ concurrency 4 -> \d \(HTTP 503\)$",
                     taxdata_log.text(), re.M)


# -- adaptive concurrency ----------------------------------------------------------------------

def test_aimd_cuts_once_per_round_and_grows_only_with_demand():
    pool = EndpointPool([("a", "a:1")], 8, probe=lambda target: True)
    [member] = pool.members
    permits = [pool.acquire() for _ in range(4)]
    sent_before_cut = 0.0
    pool.release(permits.pop(), sent_before_cut, SIGNAL_BUSY, "HTTP 503")
    assert member.permits == 2  # 4 in flight when the server said no, x 0.7
    pool.release(permits.pop(), sent_before_cut, SIGNAL_BUSY, "HTTP 503")
    assert member.permits == 2  # same round: already counted
    pool.release(permits.pop(), 1e12, OK)
    pool.release(permits.pop(), 1e12, OK)
    assert member.permits == 2  # nobody waited for a permit: no reason to probe higher
    assert member.peak_in_flight == 4


def test_fixed_concurrency_never_adapts(make_llm_server, taxdata_log):
    server = make_llm_server(latency=0.02, capacity=1, overflow="503", retry_after=0)
    client = client_of(server, max_in_flight=3, adaptive=False)
    summary = run_tasks([f"t{i}" for i in range(9)], lambda t: client.chat(MESSAGES),
                        max_workers=3, progress=False)
    assert summary.failed == []
    assert client.pool.members[0].permits == 3
    assert "[ADAPT]" not in taxdata_log.text()


def test_peak_in_flight_per_endpoint_stays_within_the_limit(make_llm_server):
    servers = [make_llm_server(latency=0.05), make_llm_server(latency=0.05)]
    client = client_of(*servers, max_in_flight=2)
    summary = run_tasks([f"t{i}" for i in range(24)], lambda t: client.chat(MESSAGES),
                        max_workers=8, progress=False)
    assert summary.failed == []
    for server, member in zip(servers, client.pool.members):
        assert server.peak_in_flight <= 2 and member.peak_in_flight <= 2
        assert member.requests == len(server.chats) > 0  # both endpoints took work
    assert sum(len(s.chats) for s in servers) == 24


def test_fixed_concurrency_flag_turns_adaptation_off():
    from taxdata.cli.common import common_parser, settings_from_args

    parser = common_parser("x", "x", default_workers=4)
    fixed = settings_from_args(parser.parse_args(["--fixed-concurrency"]), default_workers=4)
    default = settings_from_args(parser.parse_args([]), default_workers=4)
    assert fixed.adaptive is False and default.adaptive is True
    assert LLMClient.from_settings(fixed).pool.adaptive is False


def test_settings_turn_adaptation_off_and_carry_the_ceiling(monkeypatch):
    monkeypatch.setenv("TAXDATA_ADAPTIVE", "0")
    monkeypatch.setenv("TAXDATA_MAX_WORKERS", "6")
    client = LLMClient.from_settings(load_settings())
    assert client.pool.adaptive is False and client.pool.ceiling == 6


# -- circuit breaker ---------------------------------------------------------------------------

def test_breaker_opens_then_one_probe_resumes_the_waiting_work(make_llm_server, seen,
                                                                taxdata_log):
    server = make_llm_server(latency=0.01)
    # Four attempts: at most three connection failures can happen before the breaker opens.
    client = client_of(server, max_in_flight=4, retry=fast(attempts=4), breaker_wait=60)
    server.stop()
    opened = seen("open after")

    def back_when_open() -> None:
        opened.wait(30)
        server.reset_stats()
        server.start()  # the same port

    helper = threading.Thread(target=back_when_open)
    helper.start()
    summary = run_tasks([f"t{i}" for i in range(8)], lambda t: client.chat(MESSAGES),
                        max_workers=4, progress=False)
    helper.join(30)
    # Four attempts each would have been used up in milliseconds without the breaker.
    assert summary.failed == [] and len(summary.succeeded) == 8
    text = taxdata_log.text()
    assert text.count("[BREAKER]") == 2
    assert re.search(r"\[BREAKER\] 127\.0\.0\.1:\d+ open after 3 connection failures", text)
    assert re.search(r"\[BREAKER\] 127\.0\.0\.1:\d+ closed: answering again", text)
    assert len(server.requests_to("/models")) == 1  # one probe, not one per queued task
    assert len(server.chats) == 8


def test_server_gone_fails_the_rest_at_once_with_one_line(taxdata_log, capsys):
    url = f"http://127.0.0.1:{free_port()}/chat"
    client = LLMClient(Endpoint(url, DIALECTS["proxy"]), model="m", retry=fast(attempts=5),
                       max_in_flight=2, breaker_wait=0.3)

    def work(slug: str) -> FileOutcome:
        client.chat(MESSAGES)
        return FileOutcome(slug, "WRITTEN")

    slugs = [f"c{i}" for i in range(10)]
    code = run_per_country(slugs, work, settings=Settings(max_workers=2),
                           progress=False, what="test", client=client)
    assert code == 1
    sent = [line for line in taxdata_log.lines if line.startswith("[LLM-REQUEST]")]
    assert len(sent) < len(slugs)  # queued tasks never sent: they failed at once
    notes = [line for line in taxdata_log.lines if "stopped answering" in line
             and line.startswith("[ERROR]")]
    assert notes == [f"[ERROR] LLM server at {url} stopped answering; 10 countries not "
                     "processed; re-run to continue"]
    out = capsys.readouterr().out
    assert re.search(r"^  LLM 127\.0\.0\.1:\d+: \d+ requests, 0 busy, \d+ failures, "
                     r"concurrency limit 2 of 2 \(gone\)$", out, re.M), out


def test_server_gone_is_found_behind_wrapping_errors():
    gone = LLMServerGone("LLM server at x stopped answering")
    try:
        try:
            raise gone
        except LLMServerGone as exc:
            raise ValueError("extraction failed") from exc
    except ValueError as wrapped:
        assert server_gone(wrapped) is gone
    assert server_gone(RuntimeError("other")) is None
    client = LLMClient(Endpoint("http://h:1/chat", DIALECTS["proxy"]))
    assert gone_note(client, [None, RuntimeError()]) is None


# -- several endpoints -------------------------------------------------------------------------

def test_work_moves_off_a_dead_endpoint(make_llm_server, taxdata_log):
    alive, dead = make_llm_server(latency=0.02), make_llm_server()
    client = client_of(dead, alive, max_in_flight=2, retry=fast(attempts=4), breaker_wait=60)
    dead.stop()
    summary = run_tasks([f"t{i}" for i in range(12)], lambda t: client.chat(MESSAGES),
                        max_workers=6, progress=False)  # more workers than the live permits
    assert summary.failed == []
    assert len(alive.chats) == 12
    gone, live = client.pool.members
    assert gone.failures >= 3 and gone.breaker.state == "open"
    assert live.requests == 12 and alive.peak_in_flight <= 2
    lines = client.endpoint_summary()
    assert len(lines) == 2 and lines[0].endswith("(open)")
    assert gone.failures <= 3 + 6  # the threshold, plus what was in flight when it opened


def test_preflight_names_the_endpoint_without_the_model(make_llm_server):
    good, other = make_llm_server(), make_llm_server(models=("other:latest",))
    client = client_of(good, other)
    with pytest.raises(PreflightError, match=re.escape(f"not found at {other.url()}")):
        client.preflight()
    assert good.requests_to("/models") and other.requests_to("/models")


def test_llm_url_takes_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("TAXDATA_LLM_URL", "http://a:11434/api/chat, http://b:11434/api/chat/")
    settings = load_settings()
    assert settings.llm_urls == ("http://a:11434/api/chat", "http://b:11434/api/chat")
    assert settings.llm_api == "ollama"
    client = LLMClient.from_settings(settings)
    assert [e.name for e in client.endpoints] == ["a:11434", "b:11434"]


@pytest.mark.parametrize("value, message", [
    ("http://a/api/chat,http://b/v1/chat/completions", "different APIs"),
    ("http://a/chat,ftp://b/chat", "TAXDATA_LLM_URL"),
])
def test_llm_url_list_errors_are_one_line(monkeypatch, value, message):
    monkeypatch.setenv("TAXDATA_LLM_URL", value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


# -- token cap -------------------------------------------------------------------------------

@pytest.mark.parametrize("dialect, path", [("proxy", ("options", "num_predict")),
                                           ("ollama", ("options", "num_predict")),
                                           ("openai", ("max_tokens",))])
def test_every_request_of_every_dialect_carries_the_token_cap(llm_server, monkeypatch,
                                                              recorded_waits, dialect, path):
    monkeypatch.setenv("TAXDATA_LLM_URL", llm_server.url(dialect))
    monkeypatch.setenv("TAXDATA_MAX_TOKENS", "777")
    client = LLMClient.from_settings(load_settings())
    client.preflight()
    llm_server.enqueue(Fault.http(500, "oops"))  # the retry carries it too
    client.chat(MESSAGES)
    client.chat(MESSAGES, schema={"type": "object"})
    assert len(llm_server.chats) == 3 and len(recorded_waits) == 1  # (not slept: recorded)
    for body in llm_server.chats:
        value = body
        for key in path:
            value = value[key]
        assert value == 777


def test_new_settings_defaults_and_bad_values(monkeypatch):
    settings = load_settings()
    assert (settings.retry_deadline, settings.max_reasks, settings.max_tokens,
            settings.adaptive, settings.breaker_wait) == (300.0, 2, 4096, True, 15.0)
    for env, value in [("TAXDATA_ADAPTIVE", "maybe"), ("TAXDATA_MAX_REASKS", "-1"),
                       ("TAXDATA_MAX_TOKENS", "0"), ("TAXDATA_RETRY_DEADLINE", "0"),
                       ("TAXDATA_BREAKER_WAIT", "soon")]:
        monkeypatch.setenv(env, value)
        with pytest.raises(ConfigError, match=env):
            load_settings()
        monkeypatch.delenv(env)


# -- the stand-in's knobs --------------------------------------------------------------------

def test_stand_in_fault_rates_and_coming_back_on_the_same_port(make_llm_server):
    server = make_llm_server(garbage_rate=0.5, error_rate=0.5, seed=3)
    client = client_of(server, retry=fast(attempts=1))
    outcomes = []
    for _ in range(10):
        try:
            client.chat(MESSAGES)
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - classified below
            outcomes.append(type(exc).__name__)
    assert outcomes.count("ok") == 0  # every reply is one of the two faults
    assert {"LLMBadResponse", "LLMHTTPError"} == set(outcomes)
    port = server.port
    server.stop()
    server.garbage_rate = server.error_rate = 0.0
    server.start()
    assert server.port == port and client.chat(MESSAGES).text == "OK"
