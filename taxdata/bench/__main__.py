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

Both LLM steps against a real server (tokens, requests and seconds per country, beside a lean
baseline; see :mod:`taxdata.bench.servers`)::

    python -m taxdata.bench --server http://localhost:8080/v1/chat/completions --countries 4

Exit codes: 0 measured (goals missed are reported, not an error), 1 the benchmark failed
(a call failed, the stand-in did not start), 2 bad arguments or preflight, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import statistics
import sys
import threading
import time
from typing import Any, Callable, Sequence

import requests

from taxdata.bench.measure import PROMPT, make_client, measure_cpu, measure_scaling, profile_cpu
from taxdata.bench.process import BenchError, StandInProcess
from taxdata.bench.report import BenchResult, as_json, report
from taxdata.bench.scenarios import (
    SCENARIO_RUNNERS,
    SCENARIO_TASKS,
    SCENARIOS,
    parse_scenarios,
    scenario_report,
)
from taxdata.clients.llm import LLMError
from taxdata.config import API_DIALECTS, ConfigError, Settings, load_settings
from taxdata.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PreflightError
from taxdata.log import setup_logging

STAND_IN_DEFAULTS = {"tasks": 52, "workers": (1, 2, 4, 8, 16)}
SERVER_DEFAULTS = {"tasks": 16, "workers": (1, 2, 4, 8)}


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
    parser.add_argument("--server", metavar="URL",
                        help="run FIXTURE countries through both LLM steps against this running "
                             "server (any of the three APIs) beside a lean baseline")
    parser.add_argument("--countries", type=_positive_int(1), default=4, metavar="N",
                        help="with --server: FIXTURE countries (default 4, at most 16)")
    parser.add_argument("--article-chars", type=_positive_int(500), default=12000, metavar="C",
                        help="with --server: characters per FIXTURE article, about a cleaned "
                             "Wikipedia taxation article's (default 12000)")
    parser.add_argument("--scenario", type=parse_scenarios, metavar="LIST",
                        help="instead of the clean-server table, run request-layer scenarios "
                             f"against stand-ins: all or some of {', '.join(SCENARIOS)} "
                             f"({SCENARIO_TASKS} tasks each, or --tasks)")
    return parser


def bench_stand_in(args: argparse.Namespace, say: Callable[[str], None]) -> BenchResult:
    n = args.tasks or STAND_IN_DEFAULTS["tasks"]
    workers = args.workers or STAND_IN_DEFAULTS["workers"]
    with StandInProcess(args.latency) as server:
        settings = Settings(llm_url=server.chat_url, llm_api="proxy", max_workers=max(workers))
        probe = make_client(settings, 1)
        try:
            model = probe.preflight()
        finally:
            probe.session.close()
        settings = dataclasses.replace(settings, model=model)
        url = server.chat_url
        say(f"stand-in LLM (own process) at {server.chat_url}, latency {args.latency:g}s, "
            f"unlimited slots; {n} tasks per run")
        runs = measure_scaling(settings, n, workers, args.latency, args.repeat, True, say)
    result = BenchResult(n, args.latency, url, runs)
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
    result.cpu_ms_per_call, result.bare_cpu_ms_per_call = cpu, bare_cpu
    result.cpu_ratio, result.profile = ratio, profile
    return result


def bench_server(args: argparse.Namespace, say: Callable[[str], None]) -> BenchResult:
    n = args.tasks or SERVER_DEFAULTS["tasks"]
    workers = args.workers or SERVER_DEFAULTS["workers"]
    flags = {"llm_url": args.llm_url, "llm_api": args.llm_api, "model": args.model,
             "max_workers": max(workers)}
    settings = load_settings(flags)
    probe = make_client(settings, 1)
    try:
        model = probe.preflight()
        settings = dataclasses.replace(settings, model=model)
        say(f"server {probe.url} ({probe.endpoints[0].dialect.name} API), model {model}; measuring "
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
    return BenchResult(n, latency, settings.llm_url, runs, model=model)


def _server_bench(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    from taxdata.bench.servers import report as server_report
    from taxdata.bench.servers import run_server_bench
    workers = max(args.workers or (4,))
    settings = load_settings({"llm_url": args.server, "llm_api": args.llm_api,
                              "model": args.model, "max_workers": workers})
    if args.countries > 16:
        raise ConfigError("--countries: at most 16 FIXTURE countries")
    bench = run_server_bench(settings, args.countries, args.article_chars, say)
    print(json.dumps(bench.as_json()) if args.json else server_report(bench))
    return EXIT_OK


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
        if args.server:
            return _server_bench(args, say)
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
    if result.profile:
        print(result.profile, file=sys.stderr)
    if args.json:
        print(json.dumps(as_json(result, real)))
    else:
        print(report(result, args, real))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
