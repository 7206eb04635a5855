"""The parallel runner: many independent tasks over a ThreadPoolExecutor, with logs and a bar.

One task's exception never stops the others; results are keyed by task id, never by completion
order; ``on_result`` runs in the calling thread as each result arrives, so callers can persist it
at once without locks of their own. ``max_workers=1`` is the same code path, just one worker.

Ctrl-C (and SIGTERM, :func:`taxdata.cancel.sigterm_as_interrupt`): queued tasks are cancelled,
clients stop retrying (:data:`STOP`) and close the requests in flight (the LLM client's streams:
the server stops generating); what finished is kept; a second Ctrl-C quits at once (writes are
atomic, so that is safe).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, TypeVar

from tqdm import tqdm

from taxdata.cancel import STOP, Interrupted
from taxdata.errors import EXIT_INTERRUPTED, first_line
from taxdata.events import CANCELLED, COMPLETED, FAILED, TaskFinished, emit
from taxdata.log import logger, set_thread_label, thread_label

T = TypeVar("T")


@dataclass
class TaskResult(Generic[T]):
    task_id: str
    value: T | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    worker: str = ""
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled


@dataclass
class RunSummary(Generic[T]):
    results: dict[str, TaskResult[T]] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def succeeded(self) -> list[str]:
        return [k for k, r in self.results.items() if r.ok]

    @property
    def failed(self) -> list[str]:
        return [k for k, r in self.results.items() if r.error is not None and not r.cancelled]

    @property
    def cancelled(self) -> list[str]:
        return [k for k, r in self.results.items() if r.cancelled]


def run_tasks(
    task_ids: Iterable[str],
    work: Callable[[str], T],
    *,
    max_workers: int,
    on_result: Callable[[TaskResult[T]], None] | None = None,
    describe: Callable[[T], str] | None = None,
    progress: bool = True,
    what: str = "LLM processing",
    clear_stop: bool = False,
) -> RunSummary[T]:
    """Run ``work(task_id)`` for every id on ``max_workers`` threads; see the module docstring.

    ``describe(value)`` names a success in the ``[COMPLETED]`` line (default ``SUCCESS``).
    ``clear_stop=True`` starts a program's run afresh (a Ctrl-C of an earlier run in this process
    no longer counts); runs nested inside a task leave it False so a Ctrl-C reaches them.
    """
    ids = list(dict.fromkeys(task_ids))  # duplicates would overwrite each other's results
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    if clear_stop:
        STOP.clear()
    parent = thread_label()
    # Workers of a nested run are named after the task's thread: Thread-2.1, Thread-2.2.
    prefix = "Thread-" if parent == "Main" else f"{parent}."
    numbers = itertools.count(1)
    numbers_lock = threading.Lock()

    def name_worker() -> None:
        with numbers_lock:
            set_thread_label(f"{prefix}{next(numbers)}")

    workers = min(max_workers, max(len(ids), 1))
    summary: RunSummary[T] = RunSummary()
    started = time.monotonic()
    logger.info("[PARALLEL] Using %d worker %s for %s", workers, _plural(workers, "thread"), what)
    bar = tqdm(total=len(ids), desc=what, unit="task", file=sys.stderr, leave=False,
               disable=not (progress and sys.stderr.isatty()))

    def accept(result: TaskResult[T]) -> None:
        if result.task_id in summary.results:  # seen before an interrupt
            return
        summary.results[result.task_id] = result
        bar.update(1)
        if result.ok and on_result is not None:
            try:
                on_result(result)
            except Exception as exc:  # e.g. disk full: the result is not saved, say so
                result.error = exc
        _log_result(result, describe)

    with ThreadPoolExecutor(max_workers=workers, initializer=name_worker) as pool:
        futures: dict[Future[TaskResult[T]], str] = {pool.submit(_run_one, work, t): t
                                                        for t in ids}
        logger.info("[PARALLEL] Submitted %d %s to thread pool", len(futures),
                    _plural(len(futures), "task"))
        try:
            for future in as_completed(futures):
                accept(future.result())
        except KeyboardInterrupt:
            summary.interrupted = True
            _drain_after_interrupt(futures, accept)
    bar.close()
    for task_id in futures.values():
        if task_id not in summary.results:  # cancelled before it started
            summary.results[task_id] = TaskResult(task_id, cancelled=True,
                                                  error=Interrupted("cancelled"))
    # Keep the caller's order, whatever order the tasks finished in.
    summary.results = {t: summary.results[t] for t in ids}
    summary.seconds = time.monotonic() - started
    word = "interrupted" if summary.interrupted else "completed"
    logger.info("[PARALLEL] All %d %s %s (ok=%d, failed=%d%s) in %.1fs", len(ids),
                _plural(len(ids), "task"), word,
                len(summary.succeeded), len(summary.failed),
                f", cancelled={len(summary.cancelled)}" if summary.cancelled else "",
                summary.seconds)
    return summary


def _run_one(work: Callable[[str], T], task_id: str) -> TaskResult[T]:
    """One task on a worker thread: its value, or the exception it raised, never raised."""
    started = time.monotonic()
    result: TaskResult[T] = TaskResult(task_id, worker=thread_label())
    try:
        if STOP.is_set():
            raise Interrupted("stopped before start")
        result.value = work(task_id)
    except Interrupted as exc:
        result.cancelled, result.error = True, exc
    except Exception as exc:  # one task's failure never stops the others
        result.error = exc
    result.seconds = time.monotonic() - started
    return result


def _log_result(result: TaskResult[T], describe: Callable[[T], str] | None) -> None:
    if result.cancelled:
        emit(TaskFinished(result.task_id, CANCELLED, worker=result.worker))
    elif result.error is not None:
        # A cause the caller reports once for all its tasks (a server that went away) is not
        # repeated per task, except in debug logs.
        emit(TaskFinished(result.task_id, FAILED, first_line(result.error), result.worker,
                          reported_once=_reported_once(result.error)))
    else:
        status = describe(result.value) if describe else "SUCCESS"
        emit(TaskFinished(result.task_id, COMPLETED, status, result.worker))


def _drain_after_interrupt(futures: dict[Future, str],
                           accept: Callable[[TaskResult], None]) -> None:
    """First Ctrl-C: cancel the queue; in-flight work ends as its requests are closed (:data:`STOP`)
    and what finished is kept; second: quit now."""
    STOP.set()
    queued = sum(future.cancel() for future in futures)
    in_flight = [f for f in futures if not f.cancelled() and not f.done()]
    logger.warning("[INTERRUPTED] Ctrl-C: cancelled %d queued %s, stopping %d in flight (their "
                   "requests are closed; Ctrl-C again to quit now)", queued,
                   _plural(queued, "task"), len(in_flight))
    try:
        for future in as_completed([f for f in futures if not f.cancelled()]):
            accept(future.result())
    except KeyboardInterrupt:
        logger.warning("[INTERRUPTED] quitting now; finished results are saved")
        logging.shutdown()
        os._exit(EXIT_INTERRUPTED)  # in-flight HTTP calls cannot be aborted; don't wait for them


def _plural(count: int, noun: str) -> str:
    """``noun`` as it reads after ``count``: 1 task, 2 tasks, 0 tasks."""
    return noun if count == 1 else noun + "s"


def _reported_once(error: BaseException | None) -> bool:
    """True if ``error`` or what caused it says ``reported_once`` (e.g. LLMServerGone)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if getattr(error, "reported_once", False):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False
