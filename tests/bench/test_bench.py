"""The benchmark (taxdata/bench.py): tiny settings, checking shape and sanity, not speed goals."""

from __future__ import annotations

import json
import re

import pytest

from taxdata.bench import __main__ as bench
from taxdata.bench.measure import Run
from taxdata.bench.report import scaling_limit
from taxdata.testing.llm_server import is_probe
from taxdata.testing.responder import rule_based_reply

TINY = ["--tasks", "8", "--workers", "1,4", "--latency", "0.02", "--cpu-calls", "50"]
RUN_KEYS = {"workers", "wall_s", "speedup", "efficiency", "bare_wall_s", "vs_bare"}


def test_json_has_documented_keys_and_sane_numbers(capfd):
    code = bench.main([*TINY, "--json"])
    assert code == 0, capfd.readouterr().err
    data = json.loads(capfd.readouterr().out)  # stdout (fd 1) is the JSON object, nothing else
    assert {"tasks", "latency_s", "runs", "cpu_ms_per_call", "bare_cpu_ms_per_call",
            "cpu_ratio"} <= set(data)
    assert data["tasks"] == 8 and data["latency_s"] == 0.02
    assert [run["workers"] for run in data["runs"]] == [1, 4]
    for run in data["runs"]:
        assert RUN_KEYS <= set(run)
        for key in RUN_KEYS:
            assert run[key] > 0, (key, run)
    for key in ("cpu_ms_per_call", "bare_cpu_ms_per_call", "cpu_ratio"):
        assert data[key] > 0, key
    # The figures follow from the timings as documented, whatever the machine's load did to
    # the timings themselves (no speed is asserted: a loaded CPU changes every wall time).
    one, four = data["runs"]
    assert one["speedup"] == pytest.approx(1.0, abs=1e-3)
    assert four["speedup"] == pytest.approx(one["wall_s"] / four["wall_s"], rel=1e-2)
    for run, rounds in ((one, 8), (four, 2)):  # 8 calls: 8 rounds of latency on 1 worker, 2 on 4
        assert run["efficiency"] == pytest.approx(rounds * 0.02 / run["wall_s"], rel=1e-2)
        assert run["vs_bare"] == pytest.approx(run["bare_wall_s"] / run["wall_s"], rel=1e-2)
    assert all(isinstance(goal["pass"], bool) for goal in data["goals"])


