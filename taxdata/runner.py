"""The parallel runner: many independent tasks over a ThreadPoolExecutor, with logs and a bar.

One task's exception never stops the others; results are keyed by task id, never by completion
order; ``on_result`` runs in the calling thread as each result arrives, so callers can persist it
at once without locks of their own. ``max_workers=1`` is the same code path, just one worker.

Stopping (:mod:`taxdata.cancel`; Ctrl-C and SIGTERM through :mod:`taxdata.signals`, a disk
that refuses a write through its caller): on :data:`STOP` the queued tasks are cancelled (one
``[CANCELLED]`` line for the lot), clients stop retrying and close the requests in flight (the
LLM client's streams: the server stops generating), and what finishes is kept; on :data:`NOW`
(a second Ctrl-C) the run returns at once with what had finished, the tasks still running
reported as cancelled in flight. The calling thread only ever waits on one queue that the
finished tasks and the stop requests feed; no signal is raised into it, so no lock it holds is
left held.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar

from taxdata.cancel import NOW, STOP, Interrupted, interrupted, stop_reason, woken_on_stop
from taxdata.errors import first_line
from taxdata.events import CANCELLED, COMPLETED, FAILED, TaskFinished, emit
from taxdata.log import logger, set_thread_label, thread_label
from taxdata.signals import stop_signals

T = TypeVar("T")


@dataclass
class TaskResult(Generic[T]):
    task_id: str
    value: T | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    worker: str = ""
    cancelled: bool = False
    started: bool = False  # its work began (cancelled and started: cancelled in flight)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled

    @property
    def in_flight(self) -> bool:
        """Cancelled while its work ran (its request closed), not before it started."""
        return self.cancelled and self.started


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
    ``clear_stop=True`` starts a program's run afresh (a stop of an earlier run in this process
    no longer counts; inside :func:`taxdata.signals.stop_signals` the scope did that, and a
    Ctrl-C during the program's start-up still counts); runs nested inside a task leave it False
    so a stop reaches them.
    """
    ids = list(dict.fromkeys(task_ids))  # duplicates would overwrite each other's results
    if max_workers < 1:
        raise ValueError("max_workers must be at least 1")
    with stop_signals(reset=clear_stop):  # a caller without a scope of its own gets one here
        return _run(ids, work, max_workers, on_result, describe, progress, what)


def _run(ids: list[str], work: Callable[[str], T], max_workers: int,
         on_result: Callable[[TaskResult[T]], None] | None,
         describe: Callable[[T], str] | None, progress: bool, what: str) -> RunSummary[T]:
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
    bar = _bar(len(ids), what, progress and sys.stderr.isatty())

    def accept(result: TaskResult[T]) -> None:
        summary.results[result.task_id] = result
        bar.update(1)
        if result.ok and on_result is not None:
            try:
                on_result(result)
            except Exception as exc:  # e.g. disk full: the result is not saved, say so
                result.error = exc
        _log_result(result, describe)

    # Finished futures and stop requests (None) arrive here; the calling thread waits on it.
    arrivals: queue.SimpleQueue[Future | None] = queue.SimpleQueue()
    pool = ThreadPoolExecutor(max_workers=workers, initializer=name_worker)
    futures: dict[Future[TaskResult[T]], str] = {}
    try:
        with woken_on_stop(lambda: arrivals.put(None)):
            for task_id in ids if not STOP.is_set() else ():  # stopped in start-up: none
                future = pool.submit(_run_one, work, task_id)
                futures[future] = task_id
                future.add_done_callback(arrivals.put)
            logger.info("[PARALLEL] Submitted %d %s to thread pool", len(futures),
                        _plural(len(futures), "task"))
            _collect(futures, arrivals, accept)
            summary.interrupted = interrupted()
    finally:
        # After a stop *now* the tasks still running are not waited for (their requests are
        # being closed); the process leaves without them (taxdata.signals.leave).
        pool.shutdown(wait=not NOW.is_set(), cancel_futures=True)
        bar.close()
    running = {task_id for future, task_id in futures.items() if not future.cancelled()}
    for task_id in ids:
        if task_id not in summary.results:  # not submitted, cancelled queued, or left by NOW
            in_flight = task_id in running
            result: TaskResult[T] = TaskResult(
                task_id, cancelled=True, started=in_flight,
                error=Interrupted("cancelled in flight" if in_flight else "cancelled"))
            summary.results[task_id] = result
            if in_flight:  # left running by a stop now: its own line, as one whose request closed
                _log_result(result, describe)
    _log_cancelled(summary)
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


