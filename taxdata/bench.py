"""Benchmark the LLM client: does it scale with workers, and what does it cost per call?

Default (no server needed)::

    python -m taxdata.bench                      # table
    python -m taxdata.bench --json               # the same as one JSON object on stdout
    python -m taxdata.bench --repeat 3 --profile # best of 3; cProfile of the CPU loop on stderr

It starts the stand-in LLM (:mod:`taxdata.testing.llm_server`) in its own process, so the
server's CPU is not this process's CPU, and for each worker count W runs ``--tasks`` calls
through the real path - :meth:`LLMClient.chat` inside :func:`run_tasks`, logging at INFO into
``os.devnull`` (log formatting is paid for, nothing is shown), no progress bar - alternating with
a bare baseline: one ``requests.Session`` whose pool holds W connections, shared by a plain
``ThreadPoolExecutor`` of W threads, each call ``session.post(url, json=body).json()`` with the
same body to the same URL, and no logging, retries or validation. Then it measures client CPU per
call (``time.process_time``) over ``--cpu-calls`` sequential calls (1 worker) per side against a
second stand-in with zero latency, ours and bare interleaved in chunks so drift hits both.

Against a real server::

    python -m taxdata.bench --llm-url http://localhost:11434/api/chat --model qwen2.5:7b

runs the preflight, sends a short fixed prompt ("Reply with the single word OK.") and reports
where the speedup stops growing: that is the ``TAXDATA_MAX_WORKERS`` worth using with that
server. The bare baseline and the CPU measurement are skipped there (they measure our client,
which the stand-in does best); ``TAXDATA_API_KEY``, ``TAXDATA_TIMEOUT`` etc. apply as usual.

Exit codes: 0 measured (goals missed are reported, not an error), 1 the benchmark failed
(a call failed, the stand-in did not start), 2 bad arguments or preflight, 130 interrupted.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import math
import os
import pstats
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import requests
from requests.adapters import HTTPAdapter

from .config import API_DIALECTS, ConfigError, Settings, load_settings
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .llm import LLMClient, LLMError, PreflightError, gone_note
from .log import setup_logging
from .runner import run_tasks

PROMPT = ({"role": "user", "content": "Reply with the single word OK."},)

STAND_IN_DEFAULTS = {"tasks": 52, "workers": (1, 2, 4, 8, 16)}
SERVER_DEFAULTS = {"tasks": 16, "workers": (1, 2, 4, 8)}

# Goals for our client against the stand-in (unlimited slots).
GOAL_VS_BARE = 0.95
GOAL_SPEEDUP_W, GOAL_SPEEDUP = 4, 3.8
GOAL_CPU_RATIO = 1.5
# "Stops growing": the next worker count adds less than this much speedup.
SCALING_GAIN = 1.10

BARE_DESCRIPTION = ("one requests.Session (pool sized to W) shared by a plain ThreadPoolExecutor "
                    "of W threads; each call session.post(url, json=body).json(); no logging, "
                    "retries or validation")


class BenchError(Exception):
    """The benchmark could not measure (stand-in did not start, a call failed)."""


# -- the stand-in in its own process -------------------------------------------------------------

class StandInProcess:
    """``python -m taxdata.testing.llm_server --port 0 --latency L`` as a child process.

    Use as a context manager: the child is terminated on exit, whatever the exit (error, Ctrl-C).
    """

    def __init__(self, latency: float, startup_timeout: float = 30.0,
                 extra: Sequence[str] = ()) -> None:
        self.latency = latency
        self.startup_timeout = startup_timeout
        self.extra = list(extra)  # more llm_server flags: --capacity 1 --overflow 503 ...
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self._stderr: Any = None

    def __enter__(self) -> "StandInProcess":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def chat_url(self) -> str:
        return self.base_url + "/chat"  # the proxy dialect's path

    def start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"))
                                            if p)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taxdata.testing.llm_server", "--port", "0",
             "--latency", repr(float(self.latency)), *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=env)
        try:
            line = self._first_line()
            match = re.search(r"listening on (https?://\S+)", line)
            if not match:
                raise BenchError(f"stand-in LLM did not say where it listens "
                                 f"(first line {line.strip()!r}){self._stderr_tail()}")
            self.base_url = match.group(1).rstrip("/")
        except BaseException:
            self.stop()
            raise

    def _first_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            raise BenchError(f"stand-in LLM did not start within {self.startup_timeout:g}s"
                             f"{self._stderr_tail()}") from None
        if not line:
            self.proc.wait(timeout=5)
            raise BenchError(f"stand-in LLM exited with code {self.proc.returncode} before "
                             f"listening{self._stderr_tail()}")
        return line

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f": {text[-500:]}" if text else ""

    def kill(self) -> None:
        """The server dies (SIGKILL): connections refused from now on."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


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


