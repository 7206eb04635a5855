"""Benchmark the updater's persistence: is the cost per finished country independent of size?

    python -m taxdata.bench_persistence                          # 500 countries, -w 16, 0.05 s
    python -m taxdata.bench_persistence --countries 200 --json

Builds a throw-away data directory with a generated registry of FIXTURE countries (made-up
names ``Fixture Country 0001``..., the user-assigned ISO code ``XX`` and currency ``XXX``; no
real country, no real tax data), one taxation file each, and starts the stand-in LLM (replies
computed per country, every figure a made-up FIXTURE, ``--latency`` seconds per reply). Then it
runs the real updater script (``scripts/tax_data_updater.py``, a subprocess, logs to
``os.devnull``) three times:

1. one country: the start-up cost (interpreter, imports, registry, preflight, final writes)
   is its wall time minus one reply's latency;
2. all countries once, to fill the dataset (not timed);
3. all countries again with ``--force`` (every country re-extracted and persisted): timed.

The ideal for run 3 is ``ceil(countries / workers) * latency + start-up``: the workers kept busy
and persistence free. The figure printed is run 3's wall time over that ideal (goal <= 1.5).

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

from .testing.llm_server import StandInLLM

GOAL = 1.5
FIXTURE_CODE, FIXTURE_CURRENCY = "XX", "XXX"  # ISO user-assigned / "no currency": not real
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "tax_data_updater.py"
_COUNTRY = re.compile(r"^Country: (.+?) \(ISO code", re.MULTILINE)


def fixture_registry(count: int) -> dict[str, Any]:
    """A registry of ``count`` clearly made-up countries."""
    countries = {}
    for number in range(1, count + 1):
        countries[f"fixture_{number:04d}"] = {
            "name": f"Fixture Country {number:04d}", "code": FIXTURE_CODE,
            "currency": FIXTURE_CURRENCY, "wikipedia_title": None,
            "coordinates": [round(-60 + (number % 120), 1), round(-170 + (number % 340), 1)]}
    return {"_comment": "FIXTURE registry for taxdata.bench_persistence: made-up countries, "
                        "not real ones.", "countries": countries}


def fixture_reply(body: dict) -> dict[str, Any]:
    """A valid extraction for the country a request asks about; every figure is made up."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    match = _COUNTRY.search(user)
    number = int(match.group(1).rsplit(" ", 1)[-1]) if match else 0
    return {
        "currency": FIXTURE_CURRENCY, "countryCode": FIXTURE_CODE, "system": "progressive",
        "brackets": [{"min": 0, "max": 1000 + number, "rate": 0, "description": None},
                     {"min": 1001 + number, "max": None, "rate": 10 + number % 30,
                      "description": None}],
        "vat": {"hasVAT": True, "standard": 15, "reduced": [5], "description": None,
                "notes": None},
        "socialSecurity": {"employeeRate": 7, "employerRate": 9, "notes": None},
        "special_taxes": [], "notes": f"FIXTURE benchmark record {number}",
    }


def prepare(root: Path, count: int) -> dict[str, str]:
    """Registry, taxation files and the environment for the updater runs."""
    registry = root / "countries.fixture.json"
    registry.write_text(json.dumps(fixture_registry(count), indent=1), encoding="utf-8")
    data = root / "data"
    taxation = data / "taxation"
    taxation.mkdir(parents=True)
    for number in range(1, count + 1):
        (taxation / f"fixture_{number:04d}.md").write_text(
            f"# Taxation in Fixture Country {number:04d}\n\n"
            "> FIXTURE: a made-up country for the persistence benchmark.\n\n"
            "## Personal Income Tax\n\nFIXTURE brackets.\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXDATA_")}
    env.update({"TAXDATA_DATA_DIR": str(data), "TAXDATA_COUNTRIES": str(registry),
                "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def run_updater(env: dict[str, str], url: str, *args: str) -> float:
    """Wall time of one updater run; raises RuntimeError when it fails."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--no-progress", *args],
                          env={**env, "TAXDATA_LLM_URL": url}, cwd=Path(env["TAXDATA_DATA_DIR"]).parent,
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"updater {' '.join(args)} exited {proc.returncode}: {last}")
    return seconds


def measure(count: int, workers: int, latency: float) -> dict[str, Any]:
    server = StandInLLM(latency=latency)
    server.responder = fixture_reply
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="taxdata-bench-persistence-") as tmp:
            env = prepare(Path(tmp), count)
            url = server.url("proxy")
            one = run_updater(env, url, "--countries", "fixture_0001", "-w", "1")
            startup = max(one - latency, 0.0)
            run_updater(env, url, "-w", str(workers))
            requests_before = len(server.chats)
            forced = run_updater(env, url, "-w", str(workers), "--force")
            requests = len(server.chats) - requests_before
            data = Path(env["TAXDATA_DATA_DIR"])
            stored = json.loads((data / "tax_data.json").read_text(encoding="utf-8"))
            if len(stored["countries"]) != count or requests != count:
                raise RuntimeError(f"expected {count} countries and requests, got "
                                   f"{len(stored['countries'])} and {requests}")
    finally:
        server.stop()
    ideal = math.ceil(count / workers) * latency + startup
    return {"countries": count, "workers": workers, "latency_s": latency,
            "startup_s": round(startup, 3), "ideal_s": round(ideal, 3),
            "measured_s": round(forced, 3), "ratio": round(forced / ideal, 3), "goal": GOAL,
            "met": forced / ideal <= GOAL}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m taxdata.bench_persistence",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--countries", type=int, default=500, metavar="N",
                        help="generated FIXTURE countries (default %(default)s)")
    parser.add_argument("-w", "--workers", type=int, default=16, metavar="N",
                        help="updater worker threads (default %(default)s)")
    parser.add_argument("--latency", type=float, default=0.05, metavar="S",
                        help="stand-in reply latency in seconds (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.countries < 1 or args.workers < 1 or args.latency < 0:
        parser.error("--countries and --workers must be at least 1, --latency at least 0")
    try:
        result = measure(args.countries, args.workers, args.latency)
    except RuntimeError as exc:
        print(f"bench_persistence: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"Persistence benchmark: {result['countries']} FIXTURE countries, -w "
          f"{result['workers']}, latency {result['latency_s']} s, --force")
    print(f"  start-up (1-country run minus one reply)   {result['startup_s']:8.2f} s")
    print(f"  ideal (ceil(N/W) x latency + start-up)     {result['ideal_s']:8.2f} s")
    print(f"  measured                                   {result['measured_s']:8.2f} s")
    print(f"  ratio measured/ideal                       {result['ratio']:8.2f}x "
          f"(goal <= {GOAL}x: {'met' if result['met'] else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