def test_table_names_columns_goals_and_the_baseline(capsys):
    code = bench.main(["--tasks", "4", "--workers", "1,2", "--latency", "0.02",
                       "--cpu-calls", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "wall_s" in out and "bare_wall_s" in out and "vs_bare" in out
    assert "requests.Session" in out  # says what the baseline is
    assert "CPU per call" in out and "ratio" in out
    goal_lines = [line for line in out.splitlines() if line.rstrip().endswith(("PASS", "MISS"))]
    assert len(goal_lines) == 2  # vs_bare and CPU; the W=4 speedup goal needs W=4


def test_real_server_mode_runs_preflight_and_skips_the_baseline(make_llm_server, capsys):
    server = make_llm_server(latency=0.02)
    code = bench.main(["--llm-url", server.url("ollama"), "--tasks", "4", "--workers", "1,2",
                       "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["model"] == "stand-in:latest"  # chosen by the preflight
    assert [run["workers"] for run in data["runs"]] == [1, 2]
    assert all(run["bare_wall_s"] is None and run["vs_bare"] is None for run in data["runs"])
    assert data["cpu_ms_per_call"] is None
    assert server.requests_to("/api/tags")  # the preflight listed the models
    assert len(server.requests_to("/api/chat")) >= 4 + 4  # the timed runs, at least


def test_real_server_table_says_where_scaling_stops(make_llm_server, capsys):
    # The sentence must follow from the table the run printed, whatever the machine's load did
    # to the timings (a loaded CPU can make W=2 look faster or slower than W=1).
    server = make_llm_server(latency=0.05, capacity=1)
    code = bench.main(["--llm-url", server.url("openai"), "--tasks", "3", "--workers", "1,2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "no bare baseline" in out
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", out, re.M)
    assert [int(row[0]) for row in rows] == [1, 2], out
    runs = [Run(int(w), float(wall), speedup=float(speedup)) for w, wall, speedup, _ in rows]
    limit, nxt, _ = scaling_limit(runs)
    if nxt is None:
        assert f"speedup still growing at W={limit}" in out
    else:
        assert f"speedup stops growing at W={limit} (W={nxt} adds" in out


def test_scenarios_print_figure_ideal_and_goal(capsys, recorded_waits):
    # The retry waits are recorded, not slept (recorded_waits): the figures' shape and the
    # failure counts are under test here, not the timings.
    code = bench.main(["--scenario", "busy", "--tasks", "4", "--json"])
    assert code == 0
    busy_waits = list(recorded_waits)
    recorded_waits.clear()
    assert bench.main(["--scenario", "flaky", "--tasks", "4", "--json"]) == 0
    data = {"scenarios": [json.loads(line)["scenarios"][0]
                          for line in capsys.readouterr().out.splitlines()]}
    assert [s["name"] for s in data["scenarios"]] == ["busy", "flaky"]
    busy, flaky = data["scenarios"]
    for scenario in data["scenarios"]:
        assert scenario["ideal"] and scenario["goal"] and isinstance(scenario["passed"], bool)
        assert len(scenario["endpoints"]) == 1
    assert {"failed", "wall_s", "wall_vs_ideal"} <= set(busy["figures"])
    # flaky's ideal counts the requests the faults made necessary; both ratios are printed
    assert {"requests", "wall_vs_ideal", "wall_vs_fault_free_ideal"} <= set(flaky["figures"])
    assert flaky["figures"]["requests"] >= 4
    assert busy["figures"]["failed"] == 0  # busy is never failed: the deadline is minutes
    # Busy answers were waited for (never less than the floor), not hammered; a garbled 200
    # (the server is there, not busy) is tried again soon, after a small jitter only.
    assert busy_waits and min(busy_waits) >= 0.25
    assert recorded_waits and max(recorded_waits) < 0.25
    assert "busy" in busy["endpoints"][0] and "concurrency limit" in busy["endpoints"][0]


def test_unknown_scenario_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["--scenario", "busy,slow"])
    assert info.value.code == 2
    assert "--scenario" in capsys.readouterr().err


def test_unreachable_server_is_a_preflight_error(capsys):
    code = bench.main(["--llm-url", "http://127.0.0.1:9/api/chat", "--tasks", "1",
                       "--workers", "1"])
    assert code == bench.EXIT_USAGE
    assert "refused the connection" in capsys.readouterr().err


def test_stand_in_process_is_stopped_even_on_errors():
    with pytest.raises(RuntimeError):
        with bench.StandInProcess(0.0) as server:
            proc = server.proc
            assert proc is not None and proc.poll() is None
            assert server.chat_url.startswith("http://127.0.0.1:")
            raise RuntimeError("boom")
    assert proc.poll() is not None


def test_scaling_limit_picks_the_last_worker_count_that_still_helped():
    runs = [Run(1, 8.0, speedup=1.0), Run(2, 4.0, speedup=2.0),
            Run(4, 3.9, speedup=2.05), Run(8, 3.9, speedup=2.05)]
    assert scaling_limit(runs)[:2] == (2, 4)
    assert scaling_limit(runs[:2]) == (2, None, None)


def test_server_bench_runs_both_steps_beside_the_lean_baseline(make_llm_server, capsys):
    server = make_llm_server(responder=rule_based_reply)
    code = bench.main(["--server", server.url("ollama"), "--countries", "2",
                       "--article-chars", "3000", "--workers", "2", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["steps"]) == {"format", "extract"}
    for step in data["steps"].values():
        ours, lean = step["ours"], step["lean"]
        assert lean["requests"] == 1.0 and ours["succeeded"] == 2  # a clean run: no re-ask
        assert ours["prompt_tokens"] > lean["prompt_tokens"] > 0  # the server's usage figures
        assert 0 < ours["instructions"] <= 600
    assert data["requests_per_country"] == 1.0 and data["timeouts"] == 0
    assert data["prompt_ratio"] == pytest.approx(
        sum(s["ours"]["prompt_tokens"] for s in data["steps"].values())
        / sum(s["lean"]["prompt_tokens"] for s in data["steps"].values()))
    assert data["counted_by"] == "server usage" and data["form"] == "schema"
    bodies = [b for b in server.chats if not is_probe(b)]
    assert len(bodies) == 2 * 2 * 2  # 2 countries x 2 steps x (ours + lean)
    assert len({b["options"]["num_ctx"] for b in server.chats}) == 1
