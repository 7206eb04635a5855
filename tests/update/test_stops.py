"""Every stop keeps its work, the updater as a process (issue 18): two Ctrl-C within milliseconds
once replies were validated, Ctrl-C during start-up, and how a country whose request a stop
closed is reported (cancelled in flight, not "interrupted before it ran").
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest
from _programs import script_command, signal_when
from _updater import (  # noqa: F401  (pytest fixtures)
    _COUNTRY,
    REGISTRY,
    SCRIPT,
    SUBPROCESS_TIMEOUT,
    Script,
    country_chats,
    data,
    dataset,
    expected_record,
    explain,
    is_probe,
    put_taxation,
    reply,
    report_of,
    script_env,
    server,
)

from taxdata.store.jsmodule import parse_tax_data_js
from taxdata.testing.llm_faults import Fault

SLUGS = ["austria", "belgium", "croatia", "cyprus", "estonia", "finland", "france", "germany"]


def _country(body: dict) -> str:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return _COUNTRY.search(user).group(1)


@pytest.mark.parametrize("second", [False, True], ids=["once", "twice within a millisecond"])
def test_validated_replies_are_saved_and_the_ones_in_flight_reported_cancelled(server, data,
                                                                               second):
    for slug in SLUGS:
        put_taxation(data, slug, generic=True)
    script = Script({slug: reply(slug) for slug in SLUGS})
    answered = {REGISTRY.get(slug).name for slug in SLUGS[:3]}

    def responder(body: dict) -> Any:
        if is_probe(body) or _country(body) in answered:
            return script(body)
        script(body)
        return Fault.stall(SUBPROCESS_TIMEOUT, '{"currency": "EUR"}', after=1)  # a slow model

    server.responder = responder
    command = script_command(SCRIPT.name, "--no-progress", "--countries", ",".join(SLUGS),
                             "-w", "3")
    # Three replies validated and saved ([COMPLETED] comes after on_result), three streaming.
    done = signal_when(command, until=lambda lines: sum(
        line.startswith("[COMPLETED] ") for line in lines) == 3,
        again=(lambda lines: True) if second else None,
        env=script_env(data, server.url("proxy")), cwd=data.parent)
    assert done.returncode == 130, explain(done)
    assert "Traceback" not in done.stderr + done.stdout, explain(done)

    stored = dataset(data)["countries"]
    assert sorted(stored) == sorted(SLUGS[:3])  # every validated reply is saved
    assert all(stored[s]["record"] == expected_record(s, reply(s)) for s in stored)
    js = parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8"))
    assert js == {slug: stored[slug]["record"] for slug in stored}
    report = report_of(done)  # the report is written, the summary printed
    assert report["interrupted"] is True
    entries = report["countries"]
    asked = {slug for slug in SLUGS if script.calls[slug]}
    assert asked - set(SLUGS[:3]) and len(asked) == len(country_chats(server))
    # A country whose request was sent was cancelled in flight; one not started, before it ran
    # (a worker may have begun one, reading its file, without sending it yet: in flight too).
    in_flight = {slug for slug in SLUGS if entries[slug]["reason"].startswith(
        "cancelled in flight")}
    assert asked - set(SLUGS[:3]) <= in_flight
    queued = set(SLUGS) - set(SLUGS[:3]) - in_flight
    for slug in in_flight | queued:
        assert entries[slug]["status"] == "SKIPPED", entries[slug]
    assert all(entries[slug]["reason"] == "interrupted before it ran" for slug in queued)
    # One line for the queued lot.
    n = len(queued)
    assert (f"[CANCELLED] {n} queued task{'s' if n != 1 else ''} not started (Ctrl-C); "
            f"{len(in_flight)} cancelled in flight") in done.stderr, explain(done)
    if second:
        assert "[INTERRUPTED] Ctrl-C again: stopping now" in done.stderr


def test_ctrl_c_during_start_up_sends_nothing_and_still_reports(server, data):
    for slug in SLUGS[:4]:
        put_taxation(data, slug, generic=True)
    probed, release = threading.Event(), threading.Event()
    script = Script({slug: reply(slug) for slug in SLUGS})

    def responder(body: dict) -> Any:
        if is_probe(body):  # the structured-output probe, before any country's request
            probed.set()
            release.wait(SUBPROCESS_TIMEOUT)
        return script(body)

    server.responder = responder
    command = script_command(SCRIPT.name, "--no-progress", "--countries", ",".join(SLUGS[:4]))
    try:
        done = signal_when(command, until=probed, env=script_env(data, server.url("proxy")),
                           cwd=data.parent, sig=signal.SIGTERM)
    finally:
        release.set()
    assert done.returncode == 130, explain(done)
    assert "Traceback" not in done.stderr + done.stdout, explain(done)
    assert country_chats(server) == []  # no country's request was sent
    assert not (data / "tax_data.json").exists()
    assert "[INTERRUPTED] SIGTERM: stopping" in done.stderr
    report = report_of(done)  # the summary and report are written even so
    assert report["interrupted"] is True
    assert {slug: (e["status"], e["reason"]) for slug, e in report["countries"].items()} == {
        slug: ("SKIPPED", "interrupted before it ran") for slug in SLUGS[:4]}
    assert "[CANCELLED] 4 queued tasks not started (SIGTERM); 0 cancelled in flight" in done.stderr


# -- a sweep: the signal lands after the k-th log line, once or twice -------------------------

SWEEP = ["austria", "belgium", "croatia", "cyprus", "estonia", "finland"]


@pytest.mark.parametrize("presses", [1, 2])
@pytest.mark.parametrize("line", [1, 4, 8, 13, 18, 24])
def test_a_stop_after_any_log_line_keeps_what_finished(server, data, line, presses):
    """A run of six countries writes about 25 lines on stderr (start-up, each request and
    answer, each country saved, the persist line); -v adds the payloads (the logging lock is
    busiest then). Wherever the signal lands: no traceback, the files valid and in step, every
    country logged [COMPLETED] saved in them, the report written."""
    for slug in SWEEP:
        put_taxation(data, slug, generic=True)
    server.responder = Script({slug: reply(slug) for slug in SWEEP})
    command = script_command(SCRIPT.name, "--no-progress", "--countries", ",".join(SWEEP),
                             "-w", "2", *(["-v"] if presses == 2 else []))
    done = signal_when(command, until=lambda lines: len(lines) >= line,
                       again=(lambda lines: True) if presses == 2 else None,
                       env=script_env(data, server.url("proxy")), cwd=data.parent)
    assert "Traceback" not in done.stderr + done.stdout, explain(done)
    assert done.returncode in (0, 130), explain(done)
    # 0: the signal came once the work was done (the files and report are finished first).
    assert done.returncode == 0 or "[INTERRUPTED]" in done.stderr, explain(done)
    completed = {text.split()[1] for text in done.stderr.splitlines()
                 if text.startswith("[COMPLETED] ")}
    stored = dataset(data)["countries"] if (data / "tax_data.json").exists() else {}
    assert set(stored) == completed, explain(done)
    if stored or (data / "taxData.js").exists():  # none when the stop came before any result
        js = parse_tax_data_js((data / "taxData.js").read_text(encoding="utf-8"))
        assert js == {slug: entry["record"] for slug, entry in stored.items()}
    report = report_of(done)
    assert sorted(report["countries"]) == SWEEP
    assert {s for s, e in report["countries"].items() if e["status"] == "ADDED"} == completed