def scaling_limit(runs: Sequence[Run]) -> tuple[int, int | None, float | None]:
    """(W where speedup stops growing, next W tried, its gain); next is None if it never stops."""
    for prev, cur in zip(runs, runs[1:]):
        if cur.speedup < prev.speedup * SCALING_GAIN:
            return prev.workers, cur.workers, cur.speedup / prev.speedup
    return runs[-1].workers, None, None


# -- reporting -----------------------------------------------------------------------------------

def goals(runs: Sequence[Run], cpu_ratio: float | None) -> list[dict[str, Any]]:
    rows = []
    with_bare = [r for r in runs if r.vs_bare is not None]
    if with_bare:
        worst = min(with_bare, key=lambda r: r.vs_bare)  # type: ignore[arg-type, return-value]
        rows.append({"goal": f"vs_bare >= {GOAL_VS_BARE} at every W",
                     "measured": f"min {worst.vs_bare:.3f} (W={worst.workers})",
                     "pass": worst.vs_bare >= GOAL_VS_BARE})
    at = [r for r in runs if r.workers == GOAL_SPEEDUP_W]
    if at and runs[0].workers == 1:
        rows.append({"goal": f"speedup >= {GOAL_SPEEDUP} at W={GOAL_SPEEDUP_W}",
                     "measured": f"{at[0].speedup:.2f}", "pass": at[0].speedup >= GOAL_SPEEDUP})
    if cpu_ratio is not None:
        rows.append({"goal": f"CPU per call <= {GOAL_CPU_RATIO}x baseline",
                     "measured": f"{cpu_ratio:.2f}x", "pass": cpu_ratio <= GOAL_CPU_RATIO})
    return rows


def table(runs: Sequence[Run], with_bare: bool) -> str:
    head = f"{'workers':>7}  {'wall_s':>8}  {'speedup':>7}  {'efficiency':>10}"
    if with_bare:
        head += f"  {'bare_wall_s':>11}  {'vs_bare':>7}"
    lines = [head]
    for r in runs:
        line = f"{r.workers:>7}  {r.wall_s:>8.3f}  {r.speedup:>7.2f}  {r.efficiency:>10.3f}"
        if with_bare:
            line += f"  {r.bare_wall_s:>11.3f}  {r.vs_bare:>7.3f}"
        lines.append(line)
    return "\n".join(lines)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


# -- scenarios: busy, several, vanishing and flaky servers ---------------------------------------

SCENARIOS = ("busy", "two-endpoints", "server-gone", "flaky")
SCENARIO_TASKS = 48
SCENARIO_LATENCY = 0.2


@dataclass
class Scenario:
    """One scenario's figures: what was measured, the ideal, the goal and whether it was met."""

    name: str
    setup: str
    figures: dict[str, Any]
    ideal: str
    goal: str
    passed: bool
    endpoints: list[str] = dataclasses.field(default_factory=list)
    note: str | None = None


def _scenario_run(client: LLMClient, n: int, workers: int) -> tuple[float, Any]:
    """(wall seconds, RunSummary) of ``n`` chats on ``workers``; failures are counted, not
    raised."""
    started = time.perf_counter()
    summary = run_tasks(task_ids(n), lambda task_id: client.chat(PROMPT, label=task_id),
                        max_workers=workers, progress=False, what="scenario",
                        clear_stop=True)
    wall = time.perf_counter() - started
    if summary.interrupted:
        raise KeyboardInterrupt
    return wall, summary


def _scenario_client(urls: Sequence[str], workers: int, **changes: Any) -> LLMClient:
    settings = Settings(llm_url=",".join(urls), llm_api="proxy", max_workers=workers,
                        **changes)
    client = make_client(settings, workers)
    client.preflight()
    return client


def _stand_in(latency: float, *flags: str) -> StandInProcess:
    return StandInProcess(latency, extra=flags)


