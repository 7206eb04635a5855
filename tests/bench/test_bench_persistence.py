"""The persistence benchmark runs end to end and measures what it says (counts, not times)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from taxdata.bench.persistence import fixture_registry, fixture_reply, fixture_text
from taxdata.countries.registry import Registry
from taxdata.record.validation import validate_extraction


def test_fixture_countries_are_labelled_and_their_replies_validate():
    registry = Registry.from_data(fixture_registry(30))
    assert len(registry) == 30
    for country in registry:
        assert country.name.startswith("Fixture Country") and country.code == "XX"
        number = int(country.slug.split("_")[1])
        assert "FIXTURE" in fixture_text(number)
        body = {"messages": [{"role": "user", "content":
                              f"Country: {country.name} (ISO code XX; currency XXX)\n"}]}
        outcome = validate_extraction(fixture_reply(body), country)
        assert outcome.ok, outcome.errors


def test_benchmark_runs_and_reports_its_figures():
    # Run as the docs run it (python -m: a name defined below the main guard would be missing
    # there, not on import); the updater runs it measures are processes of their own.
    proc = subprocess.run([sys.executable, "-m", "taxdata.bench.persistence", "--countries",
                           "12,20", "-w", "4", "--latency", "0.01", "--repeat", "1", "--json"],
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr
    small, large = [json.loads(line) for line in out.splitlines()]  # one JSON object per size
    assert small["countries"] == 12 and large["countries"] == 20
    assert small["workers"] == 4 and len(small["runs_s"]) == 1
    assert small["startup_s"] == large["startup_s"]  # measured once, for every size
    # The updater's [PERSIST] line was found and read (a missing one would be NaN).
    assert 0 <= small["persisting_s"] < small["measured_s"]
    # The ideal leaves start-up out: ceil(12 / 4) replies of 0.01 s.
    assert small["ideal_s"] == pytest.approx(3 * 0.01, abs=0.002)
    assert small["ratio"] == pytest.approx(small["measured_s"] / small["ideal_s"], rel=0.05)
    # An unchanged re-run rewrote neither data file (inode and mtime kept) and wrote a report.
    assert small["unchanged_rewrote"] == [] and large["unchanged_rewrote"] == []
    assert small["unchanged_report_bytes"] > 0
    # The goal is judged on the paired measure (each re-run against a start-up run just before).
    for size in (small, large):
        assert isinstance(size["unchanged_paired_s"], float)
        assert size["met"]["unchanged"] == (size["unchanged_paired_s"] <= 0.3
                                            and not size["unchanged_rewrote"])
