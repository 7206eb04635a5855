"""Benchmark the updater's persistence: is the cost per finished country independent of size?

    python -m taxdata.bench.persistence                          # 500 countries, -w 16, 0.05 s
    python -m taxdata.bench.persistence --countries 200 --json

Builds a throw-away data directory with a generated registry of FIXTURE countries (made-up
names ``Fixture Country 0001``..., the user-assigned ISO code ``XX`` and currency ``XXX``; no
real country, no real tax data), one taxation file each, and starts the stand-in LLM (replies
computed per country, every figure a made-up FIXTURE, ``--latency`` seconds per reply). Then it
runs the real updater (``tax_data_updater.py``'s ``update_main``, a subprocess; its log is
read only on failure) three times:

1. one country (``--repeat`` times): the start-up cost (interpreter, imports, registry,
   preflight, final writes) is the best wall time minus one reply's latency;
2. all countries once, to fill the dataset (not timed);
3. all countries again with ``--force`` (every country re-extracted and persisted),
   ``--repeat`` times: the best counts, as other load on the machine only adds.

The ideal for run 3 is ``ceil(countries / workers) * latency + start-up``: the workers kept busy
and persistence free. The figure printed is run 3's wall time over that ideal (goal <= 1.5),
with the time the updater spent persisting (its ``[PERSIST]`` line), so that a ratio above the
goal can be told apart: persistence, or the CPU of the requests and checks themselves.

Exit codes: 0 measured (a missed goal is reported, not an error), 1 a run failed, 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from taxdata.bench.process import UPDATER_COMMAND
from taxdata.errors import EXIT_FAILED, EXIT_OK
from taxdata.testing.llm_server import StandInLLM, is_probe

GOAL = 1.5
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXDATA_")}
    env.update({"TAXDATA_DATA_DIR": str(data), "TAXDATA_COUNTRIES": str(registry),
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


_PERSIST = re.compile(r"\[PERSIST\] \d+ countr\w+ saved: journal ([\d.]+)s, \d+ checkpoints? "
                      r"([\d.]+)s, final write ([\d.]+)s")


def run_updater(env: dict[str, str], url: str, *args: str) -> tuple[float, float]:
    """(wall time, time spent persisting) of one updater run; RuntimeError when it fails."""
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
    return seconds, persisting


def measure(count: int, workers: int, latency: float, repeat: int = 3) -> dict[str, Any]:
    """Best of ``repeat`` for the start-up and for the forced run (other load only adds)."""
    server = StandInLLM(latency=latency)
    server.responder = fixture_reply
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="taxdata-bench-persistence-") as tmp:
            env = prepare(Path(tmp), count)
            url = server.url("proxy")
            startups = [max(run_updater(env, url, "--countries", "fixture_0001", "-w", "1",
                                        "--force")[0] - latency, 0.0) for _ in range(repeat)]
            run_updater(env, url, "-w", str(workers))
            forced, persisting = [], []
            for _ in range(repeat):
                requests_before = _country_chats(server)
                wall, persisted = run_updater(env, url, "-w", str(workers), "--force")
                forced.append(wall)
                persisting.append(persisted)
                requests = _country_chats(server) - requests_before
                if requests != count:
                    raise RuntimeError(f"expected {count} requests, got {requests}")
            data = Path(env["TAXDATA_DATA_DIR"])
            stored = json.loads((data / "tax_data.json").read_text(encoding="utf-8"))
            if len(stored["countries"]) != count:
                raise RuntimeError(f"expected {count} countries, got {len(stored['countries'])}")
    finally:
        server.stop()
    startup, best = min(startups), min(forced)
    ideal = math.ceil(count / workers) * latency + startup
    return {"countries": count, "workers": workers, "latency_s": latency, "repeat": repeat,
            "startup_s": round(startup, 3), "ideal_s": round(ideal, 3),
            "measured_s": round(best, 3), "runs_s": [round(f, 3) for f in forced],
            "persisting_s": round(persisting[forced.index(best)], 3),
            "ratio": round(best / ideal, 3), "goal": GOAL, "met": best / ideal <= GOAL}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxdata.bench.persistence",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--countries", type=int, default=500, metavar="N",
                        help="generated FIXTURE countries (default %(default)s)")
    parser.add_argument("-w", "--workers", type=int, default=16, metavar="N",
                        help="updater worker threads (default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.05, metavar="S",
                        help="stand-in reply latency in seconds (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of each kind; the best counts (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.countries < 1 or args.workers < 1 or args.repeat < 1 or args.latency < 0:
        parser.error("--countries, --workers and --repeat must be at least 1, --latency at "
                     "least 0")
    try:
        result = measure(args.countries, args.workers, args.latency, args.repeat)
    except RuntimeError as exc:
        print(f"bench_persistence: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(result))
        return EXIT_OK
    print(f"Persistence benchmark: {result['countries']} FIXTURE countries, -w "
          f"{result['workers']}, latency {result['latency_s']} s, --force")
    print(f"  start-up (1-country run minus one reply)   {result['startup_s']:8.2f} s")
    print(f"  ideal (ceil(N/W) x latency + start-up)     {result['ideal_s']:8.2f} s")
    print(f"  measured (best of {result['repeat']}: "
          f"{', '.join(f'{r:.2f}' for r in result['runs_s'])})".ljust(45)
          + f"{result['measured_s']:6.2f} s")
    print(f"  of which persisting (journal, checkpoints,  {result['persisting_s']:8.2f} s\n"
          f"    final tax_data.json + taxData.js; [PERSIST] line)")
    print(f"  ratio measured/ideal                       {result['ratio']:8.2f}x "
          f"(goal <= {GOAL}x: {'met' if result['met'] else 'MISSED'})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())


def _country_chats(server: StandInLLM) -> int:
    """Chat requests about a country (the preflight's form probe left out)."""
    return sum(not is_probe(body) for body in server.chats)
