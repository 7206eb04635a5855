"""Every stop keeps its work (issue 18): real SIGINT and SIGTERM delivered to a process at many
points - start-up, tasks running, a result being saved, the drain, the finish - once, twice
within a millisecond, three times; the report is written and what finished is saved in every
case (``_stop_helper.py`` is the program).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from _programs import signal_when

HERE = Path(__file__).resolve().parent
TASKS = {f"t{i}" for i in range(6)}
TIMEOUT = 30  # a held task holds 60 s: a run that waited for it fails the test


def stopped(tmp_path: Path, point: str, *, until, hold: float = 60, grace: float | None = None,
            **kwargs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(HERE / "_stop_helper.py"), str(tmp_path), point, str(hold)]
    if grace is not None:
        command.append(str(grace))
    proc = signal_when(command, until=until, env=env, cwd=tmp_path, timeout=TIMEOUT, **kwargs)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    saved_file = tmp_path / "saved.txt"
    saved = saved_file.read_text(encoding="utf-8").split() if saved_file.exists() else []
    # What the summary calls finished is exactly what was saved, once each.
    assert sorted(saved) == sorted(report["succeeded"]) and len(set(saved)) == len(saved)
    assert set(report["succeeded"]) | set(report["cancelled"]) == TASKS
    return proc, report


def cue(point: str):
    return lambda lines: f"[CUE] {point}" in lines


def completed(*tasks: str):
    return lambda lines: all(any(line.startswith(f"[COMPLETED] {t} ") for line in lines)
                             for t in tasks)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_start_up_cancels_everything_and_still_reports(tmp_path, sig):
    proc, report = stopped(tmp_path, "start-up", until=cue("start-up"), sig=sig)
    assert proc.returncode == 130, proc.stderr
    assert report["chats"] == 0 and report["succeeded"] == [] and report["interrupted"]
    assert report["in_flight"] == []  # none had started
    # One line for the six cancelled in the queue, none per task.
    assert proc.stderr.count("[CANCELLED]") == 1, proc.stderr
    assert "[CANCELLED] 6 queued tasks not started" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_while_a_result_is_saved_keeps_it(tmp_path, sig):
    proc, report = stopped(tmp_path, "saving", until=cue("saving"), sig=sig, hold=3)
    assert proc.returncode == 130, proc.stderr
    assert "t0" in report["succeeded"]


def test_a_stop_while_the_report_is_written_lets_it_finish(tmp_path):
    proc, report = stopped(tmp_path, "finish", until=cue("finish"), hold=0)
    assert proc.returncode == 0, proc.stderr  # everything had finished: nothing was stopped
    assert sorted(report["succeeded"]) == sorted(TASKS)


def test_one_sigint_lets_the_work_in_flight_finish_and_saves_it(tmp_path):
    # The two in flight hold 3 s in work no stop ends; the first Ctrl-C waits for them.
    proc, report = stopped(tmp_path, "running", until=completed("t0", "t1"), hold=3)
    assert proc.returncode == 130, proc.stderr
    assert {"t0", "t1"} <= set(report["succeeded"])
    assert len(report["succeeded"]) == 4 and report["in_flight"] == []
    assert "[CANCELLED] 2 queued tasks not started (Ctrl-C); 0 cancelled in flight" in proc.stderr


@pytest.mark.parametrize("when", ["within a millisecond", "during the drain"])
def test_a_second_sigint_stops_now_and_keeps_every_finished_result(tmp_path, when):
    again = (lambda lines: True) if when == "within a millisecond" else (
        lambda lines: any(line.startswith("[INTERRUPTED] Ctrl-C: stopping") for line in lines))
    proc, report = stopped(tmp_path, "running", until=completed("t0", "t1"), again=again)
    assert proc.returncode == 130, proc.stderr
    # The two that finished are saved; the two held were not waited for (60 s), and are
    # reported as cancelled in flight, not as never run.
    assert sorted(report["succeeded"]) == ["t0", "t1"]
    assert len(report["in_flight"]) == 2 and set(report["in_flight"]) <= set(report["cancelled"])
    assert "[INTERRUPTED] Ctrl-C again: stopping now" in proc.stderr
    assert proc.stderr.count("[CANCELLED] t") == 2  # the two in flight, one line each
    assert "[CANCELLED] 2 queued tasks not started (Ctrl-C); 2 cancelled in flight" in proc.stderr
    assert "done" in proc.stdout  # the program's own end ran


def test_sigterm_stops_now_when_its_grace_period_is_over(tmp_path):
    proc, report = stopped(tmp_path, "running", until=completed("t0", "t1"),
                           sig=signal.SIGTERM, grace=0.5)
    assert proc.returncode == 130, proc.stderr
    assert "[INTERRUPTED] SIGTERM: stopping" in proc.stderr and "0.5s grace" in proc.stderr
    assert "the 0.5s grace period after SIGTERM is over: stopping now" in proc.stderr
    assert sorted(report["succeeded"]) == ["t0", "t1"] and len(report["in_flight"]) == 2


def test_a_third_signal_quits_at_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    command = [sys.executable, str(HERE / "_stop_helper.py"), str(tmp_path), "stuck", "0"]
    # The run is over and its save hangs: neither the first signal nor the second can end it.
    proc = signal_when(command, until=cue("stuck"), env=env, cwd=tmp_path, timeout=TIMEOUT,
                       again=lambda lines: True, again_times=2)
    assert proc.returncode == 130
    assert "[INTERRUPTED] quitting at once (exit 130)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_program_loads_is_one_line(tmp_path, sig):
    # -X importtime names each module as it is loaded: the signal lands while the updater's
    # modules load (its CLI modules; requests and the pipeline load later, when it runs),
    # before its run has begun.
    command = [sys.executable, "-X", "importtime", str(HERE.parent / "scripts" /
                                                       "tax_data_updater.py"), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAXDATA_")}
    proc = signal_when(command, until=lambda lines: lines[-1].rpartition("|")[2].strip() == "taxdata.cli.common",
                       sig=sig, env={**env, "TAXDATA_DATA_DIR": str(tmp_path / "data")},
                       cwd=tmp_path, timeout=TIMEOUT)
    assert proc.returncode == 130, proc.stderr[-2000:]
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert said == ["[INTERRUPTED] stopped while starting, before any work (exit 130)"], said
    assert not (tmp_path / "data").exists()  # nothing was done