def _collect(futures: dict[Future, str], arrivals: queue.SimpleQueue,
             accept: Callable[[TaskResult], None]) -> None:
    """Take each result as it arrives until all are in; on :data:`STOP` cancel the queue (once);
    on :data:`NOW` take what has finished and return without waiting for the rest."""
    pending = set(futures)
    cancelled = False
    while pending:
        if NOW.is_set():
            break
        if STOP.is_set() and not cancelled:
            cancelled = True
            for future in futures:
                future.cancel()  # only those not started; their callbacks come here too
        arrived = arrivals.get()
        if arrived is None or arrived not in pending:  # a stop request: look at the flags
            continue
        pending.discard(arrived)
        if not arrived.cancelled():
            accept(arrived.result())
    for future in [f for f in futures if f in pending and f.done() and not f.cancelled()]:
        accept(future.result())  # finished (validated, journaled) before NOW: saved


def _log_cancelled(summary: RunSummary) -> None:
    """One line for every task a stop cancelled, whatever their count (each one cancelled in
    flight has its own line too: a request was closed)."""
    queued = sum(r.cancelled and not r.started for r in summary.results.values())
    in_flight = sum(r.in_flight for r in summary.results.values())
    if queued or in_flight:
        logger.warning("[CANCELLED] %d queued %s not started (%s); %d cancelled in flight",
                       queued, _plural(queued, "task"), stop_reason() or "stopped", in_flight)


class _NoBar:
    """The bar when none is drawn (no terminal, --no-progress): tqdm is not even imported."""

    def update(self, n: int = 1) -> None:
        """A task finished: nothing to draw."""

    def close(self) -> None:
        """The run ended: nothing to clear."""


def _bar(total: int, what: str, shown: bool) -> Any:
    if not shown:
        return _NoBar()
    from tqdm import tqdm  # only a run that draws one pays for the import

    return tqdm(total=total, desc=what, unit="task", file=sys.stderr, leave=False)


def _run_one(work: Callable[[str], T], task_id: str) -> TaskResult[T]:
    """One task on a worker thread: its value, or the exception it raised, never raised."""
    started = time.monotonic()
    result: TaskResult[T] = TaskResult(task_id, worker=thread_label())
    try:
        if STOP.is_set():
            raise Interrupted("stopped before start")
        result.started = True
        result.value = work(task_id)
    except Interrupted as exc:
        result.cancelled, result.error = True, exc
    except Exception as exc:  # one task's failure never stops the others
        result.error = exc
    result.seconds = time.monotonic() - started
    return result


def _log_result(result: TaskResult[T], describe: Callable[[T], str] | None) -> None:
    if result.cancelled:
        # A task cancelled before it began is in the one [CANCELLED] line of the lot.
        emit(TaskFinished(result.task_id, CANCELLED,
                          "cancelled in flight" if result.in_flight else "not started",
                          result.worker, reported_once=not result.in_flight))
    elif result.error is not None:
        # A cause the caller reports once for all its tasks (a server that went away) is not
        # repeated per task, except in debug logs.
        emit(TaskFinished(result.task_id, FAILED, first_line(result.error), result.worker,
                          reported_once=_reported_once(result.error)))
    else:
        status = describe(result.value) if describe else "SUCCESS"
        emit(TaskFinished(result.task_id, COMPLETED, status, result.worker))


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