def scenario_busy(n: int, say: Callable[[str], None]) -> Scenario:
    workers, ideal = 4, n * SCENARIO_LATENCY
    setup = (f"{n} tasks, latency {SCENARIO_LATENCY:g}s, 1 slot, overflow 503 + Retry-After: 0, "
             f"W={workers}")
    say(f"busy: {setup}")
    with _stand_in(SCENARIO_LATENCY, "--capacity", "1", "--overflow", "503",
                   "--retry-after", "0") as server:
        client = _scenario_client([server.chat_url], workers)
        try:
            wall, summary = _scenario_run(client, n, workers)
        finally:
            client.session.close()
    ratio = wall / ideal
    return Scenario("busy", setup, {"failed": len(summary.failed), "wall_s": round(wall, 3),
                                    "wall_vs_ideal": round(ratio, 3)},
                    f"{n} x {SCENARIO_LATENCY:g}s = {ideal:.1f}s (one slot, back to back)",
                    "0 failed, wall <= 1.25x ideal",
                    not summary.failed and ratio <= 1.25, client.endpoint_summary())


def scenario_two_endpoints(n: int, say: Callable[[str], None]) -> Scenario:
    workers = 8
    flags = ("--capacity", "2", "--overflow", "503")
    setup = (f"{n} tasks, latency {SCENARIO_LATENCY:g}s, servers with 2 slots each "
             f"(overflow 503), W={workers}")
    say(f"two-endpoints: {setup}")
    with _stand_in(SCENARIO_LATENCY, *flags) as one, _stand_in(SCENARIO_LATENCY, *flags) as two:
        single = _scenario_client([one.chat_url], workers)
        try:
            single_wall, single_summary = _scenario_run(single, n, workers)
        finally:
            single.session.close()
        both = _scenario_client([one.chat_url, two.chat_url], workers)
        try:
            both_wall, both_summary = _scenario_run(both, n, workers)
        finally:
            both.session.close()
    # Again with fresh servers; one of them is killed a third of the way into the run.
    with _stand_in(SCENARIO_LATENCY, *flags) as one, _stand_in(SCENARIO_LATENCY, *flags) as two:
        killed = _scenario_client([one.chat_url, two.chat_url], workers)
        kill_at = both_wall / 3
        timer = threading.Timer(kill_at, two.kill)
        timer.start()
        try:
            killed_wall, killed_summary = _scenario_run(killed, n, workers)
        finally:
            timer.cancel()
            killed.session.close()
    throughput = single_wall / both_wall
    failed = len(both_summary.failed) + len(single_summary.failed)
    return Scenario(
        "two-endpoints", setup,
        {"one_server_wall_s": round(single_wall, 3), "two_servers_wall_s": round(both_wall, 3),
         "throughput_vs_one": round(throughput, 3), "failed": failed,
         "one_killed_at_s": round(kill_at, 2), "one_killed_wall_s": round(killed_wall, 3),
         "one_killed_failed": len(killed_summary.failed)},
        f"2.0x one server ({n}/2 x {SCENARIO_LATENCY:g}s = {n / 2 * SCENARIO_LATENCY:.1f}s "
        f"on one, {n / 4 * SCENARIO_LATENCY:.1f}s on two)",
        "0 failed, throughput >= 1.8x one server; one killed mid-run: 0 failed",
        failed == 0 and throughput >= 1.8 and not killed_summary.failed,
        both.endpoint_summary() + [f"(one killed) {line}" for line in killed.endpoint_summary()])


def scenario_server_gone(n: int, say: Callable[[str], None]) -> Scenario:
    workers, death = 4, 1.5
    setup = (f"{n} tasks, latency {SCENARIO_LATENCY:g}s, W={workers}, the server is killed "
             f"{death:g}s into the run (TAXDATA_BREAKER_WAIT={Settings.breaker_wait:g}s)")
    say(f"server-gone: {setup}")
    with _stand_in(SCENARIO_LATENCY) as server:
        client = _scenario_client([server.chat_url], workers)
        timer = threading.Timer(death, server.kill)
        started = time.perf_counter()
        timer.start()
        try:
            wall, summary = _scenario_run(client, n, workers)
        finally:
            timer.cancel()
            client.session.close()
    after_death = time.perf_counter() - started - death
    note = gone_note(client, (r.error for r in summary.results.values()), "tasks")
    lines = [line for line in (note,) if line]
    ok = (after_death <= 20 and len(summary.failed) > 0 and len(summary.succeeded) > 0
          and len(lines) == 1)
    return Scenario("server-gone", setup,
                    {"run_ends_after_death_s": round(after_death, 2),
                     "finished": len(summary.succeeded), "failed": len(summary.failed),
                     "exit_code": EXIT_FAILED if summary.failed else EXIT_OK},
                    "the breaker's wait, then everything left fails at once",
                    "run ends <= 20s after the death, exit 1, one clear line, finished kept",
                    ok, client.endpoint_summary(), note)


