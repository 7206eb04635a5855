"""Run by test_signals.py as a process: 6 tasks on 2 workers, stopped by real signals.

``python _stop_helper.py OUT POINT HOLD [GRACE]``: each task asks a stand-in LLM (answered at
once), then the first two end; every later one holds for HOLD seconds in work that ignores the
stop flags (CPU work, a call no stop can end), so only a stop *now* leaves it behind. POINT names
where the test's signal should land, the helper logging a ``[CUE] ...`` line there and waiting
(at most 30 s) for the stop:

- ``start-up``: before any task is submitted (a start-up step that a stop ends);
- ``running``: nothing extra (the test signals on the ``[COMPLETED]`` lines);
- ``saving``: inside the first result's save (``on_result``);
- ``finish``: after the run, while "writing the report";
- ``stuck``: after the run, in a save that hangs (30 s, whatever is asked).

Each saved task id is appended to OUT/saved.txt; OUT/report.json is written in every case
(succeeded, cancelled, in flight, chats); the exit code is 130 when interrupted, else 0, through
:func:`taxdata.signals.leave` as the programs do. GRACE: SIGTERM's grace period.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from taxdata.cancel import NOW, STOP
from taxdata.clients.llm import DIALECTS, Endpoint, LLMClient
from taxdata.errors import EXIT_INTERRUPTED
from taxdata.log import logger, setup_logging
from taxdata.runner import TaskResult, run_tasks
from taxdata.signals import leave, stop_signals
from taxdata.testing.llm_server import StandInLLM


def cue(point: str, wanted: str) -> None:
    """At the point the test signals: say so and wait for the stop (bounded)."""
    if point == wanted:
        logger.info("[CUE] %s", point)
        STOP.wait(30)


def run(out: Path, point: str, hold: float) -> int:
    server = StandInLLM(responder=lambda body: "OK").start()
    client = LLMClient(Endpoint(server.url(), DIALECTS["proxy"]), model="stand-in:latest")
    never = threading.Event()

    def work(task_id: str) -> str:
        answer = client.chat([{"role": "user", "content": task_id}])
        if task_id not in ("t0", "t1"):
            never.wait(hold)  # ignores STOP: only a stop now leaves it behind
        return answer

    def save(result: TaskResult[str]) -> None:
        if result.task_id == "t0":
            cue(point, "saving")
        with (out / "saved.txt").open("a", encoding="utf-8") as handle:
            handle.write(result.task_id + "\n")

    try:
        cue(point, "start-up")
        summary = run_tasks([f"t{i}" for i in range(6)], work, max_workers=2, on_result=save,
                            progress=False, clear_stop=True)
        cue(point, "finish")
        if point == "stuck":
            logger.info("[CUE] stuck")
            time.sleep(30)
        report = {"succeeded": summary.succeeded, "cancelled": summary.cancelled,
                  "in_flight": [t for t, r in summary.results.items() if r.in_flight],
                  "chats": len(server.history), "interrupted": summary.interrupted}
        (out / "report.json").write_text(json.dumps(report), encoding="utf-8")
    finally:
        if not NOW.is_set():  # after a stop now the process leaves at once, the stand-in too
            server.stop()
    print("done", time.monotonic(), flush=True)
    return EXIT_INTERRUPTED if summary.interrupted else 0


def main() -> None:
    setup_logging("INFO")
    out, point, hold = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    grace = float(sys.argv[4]) if len(sys.argv) > 4 else None
    with stop_signals(grace):
        code = run(out, point, hold)
    sys.exit(leave(code))


if __name__ == "__main__":
    main()
