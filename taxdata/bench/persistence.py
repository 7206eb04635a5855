"""Benchmark the updater's persistence at scale: linear in the dataset, free when nothing changed.

    python -m taxdata.bench.persistence                          # 500 countries, -w 32, 0.05 s
    python -m taxdata.bench.persistence --countries 500,2000,5000 --repeat 3
    python -m taxdata.bench.persistence --countries 200 --json

For each size it builds a throw-away data directory with a generated registry of FIXTURE
countries (made-up names ``Fixture Country 0001``..., the user-assigned ISO code ``XX`` and
currency ``XXX``; no real country, no real tax data), one taxation file each, and starts the
stand-in LLM (replies computed per country, every figure a made-up FIXTURE, ``--latency``
seconds per reply). Then it runs the real updater (``tax_data_updater.py``'s ``update_main``, a
subprocess; its log is read only on failure):

1. start-up: an unchanged re-run of a data directory of one country (interpreter, imports,
   registry, preflight, report; nothing sent), ``--repeat`` times, the best;
2. all countries once, to fill the dataset (not timed);
3. all countries again with ``--force`` (every country re-extracted and persisted),
   ``--repeat`` times, the best: wall time, the time the updater spent persisting (its
   ``[PERSIST]`` line: journal, checkpoints, final write) and that time's share of the wall;
4. an unchanged re-run (nothing to send), ``--repeat`` times, the best: its wall time over
   the start-up, whether ``tax_data.json`` and ``taxData.js`` were rewritten (inode and mtime),
   and the size of the report it wrote. Each of these runs follows a start-up run of its own
   (the one-country directory again), and **paired** is the median of each unchanged run's
   wall over the start-up run right before it: the best of each kind may come from a quiet
   moment for one and a busy one for the other, a pair shares its moment.

The ideal of run 3 is ``ceil(countries / workers) * latency``, the workers kept busy and the
program free: start-up is not in it (it is printed beside). Goals at the largest size: the
persisting at most 5 % of the forced run's wall, the unchanged re-run within 0.3 s of start-up
(paired) and rewriting neither data file.

Exit codes: 0 measured (a missed goal is reported, not an error), 1 a run failed, 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from taxdata.bench.process import UPDATER_COMMAND
from taxdata.errors import EXIT_FAILED, EXIT_OK
from taxdata.testing.llm_server import StandInLLM, is_probe

FIXTURE_CODE, FIXTURE_CURRENCY = "XX", "XXX"  # ISO user-assigned / "no currency": not real
_COUNTRY = re.compile(r"^Country: (.+?) \(ISO code", re.MULTILINE)


def fixture_registry(count: int) -> dict[str, Any]:
    """A registry of ``count`` clearly made-up countries."""
    countries = {}
    for number in range(1, count + 1):
        countries[f"fixture_{number:04d}"] = {
            "name": f"Fixture Country {number:04d}", "code": FIXTURE_CODE,
            "currency": FIXTURE_CURRENCY, "wikipedia_title": None,
            "coordinates": [round(-60 + (number % 120), 1), round(-170 + (number % 340), 1)]}
    return {"_comment": "FIXTURE registry for taxdata.bench.persistence: made-up countries, "
                        "not real ones.", "countries": countries}


def _figures(number: int) -> tuple[int, int]:
    """The made-up threshold and top rate of fixture country ``number``."""
    return 1000 + number, 10 + number % 30


def fixture_text(number: int) -> str:
    """The taxation file of fixture country ``number``: each made-up figure in its own line."""
    threshold, top = _figures(number)
    return (f"# Taxation in Fixture Country {number:04d}\n\n"
            "> FIXTURE: a made-up country for the persistence benchmark, not real tax data.\n\n"
            "## Personal Income Tax\n\n"
            "Personal income tax is progressive, with two brackets.\n\n"
            f"Income up to {threshold:,} is taxed at 0 %.\n\n"
            f"Income above {threshold:,} is taxed at {top} %.\n\n"
            "## VAT / GST\n\n"
            "The standard VAT rate is 15 %.\n\n"
            "The reduced VAT rate is 5 %.\n\n"
            "## Social Security and Payroll Taxes\n\n"
            "Employees pay social security contributions of 7 %.\n\n"
            "Employers pay social security contributions of 9 %.\n")


def fixture_reply(body: dict) -> dict[str, Any]:
    """A valid extraction for the country a request asks about; every figure is made up.

    Quotes (verbatim lines of :func:`fixture_text`) are added when the request's schema asks
    for ``evidence``, so the benchmark measures persistence whichever reply shape is current.
    """
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    match = _COUNTRY.search(user)
    number = int(match.group(1).rsplit(" ", 1)[-1]) if match else 0
    threshold, top = _figures(number)
    reply: dict[str, Any] = {
        "currency": FIXTURE_CURRENCY, "countryCode": FIXTURE_CODE, "system": "progressive",
        "brackets": [{"min": 0, "max": threshold, "rate": 0, "description": None},
                     {"min": threshold + 1, "max": None, "rate": top, "description": None}],
        "vat": {"hasVAT": True, "standard": 15, "reduced": [5], "description": None,
                "notes": None},
        "socialSecurity": {"employeeRate": 7, "employerRate": 9, "notes": None},
        "special_taxes": [], "notes": f"FIXTURE benchmark record {number}",
    }
    if '"evidence"' in json.dumps(body):
        lower = f"Income up to {threshold:,} is taxed at 0 %."
        upper = f"Income above {threshold:,} is taxed at {top} %."
        reply["evidence"] = [
            {"field": "system", "quote": "Personal income tax is progressive, with two brackets."},
            {"field": "brackets[0].rate", "quote": lower},
            {"field": "brackets[0].max", "quote": lower},
            {"field": "brackets[1].rate", "quote": upper},
            {"field": "vat.standard", "quote": "The standard VAT rate is 15 %."},
            {"field": "vat.reduced[0]", "quote": "The reduced VAT rate is 5 %."},
            {"field": "socialSecurity.employeeRate",
             "quote": "Employees pay social security contributions of 7 %."},
            {"field": "socialSecurity.employerRate",
             "quote": "Employers pay social security contributions of 9 %."},
        ]
    return reply


def prepare(root: Path, count: int) -> dict[str, str]:
    """Registry, taxation files and the environment for the updater runs."""
    registry = root / "countries.fixture.json"
    registry.write_text(json.dumps(fixture_registry(count), indent=1), encoding="utf-8")
    data = root / "data"
    taxation = data / "taxation"
    taxation.mkdir(parents=True)
    for number in range(1, count + 1):
        (taxation / f"fixture_{number:04d}.md").write_text(fixture_text(number),
                                                           encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TAXDATA_") and k != "PYTHONDONTWRITEBYTECODE"}
    # Compiled bytecode as an installed package has it (pip compiles at install): kept in the
    # throw-away directory, written by the first (untimed) run, read by the timed ones, so no
    # timed run pays for compiling the package and nothing is written beside its sources.
    env.update({"TAXDATA_DATA_DIR": str(data), "TAXDATA_COUNTRIES": str(registry),
                "PYTHONPYCACHEPREFIX": str(root / "pycache")})
    return env


_PERSIST = re.compile(r"\[PERSIST\] \d+ countr\w+ saved: journal ([\d.]+)s \(workers' CPU\), "
                      r"\d+ checkpoints? ([\d.]+)s, final write ([\d.]+)s")
_GATE = re.compile(r"the gate's checks ([\d.]+)s")
PERSIST_SHARE_GOAL = 0.05  # the persisting's share of the forced run's wall, at most
UNCHANGED_GOAL_S = 0.3  # an unchanged re-run's wall over the start-up, at most
DATA_FILES = ("tax_data.json", "taxData.js")


def run_updater(env: dict[str, str], url: str, *args: str) -> tuple[float, float, float]:
    """(wall time, time spent persisting, the gate's checks) of one updater run (the last two
    from its ``[PERSIST]`` line); RuntimeError when it fails."""
    started = time.perf_counter()
    # --no-list-reference: the runs measure persistence, never a fetch of Wikipedia's list page.
    proc = subprocess.run([*UPDATER_COMMAND, "--no-progress", "--no-list-reference", *args],
                          env={**env, "TAXDATA_LLM_URL": url},
                          cwd=Path(env["TAXDATA_DATA_DIR"]).parent, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"updater {' '.join(args)} exited {proc.returncode}: {last}")
    match = _PERSIST.search(proc.stderr)
    persisting = sum(map(float, match.groups())) if match else float("nan")
    gate = _GATE.search(proc.stderr)
    return seconds, persisting, float(gate.group(1)) if gate else float("nan")


def _file_ids(data: Path) -> dict[str, tuple[int, int] | None]:
    """(inode, mtime_ns) of each data file: a rewrite (a rename over it) changes both."""
    ids: dict[str, tuple[int, int] | None] = {}
    for name in DATA_FILES:
        try:
            stat = (data / name).stat()
            ids[name] = (stat.st_ino, stat.st_mtime_ns)
        except FileNotFoundError:
            ids[name] = None
    return ids


def _newest_report_bytes(data: Path) -> int:
    reports = sorted((data / "reports").glob("update-*.json"), key=lambda p: p.stat().st_mtime_ns)
    if not reports:
        return 0
    return reports[-1].stat().st_size + reports[-1].with_suffix(".html").stat().st_size


def measure_startup(server: StandInLLM, latency: float, repeat: int) -> float:
    """The best wall time of an unchanged re-run of a one-country data directory."""
    with tempfile.TemporaryDirectory(prefix="taxdata-bench-startup-") as tmp:
        env = prepare(Path(tmp), 1)
        url = server.url("proxy")
        run_updater(env, url, "-w", "1")
        return min(run_updater(env, url, "-w", "1")[0] for _ in range(repeat))


def _country_chats(server: StandInLLM) -> int:
    """Chat requests about a country (the preflight's form probe left out)."""
    return sum(not is_probe(body) for body in server.chats)


def measure(count: int, workers: int, latency: float, repeat: int = 3,
            startup: float | None = None, server: StandInLLM | None = None) -> dict[str, Any]:
    """One size: the forced run and the unchanged re-run, best of ``repeat`` each (other load
    on the machine only adds)."""
    own = server is None
    if server is None:
        server = StandInLLM(latency=latency)
        server.responder = fixture_reply
        server.start()
    try:
        if startup is None:
            startup = measure_startup(server, latency, repeat)
        with tempfile.TemporaryDirectory(prefix="taxdata-bench-persistence-") as tmp:
            for name in ("all", "one"):
                (Path(tmp) / name).mkdir()
            env = prepare(Path(tmp) / "all", count)
            one = prepare(Path(tmp) / "one", 1)  # the start-up run paired with each re-run
            url = server.url("proxy")
            run_updater(one, url, "-w", "1")
            data = Path(env["TAXDATA_DATA_DIR"])
            run_updater(env, url, "-w", str(workers))
            forced, persisting, gates = [], [], []
            for _ in range(repeat):
                requests_before = _country_chats(server)
                wall, persisted, gate = run_updater(env, url, "-w", str(workers), "--force")
                forced.append(wall)
                persisting.append(persisted)
                gates.append(gate)
                requests = _country_chats(server) - requests_before
                if requests != count:
                    raise RuntimeError(f"expected {count} requests, got {requests}")
            unchanged, paired, rewritten = [], [], set()
            for _ in range(repeat):
                alone = run_updater(one, url, "-w", "1")[0]
                before, requests_before = _file_ids(data), len(server.chats)
                unchanged.append(run_updater(env, url, "-w", str(workers))[0])
                paired.append(unchanged[-1] - alone)
                if len(server.chats) != requests_before:
                    raise RuntimeError("the unchanged re-run sent requests")
                after = _file_ids(data)
                rewritten |= {name for name in DATA_FILES if before[name] != after[name]}
            report_bytes = _newest_report_bytes(data)
            stored = json.loads((data / "tax_data.json").read_text(encoding="utf-8"))
            if len(stored["countries"]) != count:
                raise RuntimeError(f"expected {count} countries, got {len(stored['countries'])}")
    finally:
        if own:
            server.stop()
    best = min(forced)
    persisted, gate = persisting[forced.index(best)], gates[forced.index(best)]
    ideal = math.ceil(count / workers) * latency
    quiet = min(unchanged)
    return {"countries": count, "workers": workers, "latency_s": latency, "repeat": repeat,
            "startup_s": round(startup, 3), "ideal_s": round(ideal, 3),
            "measured_s": round(best, 3), "runs_s": [round(f, 3) for f in forced],
            "persisting_s": round(persisted, 3),
            "persist_share": round(persisted / best, 4),
            "gate_s": round(gate, 3), "gate_share": round(gate / best, 4),
            "ratio": round(best / ideal, 3) if ideal else None,
            "unchanged_s": round(quiet, 3),
            "unchanged_over_startup_s": round(quiet - startup, 3),
            "unchanged_paired_s": round(statistics.median(paired), 3),
            "unchanged_rewrote": sorted(rewritten),
            "unchanged_report_bytes": report_bytes,
            "met": {"persist_share": persisted / best <= PERSIST_SHARE_GOAL,
                    "unchanged": (statistics.median(paired) <= UNCHANGED_GOAL_S
                                  and not rewritten)}}


def measure_sizes(counts: list[int], workers: int, latency: float,
                  repeat: int) -> list[dict[str, Any]]:
    """Every size against one stand-in, with one start-up measurement."""
    server = StandInLLM(latency=latency)
    server.responder = fixture_reply
    server.start()
    try:
        startup = measure_startup(server, latency, repeat)
        return [measure(count, workers, latency, repeat, startup, server) for count in counts]
    finally:
        server.stop()


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be at least 1")
    return sizes


def print_table(results: list[dict[str, Any]]) -> None:
    first = results[0]
    print(f"Persistence benchmark: FIXTURE countries, -w {first['workers']}, latency "
          f"{first['latency_s']} s, best of {first['repeat']}; start-up (an unchanged "
          f"1-country run) {first['startup_s']:.2f} s")
    print("       N   forced  ideal  wall/ideal  persisting  share  gate  share   unchanged  "
          "over start-up  paired  data files rewritten  report")
    for r in results:
        rewrote = ", ".join(r["unchanged_rewrote"]) or "none"
        print(f"  {r['countries']:6,}  {r['measured_s']:6.2f}s {r['ideal_s']:5.2f}s  "
              f"{r['ratio']:9.2f}x  {r['persisting_s']:9.2f}s  {r['persist_share']:5.1%}  "
              f"{r['gate_s']:4.2f}s {r['gate_share']:5.1%}  "
              f"{r['unchanged_s']:9.2f}s  {r['unchanged_over_startup_s']:+12.2f}s  "
              f"{r['unchanged_paired_s']:+6.2f}s  "
              f"{rewrote:>20}  {r['unchanged_report_bytes'] / 1024:5.0f} KB")
    last = results[-1]
    print(f"  goals at {last['countries']:,}: persisting <= {PERSIST_SHARE_GOAL:.0%} of the wall: "
          f"{'met' if last['met']['persist_share'] else 'MISSED'}; unchanged re-run within "
          f"{UNCHANGED_GOAL_S} s of start-up (paired), no data file rewritten: "
          f"{'met' if last['met']['unchanged'] else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxdata.bench.persistence",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--countries", type=_sizes, default=[500], metavar="N[,N...]",
                        help="generated FIXTURE countries, one size or several (default 500)")
    parser.add_argument("-w", "--workers", type=int, default=32, metavar="N",
                        help="updater worker threads (default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.05, metavar="S",
                        help="stand-in reply latency in seconds (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of each kind; the best counts (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per size")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.repeat < 1 or args.latency < 0:
        parser.error("--workers and --repeat must be at least 1, --latency at least 0")
    try:
        results = measure_sizes(args.countries, args.workers, args.latency, args.repeat)
    except RuntimeError as exc:
        print(f"bench_persistence: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        for result in results:
            print(json.dumps(result))
        return EXIT_OK
    print_table(results)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
