"""The one outcome vocabulary: a runner task's result as an outcome, the exit code, the summary."""

from __future__ import annotations

from taxdata.cancel import Interrupted
from taxdata.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ServerError
from taxdata.outcome import (
    CountryFailed,
    Outcome,
    Status,
    exit_code,
    outcome_of,
    print_summary,
)
from taxdata.runner import TaskResult, run_tasks


class Kept(Outcome):
    """A pipeline's own outcome type: what :func:`outcome_of` makes for it."""


def test_each_kind_of_task_result_maps_to_one_outcome():
    failed = Kept("carried", Status.FAILED, "held back", latency_s=1.5)

    def work(slug: str) -> Kept:
        if slug == "carried":
            raise CountryFailed(failed)
        if slug == "server":
            raise ServerError("the model never answered\nsecond line")
        if slug == "bug":
            raise KeyError("brackets")
        if slug == "bare":
            raise RuntimeError()
        return Kept(slug, Status.WRITTEN)

    summary = run_tasks(["ok", "carried", "server", "bug", "bare"], work, max_workers=2,
                        progress=False)
    outcomes = {slug: outcome_of(result, Kept) for slug, result in summary.results.items()}
    assert all(isinstance(o, Kept) for o in outcomes.values())
    assert outcomes["carried"] is failed and failed.latency_s == 1.5  # its own timing kept
    assert {slug: (o.status, o.reason) for slug, o in outcomes.items()} == {
        "ok": (Status.WRITTEN, ""),
        "carried": (Status.FAILED, "held back"),
        "server": (Status.FAILED, "the model never answered"),  # taxdata's words, first line
        "bug": (Status.FAILED, "KeyError: 'brackets'"),  # anything else: named by its type
        "bare": (Status.FAILED, "RuntimeError"),
    }
    cancelled = TaskResult("late", cancelled=True, error=Interrupted("cancelled"))
    assert (outcome_of(cancelled, Kept).status, outcome_of(cancelled, Kept).reason) == (
        Status.SKIPPED, "interrupted before it ran")


def test_a_status_given_as_text_is_the_status():
    assert Outcome("x", "WRITTEN").status is Status.WRITTEN


def test_exit_code_interrupted_before_failed_before_ok():
    failed = {"a": Outcome("a", Status.FAILED), "b": Outcome("b", Status.WRITTEN)}
    assert exit_code(failed, interrupted=True) == EXIT_INTERRUPTED
    assert exit_code(failed, interrupted=False) == EXIT_FAILED
    assert exit_code({"b": Outcome("b", Status.WRITTEN)}, interrupted=False) == EXIT_OK


def test_the_summary_counts_every_status_lists_the_chosen_countries_then_the_sections(capsys):
    outcomes = {"b": Outcome("b", Status.FAILED, "no reply"),
                "a": Outcome("a", Status.SKIPPED, "up to date")}
    print_summary("Run", outcomes, 12.0, statuses=(Status.ADDED, Status.FAILED, Status.SKIPPED),
                  note="model m", listed=lambda o: o.status == Status.FAILED,
                  detail=lambda o: o.reason.upper(), sections=["Report: r.json"])
    assert capsys.readouterr().out.splitlines() == [
        "",
        "Run (12.0s, model m)",
        "  ADDED      0",
        "  FAILED     1",
        "  SKIPPED    1",
        "  FAILED b: NO REPLY",
        "  Report: r.json",
    ]
