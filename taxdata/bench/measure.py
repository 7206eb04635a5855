"""Measuring the LLM client: ours (LLMClient.chat inside run_tasks) against a bare baseline, wall
time per worker count and client CPU per call."""

from __future__ import annotations

import cProfile
import dataclasses
import io
import math
import pstats
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import requests
from requests.adapters import HTTPAdapter

from taxdata.bench.process import BenchError
from taxdata.clients.llm import LLMClient
from taxdata.config import Settings
from taxdata.runner import run_tasks

PROMPT = ({"role": "user", "content": "Reply with the single word OK."},)

BARE_DESCRIPTION = ("one requests.Session (pool sized to W) shared by a plain ThreadPoolExecutor "
                    "of W threads; each call session.post(url, json=body).json(); no logging, "
                    "retries or validation")

# -- the two clients ---------------------------------------------------------------------------

def task_ids(n: int) -> list[str]:
    return [f"task-{i:05d}" for i in range(n)]


def run_ours(client: LLMClient, n: int, workers: int,
             wrap: Callable[[Callable[[str], Any]], Callable[[str], Any]] | None = None) -> float:
    """Wall seconds for ``n`` calls of ``client.chat`` inside ``run_tasks`` on ``workers``."""
    def work(task_id: str) -> Any:
        return client.chat(PROMPT, label=task_id)

    started = time.perf_counter()
    summary = run_tasks(task_ids(n), wrap(work) if wrap else work, max_workers=workers,
                        progress=False, what="benchmark", clear_stop=True)
    wall = time.perf_counter() - started
    if summary.interrupted:
        raise KeyboardInterrupt
    failed = summary.failed
    if failed:
        error = summary.results[failed[0]].error
        raise BenchError(f"{len(failed)} of {n} calls failed; first: {error}")
    return wall


class BareClient:
    """The baseline: see :data:`BARE_DESCRIPTION`."""

    def __init__(self, url: str, body: dict, workers: int) -> None:
        self.url, self.body, self.workers = url, body, workers
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_maxsize=workers)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def call(self, _: object = None) -> Any:
        return self.session.post(self.url, json=self.body, timeout=(10, 300)).json()

    def run(self, n: int, workers: int | None = None) -> float:
        started = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=workers or self.workers)
        try:
            list(pool.map(self.call, range(n)))  # wait for every call
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return time.perf_counter() - started

    def close(self) -> None:
        self.session.close()


def make_client(settings: Settings, workers: int) -> LLMClient:
    """Our client as a script run with ``TAXDATA_MAX_WORKERS=W`` builds it (``from_settings``)."""
    return LLMClient.from_settings(dataclasses.replace(settings, max_workers=workers),
                                   pool_size=workers)


def request_body(client: LLMClient) -> dict:
    """The exact body ``client.chat(PROMPT)`` posts (no schema)."""
    return client.endpoints[0].dialect.body(client.model, PROMPT, client.temperature, None, None,
                                            "response", client.max_tokens)


# -- measuring -----------------------------------------------------------------------------------

@dataclass
class Run:
    workers: int
    wall_s: float
    speedup: float = 0.0
    efficiency: float = 0.0
    bare_wall_s: float | None = None
    vs_bare: float | None = None


def warm_count(workers: int) -> int:
    # One call per worker opens every pooled connection; at least a few for W=1.
    return max(workers, 3)


def measure_scaling(settings: Settings, n: int, workers_list: Sequence[int], latency: float,
                    repeat: int, with_bare: bool, say: Callable[[str], None]) -> list[Run]:
    runs = []
    for workers in workers_list:
        client = make_client(settings, workers)
        bare = BareClient(client.url, request_body(client), workers) if with_bare else None
        try:
            run_ours(client, warm_count(workers), workers)
            if bare is not None:
                bare.run(warm_count(workers))
            ours_walls, bare_walls = [], []
            for r in range(repeat):
                # Alternate, and swap the order each repeat, so drift hits both alike.
                order = ("ours", "bare") if r % 2 == 0 else ("bare", "ours")
                for which in order:
                    if which == "ours":
                        ours_walls.append(run_ours(client, n, workers))
                    elif bare is not None:
                        bare_walls.append(bare.run(n))
        finally:
            client.session.close()
            if bare is not None:
                bare.close()
        run = Run(workers, min(ours_walls))
        if bare_walls:
            run.bare_wall_s = min(bare_walls)
            run.vs_bare = run.bare_wall_s / run.wall_s
        run.efficiency = math.ceil(n / workers) * latency / run.wall_s
        runs.append(run)
        say(f"  W={workers}: ours {run.wall_s:.3f}s"
            + (f", bare {run.bare_wall_s:.3f}s" if run.bare_wall_s is not None else ""))
    base = runs[0]
    for run in runs:
        run.speedup = base.wall_s / run.wall_s
    return runs


