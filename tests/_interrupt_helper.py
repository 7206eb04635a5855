"""Run by test_runner.py in a subprocess: 6 slow tasks on 2 workers, to be stopped by SIGINT.

``python _interrupt_helper.py OUT`` appends each saved task id to OUT (one per line), then prints
a JSON summary line on stdout and exits 130 when interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from taxdata.errors import EXIT_INTERRUPTED
from taxdata.llm import DIALECTS, Endpoint, LLMClient
from taxdata.runner import RunSummary, run_tasks
from taxdata.testing.llm_server import StandInLLM


def run(out: Path) -> RunSummary:
    server = StandInLLM(latency=1.0).start()
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
    summary = run(Path(sys.argv[1]))
    sys.exit(EXIT_INTERRUPTED if summary.interrupted else 0)


if __name__ == "__main__":
    main()
