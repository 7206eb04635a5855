"""The parallel runner (taxdata/runner.py): ordering, failures, callbacks, labels, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from pathlib import Path

import pytest
from _programs import signal_when

from taxdata.log import thread_label
from taxdata.runner import Interrupted, run_tasks

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent


def test_results_keep_submission_order_when_completion_order_differs(taxdata_log):
    ids = ["a", "b", "c", "d"]
    # Each task waits until the task after it was *accepted* (on_result, calling thread), so the
    # completion order is forced to d, c, b, a.
    accepted = {task_id: threading.Event() for task_id in ids}
    completion: list[str] = []

    def work(task_id: str) -> str:
        following = ids.index(task_id) + 1
        if following < len(ids):
            assert accepted[ids[following]].wait(10), "the later task never finished"
        return task_id.upper()

    def on_result(result) -> None:
        completion.append(result.task_id)
        accepted[result.task_id].set()

    summary = run_tasks(ids, work, max_workers=4, on_result=on_result, progress=False)
    assert completion == ["d", "c", "b", "a"]
    assert list(summary.results) == ids
    assert [r.value for r in summary.results.values()] == ["A", "B", "C", "D"]
    completed = [line for line in taxdata_log.lines if line.startswith("[COMPLETED]")]
    assert completed == [f"[COMPLETED] {t} - SUCCESS" for t in ["d", "c", "b", "a"]]


def test_one_failure_does_not_stop_the_others(taxdata_log):
    ran: list[str] = []

    def work(task_id: str) -> str:
        ran.append(task_id)
        if task_id == "b":
            raise ValueError("boom\nsecond line")
        return task_id

    summary = run_tasks(list("abcde"), work, max_workers=2, progress=False)
    assert sorted(ran) == list("abcde")
    assert summary.failed == ["b"]
    assert summary.succeeded == ["a", "c", "d", "e"]
    assert isinstance(summary.results["b"].error, ValueError)
    assert not summary.interrupted and summary.cancelled == []
    [failed_line] = [line for line in taxdata_log.lines if line.startswith("[FAILED]")]
    assert failed_line.startswith("[FAILED] b - boom (Thread-")  # first line of the message only


def test_on_result_once_per_success_in_the_calling_thread():
    caller = threading.get_ident()
    calls: list[tuple[str, int]] = []

    def work(task_id: str) -> int:
        if task_id in ("t3", "t7"):
            raise RuntimeError("nope")
        return int(task_id[1:])

    summary = run_tasks([f"t{i}" for i in range(10)], work, max_workers=4, progress=False,
                        on_result=lambda r: calls.append((r.task_id, threading.get_ident())))
    assert sorted(t for t, _ in calls) == sorted(summary.succeeded)
    assert len(calls) == 8
    assert {ident for _, ident in calls} == {caller}


def test_on_result_error_marks_the_task_failed(taxdata_log):
    def save(result) -> None:
        if result.task_id == "b":
            raise OSError("disk full")

    summary = run_tasks(["a", "b", "c"], str.upper, max_workers=2, on_result=save,
                        progress=False)
    assert summary.failed == ["b"]
    assert summary.succeeded == ["a", "c"]
    assert any(line.startswith("[FAILED] b - disk full") for line in taxdata_log.lines)


def test_one_worker_runs_everything_on_thread_1(taxdata_log):
    seen: list[tuple[int, str]] = []

    def work(task_id: str) -> str:
        seen.append((threading.get_ident(), thread_label()))
        return task_id

    summary = run_tasks(list("abcdef"), work, max_workers=1, progress=False)
    assert summary.succeeded == list("abcdef")
    assert len({ident for ident, _ in seen}) == 1
    assert {label for _, label in seen} == {"Thread-1"}
    assert {r.worker for r in summary.results.values()} == {"Thread-1"}
    assert "[PARALLEL] Using 1 worker thread for LLM processing" in taxdata_log.lines


def test_progress_lines(taxdata_log):
    def work(task_id: str) -> str:
        if task_id == "c":
            raise ValueError("bad")
        return task_id

    run_tasks(list("abcde"), work, max_workers=3, progress=False)
    lines = taxdata_log.lines
    assert lines[0] == "[PARALLEL] Using 3 worker threads for LLM processing"
    assert "[PARALLEL] Submitted 5 tasks to thread pool" in lines
    for task_id in "abde":
        assert lines.count(f"[COMPLETED] {task_id} - SUCCESS") == 1
    assert re.fullmatch(r"\[PARALLEL\] All 5 tasks completed \(ok=4, failed=1\) in \d+\.\ds",
                        lines[-1]), lines[-1]


def test_describe_names_the_success(taxdata_log):
    run_tasks(["a"], lambda t: 3, max_workers=2, describe=lambda v: f"{v} fields",
              progress=False, what="extraction")
    assert "[COMPLETED] a - 3 fields" in taxdata_log.lines
    # never more workers than tasks
    assert "[PARALLEL] Using 1 worker thread for extraction" in taxdata_log.lines


def test_duplicate_ids_run_once_and_bad_worker_count_is_refused():
    ran: list[str] = []
    summary = run_tasks(["a", "b", "a"], lambda t: ran.append(t), max_workers=2, progress=False)
    assert list(summary.results) == ["a", "b"] and sorted(ran) == ["a", "b"]
    with pytest.raises(ValueError):
        run_tasks(["a"], str, max_workers=0)


def test_interrupted_task_is_cancelled_not_failed():
    def work(task_id: str) -> str:
        if task_id == "b":
            raise Interrupted("stopped")
        return task_id

    summary = run_tasks(["a", "b"], work, max_workers=1, progress=False)
    assert summary.cancelled == ["b"] and summary.failed == [] and summary.succeeded == ["a"]


# -- with the LLM client ---------------------------------------------------------------------

def test_eight_workers_keep_eight_requests_in_flight(make_llm_server, client_for):
    server = make_llm_server(latency=0.2)
    client = client_for(server)
    summary = run_tasks([f"c{i}" for i in range(32)],
                        lambda t: client.chat([{"role": "user", "content": t}]).text,
                        max_workers=8, progress=False)
    assert len(summary.succeeded) == 32
    assert len(server.history) == 32
    assert server.peak_in_flight == 8


def test_client_log_lines_carry_stable_worker_labels(make_llm_server, client_for, taxdata_log):
    server = make_llm_server(latency=0.05)
    client = client_for(server)
    labels: dict[int, set[str]] = {}
    lock = threading.Lock()

    def work(task_id: str) -> str:
        with lock:
            labels.setdefault(threading.get_ident(), set()).add(thread_label())
        reply = client.chat([{"role": "user", "content": task_id}], label=task_id)
        with lock:
            labels[threading.get_ident()].add(thread_label())
        return reply.text

    summary = run_tasks([f"c{i}" for i in range(12)], work, max_workers=3, progress=False)
    assert len(summary.succeeded) == 12
    allowed = {"Thread-1", "Thread-2", "Thread-3"}
    assert all(len(names) == 1 for names in labels.values())  # one label per thread, always
    per_thread = [next(iter(names)) for names in labels.values()]
    assert len(set(per_thread)) == len(per_thread)  # and different threads, different labels
    assert set(per_thread) <= allowed

    requests = [line for line in taxdata_log.lines if line.startswith("[LLM-REQUEST]")]
    assert len(requests) == 12
    for line in requests:
        match = re.match(r"\[LLM-REQUEST\] (Thread-\d+) POST \S+ model=\S+ - (c\d+)$", line)
        assert match, line
        assert match.group(1) in allowed
    assert thread_label() == "Main"


# -- Ctrl-C ------------------------------------------------------------------------------------

def test_ctrl_c_keeps_finished_work_and_cancels_the_queue(tmp_path):
    out = tmp_path / "saved.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    # "[COMPLETED] <task>" is logged after on_result saved it; the helper's stand-in holds every
    # later request until the signal, so the queue is not empty when it lands.
    proc = signal_when([sys.executable, str(HERE / "_interrupt_helper.py"), str(out)],
                       until=lambda lines: any(line.startswith("[COMPLETED] ") for line in lines),
                       env=env, cwd=tmp_path, timeout=20)
    stdout, stderr = proc.stdout, proc.stderr
    assert proc.returncode == 130, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    saved = out.read_text().split()
    assert saved and sorted(saved) == sorted(summary["succeeded"])  # every finished one was kept
    assert len(saved) < 6
    assert summary["cancelled"]  # the queue was cancelled...
    assert summary["chats"] < 6  # ...so those tasks never reached the server
    assert len(saved) + len(summary["cancelled"]) == 6
    assert "[INTERRUPTED]" in stderr