CPU_CHUNKS = 10


def measure_cpu(settings: Settings, calls: int, repeat: int) -> tuple[float, float]:
    """(ours, bare) client CPU milliseconds per call, sequential, best of ``repeat``.

    The ``calls`` of each side are interleaved in chunks (ours, bare, bare, ours, ...), so a
    neighbour's load or a frequency change lands on both sides alike; CPU is summed per side.
    """
    client = make_client(settings, 1)
    bare = BareClient(client.url, request_body(client), 1)
    sizes = [calls // CPU_CHUNKS + (1 if i < calls % CPU_CHUNKS else 0)
             for i in range(CPU_CHUNKS)]
    sizes = [size for size in sizes if size]
    ours_ms, bare_ms = [], []
    try:
        run_ours(client, 20, 1)
        bare.run(20)
        for _ in range(repeat):
            spent = {"ours": 0.0, "bare": 0.0}
            for i, size in enumerate(sizes):
                for which in (("ours", "bare") if i % 2 == 0 else ("bare", "ours")):
                    started = time.process_time()
                    if which == "ours":
                        run_ours(client, size, 1)
                    else:
                        bare.run(size)
                    spent[which] += time.process_time() - started
            ours_ms.append(spent["ours"] * 1000 / calls)
            bare_ms.append(spent["bare"] * 1000 / calls)
    finally:
        client.session.close()
        bare.close()
    return min(ours_ms), min(bare_ms)


def profile_cpu(settings: Settings, calls: int, top: int) -> str:
    """cProfile (per-thread CPU clock) of ``calls`` sequential calls: ours, then bare.

    cProfile sees one thread at a time, so the main thread (``run_tasks``: submitting, collecting,
    the [COMPLETED] lines) and the worker thread (each ``chat()``) get their own profilers,
    merged into one report. Worker-pool plumbing outside ``chat()`` is not included.
    """
    out = io.StringIO()
    client = make_client(settings, 1)
    bare = BareClient(client.url, request_body(client), 1)
    try:
        run_ours(client, 20, 1)
        bare.run(20)
        main_prof = cProfile.Profile(time.thread_time)
        worker_prof = cProfile.Profile(time.thread_time)

        def wrap(work: Callable[[str], Any]) -> Callable[[str], Any]:
            def profiled(task_id: str) -> Any:
                worker_prof.enable()
                try:
                    return work(task_id)
                finally:
                    worker_prof.disable()
            return profiled

        main_prof.enable()
        try:
            run_ours(client, calls, 1, wrap=wrap)
        finally:
            main_prof.disable()
        stats = pstats.Stats(main_prof, stream=out)
        stats.add(worker_prof)
        out.write(f"== ours: {calls} calls of LLMClient.chat in run_tasks(max_workers=1), "
                  f"thread CPU time, by own time ==\n")
        stats.sort_stats("tottime").print_stats(top)
        out.write("== ours, by cumulative time ==\n")
        stats.sort_stats("cumulative").print_stats(top)

        bare_prof = cProfile.Profile(time.thread_time)
        bare_prof.enable()
        try:
            for _ in range(calls):
                bare.call()
        finally:
            bare_prof.disable()
        out.write(f"== bare: {calls} calls of session.post(...).json() (in the main thread), "
                  f"by own time ==\n")
        pstats.Stats(bare_prof, stream=out).sort_stats("tottime").print_stats(top)
    finally:
        client.session.close()
        bare.close()
    return out.getvalue()