def scenario_flaky(n: int, say: Callable[[str], None]) -> Scenario:
    workers = 4
    setup = (f"{n} tasks, latency {SCENARIO_LATENCY:g}s, W={workers}, 30% of replies HTTP 200 "
             "with a body that is not API JSON")
    say(f"flaky: {setup}")
    with _stand_in(SCENARIO_LATENCY, "--garbage-rate", "0.3", "--seed", "7") as server:
        client = _scenario_client([server.chat_url], workers)
        try:
            wall, summary = _scenario_run(client, n, workers)
        finally:
            client.session.close()
    return Scenario("flaky", setup, {"failed": len(summary.failed), "wall_s": round(wall, 3)},
                    "0 failed (each task fails only if 5 attempts in a row are garbage: "
                    f"0.3^5 x {n} = {0.3 ** 5 * n:.2f} expected)",
                    "at most 1 failed", len(summary.failed) <= 1, client.endpoint_summary())


SCENARIO_RUNNERS = {"busy": scenario_busy, "two-endpoints": scenario_two_endpoints,
                    "server-gone": scenario_server_gone, "flaky": scenario_flaky}


def scenario_report(results: Sequence[Scenario]) -> str:
    out = ["taxdata request-layer scenarios - stand-in LLM servers in their own processes; "
           "default settings (TAXDATA_MAX_RETRIES=4, TAXDATA_RETRY_DEADLINE=300, adaptive "
           "concurrency on)"]
    for result in results:
        out.append("")
        out.append(f"{result.name}: {result.setup}")
        out.append("  measured: " + ", ".join(f"{k} {v}" for k, v in result.figures.items()))
        out.append(f"  ideal:    {result.ideal}")
        out.append(f"  goal:     {result.goal:<60} {'PASS' if result.passed else 'MISS'}")
        if result.note:
            out.append(f"  line:     {result.note}")
        for line in result.endpoints:
            out.append(f"  endpoint: {line}")
    return "\n".join(out)


def _scenarios(text: str) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return SCENARIOS
    unknown = [name for name in names if name not in SCENARIOS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"must be all or a comma-separated list of "
                                         f"{', '.join(SCENARIOS)}")
    return tuple(dict.fromkeys(names))


# -- command line --------------------------------------------------------------------------------

def _workers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be comma-separated whole numbers, e.g. 1,2,4,8") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("must be comma-separated whole numbers >= 1")
    return tuple(sorted(set(values)))


