"""Logging (taxdata/log.py): worker labels, redaction, setup, and no secrets in verbose logs."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from pathlib import Path

import pytest

from taxdata.clients.llm import LLMHTTPError
from taxdata.log import logger, redact, set_thread_label, setup_logging, thread_label, truncate


def test_thread_labels_are_per_thread():
    assert thread_label() == "Main"
    seen: dict[str, str] = {}

    def worker() -> None:
        seen["before"] = thread_label()
        set_thread_label("Thread-7")
        seen["after"] = thread_label()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"before": "Main", "after": "Thread-7"}
    assert thread_label() == "Main"  # another thread's label does not leak here


@pytest.mark.parametrize("text,expected", [
    ("Authorization: Bearer sk-abc.123", "Authorization: Bearer ***"),
    ('{"authorization": "Bearer sk-abc"}', '{"authorization": "Bearer ***"}'),
    ('{"api_key": "sk-abc", "x": 1}', '{"api_key": "***", "x": 1}'),
    ("X-Api-Key: sk-abc next", "X-Api-Key: *** next"),
    ("nothing secret here", "nothing secret here"),
])
def test_redact_patterns(text, expected):
    assert redact(text) == expected


def test_redact_literal_secrets():
    assert redact("prompt mentions hunter2 twice: hunter2", ("hunter2", "")) == (
        "prompt mentions *** twice: ***")


def test_truncate():
    assert truncate("abc", 5) == "abc"
    assert truncate("x" * 12, 5) == "xxxxx... [7 more chars]"


def test_setup_logging_console_and_file_get_the_same_lines(tmp_path):
    stream, path = io.StringIO(), tmp_path / "logs" / "run.log"
    setup_logging("info", path, stream=stream)
    logger.info("[TEST] hello %s", "world")
    logger.debug("[TEST] hidden at INFO")
    assert stream.getvalue().splitlines() == ["[TEST] hello world"]
    [line] = path.read_text(encoding="utf-8").splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[TEST\] hello world", line), line


def test_setup_logging_twice_does_not_duplicate_and_verbose_is_debug():
    first, second = io.StringIO(), io.StringIO()
    setup_logging("warning", stream=first)
    logger.info("[TEST] not at WARNING")
    setup_logging("info", verbose=True, stream=second)
    logger.debug("[TEST] debug")
    assert first.getvalue() == ""
    assert second.getvalue().splitlines() == ["[TEST] debug"]
    assert logger.level == logging.DEBUG


def test_api_key_never_logged_even_when_verbose(make_llm_server, client_for, tmp_path):
    key = "sk-live-9f8e7d6c5b4a"
    server = make_llm_server(api_key=key)
    stream, path = io.StringIO(), tmp_path / "run.log"
    setup_logging("info", path, verbose=True, stream=stream)

    client = client_for(server, api_key=key, model="")
    client.chat([{"role": "user", "content": f"the key is {key}"}],
                schema={"type": "object", "api_key": key})
    wrong = client_for(server, api_key=key + "-old", attempts=1)
    with pytest.raises(LLMHTTPError):
        wrong.chat([{"role": "user", "content": "hi"}])

    console, logfile = stream.getvalue(), path.read_text(encoding="utf-8")
    assert "[LLM-PAYLOAD]" in console and "[LLM-PAYLOAD]" in logfile  # payloads were logged
    assert "HTTP 401" in console
    assert key not in console
    assert key not in logfile
    assert {r.headers["Authorization"] for r in server.requests_to("/chat")} == {
        f"Bearer {key}", f"Bearer {key}-old"}


def test_multi_line_messages_become_one_log_line(tmp_path):
    """A server's pasted traceback (as in the [FALLBACK] line) must not start lines of its own."""
    stream, log_file = io.StringIO(), tmp_path / "run.log"
    setup_logging("INFO", log_file, stream=stream)
    server_text = 'Traceback (most recent call last):\n  File "srv.py", line 1\r\nValueError: no\n'
    logger.warning("[FALLBACK] %s server rejected structured output %r (HTTP %d: %s); using %r",
                   "Thread-1", "schema", 500, server_text, "json")
    logger.info("[COMPLETED] germany - ADDED")
    for handler in logger.handlers:
        handler.flush()
    console = stream.getvalue().splitlines()
    assert console == [
        "[FALLBACK] Thread-1 server rejected structured output 'schema' (HTTP 500: Traceback "
        '(most recent call last): | File "srv.py", line 1 | ValueError: no); using \'json\'',
        "[COMPLETED] germany - ADDED"]
    written = log_file.read_text(encoding="utf-8").splitlines()
    assert [line.split(" ", 2)[2] for line in written] == console


