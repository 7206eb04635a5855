"""Reporting the benchmark: where scaling stops, the goals, the table, the text and JSON reports."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Sequence

from taxdata.bench.measure import BARE_DESCRIPTION, Run


@dataclass
class BenchResult:
    """What one clean-server benchmark measured (against the stand-in or a real server)."""

    tasks: int
    latency_s: float
    url: str
    runs: list[Run]
    model: str | None = None  # real servers only
    cpu_ms_per_call: float | None = None  # the stand-in only, with --cpu-calls
    bare_cpu_ms_per_call: float | None = None
    cpu_ratio: float | None = None
    profile: str | None = None  # --profile: the cProfile text


@dataclass
class Goal:
    goal: str
    measured: str
    passed: bool


# Goals for our client against the stand-in (unlimited slots).
GOAL_VS_BARE = 0.95
GOAL_SPEEDUP_W, GOAL_SPEEDUP = 4, 3.8
GOAL_CPU_RATIO = 1.5
# "Stops growing": the next worker count adds less than this much speedup.
SCALING_GAIN = 1.10


def scaling_limit(runs: Sequence[Run]) -> tuple[int, int | None, float | None]:
    """(W where speedup stops growing, next W tried, its gain); next is None if it never stops.

    Judged on the figures as printed (speedups to two decimals, the gain in whole percent), so
    the sentence never contradicts the table or itself ("+10%, under 10%").
    """
    for prev, cur in zip(runs, runs[1:]):
        gain = round(cur.speedup, 2) / round(prev.speedup, 2)
        if round(100 * (gain - 1)) < round(100 * (SCALING_GAIN - 1)):
            return prev.workers, cur.workers, gain
    return runs[-1].workers, None, None


# -- reporting -----------------------------------------------------------------------------------

def goals(runs: Sequence[Run], cpu_ratio: float | None) -> list[Goal]:
    rows = []
    with_bare = [r for r in runs if r.vs_bare is not None]
    if with_bare:
        worst = min(with_bare, key=lambda r: r.vs_bare)  # type: ignore[arg-type, return-value]
        rows.append(Goal(f"vs_bare >= {GOAL_VS_BARE} at every W",
                         f"min {worst.vs_bare:.3f} (W={worst.workers})",
                         worst.vs_bare >= GOAL_VS_BARE))
    at = [r for r in runs if r.workers == GOAL_SPEEDUP_W]
    if at and runs[0].workers == 1:
        rows.append(Goal(f"speedup >= {GOAL_SPEEDUP} at W={GOAL_SPEEDUP_W}",
                         f"{at[0].speedup:.2f}", at[0].speedup >= GOAL_SPEEDUP))
    if cpu_ratio is not None:
        rows.append(Goal(f"CPU per call <= {GOAL_CPU_RATIO}x baseline", f"{cpu_ratio:.2f}x",
                         cpu_ratio <= GOAL_CPU_RATIO))
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


def report(result: BenchResult, args: argparse.Namespace, real: bool) -> str:
    runs = result.runs
    n, latency = result.tasks, result.latency_s
    out = []
    if real:
        out.append(f"taxdata LLM client benchmark - server {result.url}, model "
                   f"{result.model}, short fixed prompt")
        out.append(f"{n} calls per run, best of {args.repeat}; one call alone takes "
                   f"{latency:.3f}s (median of 3 sequential calls), the ideal ceil(N/W) x that")
    else:
        out.append(f"taxdata LLM client benchmark - stand-in LLM in its own process at "
                   f"{result.url}, latency {latency:g}s, unlimited slots")
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
    if result.cpu_ms_per_call is not None:
        out.append("")
        out.append(f"client CPU per call ({args.cpu_calls} sequential calls, stand-in latency 0, "
                   "time.process_time of this process):")
        out.append(f"  ours {result.cpu_ms_per_call:.3f} ms   bare "
                   f"{result.bare_cpu_ms_per_call:.3f} ms   ratio {result.cpu_ratio:.2f}x")
    if not real:
        out.append("")
        out.append("goals:")
        for row in goals(runs, result.cpu_ratio):
            mark = "PASS" if row.passed else "MISS"
            out.append(f"  {row.goal:<32} {row.measured:<20} {mark}")
    return "\n".join(out)


def as_json(result: BenchResult, real: bool) -> dict[str, Any]:
    runs = [{"workers": r.workers, "wall_s": _round(r.wall_s), "speedup": _round(r.speedup, 3),
             "efficiency": _round(r.efficiency, 3), "bare_wall_s": _round(r.bare_wall_s),
             "vs_bare": _round(r.vs_bare, 3)} for r in result.runs]
    limit, nxt, _ = scaling_limit(result.runs)
    data = {"tasks": result.tasks, "latency_s": _round(result.latency_s), "runs": runs,
            "cpu_ms_per_call": _round(result.cpu_ms_per_call),
            "bare_cpu_ms_per_call": _round(result.bare_cpu_ms_per_call),
            "cpu_ratio": _round(result.cpu_ratio, 3),
            "mode": "server" if real else "stand-in", "url": result.url,
            "speedup_stops_growing_at": limit if nxt is not None else None}
    if real:
        data["model"] = result.model
    else:
        data["goals"] = [{"goal": g.goal, "measured": g.measured, "pass": g.passed}
                         for g in goals(result.runs, result.cpu_ratio)]
    return data
