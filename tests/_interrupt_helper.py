"""Run by test_runner.py as a process: 6 tasks on 2 workers, to be stopped by SIGINT.

``python _interrupt_helper.py OUT`` appends each saved task id to OUT (one per line), logs the
runner's lines on stderr (``[COMPLETED] tN ...`` once a task was saved: the test's cue to send
SIGINT), then prints a JSON summary line on stdout and exits 130 when interrupted.

The stand-in answers the first request at once and holds every later one until Ctrl-C set the
STOP flag: the signal always lands while two requests are in flight and tasks are still queued.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

from taxdata.cancel import STOP
from taxdata.clients.llm import DIALECTS, Endpoint, LLMClient
from taxdata.errors import EXIT_INTERRUPTED
from taxdata.log import setup_logging
from taxdata.runner import RunSummary, run_tasks
from taxdata.testing.llm_server import StandInLLM


def run(out: Path) -> RunSummary:
    arrived, lock = [0], threading.Lock()

    def answer(body: dict) -> str:
        with lock:
            arrived[0] += 1
            first = arrived[0] == 1
        if not first:
            STOP.wait(30)  # held until Ctrl-C: in flight when the signal lands
        return "OK"

    server = StandInLLM(responder=answer).start()
    client = LLMClient(Endpoint(server.url(), DIALECTS["proxy"]), model="stand-in:latest")

    def save(result) -> None:
        with out.open("a", encoding="utf-8") as handle:
            handle.write(result.task_id + "\n")

    try:
        summary = run_tasks([f"t{i}" for i in range(6)],
                            lambda task_id: client.chat([{"role": "user", "content": task_id}]),
                            max_workers=2, on_result=save, progress=False)
    finally:
        chats = len(server.history)
        server.stop()
    print(json.dumps({"succeeded": summary.succeeded, "cancelled": summary.cancelled,
                      "chats": chats}), flush=True)
    return summary


def main() -> None:
    setup_logging("INFO")
    summary = run(Path(sys.argv[1]))
    sys.exit(EXIT_INTERRUPTED if summary.interrupted else 0)


if __name__ == "__main__":
    main()