def test_workers_never_wait_for_each_others_writes_and_keep_their_order():
    """A thread that finds the writer busy leaves its line to the writer and goes on; each
    thread's lines keep their order, and every line is out once the last call returned."""
    stream = io.StringIO()
    setup_logging("info", stream=stream)
    [handler] = logger.handlers
    handler._writing.acquire()  # another thread is writing
    done = threading.Event()

    def worker() -> None:
        for n in range(3):
            logger.info("[TEST] worker line %d", n)
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    assert done.wait(10), "a worker waited for the writer"
    thread.join()
    assert stream.getvalue() == ""  # queued, not lost
    handler._writing.release()
    logger.info("[TEST] main line")  # whoever writes next writes the queue first
    assert stream.getvalue().splitlines() == [
        "[TEST] worker line 0", "[TEST] worker line 1", "[TEST] worker line 2", "[TEST] main line"]


def test_many_threads_every_line_whole_and_in_order_per_thread(tmp_path):
    stream, path = io.StringIO(), tmp_path / "run.log"
    setup_logging("info", path, stream=stream)

    def worker(label: str) -> None:
        for n in range(200):
            logger.info("[TEST] %s %d", label, n)

    threads = [threading.Thread(target=worker, args=(f"Thread-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for lines in (stream.getvalue().splitlines(),
                  [line.split(" ", 2)[2] for line in path.read_text().splitlines()]):
        assert len(lines) == 8 * 200
        for i in range(8):
            mine = [line for line in lines if line.startswith(f"[TEST] Thread-{i} ")]
            assert mine == [f"[TEST] Thread-{i} {n}" for n in range(200)]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_log_file_that_cannot_be_written_is_one_line_and_exit_1(tmp_path):
    """--log-file /dev/full: one line on stderr (no traceback per record), the run itself goes
    on and writes its dataset, and the program exits 1."""
    from taxdata.testing.llm_server import StandInLLM
    from tests._programs import run_main
    from tests._updater import SCRIPT, put_taxation, reply, script_env

    data = tmp_path / "data"
    (data / "taxation").mkdir(parents=True)
    put_taxation(data, "germany", generic=True)
    with StandInLLM() as server:
        server.responder = lambda body: reply("germany")
        proc = run_main(SCRIPT.name, ["--no-progress", "--no-list-reference", "--countries",
                                      "germany", "--log-file", "/dev/full"],
                        env=script_env(data, server.url("proxy")), cwd=tmp_path)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "/dev/full" in line]
    assert errors == ["error: cannot write the log file /dev/full: No space left on device; its "
                      "further lines are dropped (the run goes on, and exits 1)"]
    assert "Traceback" not in proc.stderr and "Logging error" not in proc.stderr
    assert "[COMPLETED] germany - ADDED" in proc.stderr  # the console still has every line
    assert "germany" in json.loads((data / "tax_data.json").read_text())["countries"]


def test_a_flush_at_exit_writes_the_lines_queued_behind_a_descheduled_writer():
    """A thread that holds the writer's lock (descheduled mid-write) while another ends the
    process: logging.shutdown's flush waits for it and writes every queued line, instead of
    leaving them unwritten (a stop *now* ends the process with os._exit right after it)."""
    from taxdata.log import _LineHandler

    stream = io.StringIO()
    setup_logging("info", None, stream=stream)
    handler = next(h for h in logger.handlers if isinstance(h, _LineHandler))
    held, release = threading.Event(), threading.Event()

    def holder() -> None:  # holds the lock, then lets go without draining (it was preempted)
        with handler._writing:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    logger.warning("[TEST] queued behind the writer")
    assert "queued behind the writer" not in stream.getvalue()  # left to the holder
    threading.Timer(0.1, release.set).start()
    handler.flush()
    thread.join()
    assert stream.getvalue().splitlines()[-1] == "[TEST] queued behind the writer"
