"""Benchmark the whole updater at scale, paired with a bare requests + threads loop in the same run.

    python -m taxdata.bench.scale                                # 500,2000,5000 x -w 16,32
    python -m taxdata.bench.scale --countries 500 --workers 16 --repeat 3
    python -m taxdata.bench.scale --countries 200 --json

For each size it builds a throw-away data directory of generated FIXTURE countries (the
registry and taxation files of :mod:`taxdata.bench.persistence`: made-up names, ISO code ``XX``,
currency ``XXX``, no real tax data) and starts the stand-in LLM (rules responder, every figure a
made-up FIXTURE, ``--latency`` seconds before the first token, replies streamed). Then, for each
worker count W:

1. the updater fills the dataset (not timed);
2. the updater re-extracts every country (``--force``), a process of its own: wall, CPU (user +
   sys, from the kernel's accounting of the child), peak RSS (its ``VmHWM``, polled), the
   persisting's share of the wall (its ``[PERSIST]`` line); the request bodies it sent are
   captured by the stand-in;
3. the bare loop (:mod:`taxdata.bench.bareloop`, a process of its own) posts those same bodies to
   the same stand-in with W threads and reads every streamed reply to its end: wall, CPU, RSS;
4. an unchanged re-run (nothing to send): wall, and that it sent nothing.

The ideal is ``ceil(N / W) x latency`` (the workers kept busy, the program free; start-up is not
in it, it is printed beside: an unchanged run of a one-country data directory). Steps 2 and 3
alternate ``--repeat`` times. The best of each side is printed (other load only adds), and
beside it the median of each forced run's CPU over the bare run's right after it ("paired"):
on a shared VM a neighbour's load comes and goes over minutes, and the two runs of a pair share
it, where the best of each side may come from different minutes. The ``steal`` column says how
much CPU the hypervisor gave other guests meanwhile. Goal: the updater's CPU per country at most
1.5x the bare loop's, paired.

Exit codes: 0 measured (a missed goal is reported, not an error), 1 a run failed, 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taxdata.bench.persistence import _PERSIST, _sizes, fixture_reply, prepare
from taxdata.bench.process import UPDATER_COMMAND
from taxdata.errors import EXIT_FAILED, EXIT_OK
from taxdata.testing.llm_server import StandInLLM, is_probe

CPU_GOAL = 1.5  # the updater's CPU per country over the bare loop's, at most


@dataclass(frozen=True)
class Run:
    """One process: wall seconds, CPU seconds (user + sys), peak RSS in MB, its stderr."""

    wall: float
    cpu: float
    rss_mb: float
    stderr: str


def _peak_rss_mb(pid: int) -> float | None:
    """The process's own peak RSS (``VmHWM``), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def _watch_rss(pid: int, done: threading.Event, peak: list[float]) -> None:
    # wait4's ru_maxrss would do, but Linux carries the parent's peak into a child at exec (and
    # this process holds the stand-in's history): the child's own VmHWM, read until it exits.
    while not done.is_set():
        value = _peak_rss_mb(pid)
        if value is not None:
            peak[0] = max(peak[0], value)
        done.wait(0.02)


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) ticks of the machine's CPUs so far (``/proc/stat``), or None elsewhere.
    Steal is time the hypervisor gave other guests while this one had work: on a shared VM it
    is what makes two runs of the same code differ."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the CPU time between two :func:`cpu_ticks` that was stolen."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def run_process(command: list[str], env: dict[str, str], cwd: Path) -> Run:
    """Run ``command`` to its end: wall, CPU (``wait4``), peak RSS; RuntimeError on failure."""
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=errors, text=True)
        done, peak = threading.Event(), [0.0]
        watcher = threading.Thread(target=_watch_rss, args=(proc.pid, done, peak), daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        text = errors.read()
    if proc.returncode != 0:
        last = (text.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(command[-4:])} exited {proc.returncode}: {last}")
    return Run(wall, usage.ru_utime + usage.ru_stime, peak[0], text)


def _updater(env: dict[str, str], url: str, *args: str) -> Run:
    # --no-list-reference: the runs measure the client, never a fetch of Wikipedia's list page.
    return run_process([*UPDATER_COMMAND, "--no-progress", "--no-list-reference", *args],
                       {**env, "TAXDATA_LLM_URL": url}, Path(env["TAXDATA_DATA_DIR"]).parent)


def _bare(env: dict[str, str], url: str, bodies: Path, workers: int) -> Run:
    command = [sys.executable, "-m", "taxdata.bench.bareloop", str(bodies), url, str(workers)]
    return run_process(command, env, Path(env["TAXDATA_DATA_DIR"]).parent)


def _country_bodies(server: StandInLLM, since: int) -> list[dict]:
    return [body for body in server.chats[since:] if not is_probe(body)]


def _persisting(run: Run) -> float:
    match = _PERSIST.search(run.stderr)
    return sum(map(float, match.groups())) if match else float("nan")


def measure(server: StandInLLM, count: int, workers: int, latency: float,
            repeat: int) -> dict[str, Any]:
    """One size at one worker count (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="taxdata-bench-scale-") as tmp:
        root = Path(tmp)
        env = prepare(root, count)
        url = server.url("proxy")
        _updater(env, url, "-w", str(workers))
        ours: list[Run] = []
        bare: list[Run] = []
        ticks = cpu_ticks()
        for _ in range(repeat):
            since = len(server.history)
            ours.append(_updater(env, url, "-w", str(workers), "--force"))
            bodies = _country_bodies(server, since)
            if len(bodies) != count:
                raise RuntimeError(f"expected {count} requests, got {len(bodies)}")
            captured = root / "bodies.jsonl"
            captured.write_text("".join(json.dumps(body) + "\n" for body in bodies),
                                encoding="utf-8")
            bare.append(_bare(env, url, captured, workers))
        stolen = steal_share(ticks, cpu_ticks())
        since = len(server.history)
        unchanged = _updater(env, url, "-w", str(workers))
        if len(server.history) != since:
            raise RuntimeError("the unchanged re-run sent requests")
    best, floor = min(ours, key=lambda r: r.wall), min(bare, key=lambda r: r.wall)
    cpu, bare_cpu = min(r.cpu for r in ours), min(r.cpu for r in bare)
    # Each forced run over the bare run right after it: the two share the machine's load of
    # that minute (a neighbour's comes and goes), where the best of each side may not.
    paired = statistics.median(o.cpu / b.cpu for o, b in zip(ours, bare))
    ideal = math.ceil(count / workers) * latency
    return {"countries": count, "workers": workers, "latency_s": latency, "repeat": repeat,
            "ideal_s": round(ideal, 3), "wall_s": round(best.wall, 3),
            "wall_over_ideal": round(best.wall / ideal, 3) if ideal else None,
            "bare_wall_s": round(floor.wall, 3), "wall_over_bare": round(best.wall / floor.wall, 3),
            "cpu_s": round(cpu, 3), "bare_cpu_s": round(bare_cpu, 3),
            "cpu_ms_per_country": round(1000 * cpu / count, 3),
            "bare_cpu_ms_per_country": round(1000 * bare_cpu / count, 3),
            "cpu_over_bare": round(cpu / bare_cpu, 3), "paired_cpu_over_bare": round(paired, 3),
            "rss_mb": round(max(r.rss_mb for r in ours), 1),
            "bare_rss_mb": round(max(r.rss_mb for r in bare), 1),
            "persist_share": round(_persisting(best) / best.wall, 4),
            "unchanged_s": round(unchanged.wall, 3), "unchanged_cpu_s": round(unchanged.cpu, 3),
            "steal_share": None if stolen is None else round(stolen, 4),
            "met": paired <= CPU_GOAL}


def measure_startup(server: StandInLLM) -> Run:
    """An unchanged run of a one-country data directory: the start-up the ideal leaves out."""
    with tempfile.TemporaryDirectory(prefix="taxdata-bench-startup-") as tmp:
        env = prepare(Path(tmp), 1)
        _updater(env, server.url("proxy"), "-w", "1")
        return min((_updater(env, server.url("proxy"), "-w", "1") for _ in range(3)),
                   key=lambda r: r.wall)


def print_table(startup: Run, results: list[dict[str, Any]]) -> None:
    first = results[0]
    print(f"Scale benchmark: FIXTURE countries, stand-in latency {first['latency_s']} s, streamed "
          f"replies, best of {first['repeat']}; start-up (unchanged 1-country run) "
          f"{startup.wall:.2f} s wall, {startup.cpu:.2f} s CPU")
    print("      N   W   wall  ideal  wall/ideal  bare wall  ours/bare   CPU ours (bare)  "
          "ms/country ours (bare)  CPU x  paired  RSS MB ours (bare)  persist  unchanged  steal")
    for r in results:
        print(f"  {r['countries']:5,} {r['workers']:3}  {r['wall_s']:5.2f}s {r['ideal_s']:5.2f}s"
              f"  {r['wall_over_ideal']:9.2f}x  {r['bare_wall_s']:8.2f}s"
              f"  {r['wall_over_bare']:8.2f}x"
              f"  {r['cpu_s']:6.2f}s ({r['bare_cpu_s']:5.2f})"
              f"  {r['cpu_ms_per_country']:11.2f} ({r['bare_cpu_ms_per_country']:5.2f})"
              f"  {r['cpu_over_bare']:4.2f}x  {r['paired_cpu_over_bare']:5.2f}x"
              f"  {r['rss_mb']:9.0f} ({r['bare_rss_mb']:4.0f})"
              f"  {r['persist_share']:7.1%}  {r['unchanged_s']:6.2f}s"
              f"  {_share(r['steal_share'])}")
    missed = [f"{r['countries']}/W{r['workers']}" for r in results if not r["met"]]
    print("  steal: the CPU time the hypervisor gave other guests during the forced and bare "
          "runs (a shared VM; the higher, the noisier the CPU columns)")
    print("  CPU x: the best forced run's CPU over the best bare run's; paired: the median of "
          "each forced run's CPU over the bare run's right after it (the goal's measure)")
    print(f"  goal: CPU per country at most {CPU_GOAL}x the bare loop's (paired): "
          + ("met at every size" if not missed else "MISSED at " + ", ".join(missed)))


def _share(value: float | None) -> str:
    return "  n/a" if value is None else f"{value:5.1%}"


def _counts(text: str) -> list[int]:
    return _sizes(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxdata.bench.scale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--countries", type=_sizes, default=[500, 2000, 5000], metavar="N[,N...]",
                        help="generated FIXTURE countries (default 500,2000,5000)")
    parser.add_argument("-w", "--workers", type=_counts, default=[16, 32], metavar="W[,W...]",
                        help="updater (and bare loop) threads (default 16,32)")
    parser.add_argument("--latency", type=float, default=0.05, metavar="S",
                        help="stand-in seconds before a reply's first token (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="forced and bare runs per size; the best counts (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.latency <= 0:
        parser.error("--repeat must be at least 1, --latency above 0")
    server = StandInLLM(latency=args.latency)
    server.responder = fixture_reply
    server.start()
    try:
        startup = measure_startup(server)
        results = [measure(server, count, workers, args.latency, args.repeat)
                   for count in args.countries for workers in args.workers]
    except RuntimeError as exc:
        print(f"bench_scale: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        server.stop()
    if args.json:
        for result in results:
            print(json.dumps({**result, "startup_s": round(startup.wall, 3)}))
        return EXIT_OK
    print_table(startup, results)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
