"""Double Ctrl-C trials against the updater (issue 18's campaign; not part of the suite: about
3 minutes). Run it by name, ``python -m pytest -q -n 0 -s tests/update/stop_trials.py``; it prints
one JSON line of counts and the signal-to-exit times.

48 trials: 8 FIXTURE countries (the tests' generic taxation files and replies), replies taking
0.3 s, 3 workers; SIGINT once the run has written a random number (1-30) of log lines, a second
1 ms after the kernel delivered the first. Counted: exit codes, tracebacks, countries logged
``[COMPLETED]`` but not in tax_data.json afterwards (lost), runs without a report, runs still
going 30 s after the signals (hung). A trial that ended before its signal is not counted.
"""

from __future__ import annotations

import json
import random
import subprocess
import time

from _programs import script_command, signal_when
from _updater import (  # noqa: F401  (pytest fixtures)
    SCRIPT,
    Script,
    data,
    dataset,
    put_taxation,
    reply,
    script_env,
    server,
)

SLUGS = ["austria", "belgium", "croatia", "cyprus", "estonia", "finland", "france", "germany"]


def test_double_ctrl_c_trials(server, tmp_path_factory):
    random.seed(18)
    counts = dict.fromkeys(["trials", "exit 130", "exit 0", "other exit", "traceback", "lost",
                            "completed", "no report", "hung"], 0)
    waits: list[float] = []
    for trial in range(48):
        root = tmp_path_factory.mktemp(f"trial{trial}") / "data"
        (root / "taxation").mkdir(parents=True)
        for slug in SLUGS:
            put_taxation(root, slug, generic=True)
        script = Script({slug: reply(slug) for slug in SLUGS})

        def slow(body: dict, script: Script = script) -> object:
            time.sleep(0.3)
            return script(body)

        server.responder = slow
        after, sent = random.randint(1, 30), [0.0]
        try:
            done = signal_when(
                script_command(SCRIPT.name, "--no-progress", "--countries", ",".join(SLUGS),
                               "-w", "3"),
                until=lambda lines, n=after: len(lines) >= n, again=lambda lines: True,
                on_signal=lambda sent=sent: sent.__setitem__(0, time.monotonic()),
                env=script_env(root, server.url("proxy")), cwd=root.parent, timeout=30)
        except AssertionError:
            continue  # it ended before its signal
        except subprocess.TimeoutExpired:
            counts["trials"] += 1
            counts["hung"] += 1
            continue
        waits.append(time.monotonic() - sent[0])
        counts["trials"] += 1
        counts[{130: "exit 130", 0: "exit 0"}.get(done.returncode, "other exit")] += 1
        counts["traceback"] += "Traceback" in done.stderr
        completed = {line.split()[1] for line in done.stderr.splitlines()
                     if line.startswith("[COMPLETED] ")}
        stored = set(dataset(root)["countries"]) if (root / "tax_data.json").exists() else set()
        counts["lost"] += len(completed - stored)
        counts["completed"] += len(completed)
        counts["no report"] += "  Report: " not in done.stdout
    waits.sort()
    print(json.dumps(counts))
    if waits:
        print(f"signal to exit: median {waits[len(waits) // 2]:.2f}s, max {waits[-1]:.2f}s")