def _positive_int(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("must be a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return parse


def _latency(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be seconds, e.g. 0.1") from None
    if not 0 < value <= 60:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 60 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m taxdata.bench",
        description="Measure how the LLM client scales with workers and what it costs per call.")
    parser.add_argument("--tasks", type=_positive_int(1), metavar="N",
                        help="calls per timed run (default 52; 16 with --llm-url)")
    parser.add_argument("--workers", type=_workers, metavar="LIST",
                        help="worker counts (default 1,2,4,8,16; 1,2,4,8 with --llm-url)")
    parser.add_argument("--latency", type=_latency, default=0.1, metavar="S",
                        help="stand-in seconds per reply (default 0.1; stand-in only)")
    parser.add_argument("--cpu-calls", type=_positive_int(0), default=2000, metavar="N",
                        help="sequential zero-latency calls for CPU per call (default 2000; "
                             "0 skips; stand-in only)")
    parser.add_argument("--repeat", type=_positive_int(1), default=1, metavar="K",
                        help="time each configuration K times, keep the best (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--profile", type=_positive_int(1), nargs="?", const=25, metavar="TOP",
                        help="also cProfile the CPU loop; top TOP entries to stderr (default 25; "
                             "stand-in only)")
    parser.add_argument("--llm-url", metavar="URL",
                        help="measure this real server instead of the stand-in")
    parser.add_argument("--llm-api", choices=("auto", *API_DIALECTS),
                        help="API dialect of --llm-url (default auto: from the URL)")
    parser.add_argument("--model", help="model for --llm-url (default: the server's first)")
    parser.add_argument("--scenario", type=_scenarios, metavar="LIST",
                        help="instead of the clean-server table, run request-layer scenarios "
                             f"against stand-ins: all or some of {', '.join(SCENARIOS)} "
                             f"({SCENARIO_TASKS} tasks each, or --tasks)")
    return parser


def bench_stand_in(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    n = args.tasks or STAND_IN_DEFAULTS["tasks"]
    workers = args.workers or STAND_IN_DEFAULTS["workers"]
    result: dict[str, Any] = {"tasks": n, "latency_s": args.latency}
    with StandInProcess(args.latency) as server:
        settings = Settings(llm_url=server.chat_url, llm_api="proxy", max_workers=max(workers))
        probe = make_client(settings, 1)
        try:
            model = probe.preflight()
        finally:
            probe.session.close()
        settings = dataclasses.replace(settings, model=model)
        result["url"] = server.chat_url
        say(f"stand-in LLM (own process) at {server.chat_url}, latency {args.latency:g}s, "
            f"unlimited slots; {n} tasks per run")
        runs = measure_scaling(settings, n, workers, args.latency, args.repeat, True, say)
    result["runs"] = runs
    cpu = bare_cpu = ratio = None
    profile = None
    if args.cpu_calls:
        with StandInProcess(0.0) as server:
            settings = dataclasses.replace(settings, llm_url=server.chat_url)
            say(f"CPU per call: {args.cpu_calls} sequential calls to a stand-in with latency 0")
            cpu, bare_cpu = measure_cpu(settings, args.cpu_calls, args.repeat)
            ratio = cpu / bare_cpu
            if args.profile:
                profile = profile_cpu(settings, args.cpu_calls, args.profile)
    result.update(cpu_ms_per_call=cpu, bare_cpu_ms_per_call=bare_cpu, cpu_ratio=ratio,
                  profile=profile)
    return result


def bench_server(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    n = args.tasks or SERVER_DEFAULTS["tasks"]
    workers = args.workers or SERVER_DEFAULTS["workers"]
    flags = {"llm_url": args.llm_url, "llm_api": args.llm_api, "model": args.model,
             "max_workers": max(workers)}
    settings = load_settings(flags)
    probe = make_client(settings, 1)
    try:
        model = probe.preflight()
        settings = dataclasses.replace(settings, model=model)
        say(f"server {settings.llm_url} ({settings.llm_api} API), model {model}; measuring "
            "latency with sequential calls (the first one may load the model)")
        probe.chat(PROMPT)  # model load, connection: not timed
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            probe.chat(PROMPT)
            seconds.append(time.perf_counter() - started)
    finally:
        probe.session.close()
    latency = statistics.median(seconds)
    say(f"one call takes {latency:.3f}s; {n} tasks per run")
    runs = measure_scaling(settings, n, workers, latency, args.repeat, False, say)
    return {"tasks": n, "latency_s": latency, "url": settings.llm_url, "model": model,
            "runs": runs, "cpu_ms_per_call": None, "bare_cpu_ms_per_call": None,
            "cpu_ratio": None, "profile": None}


def report(result: dict[str, Any], args: argparse.Namespace, real: bool) -> str:
    runs: list[Run] = result["runs"]
    n, latency = result["tasks"], result["latency_s"]
    out = []
    if real:
        out.append(f"taxdata LLM client benchmark - server {result['url']}, model "
                   f"{result['model']}, short fixed prompt")
        out.append(f"{n} calls per run, best of {args.repeat}; one call alone takes "
                   f"{latency:.3f}s (median of 3 sequential calls), the ideal ceil(N/W) x that")
    else:
        out.append(f"taxdata LLM client benchmark - stand-in LLM in its own process at "
                   f"{result['url']}, latency {latency:g}s, unlimited slots")
        out.append(f"{n} calls per run, best of {args.repeat}, warm-up max(W,3) calls per "
                   f"configuration; ideal wall = ceil(N/W) x {latency:g}s")
        out.append("ours: LLMClient.chat inside run_tasks, INFO logs formatted into os.devnull, "
                   "no progress bar")
        out.append(f"bare: {BARE_DESCRIPTION}")
    base = runs[0].workers
    out.append(f"speedup is vs W={base}"
               + "; efficiency = ideal / wall" + ("; vs_bare = bare_wall / our wall "
                                                  "(our throughput relative to bare)"
                                                  if not real else ""))
    out.append("")
    out.append(table(runs, with_bare=not real))
    if real:
        out.append("")
        out.append("(no bare baseline against a real server: its time per call is the model's, "
                   "not the client's; the client's overhead is measured against the stand-in, "
                   "run python -m taxdata.bench without --llm-url)")
    limit, nxt, gain = scaling_limit(runs)
    out.append("")
    if nxt is None:
        out.append(f"speedup still growing at W={limit} (the most tried); try higher --workers")
    else:
        out.append(f"speedup stops growing at W={limit} (W={nxt} adds {100 * (gain - 1):+.0f}%, "
                   f"under {100 * (SCALING_GAIN - 1):.0f}%)"
                   + (f": TAXDATA_MAX_WORKERS={limit} is the most worth using with this server"
                      if real else ""))
    if result["cpu_ms_per_call"] is not None:
        out.append("")
        out.append(f"client CPU per call ({args.cpu_calls} sequential calls, stand-in latency 0, "
                   "time.process_time of this process):")
        out.append(f"  ours {result['cpu_ms_per_call']:.3f} ms   bare "
                   f"{result['bare_cpu_ms_per_call']:.3f} ms   ratio {result['cpu_ratio']:.2f}x")
    if not real:
        out.append("")
        out.append("goals:")
        for row in goals(runs, result["cpu_ratio"]):
            mark = "PASS" if row["pass"] else "MISS"
            out.append(f"  {row['goal']:<32} {row['measured']:<20} {mark}")
    return "\n".join(out)


def as_json(result: dict[str, Any], real: bool) -> dict[str, Any]:
    runs = [{"workers": r.workers, "wall_s": _round(r.wall_s), "speedup": _round(r.speedup, 3),
             "efficiency": _round(r.efficiency, 3), "bare_wall_s": _round(r.bare_wall_s),
             "vs_bare": _round(r.vs_bare, 3)} for r in result["runs"]]
    limit, nxt, _ = scaling_limit(result["runs"])
    data = {"tasks": result["tasks"], "latency_s": _round(result["latency_s"]), "runs": runs,
            "cpu_ms_per_call": _round(result["cpu_ms_per_call"]),
            "bare_cpu_ms_per_call": _round(result["bare_cpu_ms_per_call"]),
            "cpu_ratio": _round(result["cpu_ratio"], 3),
            "mode": "server" if real else "stand-in", "url": result["url"],
            "speedup_stops_growing_at": limit if nxt is not None else None}
    if real:
        data["model"] = result["model"]
    else:
        data["goals"] = [{"goal": g["goal"], "measured": g["measured"], "pass": g["pass"]}
                         for g in goals(result["runs"], result["cpu_ratio"])]
    return data


_DEVNULL: Any = None


def _devnull() -> Any:
    global _DEVNULL
    if _DEVNULL is None or _DEVNULL.closed:
        _DEVNULL = open(os.devnull, "w")
    return _DEVNULL


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    real = bool(args.llm_url)

    def say(text: str) -> None:  # progress notes: stderr, so stdout is only the result
        print(text, file=sys.stderr, flush=True)

    # Log formatting is part of the cost being measured; the lines go nowhere.
    setup_logging("INFO", stream=_devnull())
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        # Terminated: unwind (so the stand-in child is stopped too) instead of dying at once.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.scenario:
            if real:
                parser.error("--scenario runs against stand-ins; it cannot be combined with "
                             "--llm-url")
            scenarios = [SCENARIO_RUNNERS[name](args.tasks or SCENARIO_TASKS, say)
                         for name in args.scenario]
            if args.json:
                print(json.dumps({"mode": "scenarios", "scenarios": [
                    dataclasses.asdict(result) for result in scenarios]}))
            else:
                print(scenario_report(scenarios))
            return EXIT_OK
        result = bench_server(args, say) if real else bench_stand_in(args, say)
    except (ConfigError, PreflightError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BenchError, LLMError, requests.RequestException) as exc:
        print(f"{parser.prog}: benchmark failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    if result.get("profile"):
        print(result["profile"], file=sys.stderr)
    if args.json:
        print(json.dumps(as_json(result, real)))
    else:
        print(report(result, args, real))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
